"""G3 + G6 against poison the database refuses: a real projector process sets such an event aside
with the reason and applies every other event, and a rebuild from the log does the same."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from uuid import uuid4

import msgspec
import pytest
from confluent_kafka import Consumer

from devtools.synthetic import history
from services.core import codec
from services.core.kafka_config import consumer_config
from services.core.messages import Envelope, MessageType
from services.core.payloads import JobCanceled
from services.core.settings import Settings
from services.projector.store import JobStore
from tests.support.messages import T0, event, timeline
from tests.support.projection_checks import assert_table_is_the_log
from tests.support.projector import produce, wait_caught_up
from tests.support.services import start_projector, stop

M = MessageType
INT4_OVERFLOW = 2**31  # one past the largest `integer` Postgres stores
WRAPS_TO_TWO = 2**32 + 2  # what a silently wrapping int4 encoder would store as 2


# Small batches, so each poison event shares its batch with about a hundred good ones.
pytestmark = pytest.mark.own(partitions=3, projector_batch_size=100)


def interleave(good: list[Envelope], extra: list[Envelope | bytes], every: int) -> list[Envelope | bytes]:
    """`good` with one item of `extra` after every `every` events, so poison lands mid-stream."""
    stream: list[Envelope | bytes] = []
    pending = list(extra)
    for index, item in enumerate(good, start=1):
        stream.append(item)
        if pending and index % every == 0:
            stream.append(pending.pop(0))
    return stream + pending


def key_of(item: Envelope | bytes, keys: dict[int, bytes]) -> bytes:
    return item.kafka_key() if isinstance(item, Envelope) else keys[id(item)]


def run_projector_over(own: Settings, stream: list[Envelope | bytes], keys: dict[int, bytes]) -> None:
    """Produce `stream` in order, run one projector process until it has read it all, stop it."""
    produce_in_order(own, stream, keys)
    projector = start_projector(own)
    try:
        wait_caught_up(own, timeout_s=180, processes=[projector])
        assert projector.poll() is None, "the projector stopped"
    finally:
        code = stop(projector)
    assert code == 0, (projector.stderr.read() if projector.stderr else b"").decode()[-2000:]


def produce_in_order(own: Settings, stream: list[Envelope | bytes], keys: dict[int, bytes]) -> None:
    values: list[bytes | None] = [codec.encode(i) if isinstance(i, Envelope) else i for i in stream]
    produce(own, values, keys=[key_of(i, keys) for i in stream])


def test_events_postgres_refuses_are_set_aside_with_its_reason_and_every_other_event_is_applied(
    own: Settings,
) -> None:
    good = history(jobs=120, events_per_job=8, seed=21)
    running = next(e.job_id for e in good if e.type == M.JOB_STARTED)
    newcomer = uuid4()
    # Valid by the contract, refused by the database: numbers beyond Postgres' `integer`.
    progress_of_impossible_attempt = event(M.JOB_PROGRESS, running, attempt=INT4_OVERFLOW)
    start_that_would_wrap_to_attempt_two = event(M.JOB_STARTED, running, attempt=WRAPS_TO_TWO)
    queued = event(M.JOB_QUEUED, newcomer, at=T0)
    queued_with_too_many_videos = dataclasses.replace(
        queued, data=msgspec.structs.replace(queued.data, video_count=INT4_OVERFLOW)
    )
    refused = [
        progress_of_impossible_attempt,
        start_that_would_wrap_to_attempt_two,
        queued_with_too_many_videos,
    ]
    # The newcomer's later events are good ones; without its JobQueued they meet an unknown job.
    after = timeline(newcomer, M.JOB_STARTED, M.JOB_COMPLETED, start=T0 + timedelta(minutes=1))
    good_with_newcomer = [*good, *after]
    stream = interleave(good, [*refused], every=300) + list(after)
    assert len(stream) == len(good) + 5

    run_projector_over(own, stream, keys={})

    result = assert_table_is_the_log(own, good_with_newcomer)
    assert result.refused == 3, "the rebuild refuses the same events again"
    store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    try:
        rows = store.connection.execute(
            "SELECT event_id, type, sqlstate, reason, event FROM refused_events ORDER BY kafka_offset"
        ).fetchall()
        assert newcomer not in store.jobs()
        (rejection,) = store.connection.execute(
            "SELECT rejection FROM rejected_events WHERE event_id = %s", (after[0].event_id,)
        ).fetchall()
    finally:
        store.close()
    out_of_range = 'value "{}" is out of range for type integer'
    assert {(r[0], r[1], r[2], r[3]) for r in rows} == {
        (progress_of_impossible_attempt.event_id, "JobProgress", "22003", out_of_range.format(INT4_OVERFLOW)),
        (
            start_that_would_wrap_to_attempt_two.event_id,
            "JobStarted",
            "22003",
            out_of_range.format(WRAPS_TO_TWO),
        ),
        (queued_with_too_many_videos.event_id, "JobQueued", "22003", out_of_range.format(INT4_OVERFLOW)),
    }
    kept = {decoded.event_id: decoded for decoded in (codec.decode(bytes(r[4])) for r in rows)}
    assert kept[queued_with_too_many_videos.event_id] == queued_with_too_many_videos
    assert rejection == ("UnknownJob",)


def test_a_nul_in_a_cancel_reason_produced_raw_is_dead_lettered_and_the_projector_keeps_going(
    own: Settings,
) -> None:
    good = history(jobs=120, events_per_job=8, seed=22)
    target = uuid4()
    lifecycle = timeline(target, M.JOB_QUEUED, M.JOB_STARTED, M.JOB_PROGRESS, M.JOB_COMPLETED)
    cancel = event(
        M.JOB_CANCELED, target, data=JobCanceled(requested_by="instructor-1", reason="placeholder")
    )
    # The api's request of issue 8, as bytes on the log: JSON's \u0000 escape, which jsonb refuses.
    nul_cancel = codec.encode(cancel).replace(b'"placeholder"', b'"a\\u0000b"')
    assert b"a\\u0000b" in nul_cancel
    stream = interleave(good, [lifecycle[0], lifecycle[1], nul_cancel, lifecycle[2], lifecycle[3]], every=150)
    keys = {id(nul_cancel): cancel.kafka_key()}

    run_projector_over(own, stream, keys)

    result = assert_table_is_the_log(own, [*good, *lifecycle])
    assert (result.dead, result.refused) == (1, 0)
    store = JobStore.open(own.database_url, own.database_schema, own.events_topic)
    try:
        job = store.job(target)
    finally:
        store.close()
    assert job is not None
    assert job.status == "completed"
    headers, value = dead_letter(own)
    assert value == nul_cancel
    assert headers["dlq.code"] == b"schema_violation"
    assert headers["dlq.reason"].startswith(
        b"JobCanceled v1: $.data.reason: contains the control character U+0000 at position 1"
    )


def dead_letter(own: Settings) -> tuple[dict[str, bytes], bytes]:
    """The one message of the events DLQ: its headers and value."""
    consumer = Consumer(consumer_config(own, f"dlq-{uuid4()}", "test"))
    consumer.subscribe([own.events_dlq_topic])
    try:
        for _ in range(30):
            message = consumer.poll(2)
            if message is not None and message.error() is None:
                raw_headers = message.headers() or []
                pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
                headers = {k: v for k, v in pairs if isinstance(v, bytes)}
                return headers, message.value() or b""
    finally:
        consumer.close()
    raise AssertionError("nothing reached the DLQ")
