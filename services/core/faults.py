"""Test-only fault injection: a process kills itself with SIGKILL at a named point.

`COURSECAST_FAULT_POINT=projector.after_db_commit:3` kills the process the third time it reaches
that point. Unset (always, outside fault tests), `reach` is one dictionary lookup. Fault tests use
it to prove G3: a crash at any instant loses nothing and duplicates nothing.
"""

from __future__ import annotations

import os
import signal
from functools import lru_cache

ENV_VAR = "COURSECAST_FAULT_POINT"
_hits: dict[str, int] = {}


@lru_cache(maxsize=1)
def _armed() -> tuple[str, int] | None:
    spec = os.environ.get(ENV_VAR, "")
    if not spec:
        return None
    point, _, count = spec.partition(":")
    return point, int(count or "1")


def reach(point: str) -> None:
    """Die here, as `kill -9` would, if this is the armed point and its count has come."""
    armed = _armed()
    if armed is None or armed[0] != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] >= armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)
