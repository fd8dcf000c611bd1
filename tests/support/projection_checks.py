"""Checks that a projector's schema is exactly the log (G4): equal to the reference fold of the same
events, and to a rebuild from offset 0. `Tables` is what both kinds of projection are compared on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID, uuid4

from services.core.catalogue import InMemoryCatalogue
from services.core.jobs import JobState
from services.core.messages import Envelope
from services.core.projection import InMemoryJobProjection
from services.core.settings import Settings
from services.projector.catalogue import catalogue_of
from services.projector.replay import ReplayResult, compare, drop_schema, replay
from services.projector.store import JobStore


def assert_table_is_the_log(own: Settings, events: list[Envelope]) -> ReplayResult:
    """The live schema equals both the reference fold of `events` and a fresh rebuild, every event once.

    `events` are the events the table should hold: what reached the log minus what was set aside
    (dead-lettered or refused by Postgres). Returns what the rebuild read.
    """
    store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    try:
        assert stored(store) == folded(events)
    finally:
        store.close()
    return assert_rebuild_equals_live(own)


def assert_rebuild_equals_live(settings: Settings) -> ReplayResult:
    """G4: a rebuild of the schema from offset 0 equals the live one. Returns what the rebuild read."""
    rebuild = f"rebuild_{uuid4().hex[:10]}"
    try:
        result = replay(settings, rebuild)
        assert compare(settings.database_url, settings.database_schema, rebuild) == []
    finally:
        drop_schema(settings.database_url, rebuild)
    return result


@dataclass(frozen=True)
class Tables:
    """What a projection holds: every job's state, the ids of the events it stored, its rejections, and
    the catalogue of published courses."""

    jobs: dict[UUID, JobState]
    event_ids: frozenset[UUID]
    rejections: dict[UUID, str]  # event_id -> Rejection name
    catalogue: InMemoryCatalogue


def folded(events: Iterable[Envelope]) -> Tables:
    """The tables of the reference fold (services.core.projection) of `events` in log order."""
    reference = InMemoryJobProjection().handle_all(events)
    return Tables(
        jobs=reference.jobs,
        event_ids=frozenset(reference.seen),
        rejections={r.event.event_id: r.rejection.name for r in reference.rejected},
        catalogue=reference.catalogue,
    )


def stored(store: JobStore) -> Tables:
    """The tables of a Postgres projection: publish_jobs, job_events, rejected_events, the catalogue."""
    event_ids = [row[0] for row in store.connection.execute("SELECT event_id FROM job_events")]
    assert len(event_ids) == len(set(event_ids)), "an event is stored twice"
    return Tables(
        jobs=store.jobs(),
        event_ids=frozenset(event_ids),
        rejections={
            row[0]: row[1]
            for row in store.connection.execute("SELECT event_id, rejection FROM rejected_events")
        },
        catalogue=catalogue_of(store.connection),
    )
