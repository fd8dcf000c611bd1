"""The projection contract (G4): the in-memory fold and the Postgres projector agree, event for event.

The same sequence of events is folded by the reference projection (services/core/projection.py) and
applied to a Postgres JobStore (services/projector/store.py) in log order, in batches of several
sizes; both must end with equal tables: the same job rows, the same stored events (each once), the
same rejections. The sequences include a synthetic history and hand-made edge cases: events out of
order, redelivered duplicates (within one batch and across batches), illegal transitions, stale
attempts and events of jobs never queued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from uuid import uuid4

import pytest

from devtools.synthetic import history
from services.core.catalogue import lecture_id
from services.core.messages import Envelope, MessageType
from services.core.settings import Settings
from services.projector.store import JobStore, LogRecord
from tests.support.fixtures import Isolate
from tests.support.messages import T0, course_job, course_unpublished, event, timeline
from tests.support.projection_checks import Tables, folded, stored

M = MessageType


def redelivered_after_completion() -> list[Envelope]:
    """The seed incident: a completed job's command runs again; its start and failure come late."""
    job = uuid4()
    late = T0 + timedelta(hours=3)
    return [
        *timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED),
        event(M.JOB_STARTED, job, at=late),
        event(M.JOB_FAILED, job, at=late + timedelta(seconds=1)),
    ]


def duplicates() -> list[Envelope]:
    """The same events delivered again: right after themselves, and long after."""
    job = uuid4()
    queued, started, progress, completed = timeline(
        job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED
    )
    return [queued, queued, started, progress, progress, started, completed, queued, completed]


def out_of_order() -> list[Envelope]:
    """Events before the one that makes them legal, then that one, then the others again."""
    job = uuid4()
    queued, started, progress, completed = timeline(
        job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED
    )
    return [started, completed, queued, progress, started, completed, progress]


def illegal_and_stale() -> list[Envelope]:
    """Illegal transitions, a stale attempt, an attempt skipped, and a job never queued."""
    job, ghost = uuid4(), uuid4()
    first = timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_RETRY_SCHEDULED)
    second = timeline(job, M.JOB_STARTED, M.JOB_PROGRESS, attempt=2, start=T0 + timedelta(hours=1))
    return [
        *first,
        event(M.JOB_STARTED, job, attempt=3),  # skips attempt 2
        *second,
        event(M.JOB_PROGRESS, job, attempt=1),  # the first attempt, late
        event(M.JOB_COMPLETED, job, attempt=1),  # a stale completion
        event(M.JOB_STARTED, job, attempt=2),  # a second start of the running attempt
        event(M.JOB_COMPLETED, job, attempt=2),
        event(M.JOB_CANCELED, job, attempt=2),  # the job has ended
        event(M.JOB_PROGRESS, ghost),  # never queued
        event(M.JOB_QUEUED, ghost),
        event(M.JOB_CANCELED, ghost),
    ]


def courses_republished_and_unpublished() -> list[Envelope]:
    """Courses across jobs: a re-encode replaces the lectures; an unpublished course stays down even when
    a re-encode completes after; a re-encode read before the course's first job (another partition) wins
    by its later completion; a failed re-encode changes nothing; unpublishing is redelivered."""
    kept, down, ghost = uuid4(), uuid4(), uuid4()
    hour = timedelta(hours=1)
    kept_reencode, kept_failed = uuid4(), uuid4()
    down_reencode, down_late = uuid4(), uuid4()
    unpublished = course_unpublished(down, at=T0 + 3 * hour)
    return [
        *course_job(kept_reencode, kept, start=T0 + 2 * hour),  # read first, completes last
        *course_job(kept, kept, start=T0),
        *course_job(kept_failed, kept, start=T0 + hour, outcome=M.JOB_FAILED),
        *course_job(down, down, start=T0),
        *course_job(down_reencode, down, start=T0 + hour),
        unpublished,
        *course_job(down_late, down, start=T0 + 4 * hour),
        unpublished,
        course_unpublished(ghost, at=T0),  # a course never published: only its tombstone
    ]


def synthetic() -> list[Envelope]:
    """Interleaved lifecycles of many jobs, with redeliveries of a sample of them."""
    events = history(jobs=40, events_per_job=8, seed=23)
    return [*events, *events[::7]]


SEQUENCES: dict[str, Callable[[], list[Envelope]]] = {
    "redelivered-after-completion": redelivered_after_completion,
    "duplicates": duplicates,
    "out-of-order": out_of_order,
    "illegal-and-stale": illegal_and_stale,
    "synthetic-history": synthetic,
    "courses-republished-and-unpublished": courses_republished_and_unpublished,
    "all-interleaved": lambda: [
        e for group in zip(duplicates(), out_of_order(), illegal_and_stale(), strict=False) for e in group
    ],
}


@pytest.fixture
def store(isolate: Isolate) -> Iterator[JobStore]:
    """A JobStore on a schema of this test's own (no Kafka: the records are handed to it directly)."""
    own: Settings = isolate(partitions=1)
    opened = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    yield opened
    opened.close()


def in_postgres(store: JobStore, events: list[Envelope], batch_size: int) -> Tables:
    """Apply `events` as a projector would, one partition, `batch_size` records per transaction."""
    records = [LogRecord(envelope, partition=0, offset=offset) for offset, envelope in enumerate(events)]
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        store.apply_batch(batch, {0: batch[-1].offset + 1})
    return stored(store)


@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
@pytest.mark.parametrize("sequence", list(SEQUENCES))
def test_the_fold_and_postgres_give_equal_tables_for_the_same_events(
    store: JobStore, sequence: str, batch_size: int
) -> None:
    events = SEQUENCES[sequence]()
    reference = folded(events)
    # Every sequence reaches the rules: some event is refused by the state machine or is a redelivery.
    assert reference.rejections or len(reference.event_ids) < len(events)
    assert in_postgres(store, events, batch_size) == reference


def test_the_catalogue_keeps_the_latest_completion_of_each_course_and_never_an_unpublished_one(
    store: JobStore,
) -> None:
    events = courses_republished_and_unpublished()
    catalogue = in_postgres(store, events, batch_size=4).catalogue
    (course,) = catalogue.courses.values()
    first_job = events[3].job_id
    latest_job = events[0].job_id
    assert (course.course_id, course.job_id) == (first_job, latest_job)
    assert course.published_at == events[5].occurred_at  # its first completion, read after the re-encode's
    assert course.lectures[0].master_playlist_url == f"http://cdn.test/hls/{latest_job}/1/0/master.m3u8"
    assert course.lectures[0].lecture_id == lecture_id(first_job, 0)
    assert course.lectures[0].title == "Limit 1"
    assert len(catalogue.unpublished) == 2


def test_a_schema_migrated_over_an_existing_log_gets_its_whole_catalogue_from_the_log_at_start(
    store: JobStore, settings: Settings
) -> None:
    events = courses_republished_and_unpublished() + synthetic()[:400]
    whole = in_postgres(store, events, 50)
    assert whole.catalogue.courses, "the history publishes courses"
    # As a schema that predates the catalogue: its log and status table, an empty catalogue.
    conn = store.connection
    conn.execute("TRUNCATE course_jobs, courses, lectures, unpublished_courses, catalogue_backfill")
    assert stored(store).catalogue != whole.catalogue
    reopened = JobStore.open(settings.database_url, store.schema, store.topic)
    try:
        assert stored(reopened) == whole  # the projector's start folded the stored log into it
        again = JobStore.open(settings.database_url, store.schema, store.topic)
        again.close()  # a second start finds it done and changes nothing
        assert stored(reopened) == whole
    finally:
        reopened.close()
