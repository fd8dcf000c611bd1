"""G3 under crashes: kill -9 a projector at chosen instants; after restart nothing is lost or doubled.

Also G3 under concurrency: two projector processes sharing a 6-partition log build the same table
as one process replaying it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from uuid import uuid4

import pytest

from services.core.messages import Envelope
from services.core.projection import InMemoryJobProjection
from services.core.settings import Settings
from services.projector.replay import compare, drop_schema, replay
from services.projector.store import JobStore
from services.tools.synthetic import history
from tests.integration.projector_harness import isolated, produce, start_projector, stop, wait_caught_up


def assert_table_is_the_log(own: Settings, events: list[Envelope]) -> None:
    """The live schema equals both the reference fold and a fresh rebuild, with every event once."""
    store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    try:
        reference = InMemoryJobProjection().handle_all(events)
        assert store.jobs() == reference.jobs
        stored_events = store.connection.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM job_events"
        ).fetchone()
        assert stored_events == (len(reference.seen), len(reference.seen))
        rejected = store.connection.execute("SELECT count(*) FROM rejected_events").fetchone()
        assert rejected == (len(reference.rejected),)
    finally:
        store.close()
    rebuild = f"rebuild_{uuid4().hex[:10]}"
    try:
        replay(own, rebuild)
        assert compare(own.database_url, own.database_schema, rebuild) == []
    finally:
        drop_schema(own.database_url, rebuild)


@pytest.fixture
def own(settings: Settings) -> Iterator[Settings]:
    # A short session timeout lets the group notice the killed member in seconds rather than 45 s.
    quick = settings.model_copy(update={"projector_batch_size": 100, "session_timeout_ms": 6000})
    with isolated(quick, partitions=3) as scoped:
        yield scoped


@pytest.mark.parametrize("point", ["projector.after_db_commit", "projector.mid_batch"])
def test_projector_killed_at_any_point_resumes_without_loss_or_duplicate(own: Settings, point: str) -> None:
    events = history(jobs=150, events_per_job=8, seed=11)
    produce(own, events)

    doomed = start_projector(own, COURSECAST_FAULT_POINT=f"{point}:3")
    assert doomed.wait(120) == -signal.SIGKILL, "the fault hook did not kill the projector"

    survivor = start_projector(own)
    try:
        wait_caught_up(own, timeout_s=120, processes=[survivor])
    finally:
        assert stop(survivor) == 0
    assert_table_is_the_log(own, events)


def test_two_projector_processes_build_the_table_one_process_rebuilds(settings: Settings) -> None:
    with isolated(settings, partitions=6) as own:
        events = history(jobs=500, events_per_job=20, seed=5)
        assert len(events) >= 10_000
        produce(own, events)
        first, second = start_projector(own), start_projector(own)
        try:
            wait_caught_up(own, timeout_s=240, processes=[first, second])
        finally:
            codes = stop(first), stop(second)
        assert codes == (0, 0)
        assert_table_is_the_log(own, events)
