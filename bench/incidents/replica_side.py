"""The two incidents, replayed on the Celery + Redis replica of `bench.incidents.replica`.

Each scenario gets a private redis-server, a Postgres schema of its own holding the seed's
`publish_job` table, an S3 prefix of its own for staging and HLS, and one `celery worker` process
(concurrency 1, prefetch 4 as in the seed); all of it is removed when the scenario ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
import redis
from celery import Celery
from psycopg import sql

from bench.incidents.conditions import wait_until
from bench.incidents.config import DDL, ReplicaConfig
from bench.incidents.figures import RedeliveryFigures, StoppedEncodeFigures
from bench.incidents.redis_server import redis_server
from services.core.settings import PROJECT_ROOT, Settings, environment
from services.core.storage import s3_client
from tests.support.observe import ffmpeg_processes

TASK = "media.tasks.publish_course_task"
ENDINGS = {"publish_job_completed", "publish_job_failed"}  # the task's lines that end a job

# The seed's hour-scale timings, divided by about a thousand: 1 h visibility timeout -> 3 s,
# 2 h time limit -> 6 s, 30 s retry delay -> 1 s. The encodes are real ffmpeg runs, longer than both.
VISIBILITY_TIMEOUT_S = 3.0
TIME_LIMIT_S = 6.0
RETRY_DELAY_S = 1.0


@dataclass
class Replica:
    """One running replica: its configuration, its worker and where everything is logged."""

    config: ReplicaConfig
    settings: Settings
    worker: subprocess.Popen[bytes]
    worker_log: Path
    client: Celery
    store: redis.Redis

    def stage(self, job_id: UUID, clip: Path, course_name: str) -> None:
        """What the seed's api did before queuing: staging files + manifest in S3, a `queued` row."""
        s3 = s3_client(self.settings)
        prefix = f"{self.config.prefix}staging/{job_id}/"
        s3.upload_file(str(clip), self.settings.s3_bucket, f"{prefix}videos/0.mp4")
        manifest = {"job_id": str(job_id), "videos": [{"key": f"{prefix}videos/0.mp4", "index": 0}]}
        s3.put_object(
            Bucket=self.settings.s3_bucket, Key=f"{prefix}manifest.json", Body=orjson.dumps(manifest)
        )
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.publish_job (id, status, course_name, staging_dir)"
                    " VALUES (%s, 'queued', %s, %s)"
                ).format(sql.Identifier(self.config.schema)),
                (job_id, course_name, prefix),
            )

    def enqueue(self, job_id: UUID) -> None:
        """`publish_course_task.apply_async(args=[id], task_id=id, queue="encode")`, as the seed did."""
        self.client.send_task(TASK, args=[str(job_id)], task_id=str(job_id), queue="encode")

    def row(self, job_id: UUID) -> dict[str, Any]:
        """The job's row in the replica's publish_job table."""
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            found = conn.execute(
                sql.SQL(
                    "SELECT status, error_message, completed_at FROM {}.publish_job WHERE id = %s"
                ).format(sql.Identifier(self.config.schema)),
                (job_id,),
            ).fetchone()
        assert found is not None, f"no row for {job_id}"
        return {"status": found[0], "error_message": found[1] or None, "completed_at": found[2]}

    def app_lines(self, job_id: UUID) -> list[dict[str, Any]]:
        """The JSON lines the task wrote about this job (the seed's media.publish logger)."""
        path = Path(self.config.app_log)
        if not path.exists():
            return []
        lines = [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.startswith(b"{")]
        return [line for line in lines if line.get("job_id") == str(job_id)]

    def received(self, job_id: UUID) -> list[str]:
        """The worker's `Task ...[id] received` lines for this job, one per delivery."""
        pattern = re.compile(rf"^\[([^\]]+): INFO/MainProcess\] Task {re.escape(TASK)}\[{job_id}\] received")
        text = self.worker_log.read_text(errors="replace") if self.worker_log.exists() else ""
        return [match.group(1) for line in text.splitlines() if (match := pattern.match(line))]

    def broker_is_empty(self) -> bool:
        """No message waiting in the queue and none the broker counts as unacknowledged."""
        prefix = f"{self.config.schema}:celery:"
        return int(self.store.llen(f"{prefix}encode")) == 0 and int(self.store.hlen(f"{prefix}unacked")) == 0


@contextmanager
def running_replica(settings: Settings, workdir: Path) -> Iterator[Replica]:
    """Redis, schema, S3 prefix and a `celery worker` of this run only; all removed afterwards."""
    tag = uuid4().hex[:10]
    schema = f"incidents_{tag}"
    with redis_server(tag) as broker_url:
        config = ReplicaConfig(
            broker_url=broker_url,
            schema=schema,
            prefix=f"incidents-{tag}/",
            visibility_timeout_s=VISIBILITY_TIMEOUT_S,
            time_limit_s=TIME_LIMIT_S,
            retry_delay_s=RETRY_DELAY_S,
            app_log=str(workdir / f"app-{tag}.log"),
        )
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL(DDL.format(schema=schema)))
        worker_log = workdir / f"worker-{tag}.log"
        client = Celery("media-api", broker=broker_url)
        client.conf.broker_transport_options = {"global_keyprefix": f"{schema}:celery:"}
        store = redis.Redis.from_url(broker_url)
        worker = _start_worker(settings, config, worker_log)
        replica = Replica(config, settings, worker, worker_log, client, store)
        try:
            wait_until(
                lambda: "ready." in worker_log.read_text(errors="replace"),
                60,
                "the celery worker to be ready",
            )
            yield replica
        finally:
            _stop_group(worker)
            client.close()
            store.close()
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            _delete_prefix(settings, config.prefix)
            for folder in Path(tempfile.gettempdir()).glob(f"{config.work_prefix}*"):
                shutil.rmtree(folder, ignore_errors=True)


def redelivery(settings: Settings, workdir: Path, long_clip: Path, short_clip: Path) -> RedeliveryFigures:
    """Incident 1: a long encode holds the only pool slot while the next job's message waits in the
    prefetch buffer; every visibility timeout Redis restores it, and each copy runs in turn."""
    started = time.monotonic()
    with running_replica(settings, workdir) as replica:
        blocker, job = uuid4(), uuid4()
        replica.stage(blocker, long_clip, "DDL - 2")
        replica.stage(job, short_clip, "배열")
        replica.enqueue(blocker)
        replica.enqueue(job)
        # The copies may overwrite the completion within milliseconds: the task's log line is the witness.
        wait_until(lambda: _count(replica.app_lines(job), "publish_job_completed") >= 1, 90, "one completion")
        # Then the copies run: wait until the broker holds none and the worker has gone quiet.
        wait_until(lambda: _quiet(replica), 90, "the redelivered copies to run out")
        row = replica.row(job)
        lines = replica.app_lines(job)
        deliveries = len(replica.received(job))
    completion = next(line for line in lines if line.get("event") == "publish_job_completed")
    first_completed_at = datetime.fromisoformat(completion["completed_at"])
    return RedeliveryFigures(
        deliveries=deliveries,
        runs=_count(lines, "publish_job_started"),
        encodes=_count(lines, "staging_prepare_completed"),
        completions=_count(lines, "publish_job_completed"),
        final_status=row["status"],
        completed_at_set=row["completed_at"] is not None,
        completed_at_kept=row["completed_at"] == first_completed_at,
        final_error=row["error_message"],
        duration_s=time.monotonic() - started,
    )


def time_limit(
    settings: Settings, workdir: Path, long_clip: Path, observe_s: float = 15.0
) -> StoppedEncodeFigures:
    """Incident 2: the hard time limit kills the pool process in the middle of the encode; the task's
    own error handling never runs, so nothing ever writes the job's row again."""
    started = time.monotonic()
    with running_replica(settings, workdir) as replica:
        job = uuid4()
        replica.stage(job, long_clip, "DDL - 2")
        replica.enqueue(job)
        _wait_encoding(replica, job)
        limit_at = _started_at(replica.app_lines(job)) + TIME_LIMIT_S
        wait_until(
            lambda: "Hard time limit" in replica.worker_log.read_text(errors="replace"), 60, "the limit"
        )
        ffmpeg_left = len(ffmpeg_processes(str(job)))
        row, unexplained_s = _watch(replica, job, limit_at, observe_s)
        endings = [line for line in replica.app_lines(job) if line.get("event") in ENDINGS]
        worker_log = replica.worker_log.read_text(errors="replace")
    logged = f"Hard time limit ({TIME_LIMIT_S}s) exceeded for {TASK}[{job}]" in worker_log
    cause = f"hard time limit {TIME_LIMIT_S:g} s"
    return _stopped_figures(cause, row, unexplained_s, len(endings), ffmpeg_left, logged, started)


def worker_killed(
    settings: Settings, workdir: Path, long_clip: Path, observe_s: float = 15.0
) -> StoppedEncodeFigures:
    """Incident 2's mechanism on its own: the pool process running the encode is killed with SIGKILL
    (an OOM kill, a node drained, or the time limit). With acks_late False the message was acknowledged
    when the task started, so nothing runs it again, and nothing writes the job's row."""
    started = time.monotonic()
    with running_replica(settings, workdir) as replica:
        job = uuid4()
        replica.stage(job, long_clip, "DDL - 2")
        replica.enqueue(job)
        _wait_encoding(replica, job)
        wait_until(lambda: bool(ffmpeg_processes(str(job))), 30, "the job's ffmpeg")
        pool_process = _parent(ffmpeg_processes(str(job))[0])
        assert _parent(pool_process) == replica.worker.pid, "ffmpeg is not run by our worker's pool"
        os.kill(pool_process, signal.SIGKILL)
        killed_at = time.time()
        wait_until(
            lambda: "exited with 'signal 9" in replica.worker_log.read_text(errors="replace"),
            30,
            "the worker to notice its pool process died",
        )
        ffmpeg_left = len(ffmpeg_processes(str(job)))
        row, unexplained_s = _watch(replica, job, killed_at, observe_s)
        endings = [line for line in replica.app_lines(job) if line.get("event") in ENDINGS]
        worker_lines = replica.worker_log.read_text(errors="replace").splitlines()
    logged = any(str(job) in line and "ERROR" in line for line in worker_lines)
    cause = "kill -9 of the process running the encode"
    return _stopped_figures(cause, row, unexplained_s, len(endings), ffmpeg_left, logged, started)


def _stopped_figures(
    cause: str,
    row: dict[str, Any],
    unexplained_s: float,
    endings: int,
    ffmpeg_left: int,
    cause_logged: bool,
    started: float,
) -> StoppedEncodeFigures:
    """The figures of a stopped encode from the replica's job row (it records no error type)."""
    return StoppedEncodeFigures(
        cause=cause,
        final_status=row["status"],
        error_type=None,
        error_message=row["error_message"],
        unexplained_s=unexplained_s,
        explained=row["error_message"] is not None,
        endings_recorded=endings,
        ffmpeg_left=ffmpeg_left,
        cause_logged=cause_logged,
        duration_s=time.monotonic() - started,
    )


# --- plumbing -------------------------------------------------------------------------------------


def _start_worker(settings: Settings, config: ReplicaConfig, log_path: Path) -> subprocess.Popen[bytes]:
    """`celery worker` with the seed's pool shape, in a process group of its own (so its pool children
    and any ffmpeg they leave behind can be stopped with it)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench.incidents.replica", "worker",
             "--pool", "prefork", "--concurrency", "1", "--queues", "encode", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"{config.schema}@%h"],
            cwd=PROJECT_ROOT,
            env={**environment(settings), **config.env()},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Cold-stop the worker's own process group: the worker, its pool and anything they started."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGQUIT)
    with suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(10)


def _delete_prefix(settings: Settings, prefix: str) -> None:
    s3 = s3_client(settings)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=settings.s3_bucket, Key=item["Key"])


def _quiet(replica: Replica, still_s: float = 2 * VISIBILITY_TIMEOUT_S) -> bool:
    """The broker is empty and neither the worker nor the task has written a line for `still_s`."""
    if not replica.broker_is_empty():
        return False
    newest = max(
        (
            path.stat().st_mtime
            for path in (replica.worker_log, Path(replica.config.app_log))
            if path.exists()
        ),
        default=0.0,
    )
    return time.time() - newest >= still_s


def _wait_encoding(replica: Replica, job_id: UUID) -> None:
    """Until the task has read the manifest and started ffmpeg for the job."""
    lines = replica.app_lines
    wait_until(lambda: _count(lines(job_id), "staging_prepare_completed") == 1, 60, "the encode to start")


def _watch(replica: Replica, job_id: UUID, since: float, observe_s: float) -> tuple[dict[str, Any], float]:
    """Watch the job's row for `observe_s`: does anything ever say what happened to it? Returns the
    last row and the seconds since `since` (epoch) that it stayed `processing` (0 if it moved)."""
    deadline = time.monotonic() + observe_s
    row = replica.row(job_id)
    while time.monotonic() < deadline and row["status"] == "processing":
        time.sleep(0.5)
        row = replica.row(job_id)
    return row, (time.time() - since if row["status"] == "processing" else 0.0)


def _parent(pid: int) -> int:
    """The parent pid of a live process (from /proc)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])


def _count(lines: list[dict[str, Any]], event: str) -> int:
    return sum(1 for line in lines if line.get("event") == event)


def _at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def _started_at(lines: list[dict[str, Any]]) -> float:
    return next(_at(line) for line in lines if line.get("event") == "publish_job_started")
