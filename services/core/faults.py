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

# Every named point in the code, and what is durable when a process dies there. Each point has a
# crash test in tests/fault/ (kill -9 there, restart, check G1/G3/G4); tests/unit/test_faults.py
# fails when a `reach` names a point missing here.
POINTS: dict[str, str] = {
    "encoder.after_started": "JobStarted acknowledged and the claim marked started; nothing encoded yet",
    "encoder.after_stalled": (
        "a takeover: JobStalled of the dead attempt acknowledged, the next attempt claimed, not started"
    ),
    "encoder.after_upload": "outputs in S3, VideoEncoded acknowledged; no JobCompleted, claim running",
    "encoder.after_completed": "JobCompleted acknowledged and the claim done; the offset not committed",
    "encoder.before_retry_command": (
        "JobRetryScheduled acknowledged, the next attempt's command not yet produced; claim running"
    ),
    "encoder.after_retry_scheduled": (
        "JobRetryScheduled and the next attempt's command acknowledged, the claim done;"
        " the offset not committed"
    ),
    "encoder.final_events_acked": (
        "the attempt's final events acknowledged inside the claim transaction; the claim not yet done"
    ),
    "encoder.cancel_acked": "JobCanceled of a queued job acknowledged; its claim not yet closed",
    "encoder.after_commit": "the attempt's command offset committed; its staging files not yet deleted",
    "conductor.before_commit": (
        "a batch's decisions (task commands, stitched lectures, course end) produced in its Kafka "
        "transaction; the transaction not committed"
    ),
    "conductor.after_commit": "a batch's transaction (its decisions and its input offsets) committed",
    "projector.after_db_commit": "a batch committed in Postgres; its Kafka offsets not committed",
    "projector.mid_batch": "inside the batch's transaction: events appended, status rows not yet",
    "cli.after_part": (
        "`coursecast publish`: a part PUT to S3 and its ETag saved in the local state; the next not sent"
    ),
    "cli.after_submit": (
        "`coursecast publish`: the course accepted (202) by the api; the local state not yet cleared"
    ),
}
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
