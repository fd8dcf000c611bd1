"""The projector on real Kafka and Postgres: exactly once, append-only, rejections kept, poison set aside."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import uuid4

import psycopg
import pytest
from confluent_kafka import Consumer

from services.core.kafka_config import consumer_config
from services.core.messages import Envelope, MessageType
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.messages import T0, event, timeline
from tests.support.projection_checks import folded, stored
from tests.support.projector import produce, project

M = MessageType


@pytest.fixture
def store(own: Settings) -> Iterator[JobStore]:
    opened = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    yield opened
    opened.close()


def test_seed_incident_redelivered_failure_leaves_the_completed_job_completed(
    own: Settings, store: JobStore
) -> None:
    job = uuid4()
    lifecycle = timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED)
    late = T0 + timedelta(hours=3)
    redelivered = [
        event(M.JOB_STARTED, job, at=late),
        event(M.JOB_FAILED, job, at=late + timedelta(seconds=1)),
    ]
    produce(own, [*lifecycle, *redelivered])
    project(own, store)

    row = store.job(job)
    assert row is not None
    assert row.status == "completed"
    assert row.completed_at == lifecycle[-1].occurred_at
    assert row.error_type is None
    rejected = store.connection.execute(
        "SELECT type, rejection, reason, met_status FROM rejected_events"
        " WHERE job_id = %s ORDER BY occurred_at",
        (job,),
    ).fetchall()
    assert [(r[0], r[1], r[3]) for r in rejected] == [
        ("JobStarted", "TerminalState", "completed"),
        ("JobFailed", "TerminalState", "completed"),
    ]
    assert all("cannot change a job that has ended" in r[2] for r in rejected)


def test_late_completion_of_attempt_one_is_rejected_while_attempt_two_runs(
    own: Settings, store: JobStore
) -> None:
    job = uuid4()
    events = [
        *timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_RETRY_SCHEDULED),
        event(M.JOB_STARTED, job, attempt=2, at=T0 + timedelta(minutes=5)),
        event(M.JOB_COMPLETED, job, attempt=1, at=T0 + timedelta(minutes=6)),
    ]
    produce(own, events)
    project(own, store)

    row = store.job(job)
    assert row is not None
    assert (row.status, row.attempt, row.completed_at) == ("processing", 2, None)
    (rejection,) = store.connection.execute(
        "SELECT rejection, met_attempt FROM rejected_events WHERE job_id = %s", (job,)
    ).fetchall()
    assert rejection == ("StaleAttempt", 2)


def test_same_event_delivered_twice_is_stored_and_applied_once(own: Settings, store: JobStore) -> None:
    job = uuid4()
    queued, started, progress = timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS)
    produce(own, [queued, started, started, progress, progress, queued])
    projector = project(own, store)

    (count,) = store.connection.execute(
        "SELECT count(*) FROM job_events WHERE job_id = %s", (job,)
    ).fetchone() or (0,)
    assert count == 3
    assert projector.stats.duplicates == 3
    assert store.connection.execute("SELECT count(*) FROM rejected_events").fetchone() == (0,)
    row = store.job(job)
    assert row is not None
    assert (row.status, row.progress_percent) == ("processing", 42.5)


def test_poison_messages_go_to_the_dlq_and_good_events_behind_them_are_applied(
    own: Settings, store: JobStore
) -> None:
    job = uuid4()
    key = str(job).encode()
    good = timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_COMPLETED)
    wrong_schema = good[1]
    poison: list[bytes | None] = [
        b"{not json",
        b'{"event_id": "x", "type": "JobStarted"}',
        b'{"event_id": "00000000-0000-4000-8000-000000000001", "type": "JobExploded", "version": 1,'
        b' "job_id": "00000000-0000-4000-8000-000000000002", "attempt": 1,'
        b' "occurred_at": "2026-06-15T08:00:00Z", "producer": "x", "data": {}}',
        None,
    ]
    produce(own, [good[0], *poison, good[1], good[2]], keys=[key] * 4)
    projector = project(own, store)

    assert projector.stats.dead_lettered == 4
    row = store.job(job)
    assert row is not None
    assert row.status == "completed"
    dlq = Consumer(consumer_config(own, f"dlq-{uuid4()}", "test"))
    dlq.subscribe([own.events_dlq_topic])
    codes: list[bytes] = []
    try:
        while len(codes) < 4:
            message = dlq.poll(10)
            assert message is not None, f"only {codes} reached the DLQ"
            if message.error() is None:
                code = dict(message.headers() or [])["dlq.code"]
                assert isinstance(code, bytes)
                codes.append(code)
    finally:
        dlq.close()
    assert sorted(codes) == sorted([b"malformed", b"schema_violation", b"unknown_type", b"empty"])
    assert wrong_schema.type == "JobStarted"


def test_database_refuses_to_update_or_delete_the_event_log(own: Settings, store: JobStore) -> None:
    job = uuid4()
    produce(own, timeline(job, M.JOB_QUEUED))
    project(own, store)
    log = f"{own.database_schema}.job_events"
    with psycopg.connect(own.database_url) as conn:
        for statement in (f"UPDATE {log} SET attempt = 2", f"DELETE FROM {log}", f"TRUNCATE {log} CASCADE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
            conn.rollback()
        assert conn.execute(f"SELECT count(*) FROM {log}").fetchone() == (1,)


def test_status_table_equals_the_reference_projection_of_the_same_log(own: Settings, store: JobStore) -> None:
    from devtools.synthetic import history

    events: list[Envelope] = history(jobs=60, events_per_job=8, seed=3)
    produce(own, events)
    project(own, store)
    assert stored(store) == folded(events)
