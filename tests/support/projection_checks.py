"""Checks that a projector's schema is exactly the log: the reference fold, and a rebuild from offset 0."""

from __future__ import annotations

from uuid import uuid4

from services.core.messages import Envelope
from services.core.projection import InMemoryJobProjection
from services.core.settings import Settings
from services.projector.replay import ReplayResult, compare, drop_schema, replay
from services.projector.store import JobStore


def assert_table_is_the_log(own: Settings, events: list[Envelope]) -> ReplayResult:
    """The live schema equals both the reference fold of `events` and a fresh rebuild, every event once.

    `events` are the events the table should hold: what reached the log minus what was set aside
    (dead-lettered or refused by Postgres). Returns what the rebuild read.
    """
    store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    try:
        reference = InMemoryJobProjection().handle_all(events)
        assert store.jobs() == reference.jobs
        stored_events = store.connection.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM job_events"
        ).fetchone()
        assert stored_events == (len(reference.seen), len(reference.seen))
        stored_rejections = {
            row[0]: row[1]
            for row in store.connection.execute("SELECT event_id, rejection FROM rejected_events")
        }
        assert stored_rejections == {r.event.event_id: r.rejection.name for r in reference.rejected}
    finally:
        store.close()
    rebuild = f"rebuild_{uuid4().hex[:10]}"
    try:
        result = replay(own, rebuild)
        assert compare(own.database_url, own.database_schema, rebuild) == []
    finally:
        drop_schema(own.database_url, rebuild)
    return result
