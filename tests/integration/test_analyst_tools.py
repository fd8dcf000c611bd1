"""The analysts' commands on a real log: replay --rebuild, replay --as-of, events export, jobs, job ID."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from uuid import uuid4

import orjson
import psycopg
import pytest

from devtools.demo import coursecast
from devtools.synthetic import history
from services.core.messages import Envelope, MessageType
from services.core.projection import InMemoryJobProjection
from services.core.settings import Settings
from services.projector.replay import drop_schema, replay
from services.projector.store import JobStore
from tests.support.messages import T0, event, timeline
from tests.support.projector import isolated, produce, project

M = MessageType


@pytest.fixture(scope="module")
def projected(settings: Settings) -> Iterator[tuple[Settings, list[Envelope]]]:
    """A log of 40 synthetic jobs plus the seed incident, applied by a real projector."""
    with isolated(settings) as own:
        incident = uuid4()
        # In event-time order, as a live log is (up to producer delays): --as-of relies on it.
        events = sorted(
            [
                *history(jobs=40, events_per_job=6, seed=21),
                *timeline(incident, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_COMPLETED),
                event(M.JOB_FAILED, incident, at=T0 + timedelta(hours=3)),
            ],
            key=lambda e: e.occurred_at,
        )
        produce(own, events)
        store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
        project(own, store)
        store.close()
        yield own, events


def test_replay_rebuild_reports_no_difference_for_a_live_table_built_from_the_log(
    projected: tuple[Settings, list[Envelope]],
) -> None:
    own, _ = projected
    result = coursecast(own, "replay", "--rebuild", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no difference" in result.stdout


def test_replay_rebuild_finds_a_live_row_that_the_log_does_not_explain(settings: Settings) -> None:
    with isolated(settings) as own:
        job = uuid4()
        produce(own, timeline(job, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS))
        store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
        project(own, store)
        # Someone edits the status table by hand: the log no longer explains it.
        store.connection.execute("UPDATE publish_jobs SET progress_percent = 99 WHERE job_id = %s", (job,))
        store.close()
        result = coursecast(own, "replay", "--rebuild", check=False)
        printed = result.stdout.replace("\n", "")
        assert result.returncode == 1
        assert "2 difference(s)" in printed  # the edited row, and the row the log explains
        assert "live only" in printed
        assert "replay only" in printed
        assert str(job) in printed


def test_replay_as_of_builds_the_table_as_it_stood_then(projected: tuple[Settings, list[Envelope]]) -> None:
    own, events = projected
    cutoff = sorted(e.occurred_at for e in events)[len(events) // 2]
    schema = f"asof_{uuid4().hex[:8]}"
    try:
        replay(own, schema, until=cutoff)
        expected = InMemoryJobProjection().handle_all(e for e in events if e.occurred_at <= cutoff).jobs
        store = JobStore.open(own.database_url, schema, own.events_topic)
        try:
            assert store.jobs() == expected
        finally:
            store.close()
    finally:
        drop_schema(own.database_url, schema)


def test_events_export_streams_the_whole_history_with_rejections_marked(
    projected: tuple[Settings, list[Envelope]],
) -> None:
    own, events = projected
    unique = {e.event_id for e in events}
    jsonl = coursecast(own, "events", "export", "--format", "jsonl", check=False)
    assert jsonl.returncode == 0, jsonl.stderr
    rows = [orjson.loads(line) for line in jsonl.stdout.splitlines()]
    assert {row["event_id"] for row in rows} == {str(e) for e in unique}
    assert any(row["rejection"] == "TerminalState" for row in rows)

    as_csv = coursecast(own, "events", "export", "--format", "csv", check=False)
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(table) == len(unique)
    assert {"event_id", "type", "rejection", "rejection_reason"} <= set(table[0])


def test_job_command_shows_the_history_and_why_an_event_was_rejected(
    projected: tuple[Settings, list[Envelope]],
) -> None:
    own, events = projected
    (incident,) = {e.job_id for e in events if e.type == M.JOB_FAILED and e.producer == "test"}
    shown = coursecast(own, "job", str(incident), check=False)
    assert shown.returncode == 0, shown.stderr
    assert "completed" in shown.stdout
    assert "TerminalState" in shown.stdout
    listed = coursecast(own, "jobs", "--status", "completed", "--limit", "100", check=False)
    assert listed.returncode == 0, listed.stderr
    assert str(incident) in listed.stdout


def test_analyst_views_answer(projected: tuple[Settings, list[Envelope]]) -> None:
    own, _ = projected
    with psycopg.connect(own.database_url) as conn:
        for view in ("job_timings", "daily_throughput", "failure_reasons", "attempts_per_job"):
            rows = conn.execute(f"SELECT * FROM {own.database_schema}.{view}").fetchall()
            assert rows, f"{view} is empty"
        (completed,) = conn.execute(
            f"SELECT count(*) FROM {own.database_schema}.job_timings WHERE encode_duration IS NOT NULL"
        ).fetchone() or (0,)
        assert completed > 0
