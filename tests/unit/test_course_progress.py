"""A course's progress lecture by lecture: the status a course shows while its tasks run (pure)."""

from __future__ import annotations

from uuid import uuid4

from services.core.course_plan import LectureSource, plan_course
from services.core.course_progress import TaskRow, course_percent, lecture_progress
from services.core.payloads import PublishedVideo, Rendition

PLAN = plan_course(
    uuid4(),
    [
        LectureSource(index=0, title="Intro", duration_s=60.0, source_key="staging/x/0.mp4"),
        LectureSource(index=1, title="Graphs", duration_s=720.0, source_key="staging/x/1.mp4"),
    ],
    chunk_s=300,
    segment_s=6,
)


def rows(*states: tuple[str, float]) -> list[TaskRow]:
    return [
        TaskRow(task, status, percent) for task, (status, percent) in zip(PLAN.tasks, states, strict=True)
    ]


def test_a_planned_course_shows_each_lecture_queued_until_its_tasks_start() -> None:
    lectures = lecture_progress(PLAN.lectures, (), rows(*[("queued", 0.0)] * 5))
    assert [(lec.title, lec.status, lec.progress_percent, lec.tasks) for lec in lectures] == [
        ("Intro", "queued", 0.0, 1),
        ("Graphs", "queued", 0.0, 4),
    ]
    assert course_percent(lectures) == 0.0


def test_a_lectures_percent_weighs_its_tasks_by_the_time_they_cover_and_the_course_by_duration() -> None:
    # Intro done (not yet published); Graphs: audio done, chunk 1 (300 s) half way, others queued.
    lectures = lecture_progress(
        PLAN.lectures,
        (),
        rows(("completed", 100.0), ("completed", 100.0), ("processing", 50.0), ("queued", 0), ("queued", 0)),
    )
    intro, graphs = lectures
    assert (intro.status, intro.progress_percent) == ("processing", 99.9)  # 100 % only once published
    # audio weighs 72 (a tenth of 720 s) at 100 %, chunk 0 weighs 300 at 50 %: 222 / 792.
    assert graphs.progress_percent == round((72 * 100 + 300 * 50) / 792, 2)
    assert (graphs.status, graphs.tasks_completed) == ("processing", 1)
    assert course_percent(lectures) == round((99.9 * 60 + graphs.progress_percent * 720) / 780, 2)


def test_a_published_lecture_is_at_100_with_its_playlist_and_a_failed_task_fails_its_lecture() -> None:
    video = PublishedVideo(
        video_index=0,
        master_playlist_url="http://cdn/0/master.m3u8",
        renditions=(Rendition(name="360p", width=640, height=360, bandwidth=1, codecs="avc1.640028"),),
        duration_s=60.0,
        thumbnail_url="http://cdn/0/t.webp",
        poster_url=None,
    )
    failed = rows(("completed", 100.0), ("queued", 0), ("failed", 30.0), ("canceled", 0), ("canceled", 0))
    failed[2] = TaskRow(failed[2].task, "failed", 30.0, "The video is damaged.")
    intro, graphs = lecture_progress(PLAN.lectures, (video,), failed)
    assert (intro.status, intro.progress_percent, intro.master_playlist_url) == (
        "published",
        100.0,
        "http://cdn/0/master.m3u8",
    )
    assert (graphs.status, graphs.error_message) == ("failed", "The video is damaged.")


def test_a_replaced_task_counts_once_for_its_slot() -> None:
    canceled = rows(*[("canceled", 0.0)] * 5)
    again = [TaskRow(PLAN.tasks[0], "completed", 100.0)]
    (intro, graphs) = lecture_progress(PLAN.lectures, (), canceled + again)
    assert (intro.status, intro.tasks, intro.tasks_completed) == ("processing", 1, 1)
    assert graphs.status == "canceled"
