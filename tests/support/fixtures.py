"""The pytest fixtures every test directory gets (registered by the root tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from confluent_kafka import Producer

from services.core.kafka_config import producer_config
from services.core.settings import Settings
from services.core.storage import s3_client
from tests.support.projector import isolated

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Settings under which a dead or frozen member is noticed within seconds rather than 45 s.
QUICK_LIVENESS: dict[str, Any] = {"heartbeat_interval_s": 2, "session_timeout_ms": 6_000}
# ...and a failed attempt is retried after a second or two.
QUICK_RETRY: dict[str, Any] = {**QUICK_LIVENESS, "retry_backoff_base_s": 1.0}

Isolate = Callable[..., Settings]


@pytest.fixture
def isolate(settings: Settings) -> Iterator[Isolate]:
    """A factory of settings with topics, schema and groups of their own, deleted after the test.

    `isolate(partitions=3, **overrides)` applies `overrides` to the session's settings, then gives
    them topics (`partitions` each), a Postgres schema and consumer groups no other test uses.
    """
    with ExitStack() as scopes:

        def make(partitions: int = 3, **overrides: Any) -> Settings:
            return scopes.enter_context(isolated(settings.model_copy(update=overrides), partitions))

        yield make


def pytest_configure(config: pytest.Config) -> None:
    """Register the `own` marker (the suite runs with --strict-markers)."""
    config.addinivalue_line(
        "markers", "own(partitions=3, **overrides): what the `own` fixture isolates for the test"
    )


@pytest.fixture
def own(request: pytest.FixtureRequest, isolate: Isolate) -> Settings:
    """The test's own settings: `isolate(**kwargs)` of its closest `own` marker (defaults without one).

    A module says what it needs once, e.g. `pytestmark = pytest.mark.own(partitions=1, **QUICK_LIVENESS)`.
    """
    marker = request.node.get_closest_marker("own")
    return isolate(*marker.args, **marker.kwargs) if marker is not None else isolate()


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    """An idempotent acks=all producer, flushed at the end of the test."""
    client = Producer(producer_config(settings, "test"))
    yield client
    client.flush(10)


@pytest.fixture
def s3(settings: Settings) -> S3Client:
    """A boto3 S3 client for the local endpoint."""
    return s3_client(settings)


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A Postgres connection to the project's database."""
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        yield conn
