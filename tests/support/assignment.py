"""Which encoder holds which partition, and which partition a course's tasks land on.

An encoder logs every partition it gains (`assigned`) and loses (`revoked`), incrementally, as
`topic[partition]` (services/encoder/consumer.py). A task's EncodeTask is keyed by the task's id, and a
task's id is a function of its course, its slot and its generation (services/core/course_plan.py), so
a test can pick a course id whose tasks reach the partitions it needs, before anything is queued.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from services.core.course_plan import LectureSource, plan_course
from services.core.manifest import StagingManifest
from services.core.messages import job_key
from services.core.payloads import TaskSpec
from services.core.settings import Settings
from services.encoder import ladder as hls
from services.encoder.probe import describe, probe
from services.projector.store import JobStore
from tests.support.observe import log_lines
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def held_partitions(log_path: Path, topic: str) -> list[int]:
    """The partitions of `topic` an encoder holds now, after its `assigned`/`revoked` log lines."""
    held: set[int] = set()
    for line in log_lines(log_path):
        message = line.get("message")
        if message not in ("assigned", "revoked"):
            continue
        changed = {
            int(name.rsplit("[", 1)[1].rstrip("]"))
            for name in line.get("partitions") or []
            if isinstance(name, str) and name.rsplit("[", 1)[0] == topic
        }
        held = held | changed if message == "assigned" else held - changed
    return sorted(held)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition of a keyed record under librdkafka's default partitioner (consistent_random):
    the CRC-32 of the key, modulo the topic's partition count."""
    return zlib.crc32(key) % partitions


def lecture_sources(clips: Iterable[Path]) -> list[LectureSource]:
    """A course's lectures (lecture n = the n-th clip) as the encoder's planner measures them: the same
    probe as services/encoder/tasks.py, run here on the local files."""
    return [
        LectureSource(
            index=index,
            title=clip.stem,
            duration_s=describe(probe(clip, clip.name), clip.name).duration_s,
            source_key=clip.name,
        )
        for index, clip in enumerate(clips)
    ]


def task_partition(settings: Settings, task: TaskSpec) -> int:
    """The commands partition of a task's EncodeTask."""
    return partition_of(job_key(task.task_id), settings.topic_partitions)


def course_id_reaching(
    settings: Settings, clips: Iterable[Path], wanted: set[int], tries: int = 10_000
) -> tuple[UUID, tuple[TaskSpec, ...]]:
    """A new course id whose planned tasks' commands land on every partition in `wanted` (with one
    task: on that one partition), and those tasks, as the encoder will plan them."""
    lectures = lecture_sources(clips)
    for _ in range(tries):
        course_job_id = new_job_id()
        tasks = plan_course(course_job_id, lectures, settings.chunk_s, hls.SEGMENT_S).tasks
        if wanted <= {task_partition(settings, task) for task in tasks}:
            return course_job_id, tasks
    raise AssertionError(f"no course id in {tries} tries puts its tasks on partitions {sorted(wanted)}")


# With two partitions per topic and one encoder holding both, the commands partition cooperative-sticky
# moves to a second member when it joins (librdkafka's sticky assignor; the tests that rely on it
# check that the newcomer holds it).
MOVING = 0


def staged_course_on_the_moving_partition(
    settings: Settings, s3: S3Client, clip_dir: Path, seconds: float
) -> tuple[UUID, StagingManifest]:
    """A one-lecture course (clip_dir/lecture.mp4) staged as the api would, whose one task is queued
    on the commands partition MOVING: the one a second encoder takes from the first."""
    clip = make_clip(clip_dir / "lecture.mp4", seconds=seconds)
    job_id, _ = course_id_reaching(settings, [clip], {MOVING})
    return job_id, stage_course(settings, s3, job_id, [clip])


def started_by(settings: Settings, job_id: UUID) -> list[str]:
    """The worker (`encoder@host:pid`) of each accepted JobStarted of the job, in log order."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    try:
        rows = store.connection.execute(
            "SELECT e.data->>'worker' FROM job_events e LEFT JOIN rejected_events r USING (event_id)"
            " WHERE e.job_id = %s AND e.type = 'JobStarted' AND r.event_id IS NULL ORDER BY e.kafka_offset",
            (job_id,),
        ).fetchall()
    finally:
        store.close()
    return [str(row[0]) for row in rows]
