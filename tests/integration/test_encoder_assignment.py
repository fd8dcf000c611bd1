"""The encoder group spreads each of its topics over its members (services/encoder/consumer.py).

The encoders read the commands topic and the retry topic each in a consumer group of its own. In one
group of both topics, cooperative-sticky evened out the number of partitions per member across the
two: with 4 + 4 partitions a second encoder was given the 4 retry partitions and no commands one, so
every task of a course ran on the first encoder (bench/text/fanout.md). Here two encoders each hold
part of each topic, and a course whose tasks reach every commands partition runs on both.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.assignment import course_id_reaching, held_partitions, started_by, task_partition
from tests.support.encoder import FAST, queue_job
from tests.support.encoder_checks import wait_drained
from tests.support.observe import course_tasks, job_events, wait_for
from tests.support.services import running, wait_until
from tests.support.staging import make_clip, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PARTITIONS = 4
pytestmark = [
    pytest.mark.integration,
    pytest.mark.own(
        partitions=PARTITIONS, heartbeat_interval_s=2, session_timeout_ms=6_000, encoder_lease_s=8
    ),
]

LECTURES = 6
ENCODERS = ("encoder-a", "encoder-b")


def test_two_encoders_share_each_topic_and_a_course_s_tasks_run_on_both(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "lecture.mp4", seconds=2, size="160x90", rate=10)
    clips = [clip] * LECTURES  # each lecture one `lecture` task (shorter than COURSECAST_CHUNK_S)
    # A course whose tasks' commands reach every commands partition: whichever share each encoder
    # holds, some of the course's tasks are queued on it.
    course_id, planned = course_id_reaching(own, clips, set(range(PARTITIONS)))
    manifest = stage_course(own, s3, course_id, clips)
    with running(own, tmp_path) as run:
        run.projector()
        pids = {run.encoder(name, **FAST).pid: name for name in ENCODERS}

        def held(topic: str) -> dict[str, list[int]]:
            return {name: held_partitions(run.log(name), topic) for name in ENCODERS}

        def shared(topic: str) -> bool:
            """Every encoder holds some of the topic's partitions, and together all, each once."""
            shares = held(topic).values()
            every = sorted(p for share in shares for p in share)
            return all(shares) and every == list(range(PARTITIONS))

        for topic in (own.commands_topic, own.commands_retry_topic):
            wait_until(f"both encoders hold a share of {topic}", partial(shared, topic), 90, run.processes)
        commands = held(own.commands_topic)
        queue_job(own, manifest)
        job = wait_for(own, course_id, {"completed", "failed"}, 240, run.processes)
        assert job.status.value == "completed", (job.error_type, job.error_message)
        tasks = course_tasks(own, course_id)
        wait_drained(own, 120, run.processes)
        # No rebalance happened while the course ran: the shares are those it was queued under.
        assert held(own.commands_topic) == commands
    assert run.codes == [0, 0, 0]

    # The encoder planned exactly the tasks the test computed (so their partitions are known).
    assert {t.job_id for t in tasks} == {t.task_id for t in planned}
    ran_on: dict[str, list[int]] = {name: [] for name in ENCODERS}
    for task in planned:
        # One start per task (G1), by one of the two encoders...
        (worker,) = started_by(own, task.task_id)
        name = pids[int(worker.rsplit(":", 1)[1])]
        # ...the one that held the commands partition its EncodeTask was keyed to.
        assert task_partition(own, task) in commands[name], (task, worker, commands)
        ran_on[name].append(task.lecture_index)
        ends = [
            (kind, attempt) for kind, attempt, rejection in job_events(own, task.task_id) if rejection is None
        ]
        assert ends.count(("TaskCompleted", 1)) == 1, ends
        assert ("JobStalled", 1) not in ends, ends
    assert all(ran_on.values()), ran_on
