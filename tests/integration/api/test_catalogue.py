"""The published course on the real stack: titles kept in the events, the catalogue read model the
projector builds from the log, its routes, and unpublishing (an event, then the objects go)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
import pytest

from services.core.catalogue import lecture_id
from services.core.messages import new_message
from services.core.payloads import (
    JobCompleted,
    JobOutputs,
    JobQueued,
    JobStarted,
    PublishedVideo,
    QueuedLecture,
    Rendition,
)
from services.core.settings import Settings
from services.core.storage import s3_client
from tests.support.api import ApiStack
from tests.support.projector import produce

PROBLEM = "application/problem+json"
T = TypeVar("T")
RENDITION = Rendition(name="720p", width=1280, height=720, bandwidth=3_000_000, codecs="avc1")


def until(condition: Callable[[], T | None], what: str, timeout_s: float = 20) -> T:
    """Poll `condition` until it returns something (tests only; the api itself never polls)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found is not None and found is not False:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def submit(
    client: httpx.Client, clip: Path, filenames: list[str], titles: list[str] | None = None
) -> httpx.Response:
    """POST a course of one clip per file name, with the form field 'titles' repeated if given."""
    body = clip.read_bytes()
    data: dict[str, Any] = {"name": "데이터 과학 입문", "curriculum": "DS-101"}
    if titles is not None:
        data["titles"] = titles
    files = [("videos", (name, body, "video/mp4")) for name in filenames]
    return client.post("/v1/courses", data=data, files=files)


def publish(settings: Settings, job_id: UUID, videos: int, *, attempt: int = 1) -> list[str]:
    """Complete the job as an encoder would (JobStarted, JobCompleted), with objects really in S3
    under hls/<job_id>/<attempt>/; returns the master playlist URLs."""
    s3 = s3_client(settings)
    folder = f"hls/{job_id}/{attempt}"
    published = []
    for index in range(videos):
        for name in ("master.m3u8", "720p/index.m3u8", "thumbnail.webp"):
            s3.put_object(Bucket=settings.s3_bucket, Key=f"{folder}/{index}/{name}", Body=b"x")
        url = f"http://cdn.test/{folder}/{index}"
        published.append(
            PublishedVideo(
                video_index=index,
                master_playlist_url=f"{url}/master.m3u8",
                renditions=(
                    Rendition(name="720p", width=1280, height=720, bandwidth=3_000_000, codecs="avc1"),
                ),
                duration_s=60.0 + index,
                thumbnail_url=f"{url}/thumbnail.webp",
                poster_url=None,
            )
        )
    produce(
        settings,
        [
            new_message(JobStarted(worker="test@host:1"), job_id=job_id, attempt=attempt, producer="test"),
            new_message(
                JobCompleted(outputs=JobOutputs(videos=tuple(published))),
                job_id=job_id,
                attempt=attempt,
                producer="test",
            ),
        ],
    )
    return [video.master_playlist_url for video in published]


def course_of(client: httpx.Client, course_id: UUID | str, *, job_id: UUID | None = None) -> dict[str, Any]:
    """GET the course once it is published (by `job_id`'s objects, when given)."""

    def published() -> dict[str, Any] | None:
        answer = client.get(f"/v1/courses/{course_id}")
        if answer.status_code != 200:
            return None
        course: dict[str, Any] = answer.json()
        return course if job_id is None or course["job_id"] == str(job_id) else None

    return until(published, f"course {course_id} published")


def objects_under(settings: Settings, prefix: str) -> list[str]:
    s3 = s3_client(settings)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


# --- titles --------------------------------------------------------------------------------------


def test_titles_travel_in_job_queued_and_the_course_appears_only_once_its_job_completed(
    api_stack: ApiStack, clip: Path
) -> None:
    name, token = api_stack.user()
    with api_stack.client(token) as client:
        accepted = submit(client, clip, ["01-intro.mp4", "02 조인.mp4"], titles=["개요", "Joins, explained"])
        assert accepted.status_code == 202, accepted.text
        job_id = UUID(accepted.json()["job_id"])
        history = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
        before = client.get(f"/v1/courses/{job_id}")
        listed_before = client.get("/v1/courses").json()["items"]
        urls = publish(api_stack.settings, job_id, videos=2)
        course = course_of(client, job_id)
    queued = history[0]
    assert (queued["type"], queued["data"]["course_id"]) == ("JobQueued", str(job_id))
    assert queued["data"]["lectures"] == [
        {"index": 0, "title": "개요", "filename": "01-intro.mp4"},
        {"index": 1, "title": "Joins, explained", "filename": "02 조인.mp4"},
    ]
    assert before.status_code == 404
    assert before.headers["content-type"] == PROBLEM
    assert listed_before == []
    assert (course["course_id"], course["job_id"], course["owner"]) == (str(job_id), str(job_id), name)
    assert (course["name"], course["curriculum"]) == ("데이터 과학 입문", "DS-101")
    assert [
        (lecture["lecture_id"], lecture["index"], lecture["title"], lecture["filename"])
        for lecture in course["lectures"]
    ] == [
        (str(lecture_id(job_id, 0)), 0, "개요", "01-intro.mp4"),
        (str(lecture_id(job_id, 1)), 1, "Joins, explained", "02 조인.mp4"),
    ]
    assert [lecture["master_playlist_url"] for lecture in course["lectures"]] == urls
    assert [lecture["duration_s"] for lecture in course["lectures"]] == [60.0, 61.0]


def test_without_titles_each_lecture_is_titled_after_its_file_name_without_the_extension(
    api_stack: ApiStack, clip: Path
) -> None:
    with api_stack.instructor() as client:
        accepted = submit(client, clip, ["1강 소개.mp4", "README"])
        job_id = UUID(accepted.json()["job_id"])
        publish(api_stack.settings, job_id, videos=2)
        course = course_of(client, job_id)
    assert [lecture["title"] for lecture in course["lectures"]] == ["1강 소개", "README"]


@pytest.mark.parametrize(
    ("titles", "kind"),
    [
        (["only one"], "titles-mismatch"),
        (["one", "two", "three"], "titles-mismatch"),
        (["fine", ""], "invalid-title"),
        (["fine", "x" * 201], "invalid-title"),
        (["fine", "bell\x07"], "control-character"),
        (["fine", "two\nlines"], "control-character"),
    ],
)
def test_bad_titles_get_a_problem_naming_the_field_and_queue_nothing(
    api_stack: ApiStack, clip: Path, titles: list[str], kind: str
) -> None:
    with api_stack.instructor() as client:
        answer = submit(client, clip, ["a.mp4", "b.mp4"], titles=titles)
        jobs = client.get("/v1/jobs").json()["items"]
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"].endswith(f"/{kind}")
    assert "titles" in problem["detail"]
    assert jobs == []


# --- reading the catalogue -------------------------------------------------------------------------


def test_the_course_list_is_the_callers_own_newest_first_and_paginated_by_cursor(
    api_stack: ApiStack, clip: Path
) -> None:
    _, token = api_stack.user()
    with api_stack.client(token) as client, api_stack.instructor() as other:
        ids = []
        for _ in range(3):
            job_id = UUID(submit(client, clip, ["a.mp4"]).json()["job_id"])
            publish(api_stack.settings, job_id, videos=1)
            course_of(client, job_id)
            ids.append(str(job_id))
        first = client.get("/v1/courses", params={"limit": 2}).json()
        second = client.get("/v1/courses", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        bad_cursor = client.get("/v1/courses", params={"cursor": "not-a-cursor"})
        theirs = other.get("/v1/courses").json()
        not_theirs = other.get(f"/v1/courses/{ids[0]}")
        bad_id = client.get("/v1/courses/not-a-uuid")
    assert [c["course_id"] for c in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert all(len(c["lectures"]) == 1 for c in first["items"])
    assert (bad_cursor.status_code, bad_cursor.headers["content-type"]) == (422, PROBLEM)
    assert bad_cursor.json()["type"].endswith("/invalid-cursor")
    assert theirs == {"items": [], "next_cursor": None}
    assert (not_theirs.status_code, not_theirs.json()["type"]) == (
        404,
        "https://coursecast.dev/problems/course-not-found",
    )
    assert (bad_id.status_code, bad_id.headers["content-type"]) == (422, PROBLEM)


def test_a_re_encode_switches_every_lecture_to_the_new_objects_and_keeps_the_lecture_ids(
    api_stack: ApiStack, clip: Path
) -> None:
    name, token = api_stack.user()
    with api_stack.client(token) as client:
        course_id = UUID(submit(client, clip, ["a.mp4", "b.mp4"], titles=["A", "B"]).json()["job_id"])
        publish(api_stack.settings, course_id, videos=2)
        before = course_of(client, course_id)
        # A re-encode: a new job of the same course (as `coursecast reencode` queues it).
        reencode = uuid4()
        lectures = (QueuedLecture(index=0, title="A"), QueuedLecture(index=1, title="B"))
        queued = JobQueued(
            owner=name,
            course_name="데이터 과학 입문",
            curriculum="DS-101",
            staging_prefix=f"staging/{reencode}/",
            manifest_key=f"staging/{reencode}/manifest.json",
            video_count=2,
            course_id=course_id,
            lectures=lectures,
        )
        produce(api_stack.settings, [new_message(queued, job_id=reencode, attempt=1, producer="test")])
        new_urls = publish(api_stack.settings, reencode, videos=2)
        after = course_of(client, course_id, job_id=reencode)
    assert [lecture["master_playlist_url"] for lecture in after["lectures"]] == new_urls
    assert all(str(reencode) in lecture["thumbnail_url"] for lecture in after["lectures"])
    assert [lecture["lecture_id"] for lecture in after["lectures"]] == [
        lecture["lecture_id"] for lecture in before["lectures"]
    ]
    assert after["published_at"] == before["published_at"]
    assert after["updated_at"] > before["updated_at"]


# --- unpublishing --------------------------------------------------------------------------------


def test_delete_unpublishes_by_an_event_removes_the_objects_and_a_repeat_repairs_and_answers_204(
    api_stack: ApiStack, clip: Path
) -> None:
    settings = api_stack.settings
    _, token = api_stack.user()
    with api_stack.client(token) as client, api_stack.instructor() as other:
        course_id = UUID(submit(client, clip, ["a.mp4"]).json()["job_id"])
        publish(settings, course_id, videos=1)
        course_of(client, course_id)
        assert objects_under(settings, f"hls/{course_id}/")
        foreign = other.delete(f"/v1/courses/{course_id}")
        unknown = client.delete(f"/v1/courses/{uuid4()}")
        deleted = client.delete(f"/v1/courses/{course_id}")
        gone = client.get(f"/v1/courses/{course_id}")
        left = objects_under(settings, f"hls/{course_id}/")
        history = [e["type"] for e in client.get(f"/v1/jobs/{course_id}/events").json()["items"]]
        job = client.get(f"/v1/jobs/{course_id}").json()
        # As if the first DELETE had died after the event, before the objects were deleted.
        s3_client(settings).put_object(
            Bucket=settings.s3_bucket, Key=f"hls/{course_id}/1/0/late.ts", Body=b"x"
        )
        again = client.delete(f"/v1/courses/{course_id}")
        left_again = objects_under(settings, f"hls/{course_id}/")
        listed = client.get("/v1/courses").json()["items"]
    assert (foreign.status_code, foreign.headers["content-type"]) == (404, PROBLEM)
    assert unknown.status_code == 404
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert gone.status_code == 404
    assert left == []
    # The history stays: the event is kept under the course's first job, which is still completed.
    assert history == ["JobQueued", "JobStarted", "JobCompleted", "CourseUnpublished"]
    assert job["status"] == "completed"
    assert again.status_code == 204
    assert left_again == []
    assert listed == []


def test_a_re_encode_completing_after_the_course_was_unpublished_does_not_bring_it_back(
    api_stack: ApiStack, clip: Path
) -> None:
    name, token = api_stack.user()
    with api_stack.client(token) as client:
        course_id = UUID(submit(client, clip, ["a.mp4"]).json()["job_id"])
        publish(api_stack.settings, course_id, videos=1)
        course_of(client, course_id)
        late = uuid4()
        queued = JobQueued(
            owner=name,
            course_name="데이터 과학 입문",
            curriculum="DS-101",
            staging_prefix=f"staging/{late}/",
            manifest_key=f"staging/{late}/manifest.json",
            video_count=1,
            course_id=course_id,
            lectures=(QueuedLecture(index=0, title="A"),),
        )
        produce(api_stack.settings, [new_message(queued, job_id=late, attempt=1, producer="test")])
        assert client.delete(f"/v1/courses/{course_id}").status_code == 204
        publish(api_stack.settings, late, videos=1)
        # The completion and its catalogue change are one transaction: once the job shows completed,
        # the catalogue has said its last word on it.
        until(lambda: client.get(f"/v1/jobs/{late}").json()["status"] == "completed", "the late completion")
        answer = client.get(f"/v1/courses/{course_id}")
    assert answer.status_code == 404
