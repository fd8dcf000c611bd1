"""The api on the real stack: uploads, publishing, reads, actions, isolation, problems."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from services.api.auth import Role, revoke_user_tokens
from services.core import codec
from services.core.kafka_config import consumer_config
from services.core.manifest import StagingManifest
from services.core.messages import Envelope, MessageType, Payload, new_message
from services.core.payloads import (
    CancelJob,
    JobCanceled,
    JobCompleted,
    JobFailed,
    JobOutputs,
    JobProgress,
    JobStarted,
    ProgressStep,
    PublishCourse,
    PublishedVideo,
    Rendition,
)
from services.core.settings import Settings
from services.core.storage import s3_client
from tests.support.api import ApiStack, api_of_own, direct_upload
from tests.support.projector import produce

M = MessageType
PROBLEM = "application/problem+json"


def submit(
    client: httpx.Client,
    clip: Path,
    *,
    name: str = "데이터 과학 입문",
    filename: str = "강의 1.mp4",
    headers: dict[str, str] | None = None,
    videos: int = 1,
) -> httpx.Response:
    """POST a course with `videos` copies of the clip."""
    body = clip.read_bytes()
    files = [("videos", (filename, body, "video/mp4")) for _ in range(videos)]
    return client.post(
        "/v1/courses", data={"name": name, "curriculum": "CS-101"}, files=files, headers=headers or {}
    )


def wait_status(client: httpx.Client, job_id: str, status: str, timeout_s: float = 20) -> dict[str, Any]:
    """Poll GET until the job has `status` (tests only; the api itself never polls)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == status:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not become {status}: {job}")


def staged_keys(settings: Settings) -> list[str]:
    """Every object of the module's bucket under staging/."""
    s3 = s3_client(settings)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket, Prefix="staging/")
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def commands_of(settings: Settings, job_id: str, expected: int) -> list[Envelope]:
    """The committed commands of a job on the module's commands topic (waits for `expected` of them)."""
    consumer = Consumer(consumer_config(settings, f"t-{uuid4()}", "test"))
    topic = settings.commands_topic
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    found: list[Envelope] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(found) < expected:
        message = consumer.poll(0.5)
        if message is None or message.error():
            continue
        envelope = codec.decode(message.value())
        if str(envelope.job_id) == job_id:
            found.append(envelope)
    consumer.close()
    return found


def drive(settings: Settings, job_id: str, *types: str, attempt: int = 1) -> None:
    """Append encoder events for the job (the encoder is not part of these tests)."""
    video = PublishedVideo(
        video_index=0,
        master_playlist_url=f"http://cdn/{job_id}/0/master.m3u8",
        renditions=(Rendition(name="360p", width=640, height=360, bandwidth=900000, codecs="avc1.64001e"),),
        duration_s=1.0,
        thumbnail_url=f"http://cdn/{job_id}/0/thumb.jpg",
        poster_url=None,
    )
    data: dict[str, Payload] = {
        M.JOB_STARTED: JobStarted(worker="test@host:1"),
        M.JOB_CANCELED: JobCanceled(requested_by="encoder"),
        M.JOB_PROGRESS: JobProgress(percent=40.0, step=ProgressStep.TRANSCODING),
        M.JOB_FAILED: JobFailed(
            error_type="invalid_media", message="the video has no frames", retryable=False
        ),
        M.JOB_COMPLETED: JobCompleted(outputs=JobOutputs(videos=(video,))),
    }
    produce(
        settings,
        [new_message(data[t], job_id=UUID(job_id), attempt=attempt, producer="test") for t in types],
    )


def raw_multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart body with file names sent byte for byte (httpx would percent-encode control characters)."""
    boundary = uuid4().hex
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, filename, body in files:
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'.encode()
        )
        out += b"Content-Type: video/mp4\r\n\r\n" + body + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


# --- accepting a course --------------------------------------------------------------------------


def test_an_uploaded_course_is_queued_at_once_with_its_manifest_and_both_messages(
    api_stack: ApiStack, clip: Path
) -> None:
    name, token = api_stack.user()
    with api_stack.client(token) as client:
        accepted = submit(client, clip)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert accepted.headers["Location"] == f"/v1/jobs/{job_id}"
        # Read-your-writes: the very next GET shows the job, queued.
        job = client.get(accepted.headers["Location"]).json()
    assert (job["status"], job["attempt"], job["owner"], job["course_name"]) == (
        "queued",
        1,
        name,
        "데이터 과학 입문",
    )
    s3 = s3_client(api_stack.settings)
    raw = s3.get_object(Bucket=api_stack.settings.s3_bucket, Key=f"staging/{job_id}/manifest.json")[
        "Body"
    ].read()
    manifest = StagingManifest.from_json(raw)
    video = manifest.videos[0]
    assert video.filename == "강의 1.mp4"
    assert video.key.startswith(f"staging/{job_id}/videos/000-")
    assert video.key.isascii()
    assert video.size_bytes == clip.stat().st_size
    assert video.content_type == "video/mp4"
    commands = commands_of(api_stack.settings, job_id, 1)
    assert [c.type for c in commands] == [M.PUBLISH_COURSE]
    assert isinstance(commands[0].data, PublishCourse)
    assert commands[0].data.staging_prefix == f"staging/{job_id}/"


def test_hostile_filenames_are_sanitised_in_keys_and_kept_readable_in_the_manifest(
    api_stack: ApiStack, clip: Path
) -> None:
    _, token = api_stack.user()
    # (A name with control characters is refused outright: tests/integration/api/test_hostile.py.)
    hostile = ["../../../etc/passwd.mp4", "evil name[31m.mp4", "가" * 1000 + ".mp4"]
    body, content_type = raw_multipart(
        {"name": "Hostile", "curriculum": "SEC-1"}, [("videos", n, clip.read_bytes()) for n in hostile]
    )
    with api_stack.client(token) as client:
        accepted = client.post("/v1/courses", content=body, headers={"Content-Type": content_type})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    raw = (
        s3_client(api_stack.settings)
        .get_object(Bucket=api_stack.settings.s3_bucket, Key=f"staging/{job_id}/manifest.json")["Body"]
        .read()
    )
    manifest = StagingManifest.from_json(raw)
    for video in manifest.videos:
        tail = video.key.removeprefix(f"staging/{job_id}/videos/")
        assert "/" not in tail
        assert ".." not in tail
        assert tail.isascii()
        assert tail.isprintable()
        assert len(tail) <= 90
    assert manifest.videos[0].filename == "../../../etc/passwd.mp4"
    assert manifest.videos[1].filename == "evil name[31m.mp4"
    assert manifest.videos[2].filename.startswith("가" * 200)
    assert manifest.videos[2].filename.endswith(".mp4")
    assert len(manifest.videos[2].filename) <= 255


def test_the_same_idempotency_key_returns_the_same_job_and_queues_no_second_one(
    api_stack: ApiStack, clip: Path
) -> None:
    key = {"Idempotency-Key": f"retry-{uuid4()}"}
    with api_stack.instructor() as client:
        first = submit(client, clip, headers=key)
        second = submit(client, clip, headers=key)
        other = submit(client, clip, headers={"Idempotency-Key": f"other-{uuid4()}"})
        listed = client.get("/v1/jobs").json()["items"]
    assert first.status_code == second.status_code == other.status_code == 202
    assert first.json()["job_id"] == second.json()["job_id"] != other.json()["job_id"]
    assert second.headers["Location"] == first.headers["Location"]
    assert len(listed) == 2


def test_concurrent_requests_with_one_idempotency_key_never_make_two_jobs(
    api_stack: ApiStack, clip: Path
) -> None:
    _, token = api_stack.user()
    key = {"Idempotency-Key": f"race-{uuid4()}"}
    answers: list[httpx.Response] = []

    def post() -> None:
        with api_stack.client(token) as client:
            answers.append(submit(client, clip, headers=key))

    racers = [threading.Thread(target=post) for _ in range(3)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    accepted = {a.json()["job_id"] for a in answers if a.status_code == 202}
    assert len(accepted) == 1
    assert all(a.status_code == 202 or a.json()["type"].endswith("idempotency-in-progress") for a in answers)
    with api_stack.client(token) as client:
        assert [j["job_id"] for j in client.get("/v1/jobs").json()["items"]] == list(accepted)


@pytest.mark.parametrize(
    ("case", "status", "kind"),
    [
        ("text file named mp4", 415, "not-a-video"),
        ("mp4 header with no streams", 415, "not-a-video"),
        ("empty file", 422, "empty-file"),
        ("too many videos", 422, "too-many-files"),
        ("missing name", 422, "missing-field"),
        ("missing videos", 422, "missing-field"),
        ("unknown curriculum format", 422, "unknown-curriculum-format"),
        ("file over the limit", 413, "too-large"),
        ("json instead of a form", 415, "unsupported-media-type"),
        ("more thumbnails than videos", 422, "too-many-files"),
        ("thumbnail that is not an image", 422, "not-an-image"),
    ],
)
def test_each_kind_of_bad_input_gets_its_own_problem_document_and_stages_nothing(
    api_stack: ApiStack, clip: Path, case: str, status: int, kind: str
) -> None:
    _, token = api_stack.user()
    video = ("videos", ("a.mp4", clip.read_bytes(), "video/mp4"))
    fields: dict[str, str] = {"name": "Course", "curriculum": "CS-101"}
    files: list[tuple[str, tuple[str, bytes, str]]] = [video]
    if case == "text file named mp4":
        files = [("videos", ("a.mp4", b"this is not a video at all", "video/mp4"))]
    elif case == "mp4 header with no streams":
        files = [("videos", ("a.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000, "video/mp4"))]
    elif case == "empty file":
        files = [("videos", ("a.mp4", b"", "video/mp4"))]
    elif case == "too many videos":
        files = [video] * 4
    elif case == "missing name":
        del fields["name"]
    elif case == "missing videos":
        files = []
    elif case == "unknown curriculum format":
        fields["curriculum"] = "<script>\n"
    elif case == "file over the limit":
        files = [("videos", ("big.mp4", clip.read_bytes()[:64] + b"\x00" * (65 * 1024**2), "video/mp4"))]
    elif case == "more thumbnails than videos":
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
        files = [
            video,
            ("thumbnails", ("1.png", png, "image/png")),
            ("thumbnails", ("2.png", png, "image/png")),
        ]
    elif case == "thumbnail that is not an image":
        files = [video, ("thumbnails", ("1.png", b"GIF89a not really", "image/png"))]
    before = staged_keys(api_stack.settings)
    with api_stack.client(token) as client:
        if case == "json instead of a form":
            answer = client.post("/v1/courses", json=fields)
        else:
            parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
                (k, (None, v, None)) for k, v in fields.items()
            ]
            answer = client.post("/v1/courses", files=[*parts, *files])
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["type"].endswith("/" + kind)
    assert problem["status"] == status
    assert problem["detail"]
    assert staged_keys(api_stack.settings) == before


# --- authentication and isolation ----------------------------------------------------------------


def test_a_missing_or_unknown_token_is_401_with_www_authenticate(api_stack: ApiStack) -> None:
    with api_stack.client() as anonymous, api_stack.client("cc_not-a-real-token") as forged:
        for client in (anonymous, forged):
            for path in ("/v1/jobs", f"/v1/jobs/{uuid4()}", f"/v1/jobs/{uuid4()}/events", "/v1/uploads/x"):
                answer = client.get(path)
                assert answer.status_code == 401, path
                assert answer.headers["WWW-Authenticate"].startswith("Bearer")
                assert answer.headers["content-type"] == PROBLEM


def test_a_revoked_token_stops_working_on_the_very_next_request(api_stack: ApiStack, clip: Path) -> None:
    name, token = api_stack.user()
    with api_stack.client(token) as client:
        job_id = submit(client, clip).json()["job_id"]
        assert client.get("/v1/jobs").status_code == 200
        assert client.get(f"/v1/jobs/{job_id}").status_code == 200
        with psycopg.connect(api_stack.settings.database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(api_stack.settings.database_schema))
            )
            assert revoke_user_tokens(conn, name) == 1
        listed = client.get("/v1/jobs")
        one = client.get(f"/v1/jobs/{job_id}")
    for answer in (listed, one):
        assert answer.status_code == 401
        assert "revoked" in answer.json()["detail"]


def test_an_instructor_gets_404_for_another_instructors_job_on_every_route_and_an_admin_sees_it(
    api_stack: ApiStack, clip: Path
) -> None:
    _, owner_token = api_stack.user()
    _, other_token = api_stack.user()
    _, admin_token = api_stack.user(Role.ADMIN)
    with api_stack.client(owner_token) as owner:
        job_id = submit(owner, clip).json()["job_id"]
    with api_stack.client(other_token) as other:
        for method, path in [
            ("GET", f"/v1/jobs/{job_id}"),
            ("GET", f"/v1/jobs/{job_id}/events"),
            ("GET", f"/v1/jobs/{job_id}/stream"),
            ("POST", f"/v1/jobs/{job_id}/retry"),
            ("POST", f"/v1/jobs/{job_id}/cancel"),
        ]:
            answer = other.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.headers["content-type"] == PROBLEM
        assert other.get("/v1/jobs").json()["items"] == []
    with api_stack.client(admin_token) as admin:
        assert admin.get(f"/v1/jobs/{job_id}").json()["job_id"] == job_id
        assert job_id in {j["job_id"] for j in admin.get("/v1/jobs", params={"limit": 200}).json()["items"]}


def test_another_users_direct_upload_is_404(api_stack: ApiStack) -> None:
    _, token = api_stack.user()
    _, other_token = api_stack.user()
    with api_stack.client(token) as client:
        upload = client.post("/v1/uploads", json={"filename": "a.mp4", "size_bytes": 10}).json()
    with api_stack.client(other_token) as other:
        assert other.get(f"/v1/uploads/{upload['upload_id']}").status_code == 404
        done = other.post(
            f"/v1/uploads/{upload['upload_id']}/complete", json={"parts": [{"part_number": 1, "etag": "x"}]}
        )
        assert done.status_code == 404


# --- reading -------------------------------------------------------------------------------------


def test_the_job_list_is_newest_first_filtered_by_status_and_paginated_by_cursor(
    api_stack: ApiStack, clip: Path
) -> None:
    with api_stack.instructor() as client:
        ids = [submit(client, clip, name=f"Course {i}").json()["job_id"] for i in range(3)]
        drive(api_stack.settings, ids[0], M.JOB_STARTED)
        wait_status(client, ids[0], "processing")
        first = client.get("/v1/jobs", params={"limit": 2}).json()
        second = client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        queued = client.get("/v1/jobs", params={"status": "queued"}).json()
        bad = client.get("/v1/jobs", params={"cursor": "garbage"})
    assert [j["job_id"] for j in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None
    assert {j["job_id"] for j in queued["items"]} == set(ids[1:])
    assert bad.status_code == 422
    assert bad.headers["content-type"] == PROBLEM


def test_the_stream_delivers_progress_and_the_final_status_then_ends(api_stack: ApiStack, clip: Path) -> None:
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        seen: list[dict[str, Any]] = []

        def read() -> None:
            with client.stream("GET", f"/v1/jobs/{job_id}/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        seen.append({"event": event, **json.loads(line.removeprefix("data: "))})

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.5)
        drive(api_stack.settings, job_id, M.JOB_STARTED)
        time.sleep(0.3)
        drive(api_stack.settings, job_id, M.JOB_PROGRESS)
        time.sleep(0.3)
        drive(api_stack.settings, job_id, M.JOB_COMPLETED)
        reader.join(20)
    assert not reader.is_alive(), "the stream did not end after the job completed"
    statuses = [(e["event"], e.get("status"), e.get("progress_percent")) for e in seen]
    assert statuses[0] == ("job", "queued", 0.0)
    assert ("job", "processing", 40.0) in statuses
    assert statuses[-2][:2] == ("job", "completed")
    assert statuses[-1] == ("end", "completed", None)
    final = seen[-2]
    assert final["outputs"]["videos"][0]["master_playlist_url"].endswith("/0/master.m3u8")


def test_the_history_includes_rejected_events_with_their_reasons(api_stack: ApiStack, clip: Path) -> None:
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        drive(api_stack.settings, job_id, M.JOB_STARTED, M.JOB_COMPLETED, M.JOB_FAILED)
        wait_status(client, job_id, "completed")
        time.sleep(0.5)
        history = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    assert [e["type"] for e in history] == ["JobQueued", "JobStarted", "JobCompleted", "JobFailed"]
    late = history[-1]
    assert late["rejected"]
    assert late["rejection"] == "TerminalState"
    assert "ended" in late["rejection_reason"]
    assert not any(e["rejected"] for e in history[:-1])


# --- acting --------------------------------------------------------------------------------------


def test_a_failed_job_is_retried_as_the_next_attempt_and_other_states_get_409(
    api_stack: ApiStack, clip: Path
) -> None:
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        refused = client.post(f"/v1/jobs/{job_id}/retry")
        drive(api_stack.settings, job_id, M.JOB_STARTED, M.JOB_FAILED)
        wait_status(client, job_id, "failed")
        retried = client.post(f"/v1/jobs/{job_id}/retry")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == PROBLEM
    assert "queued" in refused.json()["detail"]
    assert retried.status_code == 202
    assert (retried.json()["status"], retried.json()["attempt"]) == ("queued", 2)
    commands = commands_of(api_stack.settings, job_id, 2)
    assert [(c.type, c.attempt) for c in commands] == [(M.PUBLISH_COURSE, 1), (M.PUBLISH_COURSE, 2)]


def test_a_queued_job_is_canceled_and_an_ended_job_gets_409_with_the_reason(
    api_stack: ApiStack, clip: Path
) -> None:
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        assert any(k.startswith(f"staging/{job_id}/") for k in staged_keys(api_stack.settings))
        canceled = client.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "wrong file"})
        again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert not [k for k in staged_keys(api_stack.settings) if k.startswith(f"staging/{job_id}/")]
    assert canceled.status_code == 202
    assert canceled.json()["status"] == "canceled"
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    assert "canceled" in again.json()["detail"]
    assert again.json()["job_status"] == "canceled"
    commands = commands_of(api_stack.settings, job_id, 2)
    assert [c.type for c in commands] == [M.PUBLISH_COURSE, M.CANCEL_JOB]
    assert isinstance(commands[1].data, CancelJob)
    assert commands[1].data == CancelJob(requested_by=commands[1].data.requested_by, reason="wrong file")


def test_a_processing_job_gets_cancel_job_and_ends_canceled_by_the_encoders_event(
    api_stack: ApiStack, clip: Path
) -> None:
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        drive(api_stack.settings, job_id, M.JOB_STARTED)
        wait_status(client, job_id, "processing")
        requested = client.post(f"/v1/jobs/{job_id}/cancel")
        commands = commands_of(api_stack.settings, job_id, 2)
        # What the running encoder does on CancelJob: stop, then say so; its stray events lose.
        drive(api_stack.settings, job_id, M.JOB_CANCELED, M.JOB_COMPLETED)
        job = wait_status(client, job_id, "canceled")
        time.sleep(0.5)
        history = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
    assert requested.status_code == 202
    assert requested.json()["status"] == "processing"
    assert [c.type for c in commands] == [M.PUBLISH_COURSE, M.CANCEL_JOB]
    assert job["completed_at"] is None
    assert [(e["type"], e["rejection"]) for e in history if e["rejected"]] == [
        ("JobCompleted", "TerminalState")
    ]


# --- the framework's own errors, health ----------------------------------------------------------


def test_unknown_routes_wrong_methods_and_bad_ids_are_problem_documents(api_stack: ApiStack) -> None:
    with api_stack.instructor() as client:
        for answer, status in [
            (client.get("/v1/nothing-here"), 404),
            (client.delete("/v1/jobs"), 405),
            (client.get("/v1/jobs/not-a-uuid"), 422),
            (client.get(f"/v1/jobs/{uuid4()}"), 404),
        ]:
            assert answer.status_code == status
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json()["status"] == status


def test_health_is_open_and_readiness_checks_kafka_postgres_and_s3(api_stack: ApiStack) -> None:
    with api_stack.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"
        ready = client.get("/readyz").json()
        docs = client.get("/docs")
    assert ready == {"status": "ok", "checks": {"postgres": "ok", "kafka": "ok", "s3": "ok"}}
    assert docs.status_code == 200


# --- direct uploads ------------------------------------------------------------------------------


def test_a_direct_upload_goes_straight_to_s3_and_becomes_a_course(api_stack: ApiStack, clip: Path) -> None:
    body = clip.read_bytes()
    with api_stack.instructor() as client:
        done = direct_upload(client, "강의.mp4", body, kind=None)  # the kind defaults to video
        assert done.status_code == 200
        upload_id = done.json()["upload_id"]
        assert done.json()["state"] == "completed", done.text

        def course_of_the_upload(name: str) -> httpx.Response:
            fields = {"name": name, "curriculum": "CS-2", "video_upload_ids": upload_id}
            return client.post("/v1/courses", files={k: (None, v) for k, v in fields.items()})

        accepted = course_of_the_upload("직접 업로드")
        assert accepted.status_code == 202, accepted.text
        reused = course_of_the_upload("again")
        job_id = accepted.json()["job_id"]
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"
    assert reused.status_code == 422
    raw = (
        s3_client(api_stack.settings)
        .get_object(Bucket=api_stack.settings.s3_bucket, Key=f"staging/{job_id}/manifest.json")["Body"]
        .read()
    )
    video = StagingManifest.from_json(raw).videos[0]
    assert video.filename == "강의.mp4"
    assert video.size_bytes == len(body)
    assert video.key.startswith(f"staging/{job_id}/videos/")


# --- an api whose Kafka is unreachable; an api whose uploads expire at once -------------------------


@pytest.fixture(scope="module")
def broken_kafka_api(settings: Settings) -> Iterator[ApiStack]:
    """An api pointed at a closed port for Kafka (the shared broker is never stopped)."""
    from tests.support.services import free_port

    unreachable = {"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}", "api_kafka_timeout_s": 2.0}
    with api_of_own(settings, api_update=unreachable, upload_expiry_s=1) as stack:
        yield stack


def test_kafka_unreachable_is_503_with_retry_after_and_leaves_no_job_and_no_files(
    broken_kafka_api: ApiStack, clip: Path
) -> None:
    with broken_kafka_api.instructor() as client:
        started = time.monotonic()
        answer = submit(client, clip, headers={"Idempotency-Key": "k1"})
        took = time.monotonic() - started
        listed = client.get("/v1/jobs").json()["items"]
        ready = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5", answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert took < 10
    assert listed == []
    assert staged_keys(broken_kafka_api.settings) == []
    s3 = s3_client(broken_kafka_api.settings)
    assert s3.list_multipart_uploads(Bucket=broken_kafka_api.settings.s3_bucket).get("Uploads", []) == []
    assert ready.status_code == 503
    assert ready.json()["checks"]["kafka"].startswith("unreachable")


def test_an_expired_direct_upload_is_aborted_and_cannot_be_completed(broken_kafka_api: ApiStack) -> None:
    s3 = s3_client(broken_kafka_api.settings)
    with broken_kafka_api.instructor() as client:
        upload = client.post("/v1/uploads", json={"filename": "late.mp4", "size_bytes": 100}).json()
        time.sleep(1.5)
        late = client.post(
            f"/v1/uploads/{upload['upload_id']}/complete", json={"parts": [{"part_number": 1, "etag": "x"}]}
        )
        state = client.get(f"/v1/uploads/{upload['upload_id']}").json()["state"]
    assert late.status_code == 409
    assert late.json()["type"].endswith("upload-expired")
    assert state == "expired"
    assert s3.list_multipart_uploads(Bucket=broken_kafka_api.settings.s3_bucket).get("Uploads", []) == []
