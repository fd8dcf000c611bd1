"""What the encoder tests observe: the job's row and events in Postgres, the encoder's JSON log, and
live ffmpeg processes; each wait has a deadline and fails early when a service it relies on exits."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from services.core.jobs import JobState
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.services import wait_until


def wait_logged(
    log_path: Path,
    timeout_s: float,
    processes: list[subprocess.Popen[bytes]],
    event: str | None = None,
    message: str | None = None,
) -> None:
    """Block until the encoder's JSON log has a line with `event` (or starting with `message`)."""
    wait_until(
        f"a log line {event or message!r}", lambda: logged(log_path, event, message), timeout_s, processes
    )


def logged(log_path: Path, event: str | None = None, message: str | None = None) -> int:
    """How many lines of the encoder's JSON log carry `event` (or start with `message`)."""
    return sum(
        1
        for line in log_lines(log_path)
        if (event is not None and line.get("event") == event)
        or (message is not None and str(line.get("message", "")).startswith(message))
    )


def log_lines(log_path: Path) -> list[dict[str, Any]]:
    """The JSON log lines an encoder wrote."""
    lines = []
    for raw in log_path.read_bytes().splitlines():
        try:
            lines.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            continue
    return lines


def count_events(log_path: Path, event: str, **match: Any) -> int:
    """How many log lines carry `event` (and the `match` fields)."""
    return sum(
        1
        for line in log_lines(log_path)
        if line.get("event") == event and all(line.get(k) == v for k, v in match.items())
    )


def wait_for(
    settings: Settings,
    job_id: UUID,
    statuses: set[str],
    timeout_s: float,
    processes: Iterable[subprocess.Popen[bytes]] = (),
) -> JobState:
    """Poll publish_jobs until the job is in one of `statuses`; returns its row."""
    deadline = time.monotonic() + timeout_s
    last: JobState | None = None
    store: JobStore | None = None
    try:
        while time.monotonic() < deadline:
            for process in processes:
                assert process.poll() is None, f"a service exited early with {process.returncode}"
            try:
                if store is None:
                    store = JobStore.open(
                        settings.database_url, settings.database_schema, settings.events_topic
                    )
                last = store.job(job_id)
            except Exception:  # the schema may not exist yet
                store = None
            if last is not None and last.status.value in statuses:
                return last
            time.sleep(0.25)
    finally:
        if store is not None:
            store.close()
    raise AssertionError(f"job {job_id} not in {statuses} within {timeout_s} s; last row: {last}")


def stored_events(settings: Settings, job_id: UUID) -> list[tuple[str, int, datetime, str | None]]:
    """(type, attempt, occurred_at, rejection or None) of every event of the job the projector
    stored, in log order."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        rows = store.connection.execute(
            "SELECT e.type, e.attempt, e.occurred_at, r.rejection FROM job_events e"
            " LEFT JOIN rejected_events r USING (event_id) WHERE e.job_id = %s ORDER BY e.kafka_offset",
            (job_id,),
        ).fetchall()
    finally:
        store.close()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def job_events(settings: Settings, job_id: UUID) -> list[tuple[str, int, str | None]]:
    """(type, attempt, rejection or None) of every event of the job, in log order."""
    return [(kind, attempt, rejection) for kind, attempt, _, rejection in stored_events(settings, job_id)]


def longest_silence_s(settings: Settings, job_id: UUID, attempt: int) -> float:
    """The longest gap between consecutive events of a running attempt (G2's heartbeat bound)."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        row = store.connection.execute(
            "SELECT max(gap) FROM (SELECT extract(epoch FROM occurred_at - lag(occurred_at)"
            " OVER (ORDER BY kafka_offset)) AS gap FROM job_events WHERE job_id = %s AND attempt = %s"
            " AND type <> 'JobQueued') gaps",
            (job_id, attempt),
        ).fetchone()
    finally:
        store.close()
    return float(row[0]) if row and row[0] is not None else 0.0


def ffmpeg_processes(marker: str, tools: tuple[str, ...] = ("ffmpeg",)) -> list[int]:
    """Pids of live (non-zombie) `tools` processes whose command line contains `marker` (a /proc scan)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if marker in cmdline and any(tool in cmdline for tool in tools) and state != "Z":
            pids.append(int(entry.name))
    return pids


def course_tasks(settings: Settings, course_job_id: UUID) -> list[JobState]:
    """Every task of a course as the projector shows it (docs/fan-out.md), in plan order: lecture by
    lecture, its audio first, then its chunks."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        tasks = [job for job in store.jobs().values() if job.course_job_id == course_job_id]
    finally:
        store.close()

    def plan_order(task: JobState) -> tuple[int, bool, int]:
        spec = task.task
        return (spec.lecture_index, spec.media != "audio", spec.chunk_index) if spec else (0, False, 0)

    return sorted(tasks, key=plan_order)


def lecture_task(settings: Settings, course_job_id: UUID, lecture_index: int = 0) -> JobState:
    """The one task of a course's lecture that is not cut into chunks (up to COURSECAST_CHUNK_S: a
    `lecture` task, docs/fan-out.md); its outputs are under hls/<task>/<attempt>/<lecture>/."""
    found = [
        task
        for task in course_tasks(settings, course_job_id)
        if task.task is not None and task.task.lecture_index == lecture_index
    ]
    assert [task.task.media for task in found if task.task is not None] == ["lecture"], found
    return found[0]


def wait_for_lecture_task(
    settings: Settings,
    course_job_id: UUID,
    lecture_index: int,
    timeout_s: float,
    processes: Iterable[subprocess.Popen[bytes]] = (),
) -> JobState:
    """Wait until the projector shows the `lecture` task of a course's lecture (the conductor queued
    it once the course was planned); returns its row."""
    found: list[JobState] = []

    def queued() -> bool:
        try:
            tasks = course_tasks(settings, course_job_id)
        except Exception:  # the schema may not exist yet
            return False
        found[:] = [t for t in tasks if t.task is not None and t.task.lecture_index == lecture_index]
        return bool(found)

    wait_until(f"the task of lecture {lecture_index} of course {course_job_id}", queued, timeout_s, processes)
    assert [task.task.media for task in found if task.task is not None] == ["lecture"], found
    return found[0]
