"""bench/projection.py: a measured course's figures from its log, and the fan-out projection (no timing)."""

from __future__ import annotations

import pytest

from bench.projection import (
    Event,
    Rates,
    TaskRun,
    fold_course,
    held_partitions,
    lecture_tasks,
    makespan,
    project,
    rates,
)

COURSE = "course"


def task_events(
    job_id: str,
    media: str,
    start_s: float,
    end_s: float,
    began: float,
    ended: float,
    worker: str,
    attempt: int = 1,
) -> list[Event]:
    spec: dict[str, object] = {"media": media, "start_s": start_s, "end_s": end_s}
    return [
        Event(job_id, "TaskQueued", 1, 1.0, {}, spec),
        Event(job_id, "JobStarted", attempt, began, {"worker": worker}, spec),
        Event(job_id, "TaskCompleted", attempt, ended, {}, spec),
    ]


def test_a_two_hour_lecture_at_300_s_chunks_is_24_video_tasks_and_its_audio() -> None:
    spans = lecture_tasks(7200, 300)
    assert len(spans) == 25
    assert spans[0] == 7200  # the audio task covers the whole lecture
    assert list(spans[1:]) == [300.0] * 24


def test_a_lecture_up_to_the_chunk_length_is_one_task() -> None:
    assert list(lecture_tasks(300, 300)) == [300]
    assert list(lecture_tasks(60, 300)) == [60]


def test_the_projection_is_waves_of_the_longest_task_plus_plan_and_stitch() -> None:
    measured = Rates(video_s_per_s=1.2, audio_s_per_s=0.01)
    p = project(7200, 300, 16, measured, plan_s=4.0, stitch_s_per_s=0.002)
    assert (p.tasks, p.waves) == (25, 2)  # ceil(25 / 16)
    assert p.longest_task_s == pytest.approx(360.0)  # a 300 s chunk at 1.2 s/s beats 72 s of audio
    assert p.stitch_s == pytest.approx(14.4)
    assert p.wall_s == pytest.approx(2 * 360 + 4 + 14.4)


def test_slow_audio_becomes_the_longest_task() -> None:
    p = project(7200, 300, 25, Rates(video_s_per_s=0.5, audio_s_per_s=0.1), plan_s=0, stitch_s_per_s=0)
    assert p.waves == 1
    assert p.longest_task_s == pytest.approx(720.0)


def test_more_encoders_than_tasks_is_one_wave_and_fewer_is_more() -> None:
    measured = Rates(1.0, 0.01)
    assert project(7200, 300, 100, measured, 0, 0).waves == 1
    assert project(7200, 300, 1, measured, 0, 0).waves == 25
    with pytest.raises(ValueError, match="at least one encoder"):
        project(7200, 300, 0, measured, 0, 0)


def test_rates_are_the_slowest_task_of_each_kind_per_second_of_lecture() -> None:
    tasks = [
        TaskRun("audio", 720, 36, "a"),
        TaskRun("video", 300, 330, "a"),
        TaskRun("video", 300, 300, "b"),
        TaskRun("video", 120, 144, "b"),
    ]
    measured = rates(tasks)
    assert measured.video_s_per_s == pytest.approx(1.2)
    assert measured.audio_s_per_s == pytest.approx(0.05)
    with pytest.raises(ValueError, match="video chunk"):
        rates([TaskRun("lecture", 60, 60, "a")])


def test_a_course_is_folded_from_its_log() -> None:
    events = [
        Event(COURSE, "JobQueued", 1, 100.0, {}, None),
        Event(COURSE, "JobStarted", 1, 101.0, {"worker": "enc-0"}, None),
        Event(COURSE, "CoursePlanned", 1, 104.0, {}, None),
        *task_events("audio", "audio", 0, 720, 105.0, 135.0, "enc-0"),
        *task_events("c0", "video", 0, 300, 106.0, 400.0, "enc-1"),
        # chunk 1's first attempt died; only the attempt that completed counts
        Event(
            "c1",
            "JobStarted",
            1,
            136.0,
            {"worker": "enc-0"},
            {"media": "video", "start_s": 300, "end_s": 720},
        ),
        *task_events("c1", "video", 300, 720, 200.0, 500.0, "enc-0", attempt=2),
        Event(COURSE, "JobCompleted", 1, 502.5, {}, None),
    ]
    run = fold_course(COURSE, events)
    assert run.wall_s == pytest.approx(402.5)
    assert run.plan_s == pytest.approx(4.0)
    assert run.stitch_s == pytest.approx(2.5)
    assert [(t.media, t.span_s, t.run_s, t.worker) for t in run.tasks] == [
        ("audio", 720, 30.0, "enc-0"),
        ("video", 300, 294.0, "enc-1"),
        ("video", 420, 300.0, "enc-0"),
    ]
    assert run.longest.span_s == 420
    assert {w: len(ts) for w, ts in run.per_worker().items()} == {"enc-0": 2, "enc-1": 1}


def test_a_course_without_its_completion_is_refused() -> None:
    events = [Event(COURSE, "JobQueued", 1, 0.0, {}, None), Event(COURSE, "CoursePlanned", 1, 1.0, {}, None)]
    with pytest.raises(ValueError, match="JobCompleted"):
        fold_course(COURSE, events)


def test_held_partitions_follow_the_assigned_and_revoked_lines_of_one_topic() -> None:
    log: list[dict[str, object]] = [
        {"message": "encoder started"},
        {"message": "assigned", "partitions": ["t.commands[0]", "t.commands[1]", "t.commands.retry[0]"]},
        {"message": "revoked", "partitions": ["t.commands[0]"]},
        {"message": "assigned", "partitions": ["t.commands[3]"]},
        {"message": "assigned", "partitions": []},
    ]
    assert held_partitions(log, "t.commands") == [1, 3]
    assert held_partitions(log, "t.commands.retry") == [0]


def test_makespan_spreads_the_longest_tasks_first() -> None:
    # 300 + 300 + 120 s chunks and 40 s of audio over two encoders: 300 + 40 | 300 + 120
    assert makespan([40, 300, 120, 300], 2) == pytest.approx(420)
    assert makespan([40, 300, 120, 300], 1) == pytest.approx(760)
    assert makespan([40, 300, 120, 300], 8) == pytest.approx(300)
    assert makespan([], 2) == 0
    with pytest.raises(ValueError, match="at least one encoder"):
        makespan([1.0], 0)
