"""The conductor's rules, pure: what follows a course's plan, its tasks' ends and the course's end."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from uuid import UUID, uuid4

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.conductor.book import Book
from services.conductor.rules import Decision, Stitch, completes_course, decide, lecture_published
from services.core.course_plan import LectureSource, plan_course, slot_of, task_id_for
from services.core.jobs import JobStatus
from services.core.lanes import lane_of
from services.core.messages import Envelope, MessageType, Payload, carries, job_key, new_message
from services.core.payloads import (
    CancelJob,
    CoursePlanned,
    EncodeTask,
    JobCanceled,
    JobCompleted,
    JobFailed,
    JobOutputs,
    JobQueued,
    JobRetryRequested,
    JobStalled,
    JobStarted,
    LecturePublished,
    PublishedVideo,
    QueuedLecture,
    Rendition,
    TaskCompleted,
    TaskQueued,
)

M = MessageType
RENDITION = Rendition(name="360p", width=640, height=360, bandwidth=900_000, codecs="avc1.640028,mp4a.40.2")


def plan_for(course: UUID, durations: list[float], chunk_s: int = 300) -> CoursePlanned:
    """The planner's plan: a lecture up to 300 s is one task, a longer one audio + a task per chunk."""
    lectures = [
        LectureSource(
            index=i, title=f"Lecture {i}", duration_s=d, source_key=f"staging/{course}/videos/{i}.mp4"
        )
        for i, d in enumerate(durations)
    ]
    return plan_course(course, lectures, chunk_s, 6)


@dataclass
class World:
    """A log, the conductor's book over it, and what the conductor decided: its events go on the log
    (the conductor reads its own events back, as on Kafka), its commands are collected."""

    course: UUID = field(default_factory=uuid4)
    book: Book = field(default_factory=Book)
    log: list[Envelope] = field(default_factory=list)
    commands: list[Envelope] = field(default_factory=list)
    stitches: list[Stitch] = field(default_factory=list)

    def append(self, event: Envelope) -> Decision:
        self.log.append(event)
        change = self.book.observe(event)
        if change is None:
            return Decision()
        decision = decide(change)
        for message in decision.messages:
            if message.is_command:
                self.commands.append(message)
        for message in decision.messages:
            if not message.is_command:
                self.append(message)
        for stitch in decision.stitch:
            self.stitches.append(stitch)
            self.append(lecture_published(stitch, published(stitch)))
        return decision

    def course_event(self, data: Payload, attempt: int = 1) -> Decision:
        return self.append(new_message(data, job_id=self.course, attempt=attempt, producer="test"))

    def task_event(self, task_id: UUID, data: Payload, attempt: int = 1) -> Decision:
        return self.append(
            new_message(data, job_id=task_id, attempt=attempt, producer="encoder", course_job_id=self.course)
        )

    def start(self, durations: list[float]) -> CoursePlanned:
        self.course_event(
            JobQueued(
                owner="instructor-1",
                course_name="Algorithms",
                curriculum="CS",
                staging_prefix=f"staging/{self.course}/",
                manifest_key=f"staging/{self.course}/manifest.json",
                video_count=len(durations),
                course_id=self.course,
                lectures=tuple(QueuedLecture(index=i, title=f"Lecture {i}") for i in range(len(durations))),
            )
        )
        self.course_event(JobStarted(worker="encoder-a"))
        plan = plan_for(self.course, durations)
        self.course_event(plan)
        return plan

    def run_task(self, task_id: UUID, attempt: int = 1) -> None:
        self.task_event(task_id, JobStarted(worker="encoder-b"), attempt)
        self.task_event(task_id, self.done(task_id), attempt)

    def done(self, task_id: UUID) -> TaskCompleted:
        """What an encoder reports for the task: a whole lecture's task names its master playlist."""
        task = self.book.courses[self.course].tasks[task_id].task
        assert task is not None
        if task.media != "lecture":
            return done()
        prefix = f"hls/{task_id}/1/{task.lecture_index}/"
        return msgspec.structs.replace(
            done(),
            output_prefix=prefix,
            master_playlist_url=f"http://cdn.test/{prefix}master.m3u8",
            thumbnail_url=f"http://cdn.test/{prefix}thumbnail.webp",
        )

    @property
    def state(self) -> JobStatus:
        return self.book.courses[self.course].state.status

    def encode_commands(self) -> list[Envelope[EncodeTask]]:
        return [c for c in self.commands if carries(c, EncodeTask)]


def done() -> TaskCompleted:
    return TaskCompleted(output_prefix="hls/x/tasks/y/1/", renditions=(RENDITION,), duration_s=60.0)


def published(stitch: Stitch) -> PublishedVideo:
    return PublishedVideo(
        video_index=stitch.lecture.index,
        master_playlist_url=f"http://cdn.test/hls/{stitch.course_job_id}/{stitch.lecture.index}/master.m3u8",
        renditions=(RENDITION,),
        duration_s=stitch.lecture.duration_s,
        thumbnail_url="http://cdn.test/t.webp",
        poster_url=None,
    )


def test_a_plan_queues_every_task_with_a_command_keyed_to_spread_and_events_keyed_by_the_course() -> None:
    world = World()
    plan = world.start([60.0, 720.0])
    queued = [e for e in world.log if isinstance(e.data, TaskQueued)]
    assert [e.job_id for e in queued] == [t.task_id for t in plan.tasks]
    # Lecture 0 (60 s) is one task; lecture 1 (720 s) is its audio and 3 chunks of 300, 300, 120 s.
    assert [(t.lecture_index, t.media, t.start_s, t.end_s) for t in plan.tasks] == [
        (0, "lecture", 0, 60),
        (1, "audio", 0, 720),
        (1, "video", 0, 300),
        (1, "video", 300, 600),
        (1, "video", 600, 720),
    ]
    assert all(e.kafka_key() == job_key(world.course) for e in queued)
    commands = world.encode_commands()
    assert [c.job_id for c in commands] == [t.task_id for t in plan.tasks]
    assert all(c.attempt == 1 and c.kafka_key() == job_key(c.job_id) for c in commands)
    # Keyed to spread: the tasks' lanes follow the course's, so they take the partitions in turn.
    assert [lane_of(c.job_id) for c in commands] == [lane_of(world.course) + n for n in range(1, 6)]
    assert all(c.data.task == q.data.task for c, q in zip(commands, queued, strict=True))  # type: ignore[attr-defined]
    assert world.state == JobStatus.PROCESSING


def test_a_lecture_is_stitched_once_its_last_task_completes_and_the_course_completes_with_all() -> None:
    world = World()
    plan = world.start([60.0, 720.0])
    order = list(plan.tasks)
    random.Random(7).shuffle(order)
    for task in order:
        world.run_task(task.task_id)
    # The whole lecture needs no stitch: its task wrote the master playlist; lecture 1 is stitched.
    assert [s.lecture.index for s in world.stitches] == [1]
    lecture_1 = next(s for s in world.stitches if s.lecture.index == 1)
    assert lecture_1.audio is not None
    assert [t.task.chunk_index for t in lecture_1.video if t.task] == [
        0,
        1,
        2,
    ]
    assert world.state == JobStatus.COMPLETED
    completed = [e for e in world.log if isinstance(e.data, JobCompleted)]
    assert len(completed) == 1
    assert [v.video_index for v in completed[0].data.outputs.videos] == [0, 1]  # type: ignore[attr-defined]


def test_a_tasks_permanent_failure_fails_the_course_with_that_lectures_reason_and_cancels_the_others() -> (
    None
):
    world = World()
    plan = world.start([60.0, 720.0])
    bad = plan.tasks[2]  # lecture 1, chunk 0
    world.run_task(plan.tasks[0].task_id)
    world.task_event(plan.tasks[2].task_id, JobStarted(worker="encoder-c"))
    world.task_event(bad.task_id, JobStarted(worker="encoder-b"))
    world.task_event(
        bad.task_id, JobFailed(error_type="invalid_media", message="The video is damaged.", retryable=False)
    )
    assert world.state == JobStatus.FAILED
    course = world.book.courses[world.course].state
    assert course.error_type == "invalid_media"
    assert course.error_message == 'Lecture 2 "Lecture 1" (part 1 of 3) failed: The video is damaged.'
    failed = [e for e in world.log if carries(e, JobFailed) and e.job_id == world.course]
    assert len(failed) == 1
    assert failed[0].data.retryable is False
    canceled = {c.job_id for c in world.commands if isinstance(c.data, CancelJob)}
    # Every task still queued or running is canceled; the completed one and the failed one are not.
    assert canceled == {t.task_id for t in plan.tasks} - {plan.tasks[0].task_id, bad.task_id}


def test_a_retry_reruns_only_what_failed_or_was_canceled_and_keeps_what_completed() -> None:
    world = World()
    plan = world.start([60.0, 720.0])
    ok, bad, interrupted = plan.tasks[0], plan.tasks[3], plan.tasks[4]
    world.run_task(ok.task_id)
    world.task_event(bad.task_id, JobStarted(worker="encoder-b"))
    world.task_event(
        bad.task_id, JobFailed(error_type="encode_failed", message="ffmpeg failed.", retryable=True)
    )
    for cancel in [c for c in world.commands if isinstance(c.data, CancelJob)]:
        world.task_event(cancel.job_id, JobCanceled(requested_by="conductor"), cancel.attempt)
    before = len(world.commands)
    world.course_event(JobRetryRequested(requested_by="instructor-1", next_attempt=2))
    world.course_event(JobStarted(worker="encoder-a"), attempt=2)
    world.course_event(plan_for(world.course, [60.0, 720.0]), attempt=2)
    rerun = world.commands[before:]
    assert all(isinstance(c.data, EncodeTask) for c in rerun)
    by_slot = {slot_of(c.data.task): c for c in rerun}  # type: ignore[attr-defined]
    assert slot_of(ok) not in by_slot  # completed: kept
    assert (by_slot[slot_of(bad)].job_id, by_slot[slot_of(bad)].attempt) == (
        bad.task_id,
        2,
    )  # the same task again
    replacement = by_slot[slot_of(interrupted)]
    # A new task for the same slot, on the same lane (so the same partition) as the one it replaces.
    lane = lane_of(interrupted.task_id)
    expected = task_id_for(world.course, slot_of(interrupted), lane, 1)
    assert replacement.job_id == expected != interrupted.task_id
    assert lane_of(replacement.job_id) == lane
    assert replacement.attempt == 1
    assert len(rerun) == len(plan.tasks) - 1
    retried = [e for e in world.log if isinstance(e.data, JobRetryRequested) and e.job_id == bad.task_id]
    assert len(retried) == 1
    # Everything that reran completes: the course completes on attempt 2 with both lectures.
    for command in rerun:
        world.run_task(command.job_id, command.attempt)
    assert world.state == JobStatus.COMPLETED


def test_canceling_the_course_cancels_every_open_task() -> None:
    world = World()
    plan = world.start([720.0])
    world.run_task(plan.tasks[1].task_id)
    world.course_event(JobCanceled(requested_by="instructor-1"))
    canceled = {c.job_id for c in world.commands if isinstance(c.data, CancelJob)}
    assert canceled == {t.task_id for t in plan.tasks} - {plan.tasks[1].task_id}
    assert world.state == JobStatus.CANCELED


def test_events_the_state_machine_rejects_decide_nothing() -> None:
    world = World()
    plan = world.start([60.0, 720.0])
    task = plan.tasks[1]
    world.run_task(task.task_id)
    count = (len(world.log), len(world.commands), len(world.stitches))
    # A stale attempt's completion, a second completion and an unknown task's event change nothing.
    assert world.task_event(task.task_id, done(), attempt=2) == Decision()
    assert world.task_event(task.task_id, done()) == Decision()
    assert world.task_event(uuid4(), JobStarted(worker="x")) == Decision()
    assert (len(world.commands), len(world.stitches)) == count[1:]


def test_a_stalled_task_on_its_last_attempt_fails_the_course_like_a_failed_one() -> None:
    world = World()
    plan = world.start([60.0])
    task = plan.tasks[0]
    world.task_event(task.task_id, JobStarted(worker="encoder-b"))
    stalled = JobStalled(
        last_heartbeat_at=None, stall_timeout_s=60, will_retry=False, message="The encoder went silent."
    )
    world.task_event(task.task_id, stalled)
    assert world.state == JobStatus.FAILED
    assert world.book.courses[world.course].state.error_type == "stalled"


def test_rebuilding_the_book_from_the_log_gives_the_same_courses() -> None:
    world = World()
    plan = world.start([60.0, 720.0])
    for task in plan.tasks[:4]:
        world.run_task(task.task_id)
    rebuilt = Book()
    for event in world.log:
        rebuilt.observe(event)
    original = world.book.courses[world.course]
    again = rebuilt.courses[world.course]
    assert (again.state, again.tasks, again.current, again.plan) == (
        original.state,
        original.tasks,
        original.current,
        original.plan,
    )


@settings(max_examples=60, deadline=None)
@given(
    durations=st.lists(st.sampled_from([30.0, 300.0, 650.0, 900.0]), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
    failing=st.integers(0, 30),
)
def test_any_order_of_task_ends_ends_the_course_once_and_every_lecture_is_stitched_at_most_once(
    durations: list[float], seed: int, failing: int
) -> None:
    world = World()
    plan = world.start(durations)
    order = list(plan.tasks)
    random.Random(seed).shuffle(order)
    for position, task in enumerate(order):
        world.task_event(task.task_id, JobStarted(worker="encoder"))
        if position == failing:
            world.task_event(
                task.task_id, JobFailed(error_type="encode_failed", message="boom", retryable=True)
            )
        else:
            world.task_event(task.task_id, world.done(task.task_id))
    ends = [e for e in world.log if e.job_id == world.course and e.type in (M.JOB_COMPLETED, M.JOB_FAILED)]
    accepted_end = world.state
    assert accepted_end == (JobStatus.FAILED if failing < len(order) else JobStatus.COMPLETED)
    assert len(ends) == 1
    stitched = [s.lecture.index for s in world.stitches]
    assert len(stitched) == len(set(stitched))
    assert all(durations[index] > 300 for index in stitched)  # only chunked lectures need a stitch
    published = [e.data.video.video_index for e in world.log if isinstance(e.data, LecturePublished)]
    assert len(published) == len(set(published))
    if accepted_end == JobStatus.COMPLETED:
        assert sorted(published) == list(range(len(durations)))
    course = world.book.courses[world.course].state
    assert (course.completed_at is not None) == (course.status == JobStatus.COMPLETED)


def test_the_plan_helper_matches_the_contract() -> None:
    plan = plan_for(uuid4(), [650.0])
    assert msgspec.json.decode(msgspec.json.encode(plan), type=CoursePlanned) == plan
    with pytest.raises(StopIteration):
        next(t for t in plan.tasks if t.media == "video" and t.chunk_index == 3)


def test_only_the_courses_accepted_completion_releases_its_staging() -> None:
    world = World()
    plan = world.start([60.0, 720.0])
    for task in plan.tasks:
        world.run_task(task.task_id)
    replay = Book()
    releasing = [e for e in world.log if (c := replay.observe(e)) is not None and completes_course(c)]
    assert [type(e.data) for e in releasing] == [JobCompleted]
    # A completion the log rejects (the course was canceled first) releases nothing.
    canceled = World()
    canceled.start([60.0])
    canceled.course_event(JobCanceled(requested_by="instructor-1", reason=None))
    late = new_message(
        JobCompleted(outputs=JobOutputs(videos=())), job_id=canceled.course, attempt=1, producer="x"
    )
    assert canceled.book.observe(late) is None
