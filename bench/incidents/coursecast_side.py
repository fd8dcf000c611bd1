"""The same two incidents, replayed on CourseCast: real `coursecast encoder`, `projector` and `watchdog`
processes on topics, consumer groups and a Postgres schema of their own (the test harnesses of
tests/integration, shared rather than copied).

Long encodes stay cheap on a small machine: the clip is 320x180 and the encoder reads it at its
native frame rate (COURSECAST_ENCODER_REALTIME_INPUT, ffmpeg `-re`), so an N-second clip takes at
least N seconds of wall time while using little CPU.
"""

from __future__ import annotations

import os
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
from uuid import UUID

from bench.incidents.conditions import wait_until
from bench.incidents.figures import RedeliveryFigures, StoppedEncodeFigures
from services.core.jobs import JobState
from services.core.settings import PROJECT_ROOT, Settings, environment
from services.core.storage import s3_client
from tests.support.encoder import FAST, queue_job, send
from tests.support.observe import count_events, ffmpeg_processes, log_lines, stored_events, wait_for
from tests.support.projector import isolated
from tests.support.services import start_encoder, start_projector, stop
from tests.support.staging import new_job_id, stage_course

REALTIME = {**FAST, "COURSECAST_ENCODER_REALTIME_INPUT": "true"}
TERMINAL = {"completed", "failed", "canceled"}
ENDINGS = {
    "JobCompleted",
    "JobFailed",
    "JobTimedOut",
    "JobStalled",
    "JobCanceled",
}  # events that end an attempt

# The Redis visibility timeout of the incident, in Kafka terms: a member that does not poll for this
# long is evicted and its partitions move. The encode is longer than it, so it is crossed mid-encode.
MAX_POLL_INTERVAL_MS = 10_000
REDELIVERIES = 5  # per moment: during the encode, right after completion, later to a fresh encoder
TIME_LIMIT_S = 6  # the replica's scaled-down hard time limit
STALL_TIMEOUT_S = 6  # silence after which the watchdog presumes a worker dead


@dataclass
class Services:
    """One CourseCast deployment of this run: its settings, processes and the encoder logs."""

    settings: Settings
    workdir: Path
    projector: subprocess.Popen[bytes]
    watchdog: subprocess.Popen[bytes]
    encoder: subprocess.Popen[bytes]
    encoder_logs: list[Path]

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """Every service process; each must stay alive for the whole scenario."""
        return [self.projector, self.watchdog, self.encoder]

    def replace_encoder(self) -> Path:
        """Stop the encoder and start a fresh process in the same group; wait until it has partitions."""
        stop(self.encoder)
        log = self.workdir / f"encoder-{len(self.encoder_logs)}.log"
        self.encoder = start_encoder(self.settings, log, **REALTIME)
        self.encoder_logs.append(log)
        wait_until(lambda: _logged(log, "assigned"), 60, "the fresh encoder to be assigned partitions")
        return log

    def events(self, job_id: UUID) -> list[tuple[str, datetime, str | None]]:
        """(type, occurred_at, rejection) of every event of the job the projector stored, in log order."""
        return [(kind, at, rejection) for kind, _, at, rejection in stored_events(self.settings, job_id)]


@contextmanager
def running_services(settings: Settings, workdir: Path) -> Iterator[Services]:
    """Projector, watchdog and one encoder for `settings`; every process stopped when the block ends."""
    projector = start_projector(settings)
    watchdog_log = (workdir / "watchdog.log").open("ab")
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "watchdog"],
        cwd=PROJECT_ROOT,
        env=environment(settings),
        stdout=subprocess.DEVNULL,
        stderr=watchdog_log,
    )
    log = workdir / "encoder-0.log"
    services = Services(
        settings, workdir, projector, watchdog, start_encoder(settings, log, **REALTIME), [log]
    )
    try:
        yield services
    finally:
        for process in services.processes:
            stop(process)
        watchdog_log.close()
        # faust keeps a data folder named after the app id in its working directory.
        shutil.rmtree(PROJECT_ROOT / f"{settings.watchdog_app_id}-data", ignore_errors=True)


def redelivery(settings: Settings, workdir: Path, clip: Path) -> RedeliveryFigures:
    """Incident 1: the job's PublishCourse command is delivered 15 more times — during the encode, right
    after it completed, and later to a fresh encoder when the staging manifest is long gone."""
    began = time.monotonic()
    with isolated(settings, partitions=2) as base:
        own = base.model_copy(
            update={
                "heartbeat_interval_s": 5,
                "session_timeout_ms": 6_000,
                "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
            }
        )
        job_id = new_job_id()
        manifest = stage_course(own, s3_client(own), job_id, [clip])
        with running_services(own, workdir) as services:
            command = queue_job(own, manifest)
            wait_for(own, job_id, {"processing"}, 60, services.processes)
            # Past max.poll.interval.ms into the encode: where the Redis broker redelivered.
            time.sleep(MAX_POLL_INTERVAL_MS / 1000 + 2)
            send(own, own.commands_topic, [command] * REDELIVERIES)
            done = wait_for(own, job_id, TERMINAL, 180, services.processes)
            send(own, own.commands_topic, [command] * REDELIVERIES)
            first_log = services.encoder_logs[0]
            wait_until(lambda: count_events(first_log, "command_skipped") >= 2 * REDELIVERIES, 60, "10 skips")
            later = services.replace_encoder()
            send(own, own.commands_topic, [command] * REDELIVERIES)
            wait_until(lambda: count_events(later, "command_skipped") >= REDELIVERIES, 60, "5 more skips")
            final = wait_for(own, job_id, TERMINAL, 30, services.processes)
            events = services.events(job_id)
            logs = list(services.encoder_logs)
    accepted = [kind for kind, _, rejection in events if rejection is None]
    skipped = sum(count_events(log, "command_skipped") for log in logs)
    return RedeliveryFigures(
        deliveries=accepted.count("JobStarted") + skipped,
        runs=accepted.count("JobStarted"),
        encodes=sum(count_events(log, "ffmpeg_started", what=f"video '{clip.name}'") for log in logs),
        completions=accepted.count("JobCompleted"),
        final_status=final.status.value,
        completed_at_set=final.completed_at is not None,
        completed_at_kept=done.completed_at is not None and final.completed_at == done.completed_at,
        final_error=final.error_message,
        duration_s=time.monotonic() - began,
    )


def time_limit(settings: Settings, workdir: Path, clip: Path) -> StoppedEncodeFigures:
    """Incident 2: the encode runs past a hard time limit shorter than it."""
    began = time.monotonic()
    with isolated(settings, partitions=2) as base:
        own = base.model_copy(
            update={
                "encode_time_limit_s": TIME_LIMIT_S,
                "heartbeat_interval_s": 2,
                "watchdog_interval_s": 1.0,
                "watchdog_time_limit_grace_s": 10.0,  # the encoder stops its own overlong encode first
            }
        )
        job_id = new_job_id()
        manifest = stage_course(own, s3_client(own), job_id, [clip])
        with running_services(own, workdir) as services:
            queue_job(own, manifest)
            wait_for(own, job_id, {"processing"}, 60, services.processes)
            job: JobState = wait_for(own, job_id, TERMINAL, TIME_LIMIT_S + 60, services.processes)
            ffmpeg_left = len(ffmpeg_processes(str(job_id)))
            events = services.events(job_id)
            limit_logged = count_events(services.encoder_logs[0], "ffmpeg_stopped", reason="timeout") >= 1
    started_at = next(at for kind, at, rejection in events if kind == "JobStarted" and rejection is None)
    limit_at = started_at.timestamp() + TIME_LIMIT_S
    cause = f"hard time limit {TIME_LIMIT_S:g} s"
    return _stopped_figures(cause, job, events, limit_at, ffmpeg_left, limit_logged, began)


def worker_killed(settings: Settings, workdir: Path, clip: Path) -> StoppedEncodeFigures:
    """Incident 2's mechanism on its own: the only encoder is killed with SIGKILL mid-encode, so no
    worker is left to speak for the job; the watchdog must end it, with a reason, within a bound."""
    began = time.monotonic()
    with isolated(settings, partitions=2) as base:
        own = base.model_copy(
            update={
                "heartbeat_interval_s": 2,
                "stall_timeout_s": STALL_TIMEOUT_S,
                "watchdog_interval_s": 1.0,
                # One attempt, as the old task had for this failure: the verdict must END the job.
                # With attempts left, the watchdog requeues it with its next command instead
                # (tests/fault/test_encoder_failover.py), which the replica cannot do either.
                "max_attempts": 1,
            }
        )
        job_id = new_job_id()
        manifest = stage_course(own, s3_client(own), job_id, [clip])
        with running_services(own, workdir) as services:
            queue_job(own, manifest)
            wait_for(own, job_id, {"processing"}, 60, services.processes)
            wait_until(lambda: bool(ffmpeg_processes(str(job_id))), 60, "the job's ffmpeg")
            services.encoder.send_signal(signal.SIGKILL)
            services.encoder.wait(10)
            killed_at = time.time()
            survivors = [services.projector, services.watchdog]
            job = wait_for(own, job_id, TERMINAL, STALL_TIMEOUT_S + 60, survivors)
            ffmpeg_left = len(ffmpeg_processes(str(job_id)))
            events = services.events(job_id)
            _clean_up_after_the_dead_encoder(job_id)
        verdict = f"verdict JobStalled for job {job_id}"
        cause_logged = verdict in (workdir / "watchdog.log").read_text(errors="replace")
    cause = "kill -9 of the process running the encode"
    return _stopped_figures(cause, job, events, killed_at, ffmpeg_left, cause_logged, began)


def _stopped_figures(
    cause: str,
    job: JobState,
    events: list[tuple[str, datetime, str | None]],
    stopped_at: float,
    ffmpeg_left: int,
    cause_logged: bool,
    began: float,
) -> StoppedEncodeFigures:
    """The figures of a stopped encode from the job's row and its stored events (`stopped_at`: epoch s)."""
    endings = [at for kind, at, rejection in events if kind in ENDINGS and rejection is None]
    return StoppedEncodeFigures(
        cause=cause,
        final_status=job.status.value,
        error_type=job.error_type,
        error_message=job.error_message,
        unexplained_s=max(0.0, endings[0].timestamp() - stopped_at),
        explained=job.error_message is not None,
        endings_recorded=len(endings),
        ffmpeg_left=ffmpeg_left,
        cause_logged=cause_logged,
        duration_s=time.monotonic() - began,
    )


def _clean_up_after_the_dead_encoder(job_id: UUID) -> None:
    """What the killed encoder left behind for this job: its ffmpeg (which outlives it) and work folder."""
    for pid in ffmpeg_processes(str(job_id)):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for folder in Path(tempfile.gettempdir()).glob(f"coursecast-{job_id}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def _logged(log: Path, message: str) -> bool:
    return log.exists() and any(line.get("message") == message for line in log_lines(log))
