"""The local state of `coursecast publish`: what makes an upload resumable, and how it is kept."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.client.publish import idempotency_key
from services.client.resume import FileUpload, PartPlan, UploadState, file_key


def pending(expires_in: timedelta) -> FileUpload:
    return FileUpload(
        upload_id="0b9f7c1e-5d1a-4c43-9c38-0d4f3c3b8a11",
        expires_at=datetime.now(UTC) + expires_in,
        part_size_bytes=8,
        parts=[PartPlan(1, "http://s3/part-1", 8), PartPlan(2, "http://s3/part-2", 3)],
        etags={1: '"etag-1"'},
    )


def test_a_file_is_known_by_its_path_size_and_modification_time(tmp_path: Path) -> None:
    video = tmp_path / "lecture.mp4"
    video.write_bytes(b"12345678901")
    key = file_key(video)
    assert key == file_key(tmp_path / "." / "lecture.mp4")
    os.utime(video, ns=(1, 1))
    assert file_key(video) != key, "a touched file is a new file"
    video.write_bytes(b"123")
    assert file_key(video) != key


def test_the_state_survives_a_new_process_and_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "uploads.json"
    UploadState(path).put("a|11|1", pending(timedelta(hours=1)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = UploadState(path).resumable("a|11|1")
    assert again is not None
    assert again.etags == {1: '"etag-1"'}
    assert [part.url for part in again.parts] == ["http://s3/part-1", "http://s3/part-2"]
    assert list(path.parent.iterdir()) == [path], "no temporary file left behind"


def test_an_upload_about_to_expire_is_not_resumed_but_a_completed_one_is(tmp_path: Path) -> None:
    state = UploadState(tmp_path / "uploads.json")
    state.put("soon", pending(timedelta(minutes=1)))
    state.put("later", pending(timedelta(hours=1)))
    done = pending(timedelta(minutes=1))
    done.completed = True
    state.put("done", done)
    assert state.resumable("soon") is None
    assert state.resumable("later") is not None
    assert state.resumable("done") is not None
    state.forget(["later", "done"])
    assert set(UploadState(tmp_path / "uploads.json").files) == {"soon"}


def test_the_same_uploads_and_form_make_the_same_idempotency_key() -> None:
    key = idempotency_key("강좌", "CS-1", ["a", "b"], [])
    assert key == idempotency_key("강좌", "CS-1", ["a", "b"], [])
    assert key != idempotency_key("강좌", "CS-1", ["b", "a"], [])
    assert key != idempotency_key("강좌", "CS-1", ["a", "b"], ["1강", "2강"])
    assert key.isascii()
    assert len(key) <= 255
