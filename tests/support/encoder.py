"""Helpers for encoder tests: queue a staged course, run `coursecast encoder` processes, and watch
the job's row in publish_jobs (written by a real projector) and the encoder's JSON log."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from confluent_kafka import Producer

from services.core import codec
from services.core.jobs import JobState
from services.core.kafka_config import producer_config
from services.core.manifest import StagingManifest, manifest_key, staging_prefix
from services.core.messages import Envelope
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.messages import cancel_job, job_queued, publish_course
from tests.support.services import Process, Services, running

if TYPE_CHECKING:
    pass

FAST = {"COURSECAST_ENCODER_X264_PRESET": "ultrafast"}
# Input read at its native rate (ffmpeg -re): a 12 s clip encodes for about 12 s, using little CPU.
REALTIME = {**FAST, "COURSECAST_ENCODER_REALTIME_INPUT": "true"}


def course_data(manifest: StagingManifest) -> dict[str, Any]:
    """The data of JobQueued and PublishCourse for a staged manifest."""
    return {
        "owner": manifest.owner,
        "course_name": manifest.course_name,
        "curriculum": manifest.curriculum,
        "staging_prefix": staging_prefix(manifest.job_id),
        "manifest_key": manifest_key(manifest.job_id),
        "video_count": len(manifest.videos),
    }


def publish_command(manifest: StagingManifest, attempt: int = 1) -> Envelope:
    """A fresh PublishCourse envelope for a staged manifest."""
    return publish_course(manifest.job_id, attempt, course_data(manifest))


def send(settings: Settings, topic: str, messages: Iterable[Envelope]) -> None:
    """Produce envelopes to `topic`, acks=all."""
    producer = Producer(producer_config(settings, "test"))
    for message in messages:
        producer.produce(topic, value=codec.encode(message), key=message.kafka_key())
    assert producer.flush(30) == 0


def queue_job(settings: Settings, manifest: StagingManifest) -> Envelope:
    """JobQueued on the log, then PublishCourse on the commands topic (the api's two messages)."""
    send(settings, settings.events_topic, [job_queued(manifest.job_id, course_data(manifest))])
    command = publish_command(manifest)
    send(settings, settings.commands_topic, [command])
    return command


def cancel(settings: Settings, job_id: UUID) -> None:
    """Produce CancelJob for `job_id`."""
    send(settings, settings.commands_topic, [cancel_job(job_id)])


def encoder_runs_job(
    run: Services, manifest: StagingManifest, timeout_s: float = 60, name: str = "encoder", /, **env: str
) -> Process:
    """Start encoder `name`, queue the staged job and wait until it is processing; returns the encoder."""
    encoder = run.encoder(name, **env)
    queue_job(run.settings, manifest)
    wait_for(run.settings, manifest.job_id, {"processing"}, timeout_s, run.processes)
    return encoder


def run_to_end(
    settings: Settings,
    manifest: StagingManifest,
    log_dir: Path,
    timeout_s: float,
    statuses: Iterable[str] = ("completed", "failed"),
    **encoder_env: str,
) -> JobState:
    """Queue the staged job and run a projector and one encoder (log: log_dir/encoder.log) until the
    job is in one of `statuses`; returns its row. Both services are stopped before this returns."""
    with running(settings, log_dir) as run:
        run.projector()
        run.encoder(**encoder_env)
        queue_job(settings, manifest)
        return wait_for(settings, manifest.job_id, set(statuses), timeout_s, run.processes)


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


def job_events(settings: Settings, job_id: UUID) -> list[tuple[str, int, str | None]]:
    """(type, attempt, rejection or None) of every event of the job, in log order."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        rows = store.connection.execute(
            "SELECT e.type, e.attempt, r.rejection FROM job_events e"
            " LEFT JOIN rejected_events r USING (event_id) WHERE e.job_id = %s ORDER BY e.kafka_offset",
            (job_id,),
        ).fetchall()
    finally:
        store.close()
    return [(row[0], row[1], row[2]) for row in rows]


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
