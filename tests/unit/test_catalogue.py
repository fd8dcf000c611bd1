"""The catalogue fold (services/core/catalogue.py): stable ids, default titles, which completion wins,
unpublishing for good, and the same catalogue for every interleaving of the partitions (G4)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.problems import ProblemError
from services.api.reencode import CatalogueCourse, plan
from services.api.submissions import check_titles
from services.core.catalogue import InMemoryCatalogue, default_title, lecture_id
from services.core.manifest import StagedFile, StagedVideo, StagingManifest
from services.core.messages import Envelope, MessageType
from services.core.payloads import QueuedLecture
from services.core.projection import Catalogued, InMemoryJobProjection
from tests.support.messages import T0, course_job, course_unpublished, event

M = MessageType
HOUR = timedelta(hours=1)


def test_a_lecture_id_is_stable_per_course_and_index_and_distinct_otherwise() -> None:
    course, other = uuid4(), uuid4()
    assert lecture_id(course, 0) == lecture_id(UUID(str(course)), 0)
    assert len({lecture_id(course, 0), lecture_id(course, 1), lecture_id(other, 0)}) == 3


@pytest.mark.parametrize(
    ("filename", "title"),
    [
        ("1강 소개.mp4", "1강 소개"),
        ("lecture.final.MOV", "lecture.final"),
        ("README", "README"),
        (".mp4", ".mp4"),
        ("notes.tar.gz-backup-very-long-extension", "notes.tar.gz-backup-very-long-extension"),
        ("가" * 250 + ".mp4", "가" * 199 + "…"),
    ],
)
def test_the_default_title_is_the_file_name_without_its_extension(filename: str, title: str) -> None:
    assert default_title(filename) == title


def test_a_course_appears_with_its_first_completion_and_a_failed_job_shows_nothing() -> None:
    course, failed = uuid4(), uuid4()
    catalogue = InMemoryCatalogue().handle_all(course_job(failed, failed, outcome=M.JOB_FAILED))
    assert catalogue.courses == {}
    catalogue.handle_all(course_job(course, course))
    assert catalogue.courses[course].job_id == course
    assert catalogue.courses[course].lectures[0].lecture_id == lecture_id(course, 0)


def test_the_latest_completion_wins_and_the_first_publication_date_stays_whatever_the_order() -> None:
    course, reencode = uuid4(), uuid4()
    first, second = course_job(course, course), course_job(reencode, course, start=T0 + HOUR)
    for events in ([*first, *second], [*second, *first]):
        published = InMemoryCatalogue().handle_all(events).courses[course]
        assert (published.job_id, published.published_at) == (reencode, first[-1].occurred_at)
        assert published.updated_at == second[-1].occurred_at
        assert str(reencode) in published.lectures[0].master_playlist_url


def test_an_unpublished_course_never_comes_back() -> None:
    course, late = uuid4(), uuid4()
    catalogue = InMemoryCatalogue().handle_all(
        [*course_job(course, course), course_unpublished(course, at=T0 + HOUR)]
    )
    assert catalogue.courses == {}
    catalogue.handle_all(course_job(late, course, start=T0 + 2 * HOUR))
    assert catalogue.courses == {}
    assert catalogue.unpublished[course].unpublished_at == T0 + HOUR


def test_catalogue_events_reach_the_catalogue_and_never_the_job_state_machine() -> None:
    course = uuid4()
    projection = InMemoryJobProjection().handle_all(course_job(course, course))
    completed = projection.jobs[course]
    unpublished = course_unpublished(course)
    assert projection.handle(unpublished) == Catalogued(unpublished.event_id)
    assert projection.jobs[course] == completed
    assert projection.rejected == []
    assert projection.catalogue.courses == {}


def test_a_rejected_completion_publishes_nothing() -> None:
    course = uuid4()
    events = course_job(course, course, outcome=M.JOB_CANCELED)
    late_completion = event(M.JOB_COMPLETED, course, at=T0 + HOUR)
    projection = InMemoryJobProjection().handle_all([*events, late_completion])
    assert [r.rejection.name for r in projection.rejected] == ["TerminalState"]
    assert projection.catalogue.courses == {}


# --- any interleaving of the partitions gives the same catalogue ------------------------------------


@st.composite
def partitions(draw: st.DrawFn) -> list[list[Envelope]]:
    """Courses with re-encodes, failures and unpublishing, as per-partition sequences (one per job;
    a course's CourseUnpublished on the partition of its first job, after that job's events)."""
    lanes: list[list[Envelope]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        course = uuid4()
        first = course_job(course, course, start=T0 + draw(st.integers(0, 10)) * HOUR)
        if draw(st.booleans()):
            first.append(course_unpublished(course, at=T0 + draw(st.integers(0, 20)) * HOUR))
        lanes.append(first)
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            job = uuid4()
            outcome = draw(st.sampled_from([M.JOB_COMPLETED, M.JOB_COMPLETED, M.JOB_FAILED]))
            lanes.append(course_job(job, course, start=T0 + draw(st.integers(0, 20)) * HOUR, outcome=outcome))
    return lanes


@settings(max_examples=200, deadline=None)
@given(lanes=partitions(), draw=st.data())
def test_every_interleaving_of_the_partitions_gives_the_same_catalogue(
    lanes: list[list[Envelope]], draw: st.DataObject
) -> None:
    in_order = [e for lane in lanes for e in lane]
    # An interleaving: which lane the next event comes from, each lane kept in its own order.
    picks = draw.draw(st.permutations([i for i, lane in enumerate(lanes) for _ in lane]), label="order")
    cursors = [iter(lane) for lane in lanes]
    interleaved = [next(cursors[i]) for i in picks]
    one = InMemoryJobProjection().handle_all(in_order)
    other = InMemoryJobProjection().handle_all(interleaved)
    assert one.catalogue.courses == other.catalogue.courses
    assert one.catalogue.unpublished == other.catalogue.unpublished


# --- the titles form field ---------------------------------------------------------------------------


def test_titles_are_optional_cleaned_and_must_match_the_videos_one_for_one() -> None:
    assert check_titles(None, 3) is None
    assert check_titles([" 개요 ", "Joins, explained"], 2) == ["개요", "Joins, explained"]
    for values, videos, kind in (
        (["a"], 2, "titles-mismatch"),
        (["a", "b", "c"], 2, "titles-mismatch"),
        (["a", "   "], 2, "invalid-title"),
        (["a", "x" * 201], 2, "invalid-title"),
        (["a", "tab\there"], 2, "control-character"),
    ):
        with pytest.raises(ProblemError) as refused:
            check_titles(values, videos)
        assert (refused.value.status, refused.value.kind) == (422, kind)
        assert "titles" in refused.value.detail


# --- re-encoding: the new job over the retained sources ------------------------------------------------


def test_a_re_encode_copies_every_source_into_its_own_staging_and_keeps_the_course_and_its_titles() -> None:
    old, new = uuid4(), uuid4()
    sources = StagingManifest(
        job_id=old,
        owner="kim",
        course_name="데이터 과학 입문",
        curriculum="DS-101",
        videos=[
            StagedVideo(
                index=i,
                key=f"staging/{old}/videos/00{i}-lecture.mp4",
                filename=f"{i + 1}강.mp4",
                size_bytes=10,
                content_type="video/mp4",
                thumbnail=StagedFile(
                    key=f"staging/{old}/thumbnails/000-cover.jpg",
                    filename="cover.jpg",
                    size_bytes=5,
                    content_type="image/jpeg",
                )
                if i == 0
                else None,
            )
            for i in range(2)
        ],
    )
    course = CatalogueCourse(
        course_id=old,
        owner="kim",
        name="데이터 과학 입문",
        curriculum="DS-101",
        job_id=old,
        lectures=(QueuedLecture(index=0, title="개요", filename="1강.mp4"),),
    )
    job = plan(course, sources, new)
    assert job.copies == (
        (f"staging/{old}/videos/000-lecture.mp4", f"staging/{new}/videos/000-lecture.mp4"),
        (f"staging/{old}/thumbnails/000-cover.jpg", f"staging/{new}/thumbnails/000-cover.jpg"),
        (f"staging/{old}/videos/001-lecture.mp4", f"staging/{new}/videos/001-lecture.mp4"),
    )
    assert [v.key for v in job.manifest.videos] == [
        target for _, target in job.copies if "/videos/" in target
    ]
    assert job.manifest.videos[0].thumbnail is not None
    assert job.manifest.videos[0].thumbnail.key == f"staging/{new}/thumbnails/000-cover.jpg"
    assert (job.queued.course_id, job.queued.staging_prefix) == (old, f"staging/{new}/")
    assert job.queued.manifest_key == f"staging/{new}/manifest.json"
    assert [(lecture.title, lecture.filename) for lecture in job.queued.lectures] == [
        ("개요", "1강.mp4"),
        ("Lecture 2", "2강.mp4"),  # a lecture the catalogue has no title for
    ]
