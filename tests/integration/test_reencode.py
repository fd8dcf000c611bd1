"""`coursecast reencode COURSE_ID` on the real stack: a new job of the course, run by a real encoder over
the retained sources; once it completes, the catalogue plays its objects, with the same lecture ids."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

import pytest

from devtools.demo import coursecast
from services.core.catalogue import InMemoryCatalogue
from services.core.settings import Settings
from services.projector.catalogue import catalogue_of
from services.projector.store import JobStore
from tests.support.encoder import FAST, queue_job
from tests.support.fixtures import QUICK_RETRY
from tests.support.observe import lecture_task, wait_for
from tests.support.services import running
from tests.support.staging import make_clip, new_job_id, stage_course

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.integration, pytest.mark.own(partitions=2, **QUICK_RETRY)]


def catalogue(own: Settings) -> InMemoryCatalogue:
    store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    try:
        return catalogue_of(store.connection)
    finally:
        store.close()


def test_a_re_encoded_course_plays_the_new_jobs_objects_with_the_same_lecture_ids(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    course_id = new_job_id()
    clips = [make_clip(tmp_path / "1강 배열.mp4", seconds=2), make_clip(tmp_path / "2강 정렬.mp4", seconds=2)]
    manifest = stage_course(own, s3, course_id, clips)
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**FAST)
        queue_job(own, manifest)
        wait_for(own, course_id, {"completed"}, 90, run.processes)
        before = catalogue(own).courses[course_id]
        reencoded = coursecast(own, "reencode", str(course_id))
        new_job = UUID(reencoded.stdout.strip().splitlines()[-1])
        done = wait_for(own, new_job, {"completed", "failed"}, 90, run.processes)
        after = catalogue(own).courses[course_id]

    assert done.status.value == "completed", (done.error_type, done.error_message)
    assert done.owner == before.owner
    assert (before.job_id, after.job_id) == (course_id, new_job)
    assert [lecture.lecture_id for lecture in after.lectures] == [
        lecture.lecture_id for lecture in before.lectures
    ]
    assert [lecture.title for lecture in after.lectures] == ["1강 배열", "2강 정렬"]
    # Each lecture plays what the new job's task for it wrote (hls/<task>/<attempt>/<lecture>/).
    for old, lecture in zip(before.lectures, after.lectures, strict=True):
        task = lecture_task(own, new_job, lecture.index)
        assert f"/hls/{task.job_id}/1/{lecture.index}/master.m3u8" in lecture.master_playlist_url
        assert f"/hls/{task.job_id}/" in lecture.thumbnail_url
        assert lecture.master_playlist_url != old.master_playlist_url
    assert after.published_at == before.published_at
    # The new job ran over its own copy of the sources, which it keeps for the next re-encode.
    copied = s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{new_job}/videos/")
    assert copied.get("KeyCount", 0) == 2


# Without retention: every process of the test (the conductor, which ends the course, included) deletes
# a completed course's sources at once.
@pytest.mark.own(partitions=2, source_retention_days=0, **QUICK_RETRY)
def test_a_course_whose_sources_expired_or_that_is_not_published_is_refused_with_a_reason(
    own: Settings, s3: S3Client, tmp_path: Path
) -> None:
    course_id = new_job_id()
    manifest = stage_course(own, s3, course_id, [make_clip(tmp_path / "lecture.mp4", seconds=1)])
    unknown = coursecast(own, "reencode", str(new_job_id()), check=False)
    with running(own, tmp_path) as run:
        run.projector()
        run.encoder(**FAST)
        queue_job(own, manifest)
        wait_for(own, course_id, {"completed"}, 90, run.processes)
        # Without retention the sources are deleted once the course's completion is accepted.
        deadline = time.monotonic() + 30
        while s3.list_objects_v2(Bucket=own.s3_bucket, Prefix=f"staging/{course_id}/").get("KeyCount", 0):
            assert time.monotonic() < deadline, "the sources were not deleted"
            time.sleep(0.2)
    expired = coursecast(own, "reencode", str(course_id), check=False)

    assert unknown.returncode == 1
    assert "no published course" in unknown.stdout
    assert expired.returncode == 1
    assert "no longer retained" in expired.stdout
    assert list(catalogue(own).courses) == [course_id]
