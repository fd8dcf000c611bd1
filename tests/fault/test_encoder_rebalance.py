"""G1/G3 under a rebalance: a second encoder joins while a task runs and takes the task's partition.

A course's attempt only plans; its one lecture is encoded by one task (docs/fan-out.md), a job of its
own with its own command, claim and attempts. The encoders read the commands topic in a consumer
group of its own (services/encoder/consumer.py). With two partitions, the first encoder holds both;
when a second member joins, cooperative-sticky gives it one, and librdkafka's sticky assignor moves
partition 0 (each test checks that the newcomer holds it, and the first encoder logs
`running_partition_revoked`). So the course is given an id whose one task's EncodeTask is keyed to
partition 0 (tests/support/assignment.py). The running task keeps running in the first encoder; the
newcomer re-reads the uncommitted EncodeTask, finds the live claim and waits. The course still ends
exactly once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType

from services.core.kafka_config import admin_config
from services.core.manifest import StagingManifest
from services.core.settings import Settings
from tests.support.assignment import MOVING, held_partitions, staged_course_on_the_moving_partition
from tests.support.encoder import REALTIME, encoder_runs_job, queue_job
from tests.support.encoder_checks import ONCE_PER_ATTEMPT, assert_nothing_duplicated, wait_drained
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import count_events, course_tasks, job_events, logged, wait_for, wait_logged
from tests.support.projection_checks import assert_rebuild_equals_live
from tests.support.projector import wait_caught_up
from tests.support.services import Services, running, wait_until
from tests.support.staging import new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Two partitions per topic, so the newcomer's share is one partition: the running task's (MOVING).
# Without source retention, so a completed job's staging is deleted once its completion is applied.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(partitions=2, **QUICK_LIVENESS, encoder_lease_s=8, source_retention_days=0),
]

LECTURE = "video 'lecture.mp4'"
ENDED = {"completed", "failed", "canceled"}


def second_encoder_joins_mid_encode(run: Services, manifest: StagingManifest) -> UUID:
    """Projector and encoder-first run the course's one task; encoder-second joins mid-encode and
    takes the commands partition. Returns the task's id."""
    run.projector()
    encoder_runs_job(run, manifest, 60, "encoder-first", **REALTIME)
    task_id = only_task(run, manifest.job_id)
    wait_for(run.settings, task_id, {"processing"}, 60, run.processes)
    run.encoder("encoder-second", **REALTIME)
    wait_logged(run.log("encoder-first"), 60, run.processes, event="running_partition_revoked")
    # Cooperative: the first member gives the partition up in one round, the newcomer gets it in the next.
    wait_until(
        "encoder-second holds the running task's commands partition",
        lambda: held_partitions(run.log("encoder-second"), run.settings.commands_topic) == [MOVING],
        60,
        run.processes,
    )
    return task_id


def only_task(run: Services, course_job_id: UUID) -> UUID:
    """The id of the one task of a one-lecture course, once the course is planned."""
    wait_until("the course planned", lambda: course_tasks(run.settings, course_job_id), 60, run.processes)
    (task,) = course_tasks(run.settings, course_job_id)
    return task.job_id


def assert_task_ran_once(settings: Settings, task_id: UUID, completing_attempt: int) -> None:
    """One TaskCompleted in the task's log, accepted, of `completing_attempt`; no once-per-attempt
    event twice (the task's side of assert_nothing_duplicated)."""
    events = job_events(settings, task_id)
    every = Counter((t, a) for t, a, _ in events)
    assert [(t, a) for t, a, rejection in events if t == "TaskCompleted" and rejection is None] == [
        ("TaskCompleted", completing_attempt)
    ]
    assert sum(n for (t, _), n in every.items() if t == "TaskCompleted") == 1
    for (type_, attempt), n in every.items():
        if type_ in ONCE_PER_ATTEMPT:
            assert n == 1, f"{type_} of attempt {attempt} of the task appears {n} times"


@contextmanager
def refusing_events(settings: Settings) -> Iterator[None]:
    """The broker refuses every event (record larger than the topic allows) until the block ends.

    A real, permanent produce error: nothing refused is delivered later, so the attempt's final
    events are simply not acknowledged (the runner's UNPUBLISHED outcome).
    """
    admin = AdminClient(admin_config(settings))

    def alter(operation: AlterConfigOpType, value: str | None) -> None:
        entry = ConfigEntry("max.message.bytes", value, incremental_operation=operation)
        resource = ConfigResource(ResourceType.TOPIC, settings.events_topic, incremental_configs=[entry])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout=30)

    alter(AlterConfigOpType.SET, "100")
    try:
        yield
    finally:
        alter(AlterConfigOpType.DELETE, None)


def test_a_second_encoder_joining_mid_encode_takes_the_partition_and_duplicates_nothing(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_course_on_the_moving_partition(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        task_id = second_encoder_joins_mid_encode(run, manifest)
        # The newcomer read the task's command while the task ran, and left it to the claim's owner.
        wait_logged(run.log("encoder-second"), 60, run.processes, message="command waits")
        job = wait_for(own, job_id, ENDED, 120, run.processes)
        # The first encoder commits its finished command (Kafka accepts a commit from any member of
        # the generation), but the partition's owner still holds the command it parked: it must skip it.
        wait_logged(run.log("encoder-second"), 60, run.processes, event="command_skipped")
        wait_drained(own, 120, run.processes)
        wait_caught_up(own, timeout_s=120, processes=run.processes[:1])
    assert run.codes == [0, 0, 0]
    assert job.status.value == "completed", (job.error_type, job.error_message)
    assert job.attempt == 1
    assert_nothing_duplicated(own, job_id, completing_attempt=1)
    assert_task_ran_once(own, task_id, completing_attempt=1)
    assert "JobStalled" not in [t for t, _, _ in job_events(own, job_id) + job_events(own, task_id)]
    # One encode: ffmpeg ran in the first encoder only; the newcomer skipped the finished task.
    assert count_events(run.log("encoder-first"), "ffmpeg_started", what=LECTURE) == 1
    assert count_events(run.log("encoder-second"), "ffmpeg_started", what=LECTURE) == 0
    assert logged(run.log("encoder-second"), event="command_skipped") == 1
    assert count_events(run.log("encoder-second"), "command_skipped", job_id=str(task_id)) == 1
    assert s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{job_id}/").get("KeyCount", 0) == 0
    assert_rebuild_equals_live(own)


def test_an_unpublished_attempt_whose_partition_was_revoked_does_not_crash_the_encoder(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_course_on_the_moving_partition(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        task_id = second_encoder_joins_mid_encode(run, manifest)
        first_log = run.log("encoder-first")
        with refusing_events(own):
            # The task's final events are refused: the first encoder must put its command back for a
            # later delivery, but the partition is no longer its own to seek.
            wait_logged(first_log, 120, run.processes, message="attempt could not publish its final event")
            wait_logged(first_log, 30, run.processes, event="rewind_skipped")
        # The partition's owner takes the dead-ended task attempt over once its lease expires.
        job = wait_for(own, job_id, ENDED, 120, run.processes)
        task = wait_for(own, task_id, ENDED, 10, run.processes)
        wait_drained(own, 120, run.processes)
        wait_caught_up(own, timeout_s=120, processes=run.processes[:1])
    assert run.codes == [0, 0, 0]  # the first encoder was alive to the end and stopped cleanly
    assert job.status.value == "completed", (job.error_type, job.error_message)
    assert job.attempt == 1  # the course: its task was taken over, the course never re-planned
    assert (task.status.value, task.attempt) == ("completed", 2)
    assert ("JobStalled", 1, None) in job_events(own, task_id)
    assert_task_ran_once(own, task_id, completing_attempt=2)
    assert_nothing_duplicated(own, job_id, completing_attempt=1)
    assert count_events(run.log("encoder-first"), "ffmpeg_started", what=LECTURE) == 1
    assert count_events(run.log("encoder-second"), "ffmpeg_started", what=LECTURE) == 1
    assert_rebuild_equals_live(own)


def test_a_partition_that_comes_back_after_a_rebalance_flows_again(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    first_job, first_manifest = staged_course_on_the_moving_partition(own, s3, tmp_path, seconds=6)
    second_job = new_job_id()
    second_manifest = stage_course(own, s3, second_job, [tmp_path / "lecture.mp4"])
    with running(own, tmp_path) as run:
        # The commands partition leaves the first encoder while it is paused for the running job...
        second_encoder_joins_mid_encode(run, first_manifest)
        wait_for(own, first_job, ENDED, 120, run.processes)
        wait_drained(own, 120, run.processes)
        # ...and comes back when the second encoder leaves: it must not stay paused.
        assert run.stop(run.processes[-1]) == 0
        queue_job(own, second_manifest)
        job = wait_for(own, second_job, ENDED, 120, run.processes)
        wait_drained(own, 120, run.processes)
        wait_caught_up(own, timeout_s=120, processes=run.processes[:1])
    assert run.codes == [0, 0]
    assert job.status.value == "completed", (job.error_type, job.error_message)
    assert_nothing_duplicated(own, first_job, completing_attempt=1)
    assert_nothing_duplicated(own, second_job, completing_attempt=1)
    assert count_events(run.log("encoder-first"), "ffmpeg_started", what=LECTURE) == 2
    assert count_events(run.log("encoder-second"), "ffmpeg_started", what=LECTURE) == 0
    assert_rebuild_equals_live(own)
