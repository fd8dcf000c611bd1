"""The api under hostile clients: control characters, bodies before authentication, slow uploads, stream
floods, crafted cursors and boundaries, reused Idempotency-Keys, and leaks of internal details.

Every refusal is a 4xx problem document; nothing hostile reaches the log, holds a database connection
or shows a client what runs behind the api.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
from psycopg import sql

from devtools.demo import coursecast
from services.api.auth import Role
from services.core.messages import MessageType, new_message
from services.core.payloads import CancelJob, JobFailed, JobStarted
from services.core.settings import Settings
from tests.integration.api.test_api import commands_of, raw_multipart, submit, wait_status
from tests.support.api import ApiStack, api_of_own, form_head, own_bucket
from tests.support.projector import isolated, produce
from tests.support.services import start_api, stop

PROBLEM = "application/problem+json"
M = MessageType
MAX_STREAMS = 2


@pytest.fixture(scope="module")
def stack_settings(settings: Settings) -> Iterator[Settings]:
    """This module's topics, schema and bucket; a pool of 10 and two streams per user."""
    with isolated(settings, partitions=2) as scoped:
        yield from own_bucket(
            scoped.model_copy(
                update={
                    "max_upload_bytes": 64 * 1024**2,
                    "max_videos": 3,
                    "upload_part_bytes": 5 * 1024**2,
                    "api_db_pool_size": 10,
                    "api_max_streams_per_user": MAX_STREAMS,
                    "read_your_writes_timeout_s": 0.5,
                }
            )
        )


def assert_problem(answer: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    """The answer is a problem document with `status` whose text mentions each of `mentions`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = answer.json()
    assert problem["status"] == status
    for mention in mentions:
        assert mention in answer.text, (mention, problem)
    return problem


def raw_request(base_url: str, head: bytes, body: bytes = b"", timeout_s: float = 20) -> tuple[int, bytes]:
    """Send a request byte for byte (headers as given, body possibly shorter than announced) and read
    the answer's status and body; the socket is closed afterwards."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=timeout_s) as sock:
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        header, _, rest = answer.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(header.split(b" ")[1]), rest


def http_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def slow_form(
    clip: bytes, boundary: str, started: threading.Event, release: threading.Event
) -> Iterator[bytes]:
    """A course form sent slowly: the fields and the file's first bytes, then nothing until `release`."""
    yield form_head(boundary, "Slow course", "SLOW-1", "slow.mp4")
    yield clip[:4096]
    started.set()
    if not release.wait(180):
        raise AssertionError("the test never released the slow upload")
    yield clip[4096:]
    yield f"\r\n--{boundary}--\r\n".encode()


class SlowUpload(threading.Thread):
    """POST /v1/courses whose body stops after its first bytes until `release` is set."""

    def __init__(
        self, stack: ApiStack, token: str, clip: bytes, release: threading.Event, key: str | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.stack, self.token, self.clip, self.release, self.key = stack, token, clip, release, key
        self.started = threading.Event()
        self.answer: httpx.Response | None = None
        self.error: BaseException | None = None

    @classmethod
    def begin(cls, stack: ApiStack, clip: Path, key: str) -> tuple[SlowUpload, str, threading.Event]:
        """A slow upload under Idempotency-Key `key` by a new instructor, started; returns it, the
        instructor's token and the event that lets its body go on."""
        _, token = stack.user()
        release = threading.Event()
        upload = cls(stack, token, clip.read_bytes(), release, key=key)
        upload.start()
        return upload, token, release

    def run(self) -> None:
        boundary = uuid4().hex
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        }
        if self.key is not None:
            headers["Idempotency-Key"] = self.key
        try:
            with httpx.Client(base_url=self.stack.base_url, timeout=240) as client:
                self.answer = client.post(
                    "/v1/courses",
                    content=slow_form(self.clip, boundary, self.started, self.release),
                    headers=headers,
                )
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.started.set()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_reserved(settings: Settings, key: str) -> None:
    """Wait until the api has reserved `key` (it does so as soon as it has the request's headers)."""
    with psycopg.connect(settings.database_url, autocommit=True) as db:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema)))
        wait_for(
            lambda: (
                db.execute("SELECT 1 FROM api_idempotency_keys WHERE idempotency_key = %s", (key,)).fetchone()
                is not None
            ),
            30,
            f"the api to reserve {key}",
        )


# --- 1. control characters -------------------------------------------------------------------------


def test_a_nul_in_a_cancel_reason_is_refused_with_422_and_no_command_reaches_the_log(
    api_stack: ApiStack, clip: Path
) -> None:
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        refused = client.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "a\u0000b"})
        problem = assert_problem(refused, 422, "reason", "U+0000")
        assert problem["errors"][0]["location"] == "body.reason"
        # Text that may span lines keeps its newlines and tabs; the job is then really canceled.
        accepted = client.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "line one\n\tline two"})
        assert accepted.status_code == 202, accepted.text
    commands = commands_of(api_stack.settings, job_id, 2)
    assert [c.type for c in commands] == [M.PUBLISH_COURSE, M.CANCEL_JOB]
    assert isinstance(commands[1].data, CancelJob)
    assert commands[1].data.reason == "line one\n\tline two"


def _json_case(path: str, body: dict[str, Any]) -> Callable[[httpx.Client, str], httpx.Response]:
    return lambda client, job_id: client.post(path.format(job_id=job_id), json=body)


def _keyed_case(
    headers: dict[str, str] | dict[bytes, bytes],
) -> Callable[[httpx.Client, str], httpx.Response]:
    return lambda client, _: client.post(
        "/v1/courses",
        files=[("videos", ("a.mp4", CLIP_BYTES[0], "video/mp4"))],
        data={"name": "Course", "curriculum": "CS-101"},
        headers=headers,
    )


def _form_case(
    fields: dict[str, str], filename: str | bytes = "a.mp4"
) -> Callable[[httpx.Client, str], httpx.Response]:
    def send(client: httpx.Client, _job_id: str) -> httpx.Response:
        boundary = uuid4().hex
        out = bytearray()
        for name, value in fields.items():
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode() + b"\r\n"
        raw_name = filename if isinstance(filename, bytes) else filename.encode()
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="videos"; filename="'.encode()
        out += raw_name + b'"\r\nContent-Type: video/mp4\r\n\r\n' + CLIP_BYTES[0] + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return client.post(
            "/v1/courses",
            content=bytes(out),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    return send


CLIP_BYTES: list[bytes] = [b""]

CONTROL_CASES: dict[str, tuple[Callable[[httpx.Client, str], httpx.Response], str]] = {
    "cancel reason with ESC": (
        _json_case("/v1/jobs/{job_id}/cancel", {"reason": "stop\u001b[31m"}),
        "reason",
    ),
    "cancel reason with DEL": (_json_case("/v1/jobs/{job_id}/cancel", {"reason": "stop\u007f"}), "reason"),
    "upload file name with NUL": (
        _json_case("/v1/uploads", {"filename": "a\u0000.mp4", "size_bytes": 10}),
        "filename",
    ),
    "upload content type with newline": (
        _json_case("/v1/uploads", {"filename": "a.mp4", "size_bytes": 10, "content_type": "video/mp4\n"}),
        "content_type",
    ),
    "part ETag with NUL": (
        _json_case(f"/v1/uploads/{uuid4()}/complete", {"parts": [{"part_number": 1, "etag": "\u0000"}]}),
        "etag",
    ),
    "course name with NUL": (_form_case({"name": "Course\u0000", "curriculum": "CS-101"}), "name"),
    "course file name with NUL": (
        _form_case({"name": "Course", "curriculum": "CS-101"}, "a\x00.mp4"),
        "file name",
    ),
    "course file name with a C1 control": (
        _form_case({"name": "Course", "curriculum": "CS-101"}, "a\u009b31m.mp4"),
        "file name",
    ),
    "course file name not UTF-8": (
        _form_case({"name": "Course", "curriculum": "CS-101"}, b"lecture-\xff\xfe.mp4"),
        "file name",
    ),
    "form field name with NUL": (
        _form_case({"name": "Course", "curriculum": "CS-101", "x\u0000": "y"}),
        "form field name",
    ),
    "query parameter with NUL": (
        lambda client, _: client.get("/v1/jobs", params={"status": "queued\u0000"}),
        "status",
    ),
    "unknown query parameter with NUL": (
        lambda client, _: client.get("/v1/jobs", params={"x": "\u0000"}),
        "'x'",
    ),
    "Idempotency-Key with a tab": (_keyed_case({"Idempotency-Key": "key\twith-tab"}), "idempotency-key"),
    "Idempotency-Key with non-ASCII bytes": (_keyed_case({b"Idempotency-Key": b"cl\xe9"}), "idempotency-key"),
}


@pytest.mark.parametrize("case", sorted(CONTROL_CASES))
def test_every_field_refuses_control_characters_with_a_422_naming_it(
    api_stack: ApiStack, clip: Path, case: str
) -> None:
    CLIP_BYTES[0] = clip.read_bytes()
    send, field = CONTROL_CASES[case]
    with api_stack.instructor() as client:
        job_id = submit(client, clip).json()["job_id"]
        listed_before = len(client.get("/v1/jobs").json()["items"])
        answer = send(client, job_id)
        assert_problem(answer, 422, field)
        assert len(client.get("/v1/jobs").json()["items"]) == listed_before
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


# --- 2. authentication before any body; bounded JSON -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/jobs/{job}/cancel"), ("POST", "/v1/uploads"), ("POST", "/v1/uploads/{job}/complete")],
)
def test_an_anonymous_body_is_refused_with_401_before_a_byte_of_it_is_read(
    api_stack: ApiStack, method: str, path: str
) -> None:
    # 10 MB announced, 16 bytes sent: answering at all proves the api did not wait for the body.
    head = http_head(
        method,
        path.format(job=uuid4()),
        {"Content-Type": "application/json", "Content-Length": str(10_000_000)},
    )
    status, body = raw_request(api_stack.base_url, head, b'{"reason": "aaaa')
    assert status == 401, body
    assert b"unauthorized" in body


def test_a_json_body_over_the_cap_is_413_whether_announced_or_streamed(api_stack: ApiStack) -> None:
    _, token = api_stack.user()
    oversized = {"filename": "a" * 100_000 + ".mp4", "size_bytes": 10}
    with api_stack.client(token) as client:
        announced = client.post("/v1/uploads", json=oversized)
        assert_problem(announced, 413, "65536")

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            payload = httpx.Request("POST", "/", json=oversized).content
            for start in range(0, len(payload), 8192):
                yield payload[start : start + 8192]

        streamed = client.post("/v1/uploads", content=chunks(), headers={"Content-Type": "application/json"})
        assert_problem(streamed, 413, "65536")
        # Under the cap the same route still works.
        assert client.post("/v1/uploads", json={"filename": "a.mp4", "size_bytes": 10}).status_code == 201
    # Announced but not sent: refused from the header alone, after authentication.
    head = http_head(
        "POST",
        "/v1/uploads",
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Content-Length": "10000000",
        },
    )
    status, body = raw_request(api_stack.base_url, head, b"{")
    assert status == 413, body


# --- 3. slow uploads hold no database connection; an exhausted pool is a 503 ------------------------


def test_eleven_slow_uploads_in_flight_leave_the_job_list_answering(api_stack: ApiStack, clip: Path) -> None:
    assert api_stack.settings.api_db_pool_size == 10
    _, token = api_stack.user()
    release = threading.Event()
    uploads = [SlowUpload(api_stack, token, clip.read_bytes(), release) for _ in range(11)]
    try:
        for upload in uploads:
            upload.start()
        for upload in uploads:
            assert upload.started.wait(60), "an upload did not start"
            assert upload.error is None, upload.error
        with api_stack.client(token) as client:
            listed = client.get("/v1/jobs", timeout=30)
        # Answered while every upload is still waiting for the rest of its body.
        assert listed.status_code == 200, listed.text
        assert all(upload.is_alive() and upload.answer is None for upload in uploads)
    finally:
        release.set()
        for upload in uploads:
            upload.join(180)
    assert [u.answer.status_code if u.answer else u.error for u in uploads] == [202] * 11


@pytest.fixture(scope="module")
def tiny_pool_api(settings: Settings) -> Iterator[ApiStack]:
    """An api with a pool of 2 connections and a 1 s wait, on a schema of its own."""
    with api_of_own(settings, api_db_pool_size=2, api_db_pool_timeout_s=1.0) as stack:
        yield stack


def test_a_request_that_finds_the_pool_exhausted_gets_503_with_retry_after(tiny_pool_api: ApiStack) -> None:
    _, token = tiny_pool_api.user()
    answers: list[httpx.Response] = []
    with psycopg.connect(tiny_pool_api.settings.database_url) as locker:
        # Every authentication waits on this lock, holding its connection: both are soon busy.
        locker.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(tiny_pool_api.settings.database_schema))
        )
        locker.execute("LOCK TABLE api_tokens IN ACCESS EXCLUSIVE MODE")

        def blocked() -> None:
            with tiny_pool_api.client(token) as client:
                answers.append(client.get("/v1/jobs"))

        holders = [threading.Thread(target=blocked) for _ in range(2)]
        for holder in holders:
            holder.start()
        schema = tiny_pool_api.settings.database_schema

        def both_waiting() -> bool:
            row = locker.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE NOT l.granted AND c.relname = 'api_tokens' AND n.nspname = %s",
                (schema,),
            ).fetchone()
            return row is not None and row[0] >= 2

        wait_for(both_waiting, 30, "two requests waiting on the lock")
        with tiny_pool_api.client(token) as client:
            exhausted = client.get("/v1/jobs", timeout=30)
        problem = assert_problem(exhausted, 503)
        assert problem["type"].endswith("/database-busy")
        assert int(exhausted.headers["Retry-After"]) >= 1
        locker.rollback()  # releases the lock: the two waiting requests finish normally
    for holder in holders:
        holder.join(30)
    assert [a.status_code for a in answers] == [200, 200]


# --- 4. streams: a limit per user, closed on revocation -----------------------------------------------


class StreamReader(threading.Thread):
    """Follows GET /v1/jobs/{id}/stream on a socket of its own, keeping what arrives, until the server
    ends the stream or `close()` hangs up."""

    def __init__(self, stack: ApiStack, token: str, job_id: str) -> None:
        super().__init__(daemon=True)
        url = urlsplit(stack.base_url)
        self.sock = socket.create_connection((url.hostname or "", url.port or 80), timeout=60)
        self.request = http_head(
            "GET",
            f"/v1/jobs/{job_id}/stream",
            {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
        )
        self.received = b""
        self.ended = threading.Event()

    def run(self) -> None:
        try:
            self.sock.sendall(self.request)
            while chunk := self.sock.recv(65536):
                self.received += chunk
                if self.received.endswith(b"0\r\n\r\n"):  # the last chunk: the server ended the stream
                    break
        except OSError:
            pass
        finally:
            self.ended.set()

    def saw(self, text: str) -> bool:
        return text.encode() in self.received

    def close(self) -> None:
        """Hang up (the api sees the client go away) and wait for the thread."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.join(30)


def test_a_user_gets_429_past_the_stream_limit_and_a_closed_stream_frees_its_slot(
    api_stack: ApiStack, clip: Path
) -> None:
    _, token = api_stack.user()
    with api_stack.client(token) as client:
        job_id = submit(client, clip).json()["job_id"]
    readers = [StreamReader(api_stack, token, job_id) for _ in range(MAX_STREAMS)]
    try:
        for reader in readers:
            reader.start()
            wait_for(lambda r=reader: r.saw("event: job"), 30, "the first job event")  # type: ignore[misc]
        with api_stack.client(token) as client:
            refused = client.get(f"/v1/jobs/{job_id}/stream")
            assert_problem(refused, 429, str(MAX_STREAMS))
            assert refused.headers["Retry-After"]
        # Another user is not affected by this user's streams.
        _, other_token = api_stack.user(role=Role.ADMIN)
        other = StreamReader(api_stack, other_token, job_id)
        other.start()
        wait_for(lambda: other.saw("event: job"), 30, "the admin's stream")
        other.close()
        # Closing one stream gives its slot back.
        readers[0].close()

        def slot_free() -> bool:
            with (
                api_stack.client(token) as client,
                client.stream("GET", f"/v1/jobs/{job_id}/stream") as answer,
            ):
                return answer.status_code == 200

        wait_for(slot_free, 30, "the closed stream's slot")
    finally:
        for reader in readers:
            reader.close()


def test_revoking_a_users_tokens_ends_their_live_streams_at_once(api_stack: ApiStack, clip: Path) -> None:
    name, token = api_stack.user()
    _, bystander_token = api_stack.user()
    with api_stack.client(token) as client:
        job_id = submit(client, clip).json()["job_id"]
    with api_stack.client(bystander_token) as client:
        other_job = submit(client, clip).json()["job_id"]
    reader = StreamReader(api_stack, token, job_id)
    bystander = StreamReader(api_stack, bystander_token, other_job)
    reader.start()
    bystander.start()
    wait_for(lambda: reader.saw("event: job") and bystander.saw("event: job"), 30, "both streams")
    revoked = coursecast(api_stack.settings, "tokens", "revoke", name, check=False)
    assert revoked.returncode == 0, revoked.stderr
    # Well before the 15 s keep-alive: the revocation itself ends the stream.
    assert reader.ended.wait(10), reader.received
    assert reader.saw("event: revoked")
    assert not bystander.ended.is_set()
    bystander.close()


# --- 5. hostile inputs: always a 4xx problem, never a 500 ---------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


HOSTILE_CURSORS = {
    "garbage": "!!not-a-cursor!!",
    "huge": "A" * 5000,
    "base64 of an object": _b64(b'{"created_at": 1}'),
    "base64 of an empty list": _b64(b"[]"),
    "base64 of numbers": _b64(b"[1, 2]"),
    "base64 of a negative number": _b64(b"-1"),
    "negative number": "-1",
    "base64 of a huge number": _b64(b"[99999999999999999999999999, 1]"),
    "base64 of a bad uuid": _b64(b'["2026-01-01T00:00:00+00:00", "not-a-uuid"]'),
    "base64 of a naive time": _b64(f'["2026-01-01T00:00:00", "{uuid4()}"]'.encode()),
    "base64 of a year out of range": _b64(f'["99999-01-01T00:00:00+00:00", "{uuid4()}"]'.encode()),
    "base64 of invalid UTF-8": _b64(b'["\xff\xfe", "x"]'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CURSORS))
def test_a_crafted_cursor_is_a_422_problem(api_stack: ApiStack, case: str) -> None:
    with api_stack.instructor() as client:
        assert_problem(client.get("/v1/jobs", params={"cursor": HOSTILE_CURSORS[case]}), 422)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("300-byte multipart boundary", 400),
        ("boundary with a control character", 400),
        ("negative page size", 422),
        ("page size past 64 bits", 422),
        ("absurd Content-Length on a JSON route", 413),
        ("absurd Content-Length on the upload route", 413),
        ("JSON that is not UTF-8", 400),
        ("JSON nested 20000 deep", 400),
        ("upload size past 64 bits", 422),
        ("form text that is not UTF-8", 422),
    ],
)
def test_every_hostile_input_gets_a_4xx_problem_never_a_500(
    api_stack: ApiStack, clip: Path, case: str, status: int
) -> None:
    _, token = api_stack.user()
    auth = {"Authorization": f"Bearer {token}"}
    with api_stack.client(token) as client:
        answer: httpx.Response | None = None
        if case in ("300-byte multipart boundary", "boundary with a control character"):
            body, content_type = raw_multipart(
                {"name": "Course", "curriculum": "CS-101"}, [("videos", "a.mp4", clip.read_bytes())]
            )
            old = content_type.split("boundary=")[1]
            new = "b" * 300 if case.startswith("300") else "b\x7fb"
            answer = client.post(
                "/v1/courses",
                content=body.replace(old.encode(), new.encode()),
                headers={"Content-Type": f"multipart/form-data; boundary={new}"},
            )
        elif case == "negative page size":
            answer = client.get("/v1/jobs", params={"limit": "-5"})
        elif case == "page size past 64 bits":
            answer = client.get("/v1/jobs", params={"limit": str(10**30)})
        elif case == "JSON that is not UTF-8":
            answer = client.post(
                f"/v1/jobs/{uuid4()}/cancel",
                content=b'{"reason": "\xff\xfe"}',
                headers={"Content-Type": "application/json"},
            )
        elif case == "JSON nested 20000 deep":
            answer = client.post(
                "/v1/uploads",
                content=b"[" * 20000 + b"]" * 20000,
                headers={"Content-Type": "application/json"},
            )
        elif case == "upload size past 64 bits":
            answer = client.post("/v1/uploads", json={"filename": "a.mp4", "size_bytes": 10**30})
        elif case == "form text that is not UTF-8":
            boundary = uuid4().hex
            body = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'.encode()
                + b"Course \xc3\x28\r\n"
                + f"--{boundary}--\r\n".encode()
            )
            answer = client.post(
                "/v1/courses",
                content=body,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            assert_problem(answer, status, "'name'")
    if answer is None:  # requests httpx will not send as they are
        path = "/v1/courses" if "upload route" in case else "/v1/uploads"
        # 1 EB. (Past 20 digits uvicorn's HTTP parser, h11, refuses the request itself: plain 400.)
        length = str(10**18)
        content_type = "multipart/form-data; boundary=x" if "upload route" in case else "application/json"
        head = http_head("POST", path, {**auth, "Content-Type": content_type, "Content-Length": length})
        got, raw = raw_request(api_stack.base_url, head, b"{}")
        assert got == status, raw
        assert b'"status":' + str(status).encode() in raw
        return
    assert_problem(answer, status)


# --- 6. Idempotency-Key: reserved before the body, fingerprinted, released when the request dies ------


def test_the_same_idempotency_key_with_another_body_is_422_and_with_the_same_body_the_same_job(
    api_stack: ApiStack, clip: Path
) -> None:
    key = {"Idempotency-Key": f"fp-{uuid4()}"}
    with api_stack.instructor() as client:
        first = submit(client, clip, name="Course A", headers=key)
        assert first.status_code == 202, first.text
        other_body = submit(client, clip, name="Course B", headers=key)
        problem = assert_problem(other_body, 422, "Idempotency-Key")
        assert problem["type"].endswith("/idempotency-key-reused")
        # httpx picks a new multipart boundary for each request: the same form is still the same body.
        again = submit(client, clip, name="Course A", headers=key)
        assert again.status_code == 202, again.text
        assert again.json()["job_id"] == first.json()["job_id"]
        assert [j["course_name"] for j in client.get("/v1/jobs").json()["items"]] == ["Course A"]


def test_an_idempotency_key_is_reserved_before_the_body_streams(api_stack: ApiStack, clip: Path) -> None:
    key = f"early-{uuid4()}"
    slow, token, release = SlowUpload.begin(api_stack, clip, key)
    try:
        assert slow.started.wait(60)
        wait_reserved(api_stack.settings, key)
        with api_stack.client(token) as client:
            # The first request is still sending its body; the second must not stage a second course.
            second = submit(client, clip, name="Slow course", headers={"Idempotency-Key": key})
            problem = assert_problem(second, 409)
            assert problem["type"].endswith("/idempotency-in-progress")
            assert second.headers["Retry-After"]
    finally:
        release.set()
        slow.join(120)
    assert slow.answer is not None, slow.error
    assert slow.answer.status_code == 202, slow.answer.text
    with api_stack.client(token) as client:
        # The key now names the slow request's job; submit() sends another form (curriculum, file name).
        again = submit(client, clip, name="Slow course", headers={"Idempotency-Key": key})
        assert again.status_code == 422, again.text
        assert [j["job_id"] for j in client.get("/v1/jobs").json()["items"]] == [slow.answer.json()["job_id"]]


def test_a_key_whose_request_was_refused_can_be_used_again_with_a_corrected_form(
    api_stack: ApiStack, clip: Path
) -> None:
    key = {"Idempotency-Key": f"fix-{uuid4()}"}
    with api_stack.instructor() as client:
        refused = client.post(
            "/v1/courses",
            data={"name": "Course", "curriculum": "CS-101"},
            files=[("videos", ("a.mp4", b"this is not a video at all", "video/mp4"))],
            headers=key,
        )
        assert_problem(refused, 415)
        corrected = submit(client, clip, name="Course", headers=key)
        assert corrected.status_code == 202, corrected.text


def test_a_key_whose_client_disconnected_mid_upload_is_free_again(api_stack: ApiStack, clip: Path) -> None:
    _, token = api_stack.user()
    key = f"gone-{uuid4()}"
    body, content_type = raw_multipart(
        {"name": "Course", "curriculum": "CS-101"}, [("videos", "a.mp4", clip.read_bytes())]
    )
    head = http_head(
        "POST",
        "/v1/courses",
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": content_type,
            "Content-Length": str(len(body)),
            "Idempotency-Key": key,
        },
    )
    url = urlsplit(api_stack.base_url)
    with socket.create_connection((url.hostname or "", url.port or 80), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 2])
        wait_reserved(api_stack.settings, key)
        with api_stack.client(token) as client:
            # While the first request is alive, its key is taken.
            taken = submit(client, clip, name="Course", headers={"Idempotency-Key": key})
            assert taken.status_code == 409, taken.text
    # The socket is closed mid-body: the api notices and gives the key back.
    answers: list[int] = []

    def retried() -> bool:
        with api_stack.client(token) as client:
            answers.append(submit(client, clip, name="Course", headers={"Idempotency-Key": key}).status_code)
        return answers[-1] == 202

    wait_for(retried, 30, "the key to be released")
    assert set(answers) <= {409, 202}


def test_a_key_whose_api_process_died_mid_upload_is_free_after_its_lease(
    stack_settings: Settings, clip: Path
) -> None:
    short_lease = stack_settings.model_copy(
        update={"api_idempotency_lease_s": 2.0, "read_your_writes_timeout_s": 0.0}
    )
    api, base = start_api(short_lease)
    stack = ApiStack(short_lease, base, api)
    key = f"crash-{uuid4()}"
    slow, token, release = SlowUpload.begin(stack, clip, key)
    try:
        assert slow.started.wait(60)
        # A live request keeps its key however slowly its client sends: stalled for three leases, the
        # reservation is still live (renewed in the background) and a duplicate still gets 409.
        with psycopg.connect(short_lease.database_url, autocommit=True) as db:
            db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(short_lease.database_schema)))

            def held_for_three_leases() -> bool:
                row = db.execute(
                    "SELECT lease_expires_at > now(), now() - created_at > interval '6 seconds'"
                    " FROM api_idempotency_keys WHERE idempotency_key = %s",
                    (key,),
                ).fetchone()
                if row is None:
                    return False  # the api has not read the request's headers yet
                assert row[0], "a live request's lease ran out"
                return bool(row[1])

            wait_for(held_for_three_leases, 30, "three leases to pass")
        with stack.client(token) as client:
            taken = submit(client, clip, name="Slow course", headers={"Idempotency-Key": key})
            assert taken.status_code == 409, taken.text
        api.kill()  # kill -9: no cleanup runs in the api, nothing deletes the reservation
        api.wait(30)
    finally:
        stop(api)
        release.set()
        slow.join(60)
    api, base = start_api(short_lease)
    try:
        stack = ApiStack(short_lease, base, api)
        answers: list[int] = []

        def retried() -> bool:
            with stack.client(token) as client:
                answers.append(
                    submit(client, clip, name="Slow course", headers={"Idempotency-Key": key}).status_code
                )
            return answers[-1] == 202

        wait_for(retried, 30, "the dead request's lease to expire")
        assert set(answers) <= {409, 202}
    finally:
        stop(api)


# --- 7. no internal details in any answer -------------------------------------------------------------

INTERNAL = ("/tmp", "build-host-7", "4242", "10.0.0.5", "Traceback")


def test_job_views_and_histories_show_no_hostnames_pids_paths_or_tracebacks(
    api_stack: ApiStack, clip: Path
) -> None:
    _, token = api_stack.user()
    with api_stack.client(token) as client:
        job_id = submit(client, clip).json()["job_id"]
        wait_status(client, job_id, "queued")
    produce(
        api_stack.settings,
        [
            new_message(
                JobStarted(worker="encoder@build-host-7:4242"),
                job_id=UUID(job_id),
                attempt=1,
                producer="encoder@build-host-7:4242",
            ),
            new_message(
                JobFailed(
                    error_type="invalid_media",
                    message="ffprobe found no video stream in /tmp/coursecast-x1/000-a.mp4"
                    " (encoder@build-host-7:4242, pid 4242, s3 10.0.0.5:9000)",
                    retryable=False,
                ),
                job_id=UUID(job_id),
                attempt=1,
                producer="encoder@build-host-7:4242",
            ),
        ],
    )
    with api_stack.client(token) as client:
        job = wait_status(client, job_id, "failed")
        answers = [
            client.get(f"/v1/jobs/{job_id}"),
            client.get("/v1/jobs"),
            client.get(f"/v1/jobs/{job_id}/events"),
        ]
        with client.stream("GET", f"/v1/jobs/{job_id}/stream") as stream:
            streamed = "\n".join(stream.iter_lines())
    assert job["error_type"] == "invalid_media"
    assert "no video stream" in job["error_message"]
    assert all("server" not in a.headers for a in answers)
    for text in [*(a.text for a in answers), streamed]:
        for internal in INTERNAL:
            assert internal not in text, (internal, text)
    events = answers[2].json()["items"]
    assert [e["type"] for e in events] == ["JobQueued", "JobStarted", "JobFailed"]
    assert "worker" not in events[1]["data"]


# --- 4b. readiness reuses one Kafka admin client --------------------------------------------------------


def test_readiness_checks_reuse_one_kafka_admin_client(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from confluent_kafka.admin import AdminClient
    from fastapi.testclient import TestClient

    import services.api.app as app_module
    import services.api.routes.health as health_module
    from services.api.app import create_app

    made: list[object] = []

    class CountedAdminClient(AdminClient):  # the real client, counted
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(app_module, "AdminClient", CountedAdminClient, raising=False)
    monkeypatch.setattr(health_module, "AdminClient", CountedAdminClient, raising=False)
    with TestClient(create_app(stack_settings)) as client:
        statuses = [client.get("/readyz").status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert len(made) == 1
