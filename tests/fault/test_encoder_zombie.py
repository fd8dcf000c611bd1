"""G1 against a zombie: an encoder frozen mid-encode (SIGSTOP) loses its lease, another encoder takes
the task over, and the frozen one then wakes up (SIGCONT) with its encode done or nearly done.

Under fan-out the encode is a task's attempt (docs/fan-out.md: the one-lecture course's `lecture`
task). The zombie's claim is no longer its own, so its renewals fail and its final-event transaction
is refused: it publishes no TaskCompleted, whatever it had finished, and it keeps running; the course
completes once, with the takeover's outputs.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from services.core.settings import Settings
from tests.support.assignment import MOVING, held_partitions, staged_course_on_the_moving_partition
from tests.support.encoder import REALTIME, encoder_runs_job
from tests.support.encoder_checks import assert_nothing_duplicated, wait_drained
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.observe import count_events, job_events, wait_for, wait_for_lecture_task, wait_logged
from tests.support.projection_checks import assert_rebuild_equals_live
from tests.support.projector import wait_caught_up
from tests.support.services import running, wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Two partitions per topic, so the survivor's share is one of them: the task's (tests/support/assignment.py,
# each topic is a group of its own, and with one partition cooperative-sticky would leave it with the
# zombie). A frozen member is evicted and its lease runs out within seconds.
pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_LIVENESS, encoder_lease_s=8)]


def test_a_frozen_encoder_waking_after_a_takeover_publishes_no_completion(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    job_id, manifest = staged_course_on_the_moving_partition(own, s3, tmp_path, seconds=12)
    with running(own, tmp_path) as run:
        projector = run.projector()
        zombie = encoder_runs_job(run, manifest, 60, "encoder-zombie", **REALTIME)
        # The course's attempt plans; the zombie, the only encoder yet, then runs the course's task.
        task = wait_for_lecture_task(own, job_id, 0, 60, run.processes)
        wait_for(own, task.job_id, {"processing"}, 60, run.processes)
        survivor = run.encoder("encoder-survivor", **REALTIME)
        wait_logged(run.log("encoder-zombie"), 60, run.processes, event="running_partition_revoked")
        # Freeze at once: the encode must still be running (waiting here for the survivor's next
        # rebalance round once let an 8 s encode finish before the freeze).
        zombie.send_signal(signal.SIGSTOP)  # its ffmpeg child keeps encoding meanwhile (stop resumes it)
        # The survivor gets the task's partition: in the next cooperative round, or when the frozen
        # zombie is evicted (then it holds both).
        wait_until(
            "the survivor holds the task's commands partition",
            lambda: MOVING in held_partitions(run.log("encoder-survivor"), own.commands_topic),
            60,
            [projector, survivor],
        )
        done = wait_for(own, job_id, {"completed", "failed", "canceled"}, 120, [projector, survivor])
        zombie.send_signal(signal.SIGCONT)
        wait_logged(run.log("encoder-zombie"), 60, run.processes, message="claim lost")
        wait_drained(own, 120, run.processes)
        wait_caught_up(own, timeout_s=120, processes=[projector])
        task = wait_for(own, task.job_id, {"completed", "failed", "canceled"}, 10)
    codes = run.codes
    assert codes == [0, 0, 0]  # the zombie woke up, stood down, and stopped cleanly
    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert (task.status.value, task.attempt) == ("completed", 2)
    events = job_events(own, task.job_id)
    assert ("JobStalled", 1, None) in events
    assert ("TaskCompleted", 1) not in [(t, a) for t, a, _ in events]
    assert_nothing_duplicated(own, task.job_id, completing_attempt=2, completion="TaskCompleted")
    # The course: planned once, completed once, with the takeover's outputs.
    assert_nothing_duplicated(own, job_id, completing_attempt=1)
    assert done.outputs is not None
    assert f"/hls/{task.job_id}/2/0/master.m3u8" in done.outputs.videos[0].master_playlist_url
    assert count_events(run.log("encoder-zombie"), "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert count_events(run.log("encoder-survivor"), "ffmpeg_started", what="video 'lecture.mp4'") == 1
    assert_rebuild_equals_live(own)
