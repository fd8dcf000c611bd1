"""Webhooks end to end on the real Kafka and Postgres: a real projector decides which ends of a job
the state machine accepts, a real `coursecast notifier` delivers them to a loopback HTTP receiver.

The events are real ones, produced through the codec as the encoder and the api would; the notifier
is tested as the reader of those events. Delivery is at least once: retried until a 2xx, under one
event id, signed with the endpoint's secret, and a partition's offset is committed only after it.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest

from devtools.demo import coursecast
from services.core.messages import Envelope, MessageType, new_message
from services.core.payloads import JobCanceled, JobFailed, TaskQueued
from services.core.settings import Settings
from services.notifier.signing import verify
from services.notifier.store import migrate_schema
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.messages import course_data, event, job_queued, task_spec
from tests.support.observe import log_lines
from tests.support.observe import wait_for as wait_for_job
from tests.support.projector import end_offsets, produce
from tests.support.services import running, wait_until
from tests.support.webhooks import TRICKLE, committed_offsets, deliveries, receiver, register, unregister

pytestmark = pytest.mark.own(
    partitions=2, webhook_retry_base_s=0.4, webhook_retry_max_s=1.0, webhook_timeout_s=5.0, **QUICK_LIVENESS
)


def ended(job_id: UUID, owner: str, end: MessageType = MessageType.JOB_COMPLETED) -> list[Envelope]:
    """A job of `owner` queued, started and ended by `end`, all stamped now."""
    now = datetime.now(UTC)
    return [
        job_queued(job_id, course_data(job_id, owner=owner, course_name="데이터 과학 입문")),
        event(MessageType.JOB_STARTED, job_id, at=now),
        event(end, job_id, at=now),
    ]


def all_committed(settings: Settings) -> bool:
    """True once the notifier group's committed offsets reach the end of every non-empty partition."""
    ends = {p: o for p, o in end_offsets(settings).items() if o > 0}
    committed = committed_offsets(settings)
    return all(committed.get(p) == o for p, o in ends.items())


def test_a_receiver_failing_twice_gets_the_notification_on_its_third_try_signed_under_one_id(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    job_id = uuid4()
    with receiver([500, 500]) as hook, running(own, tmp_path) as services:
        _, secret = register(own, "kim", hook.url)
        events = ended(job_id, "kim")
        completed = events[-1]
        produce(own, events)
        services.projector()
        notifier = services.notifier()

        wait_until("three tries", lambda: len(hook.requests()) >= 3, 60, [notifier])
        wait_until("the offsets committed past the delivery", lambda: all_committed(own), 30, [notifier])
        tries = hook.requests()
        assert [t.answered for t in tries] == [500, 500, 200]
        assert {t.event_id for t in tries} == {str(completed.event_id)}
        assert len({t.body for t in tries}) == 1, "every try sends the same bytes"
        for attempt in tries:
            assert verify(attempt.signature, attempt.body, secret, now=time.time())
            assert not verify(attempt.signature, attempt.body, "whsec_someone-else", now=time.time())
        body = tries[-1].json()
        assert (body["id"], body["type"]) == (str(completed.event_id), "course.completed")
        assert (body["data"]["job_id"], body["data"]["owner"]) == (str(job_id), "kim")
        assert body["data"]["course_name"] == "데이터 과학 입문"
        assert body["data"]["outputs"]["videos"][0]["master_playlist_url"].endswith(".m3u8")

        (record,) = deliveries(own, completed.event_id)
        assert (record["state"], record["attempts"], record["last_status"]) == ("delivered", 3, 200)
    assert services.codes == [0, 0]


def test_a_notifier_killed_before_delivery_delivers_after_its_restart(own: Settings, tmp_path: Path) -> None:
    migrate_schema(own.database_url, own.database_schema)
    job_id = uuid4()
    with receiver(after=503) as hook, running(own, tmp_path) as services:
        _, secret = register(own, "kim", hook.url)
        events = ended(job_id, "kim", MessageType.JOB_FAILED)
        failed = events[-1]
        produce(own, events)
        services.projector()
        first = services.notifier("notifier-1")
        wait_until("two failed tries", lambda: len(hook.requests()) >= 2, 60, [first])

        # Not delivered, so not committed: the record of the JobFailed is still ahead of the group.
        assert not all_committed(own)
        services.kill(first)
        (record,) = deliveries(own, failed.event_id)
        assert record["state"] == "pending"
        assert record["last_status"] == 503
        hook.accept_everything()

        second = services.notifier("notifier-2")
        wait_until("delivered after the restart", lambda: hook.requests()[-1].answered == 200, 60, [second])
        wait_until("the offsets committed past the delivery", lambda: all_committed(own), 30, [second])
        tries = hook.requests()
        assert {t.event_id for t in tries} == {str(failed.event_id)}
        assert all(verify(t.signature, t.body, secret, now=time.time()) for t in tries)
        body = tries[-1].json()
        assert body["type"] == "course.failed"
        assert body["data"]["error"] == {"type": "NoSuchKey", "message": "The staged video is gone."}
        (record,) = deliveries(own, failed.event_id)
        assert record["state"] == "delivered"
        assert record["attempts"] == len(tries)


def test_each_owner_gets_only_the_ends_of_their_jobs_it_asked_for_and_poison_stops_nothing(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    kim_done, kim_canceled, lee_done = uuid4(), uuid4(), uuid4()
    kim_course, kim_task = uuid4(), uuid4()
    with receiver() as kims, receiver() as lees, running(own, tmp_path) as services:
        register(own, "kim", kims.url)
        register(own, "kim", kims.url + "?only=canceled", ["course.canceled"])
        register(own, "lee", lees.url)
        done = ended(kim_done, "kim")
        # The seed incident: a redelivered failure of a completed job. The state machine rejects it,
        # so no course.failed may reach the receiver.
        failed_again = event(
            MessageType.JOB_FAILED,
            kim_done,
            at=datetime.now(UTC),
            data=JobFailed(error_type="internal", message="a zombie's late failure", retryable=True),
        )
        canceled = new_message(
            JobCanceled(requested_by="kim", reason="wrong file"),
            job_id=kim_canceled,
            attempt=1,
            producer="test",
        )
        # A task of a running course fails: the task's end is the course's business, never a webhook.
        task_failed = [
            job_queued(kim_course, course_data(kim_course, owner="kim")),
            new_message(
                TaskQueued(
                    owner="kim",
                    course_name="Limit",
                    curriculum="SQL",
                    staging_prefix=f"staging/{kim_course}/",
                    task=task_spec(kim_task),
                ),
                job_id=kim_task,
                attempt=1,
                producer="test",
                course_job_id=kim_course,
            ),
            *(
                dataclasses.replace(event(kind, kim_task, at=datetime.now(UTC)), course_job_id=kim_course)
                for kind in (MessageType.JOB_STARTED, MessageType.JOB_FAILED)
            ),
        ]
        produce(
            own,
            [
                b"this is not an envelope",
                *done,
                failed_again,
                job_queued(kim_canceled, course_data(kim_canceled, owner="kim")),
                canceled,
                b'{"type": "JobCompleted"}',
                *task_failed,
                *ended(lee_done, "lee"),
            ],
        )
        projector = services.projector()
        notifier = services.notifier()
        wait_until(
            "every record finished and committed", lambda: all_committed(own), 60, [projector, notifier]
        )

        kim_got = sorted((r.path, r.json()["type"], r.json()["data"]["job_id"]) for r in kims.requests())
        assert kim_got == sorted(
            [
                ("/hooks/coursecast", "course.completed", str(kim_done)),
                ("/hooks/coursecast", "course.canceled", str(kim_canceled)),
                ("/hooks/coursecast?only=canceled", "course.canceled", str(kim_canceled)),
            ]
        )
        assert [(r.json()["type"], r.json()["data"]["job_id"]) for r in lees.requests()] == [
            ("course.completed", str(lee_done))
        ]
        canceled_body = next(r.json() for r in kims.requests() if r.json()["type"] == "course.canceled")
        assert (canceled_body["data"]["canceled_by"], canceled_body["data"]["reason"]) == (
            "kim",
            "wrong file",
        )
        # The task's failure was applied (the state machine accepted it), and still not notified.
        assert wait_for_job(own, kim_task, {"failed"}, 10).course_job_id == kim_course
        skipped = [line for line in log_lines(services.log("notifier")) if "undecodable" in line["message"]]
        assert len(skipped) == 2
        assert notifier.poll() is None


def test_a_deleted_endpoint_stops_its_retries_and_the_give_up_is_recorded(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    job_id = uuid4()
    with receiver(after=500) as hook, running(own, tmp_path) as services:
        endpoint_id, _ = register(own, "kim", hook.url)
        events = ended(job_id, "kim", MessageType.JOB_CANCELED)
        produce(own, events)
        services.projector()
        notifier = services.notifier()
        wait_until("a failed try", lambda: len(hook.requests()) >= 1, 60, [notifier])
        unregister(own, endpoint_id)
        wait_until(
            "the offsets committed past the given-up delivery", lambda: all_committed(own), 30, [notifier]
        )
        (record,) = deliveries(own, events[-1].event_id)
        assert record["state"] == "given_up"
        assert "deleted" in record["last_error"]
        assert record["last_status"] == 500


@pytest.mark.own(partitions=2, webhook_retry_base_s=0.3, webhook_retry_max_s=0.6, webhook_max_retry_age_s=2.0)
def test_a_delivery_failing_past_its_retry_age_is_given_up_recorded_and_the_log_moves_on(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    job_id, next_job = uuid4(), uuid4()
    with receiver(after=500) as broken, receiver() as working, running(own, tmp_path) as services:
        register(own, "kim", broken.url)
        register(own, "lee", working.url)
        events = ended(job_id, "kim")
        produce(own, events)
        services.projector()
        notifier = services.notifier()
        # Another owner's notification is not held up by kim's failing endpoint meanwhile.
        produce(own, ended(next_job, "lee"))
        wait_until("lee's notification", lambda: len(working.requests()) == 1, 30, [notifier])
        assert deliveries(own, events[-1].event_id)[0]["state"] != "delivered"
        wait_until("given up and committed", lambda: all_committed(own), 60, [notifier])
        (record,) = deliveries(own, events[-1].event_id)
        assert (record["state"], record["last_status"]) == ("given_up", 500)
        assert record["attempts"] == len(broken.requests()) >= 2
        assert record["given_up_at"] is not None
        gave_up = [line for line in log_lines(services.log("notifier")) if "gave up" in line["message"]]
        assert [line["level"] for line in gave_up] == ["ERROR"]
        assert gave_up[0]["event_id"] == str(events[-1].event_id)
        # What an operator reads: `coursecast webhooks deliveries --state given_up`.
        shown = coursecast(own, "webhooks", "deliveries", "--state", "given_up").stdout
        assert str(events[-1].event_id) in shown
        assert "given_up" in shown
        assert "HTTP 500" in shown


@pytest.mark.own(partitions=1, webhook_timeout_s=1.5, webhook_retry_base_s=0.3, webhook_retry_max_s=0.6)
def test_a_receiver_trickling_its_answer_is_cut_off_at_the_deadline_and_holds_up_no_other_owner(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    slow_job, next_job = uuid4(), uuid4()
    # Each byte comes well within the read timeout; the whole answer never within the deadline.
    with receiver([TRICKLE, TRICKLE]) as slow, receiver() as working, running(own, tmp_path) as services:
        register(own, "kim", slow.url)
        register(own, "lee", working.url)
        produce(own, ended(slow_job, "kim"))
        services.projector()
        notifier = services.notifier()
        wait_until("kim's first try", lambda: len(slow.requests()) >= 1, 30, [notifier])
        # One partition: lee's job is behind kim's on the log.
        produce(own, ended(next_job, "lee"))
        wait_until("lee's notification", lambda: len(working.requests()) == 1, 30, [notifier])
        wait_until("kim's, on the third try", lambda: len(slow.requests()) == 3, 30, [notifier])
        wait_until("everything committed", lambda: all_committed(own), 30, [notifier])

        assert working.requests()[0].at < slow.requests()[-1].at, "lee waited for kim's receiver"
        (record,) = [r for r in deliveries(own) if r["owner"] == "kim"]
        assert (record["state"], record["attempts"], record["last_status"]) == ("delivered", 3, 200)
        cut_off = [
            line
            for line in log_lines(services.log("notifier"))
            if "no complete answer within 1.5 s" in line["message"]
        ]
        assert len(cut_off) == 2


@pytest.mark.own(partitions=1, webhook_allow_private_addresses=False)
def test_without_private_addresses_a_loopback_endpoint_is_given_up_at_once_unreached(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    with receiver() as hook, running(own, tmp_path) as services:
        register(own, "kim", hook.url)  # http://127.0.0.1:…
        register(own, "kim", hook.url.replace("127.0.0.1", "localhost"))  # a name that resolves to it
        produce(own, ended(uuid4(), "kim"))
        services.projector()
        notifier = services.notifier()
        wait_until("given up and committed", lambda: all_committed(own), 30, [notifier])
        records = deliveries(own)
        assert [(r["state"], r["attempts"]) for r in records] == [("given_up", 1), ("given_up", 1)]
        assert all("which webhooks may not reach" in r["last_error"] for r in records)
        assert hook.requests() == []


@pytest.mark.own(partitions=1, webhook_max_pending=1, webhook_retry_base_s=0.2, webhook_retry_max_s=0.4)
def test_with_one_notification_in_progress_at_most_reading_pauses_and_resumes_until_all_are_delivered(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    jobs = [uuid4() for _ in range(4)]
    with receiver([500, 500, 500]) as hook, running(own, tmp_path) as services:
        register(own, "kim", hook.url)
        produce(own, [e for job in jobs for e in ended(job, "kim")])
        services.projector()
        notifier = services.notifier()
        wait_until("every job notified and committed", lambda: all_committed(own), 60, [notifier])
        delivered = [r.json()["data"]["job_id"] for r in hook.requests() if r.answered == 200]
        assert delivered == [str(job) for job in jobs], "one at a time, in log order"
        assert any("pausing reads" in line["message"] for line in log_lines(services.log("notifier")))


@pytest.mark.own(partitions=1, webhook_retry_base_s=1.0, webhook_retry_max_s=1.0)
def test_a_notifier_whose_postgres_connections_are_killed_mid_retry_still_delivers_once_committed(
    own: Settings, tmp_path: Path
) -> None:
    migrate_schema(own.database_url, own.database_schema)
    with receiver([500, 500]) as hook, running(own, tmp_path) as services:
        _, secret = register(own, "kim", hook.url)
        events = ended(uuid4(), "kim")
        produce(own, events)
        services.projector()
        notifier = services.notifier()
        wait_until("a failed try", lambda: len(hook.requests()) >= 1, 30, [notifier])
        assert terminate_connections(own, f"coursecast-notifier:{notifier.pid}") >= 1
        wait_until("delivered", lambda: hook.requests()[-1].answered == 200, 60, [notifier])
        wait_until("committed", lambda: all_committed(own), 30, [notifier])
        assert {t.event_id for t in hook.requests()} == {str(events[-1].event_id)}
        assert all(verify(t.signature, t.body, secret, now=time.time()) for t in hook.requests())
        (record,) = deliveries(own, events[-1].event_id)
        assert record["state"] == "delivered"
    assert services.codes == [0, 0]


def terminate_connections(settings: Settings, application_name: str) -> int:
    """pg_terminate_backend on every connection named `application_name`; how many there were."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)
