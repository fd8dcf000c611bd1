"""The design CourseCast replaced, in miniature: a Celery app on a Redis broker whose one task does what
the seed's `publish_course_task` did, with the seed's configuration and its timings scaled down.

Run only by the incidents bench, as `celery -A bench.incidents.replica worker`; every setting comes
from INCIDENTS_* variables (see `ReplicaConfig`). This module reproduces a bug on purpose: it is the
seed's code path, not CourseCast's, and nothing in services/ imports it.

What is the seed's, kept as it was:
- broker transport options without a visibility timeout of their own choosing (the seed ran on
  kombu's default of one hour; here `visibility_timeout` is that hour scaled down);
- `worker_prefetch_multiplier = 4` (Celery's default) and `task_acks_late` left at its default, False:
  a message is acknowledged when its task starts, so prefetched messages waiting behind a long encode
  sit unacknowledged and the visibility timeout restores them to the queue, again and again;
- the hard `task_time_limit` (2 h in the seed, scaled down), which SIGKILLs the pool process;
- `@shared_task(bind=True, max_retries=2, default_retry_delay=30)` that retries on any error;
- `run_publish_job`: mark processing, read the staging manifest from S3, encode, upload, mark
  completed with `completed_at`, delete the staging objects; on an error mark failed with the message,
  leaving `completed_at` as it was.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
import psycopg
from celery import Celery, Task
from psycopg import sql

from bench.incidents.config import ReplicaConfig
from services.core.settings import Settings
from services.core.storage import s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger("media.publish")


CONFIG = ReplicaConfig.from_env()
SETTINGS = Settings()

app = Celery("media", broker=CONFIG.broker_url)
app.conf.update(
    # The seed's CELERY_BROKER_TRANSPORT_OPTIONS set only a key prefix; its visibility timeout was
    # kombu's default (1 h). Here: that hour scaled down. The restore sweep runs every second so the
    # scaled-down timeout is honoured at the same relative precision as the hour was.
    broker_transport_options={
        "global_keyprefix": f"{CONFIG.schema}:celery:",
        "visibility_timeout": CONFIG.visibility_timeout_s,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    worker_prefetch_multiplier=4,  # the seed's value (Celery's default)
    task_acks_late=False,  # the seed's value (Celery's default): acked when the task starts
    task_time_limit=CONFIG.time_limit_s,  # the seed's CELERY_TASK_TIME_LIMIT (2 h), scaled down
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)

# The application's JSON lines go to a file of their own, like the seed's /app/logs/celery.log;
# Celery's own lines (received, succeeded, time limits) go to the worker's stderr.
_handler = logging.FileHandler(CONFIG.app_log)
_handler.setFormatter(logging.Formatter("%(message)s"))
logger.addHandler(_handler)
logger.setLevel(logging.INFO)
logger.propagate = False


# --- the seed's PublishJob model (its table: bench.incidents.config.DDL) ------------------------------


def connect() -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection, as Django's default transaction mode gives each save()."""
    return psycopg.connect(SETTINGS.database_url, autocommit=True, application_name="incidents-replica")


def save(job_id: UUID, **fields: Any) -> None:
    """`job.save(update_fields=[...])`: write only these fields, and updated_at."""
    assignments: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in fields]
    assignments.append(sql.SQL("updated_at = now()"))
    query = sql.SQL("UPDATE {}.publish_job SET {} WHERE id = %s").format(
        sql.Identifier(CONFIG.schema), sql.SQL(", ").join(assignments)
    )
    with connect() as conn:
        conn.execute(query, [*fields.values(), job_id])


def log_event(level: int, event: str, message: str, **fields: Any) -> None:
    """One JSON log line, as the seed's `log_event` wrote them."""
    line = {"timestamp": datetime.now(UTC).isoformat(), "event": event, "message": message, **fields}
    logger.log(level, orjson.dumps(line).decode())


# --- the seed's services/storage.py and publish_worker.py, in miniature ------------------------------


def s3() -> S3Client:
    """The S3 client of the worker (the local stack's endpoint)."""
    return s3_client(SETTINGS)


def staging_dir(job_id: UUID) -> str:
    """Where the api staged the job's files."""
    return f"{CONFIG.prefix}staging/{job_id}/"


def read_json_key(key: str) -> dict[str, Any]:
    """GetObject + json; raises botocore's NoSuchKey when the object is gone, as in the incident."""
    body = s3().get_object(Bucket=SETTINGS.s3_bucket, Key=key)["Body"].read()
    manifest: dict[str, Any] = orjson.loads(body)
    return manifest


def encode(source: Path, out_dir: Path, job_id: UUID) -> None:
    """A real ffmpeg HLS encode; `-re` reads at the clip's frame rate, so a long clip is a long encode
    that costs little CPU. The job id in the output path lets the bench find a leftover ffmpeg."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-re", "-i", str(source),
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "hls",
            "-hls_time", "2", "-hls_playlist_type", "vod", str(out_dir / f"{job_id}.m3u8"),
        ],
        check=True,
    )  # fmt: skip


def run_publish_job(job_id: UUID) -> None:
    """The seed's worker: no check of the job's current status before running it again."""
    save(job_id, status="processing")
    log_event(logging.INFO, "publish_job_started", "Publish job started", job_id=str(job_id))
    started = datetime.now(UTC)
    try:
        manifest = read_json_key(f"{staging_dir(job_id)}manifest.json")
        work = Path(tempfile.mkdtemp(prefix=CONFIG.work_prefix))
        try:
            source = work / "source.mp4"
            s3().download_file(SETTINGS.s3_bucket, manifest["videos"][0]["key"], str(source))
            log_event(logging.INFO, "staging_prepare_completed", "Staged inputs prepared", job_id=str(job_id))
            encode(source, work / "hls", job_id)
            for path in sorted((work / "hls").iterdir()):
                s3().upload_file(str(path), SETTINGS.s3_bucket, f"{CONFIG.prefix}hls/{job_id}/{path.name}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        completed_at = datetime.now(UTC)
        save(job_id, status="completed", completed_at=completed_at)
        log_event(
            logging.INFO,
            "publish_job_completed",
            "Publish job completed",
            job_id=str(job_id),
            completed_at=completed_at.isoformat(),
            duration_ms=int((completed_at - started).total_seconds() * 1000),
        )
        # The staging files are no longer needed once the job is published.
        listed = s3().list_objects_v2(Bucket=SETTINGS.s3_bucket, Prefix=staging_dir(job_id))
        for item in listed.get("Contents", []):
            s3().delete_object(Bucket=SETTINGS.s3_bucket, Key=item["Key"])
    except Exception as exc:
        # The seed's failure path: status and message only; completed_at is not among the fields.
        save(job_id, status="failed", error_message=str(exc))
        log_event(
            logging.ERROR,
            "publish_job_failed",
            "Publish job failed",
            job_id=str(job_id),
            error_type=type(exc).__name__,
        )
        raise


@app.task(  # type: ignore[untyped-decorator]  # celery ships no types
    bind=True, max_retries=2, default_retry_delay=CONFIG.retry_delay_s, name="media.tasks.publish_course_task"
)
def publish_course_task(self: Task, job_id: str) -> None:
    """The seed's task: any error is retried, up to twice."""
    try:
        run_publish_job(UUID(job_id))
    except Exception as exc:
        log_event(
            logging.WARNING,
            "publish_task_retry",
            "Celery will retry publish task",
            job_id=job_id,
            error_type=type(exc).__name__,
            attempt=self.request.retries + 1,
        )
        raise self.retry(exc=exc) from exc
