"""Synthetic job histories for tests and benchmarks: realistic lifecycles plus the log's usual noise.

Deterministic for a given seed. Besides clean lifecycles the history holds what production logs hold:
redelivered events (same event_id), retries, and late events of a stale attempt or of an ended job.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

from services.core.messages import Envelope, MessageType, Payload
from services.core.payloads import (
    JobCompleted,
    JobFailed,
    JobOutputs,
    JobProgress,
    JobQueued,
    JobRetryScheduled,
    JobStarted,
    ProgressStep,
    PublishedVideo,
    QueuedLecture,
    Rendition,
)

M = MessageType
EPOCH = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)


def _rendition() -> Rendition:
    return Rendition(name="720p", width=1280, height=720, bandwidth=3_000_000, codecs="avc1.64001f,mp4a.40.2")


def _data(kind: MessageType, job: UUID, attempt: int, rng: random.Random) -> Payload:
    base = f"http://127.0.0.1:9000/coursecast/hls/{job}/{attempt}/0"
    match kind:
        case M.JOB_QUEUED:
            return JobQueued(
                owner=f"instructor-{rng.randrange(20)}",
                course_name=rng.choice(["배열", "DDL", "Limit", "Sub Query 연습문제 풀이", "Join"]),
                curriculum="SQL",
                staging_prefix=f"staging/{job}/",
                manifest_key=f"staging/{job}/manifest.json",
                video_count=1,
                course_id=job,
                lectures=(QueuedLecture(index=0, title="1강", filename="1강.mp4"),),
            )
        case M.JOB_STARTED:
            return JobStarted(worker=f"encoder@host:{rng.randrange(1000)}")
        case M.JOB_PROGRESS:
            return JobProgress(percent=round(rng.uniform(0, 99), 1), step=ProgressStep.TRANSCODING)
        case M.JOB_COMPLETED:
            video = PublishedVideo(
                video_index=0,
                master_playlist_url=f"{base}/master.m3u8",
                renditions=(_rendition(),),
                duration_s=60.0,
                thumbnail_url=f"{base}/thumbnail.webp",
                poster_url=f"{base}/poster.webp",
            )
            return JobCompleted(outputs=JobOutputs(videos=(video,)))
        case M.JOB_FAILED:
            return JobFailed(error_type="invalid_media", message="The file is not a video.", retryable=False)
        case M.JOB_RETRY_SCHEDULED:
            return JobRetryScheduled(
                error_type="s3_unavailable",
                message="S3 answered 503",
                next_attempt=attempt + 1,
                delay_s=1.0,
            )
        case _:
            raise ValueError(kind)


def job_ids(count: int, seed: int) -> list[UUID]:
    """`count` distinct job ids, fixed for the seed."""
    rng = random.Random(seed)
    return [UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


def history(jobs: int, events_per_job: int, seed: int = 7) -> list[Envelope]:
    """About `jobs * events_per_job` events of `jobs` interleaved lifecycles, in log order."""
    rng = random.Random(seed)
    per_job = [list(_lifecycle(job, events_per_job, rng)) for job in job_ids(jobs, seed)]
    merged: list[Envelope] = []
    cursors = [0] * len(per_job)
    live = list(range(len(per_job)))
    while live:
        i = rng.choice(live)
        merged.append(per_job[i][cursors[i]])
        cursors[i] += 1
        if cursors[i] == len(per_job[i]):
            live.remove(i)
    return merged


def _lifecycle(job: UUID, events: int, rng: random.Random) -> Iterator[Envelope]:
    clock = EPOCH + timedelta(seconds=rng.randrange(86_400))
    sequence = 0

    def make(kind: MessageType, attempt: int) -> Envelope:
        nonlocal clock, sequence
        clock += timedelta(seconds=rng.randrange(1, 30))
        sequence += 1
        return Envelope(
            event_id=UUID(int=rng.getrandbits(128), version=4),
            job_id=job,
            attempt=attempt,
            occurred_at=clock,
            producer="synthetic",
            data=_data(kind, job, attempt, rng),
        )

    emitted: list[Envelope] = []
    attempt = 1
    emitted.append(make(M.JOB_QUEUED, 1))
    emitted.append(make(M.JOB_STARTED, 1))
    if rng.random() < 0.15:  # a transient failure, then a second attempt
        emitted.append(make(M.JOB_RETRY_SCHEDULED, 1))
        attempt = 2
        emitted.append(make(M.JOB_STARTED, 2))
    ending = M.JOB_FAILED if rng.random() < 0.1 else M.JOB_COMPLETED
    progress_count = max(0, events - len(emitted) - 1)
    emitted.extend(make(M.JOB_PROGRESS, attempt) for _ in range(progress_count))
    emitted.append(make(ending, attempt))
    # The seed incident's noise: a redelivered run after the end, and a redelivered event.
    if rng.random() < 0.2:
        emitted.append(make(M.JOB_STARTED, attempt))
    if rng.random() < 0.2:
        emitted.append(rng.choice(emitted))
    yield from emitted
