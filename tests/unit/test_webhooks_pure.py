"""Webhooks, the pure parts: URL checks, signing, back-off and give-up, offsets, notification bodies."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.handlers.webhooks import check_endpoint_url, chosen_events, new_secret
from services.api.problems import ProblemError
from services.core.messages import MessageType
from services.core.payloads import JobFailed, JobStalled
from services.core.settings import PROJECT_ROOT, Settings
from services.notifier.addresses import first_refused, is_public
from services.notifier.notifications import Job, NotificationType, notification_body, notification_type
from services.notifier.offsets import OffsetBook
from services.notifier.retry import gives_up, retry_delay
from services.notifier.signing import signature_header, verify
from tests.support.messages import event

JOB = Job(owner="kim", course_name="데이터 과학 입문", curriculum="DS-101", video_count=1)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/coursecast",
        "http://127.0.0.1:8080/hook?x=1",
        "https://[2001:db8::1]:8443/h",
        "https://example.com",
    ],
)
def test_plain_http_and_https_urls_are_accepted(url: str) -> None:
    assert check_endpoint_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("//example.com/hook", "http:// or https://"),
        ("https://user:secret@example.com/hook", "user name or password"),
        ("https://token@example.com/hook", "user name or password"),
        ("https://example.com/ho ok", "space"),
        ("https://example.com/\x00", "U+0000"),
        ("https://example.com/\x1b[31m", "U+001B"),
        ("https://example.com/\u0085", "U+0085"),
        ("https://exämple.com/", "ASCII"),
        ("https:///path-only", "no host"),
        ("https://exa_mple.com/", "invalid host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:0/", "port 0"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com/" + "a" * 2100, "longer than 2048"),
    ],
)
def test_hostile_urls_are_refused_with_a_422_naming_the_field(url: str, why: str) -> None:
    with pytest.raises(ProblemError) as refused:
        check_endpoint_url(url)
    assert (refused.value.status, refused.value.kind) == (422, "invalid-webhook-url")
    assert refused.value.extensions["field"] == "url"
    assert why in refused.value.detail


@given(st.text(max_size=300))
def test_any_text_is_accepted_only_as_an_http_url_without_credentials(text: str) -> None:
    try:
        accepted = check_endpoint_url(text)
    except ProblemError as refused:
        status = refused.status
        assert status == 422
    else:
        assert accepted.lower().startswith(("http://", "https://"))
        assert "@" not in accepted.split("/")[2]
        assert accepted.isascii()


def test_events_default_to_all_three_and_are_kept_once_each_in_order() -> None:
    assert chosen_events(None) == ["course.completed", "course.failed", "course.canceled"]
    assert chosen_events(["course.canceled", "course.completed", "course.canceled"]) == [
        "course.completed",
        "course.canceled",
    ]


def test_secrets_are_fresh_and_long() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(first) >= 40


def test_the_signature_is_the_hmac_of_the_timestamp_and_the_body_as_documented() -> None:
    body, secret, t = b'{"id":"x"}', "whsec_test", 1_700_000_000
    header = signature_header([secret], t, body)
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={expected}"
    assert verify(header, body, secret, now=t + 10)


def test_a_signature_fails_for_another_body_secret_or_an_old_timestamp() -> None:
    body, t = b'{"id":"x"}', 1_700_000_000
    header = signature_header(["whsec_a"], t, body)
    assert not verify(header, body + b" ", "whsec_a", now=t)
    assert not verify(header, body, "whsec_b", now=t)
    assert not verify(header, body, "whsec_a", now=t + 301)
    assert not verify("v1=" + "0" * 64, body, "whsec_a", now=t)


def test_during_a_rotation_either_secret_verifies() -> None:
    body, t = b"{}", 1_700_000_000
    header = signature_header(["whsec_new", "whsec_old"], t, body)
    assert verify(header, body, "whsec_new", now=t)
    assert verify(header, body, "whsec_old", now=t)


def test_backoff_doubles_with_jitter_and_never_passes_its_ceiling() -> None:
    assert retry_delay(1, 5.0, 3600.0, draw=lambda: 0.0) == 2.5
    assert retry_delay(1, 5.0, 3600.0, draw=lambda: 1.0) == 5.0
    assert retry_delay(4, 5.0, 3600.0, draw=lambda: 1.0) == 40.0
    assert retry_delay(40, 5.0, 3600.0, draw=lambda: 1.0) == 3600.0
    assert retry_delay(10_000, 5.0, 3600.0) <= 3600.0


def test_a_delivery_is_given_up_only_once_its_next_attempt_passes_the_retry_age() -> None:
    first = datetime(2026, 11, 29, tzinfo=UTC)
    assert not gives_up(first, first + timedelta(hours=23), 86_400)
    assert gives_up(first, first + timedelta(hours=25), 86_400)


def test_offsets_are_committed_only_past_the_longest_finished_prefix() -> None:
    book = OffsetBook()
    for offset in (10, 11, 12):
        book.read(0, offset)
    book.finish(0, 11)
    book.finish(0, 12)
    assert book.to_commit() == {0: 10}  # 10 is unfinished: nothing past it
    book.committed(0, 10)
    assert book.to_commit() == {}
    book.finish(0, 10)
    assert book.to_commit() == {0: 13}
    book.committed(0, 13)
    book.read(1, 0)
    book.forget([1])
    assert book.to_commit() == {}
    assert book.unfinished() == 0


@given(st.permutations(range(30)), st.integers(min_value=0, max_value=30))
def test_a_committable_offset_never_passes_an_unfinished_record(order: list[int], done: int) -> None:
    book = OffsetBook()
    for offset in range(30):
        book.read(0, offset)
    finished = set(order[:done])
    for offset in finished:
        book.finish(0, offset)
    committable = book.to_commit().get(0)
    assert committable is not None
    assert all(offset in finished for offset in range(committable))
    assert committable == 30 or committable not in finished


def test_only_ends_of_a_job_make_notifications() -> None:
    job = uuid4()
    assert notification_type(event(MessageType.JOB_COMPLETED, job)) is NotificationType.COMPLETED
    assert notification_type(event(MessageType.JOB_FAILED, job)) is NotificationType.FAILED
    assert notification_type(event(MessageType.JOB_CANCELED, job)) is NotificationType.CANCELED
    assert notification_type(event(MessageType.JOB_TIMED_OUT, job)) is NotificationType.FAILED
    retrying = JobStalled(last_heartbeat_at=None, stall_timeout_s=300, will_retry=True, message="silent")
    assert notification_type(event(MessageType.JOB_STALLED, job, data=retrying)) is None
    for kind in (MessageType.JOB_QUEUED, MessageType.JOB_STARTED, MessageType.JOB_PROGRESS):
        assert notification_type(event(kind, job)) is None


def test_the_end_of_a_task_is_never_notified_only_its_course_s() -> None:
    course, task = uuid4(), uuid4()
    for kind in (MessageType.JOB_COMPLETED, MessageType.JOB_FAILED, MessageType.JOB_CANCELED):
        assert notification_type(dataclasses.replace(event(kind, task), course_job_id=course)) is None
        assert notification_type(event(kind, course)) is not None


def test_a_completed_notification_carries_the_job_its_owner_and_its_outputs() -> None:
    completed = event(MessageType.JOB_COMPLETED, uuid4())
    body = orjson.loads(notification_body(completed, NotificationType.COMPLETED, JOB))
    assert body["id"] == str(completed.event_id)
    assert body["type"] == "course.completed"
    assert body["occurred_at"] == completed.occurred_at.isoformat()
    data = body["data"]
    assert (data["job_id"], data["owner"], data["course_name"]) == (
        str(completed.job_id),
        "kim",
        JOB.course_name,
    )
    assert data["outputs"]["videos"][0]["master_playlist_url"].endswith(".m3u8")


def test_a_failed_notification_carries_the_error_and_the_same_bytes_every_time() -> None:
    failed = event(
        MessageType.JOB_FAILED,
        uuid4(),
        data=JobFailed(error_type="invalid_media", message="no video", retryable=False),
    )
    body = notification_body(failed, NotificationType.FAILED, JOB)
    assert orjson.loads(body)["data"]["error"] == {"type": "invalid_media", "message": "no video"}
    assert notification_body(failed, NotificationType.FAILED, JOB) == body


def test_the_verification_snippet_of_the_api_docs_accepts_exactly_what_the_notifier_signs() -> None:
    docs = (PROJECT_ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(import hashlib.*?)```", docs, re.DOTALL)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)  # our own documentation
    receiver_verify = namespace["verify"]
    body, now = b'{"id":"x","type":"course.completed"}', int(time.time())
    header = signature_header(["whsec_new", "whsec_old"], now, body)
    assert receiver_verify("whsec_new", header, body)
    assert receiver_verify("whsec_old", header, body)
    assert not receiver_verify("whsec_other", header, body)
    assert not receiver_verify("whsec_new", header, body + b" ")
    assert not receiver_verify("whsec_new", signature_header(["whsec_new"], now - 600, body), body)


NOT_PUBLIC = ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1")
NOT_PUBLIC_EITHER = (
    "0.0.0.0",
    "::1",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "224.0.1.1",
    "ff02::1",
    "240.0.0.1",
)


@pytest.mark.parametrize("address", [*NOT_PUBLIC, *NOT_PUBLIC_EITHER])
def test_webhooks_never_reach_private_loopback_link_local_or_multicast_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    assert first_refused(["93.184.215.14", address]) == address


def test_global_unicast_addresses_are_public() -> None:
    assert first_refused(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "8.8.8.8"]) is None


def test_private_addresses_are_allowed_by_default_except_in_production() -> None:
    assert Settings().webhook_private_addresses_allowed
    production = Settings().model_copy(update={"env": "production"})  # its built-in secrets aside
    assert not production.webhook_private_addresses_allowed
    assert Settings(webhook_allow_private_addresses=False).webhook_private_addresses_allowed is False
