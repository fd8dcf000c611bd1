"""Integration fixtures: the real local stack (Kafka, Postgres, S3, ffmpeg) on 127.0.0.1.

If the stack is not running, the session starts it and stops exactly what it started at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import devtools.stack.manager as manager
from services.core.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def stack(settings: Settings) -> Iterator[None]:
    """The local stack, up for the whole session."""
    already_up = all(component.ok for component in manager.status(settings))
    if not already_up:
        manager.up(settings, brokers=1)
    yield
    if not already_up:
        manager.down(settings)
