"""The incidents tests are opt-in: they run only when the marker expression asks for them
(`pytest -m incidents tests/incidents`). A bare `pytest` and `make test`'s `-m "not cluster"` run
deselect them, since a command-line -m replaces any default expression in pytest's addopts."""

from __future__ import annotations

import pytest

# The integration session fixture: the local stack (Kafka, Postgres, S3, ffmpeg) up for the session.
from tests.integration.conftest import stack

__all__ = ["stack"]


def asked_for_incidents(markexpr: str) -> bool:
    """True when -m selects an item marked `incidents` but would not select an unmarked item."""
    if not markexpr:
        return False
    # pytest's own marker-expression evaluator (the one -m uses), so "not incidents",
    # "not cluster" and "incidents or cluster" mean exactly what they mean to pytest.
    from _pytest.mark.expression import Expression

    expression = Expression.compile(markexpr)
    return expression.evaluate(_only_incidents) and not expression.evaluate(_no_marker)


def _only_incidents(name: str, /, **_: str | int | bool | None) -> bool:
    return name == "incidents"


def _no_marker(_name: str, /, **_: str | int | bool | None) -> bool:
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the incidents tests unless -m asked for them."""
    if asked_for_incidents(config.option.markexpr):
        return
    left_out = [item for item in items if item.get_closest_marker("incidents") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.get_closest_marker("incidents") is None]
