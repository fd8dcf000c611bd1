"""The message contract: every type round-trips, bad messages are typed CodecErrors, old versions upcast."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from services.core import codec as codec_module
from services.core.codec import (
    SCHEMAS,
    Codec,
    CodecError,
    EmptyMessage,
    MalformedMessage,
    SchemaViolation,
    UnknownMessageType,
    decode,
    encode,
)
from services.core.messages import (
    COMMAND_TYPES,
    EVENT_TYPES,
    Envelope,
    MessageType,
    Payload,
    job_key,
    new_message,
    printable,
)
from services.core.payloads import (
    LATEST_VERSION,
    CancelJob,
    JobFailed,
    JobProgress,
    JobQueued,
    JobQueuedV1,
    JobStalled,
    JobStarted,
    ProgressStep,
    PublishCourse,
    QueuedLecture,
)
from tests.support.examples import EXAMPLES, JOB_ID, JOB_QUEUED_V1, OCCURRED_AT, example

SCHEMA_BASE = "https://coursecast.dev/schemas/"
BACKENDS = ["jsonschema", *(["jsonschema-rs"] if Codec.from_directory().accelerated else [])]
SCHEMA_FILES = sorted(
    (path for path in SCHEMAS.iterdir() if path.name.endswith(".json")), key=lambda path: path.name
)


@pytest.fixture(scope="module", params=BACKENDS)
def codec(request: pytest.FixtureRequest) -> Codec:
    """A codec over the shipped schemas, once per validation back end (the contract must not depend on it)."""
    return Codec.from_directory(accelerate=request.param == "jsonschema-rs")


def as_document(message: Envelope) -> dict[str, Any]:
    """The JSON object of a valid message, to be broken by a test."""
    document: dict[str, Any] = orjson.loads(encode(message))
    return document


def progress_document(**data: Any) -> dict[str, Any]:
    """A valid JobProgress document whose data fields are then replaced, bypassing `encode`'s checks."""
    document = as_document(example(MessageType.JOB_PROGRESS))
    document["data"].update(data)
    return document


def decodes_or_raises_codec_error(codec: Codec, raw: bytes) -> None:
    """Decode `raw`, letting only a CodecError (with a reason and a code) stop it."""
    try:
        codec.decode(raw)
    except CodecError as error:
        reason, code = error.reason, error.code
    else:
        return
    assert reason
    assert code


def reason_of(codec: Codec, raw: bytes | None, error: type[CodecError]) -> str:
    with pytest.raises(error) as caught:
        codec.decode(raw)
    return caught.value.reason


# --- the contract itself ---------------------------------------------------------------------------


def test_every_message_type_has_an_example_and_a_schema_at_its_latest_version() -> None:
    assert set(EXAMPLES) == set(MessageType)
    assert dict(Codec.from_directory().latest_version) == dict(LATEST_VERSION)


def test_commands_and_events_partition_the_message_types() -> None:
    assert set(MessageType) == COMMAND_TYPES | EVENT_TYPES
    assert not COMMAND_TYPES & EVENT_TYPES
    assert example(MessageType.PUBLISH_COURSE).is_command
    assert example(MessageType.CANCEL_JOB).is_command
    assert not example(MessageType.JOB_COMPLETED).is_command


def test_every_schema_file_declares_its_own_id_and_forbids_unknown_fields() -> None:
    for path in SCHEMA_FILES:
        schema = orjson.loads(path.read_bytes())
        assert schema["$id"] == SCHEMA_BASE + path.name, path.name
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        assert schema["additionalProperties"] is False, path.name


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_message_type_round_trips_unchanged(codec: Codec, message_type: MessageType) -> None:
    message = example(message_type, attempt=2)
    decoded = codec.decode(codec.encode(message))
    assert decoded == message
    assert type(decoded.data) is type(message.data)


def test_module_level_encode_and_decode_use_the_shipped_schemas() -> None:
    message = example(MessageType.JOB_COMPLETED)
    assert decode(encode(message)) == message


def test_encoded_message_carries_string_uuids_and_an_rfc3339_utc_timestamp() -> None:
    document = as_document(example(MessageType.JOB_STARTED))
    assert document["job_id"] == str(JOB_ID)
    assert uuid.UUID(document["event_id"])
    assert document["occurred_at"] == "2026-03-01T09:30:15.123456Z"
    assert list(document) == [
        "event_id",
        "type",
        "version",
        "job_id",
        "attempt",
        "occurred_at",
        "producer",
        "data",
    ]


def test_a_timestamp_with_a_plus_zero_offset_decodes_like_z(codec: Codec) -> None:
    document = progress_document()
    document["occurred_at"] = "2026-03-01T09:30:15.123456+00:00"
    assert codec.decode(orjson.dumps(document)).occurred_at == OCCURRED_AT


def test_kafka_key_is_the_job_id_so_one_job_stays_on_one_partition() -> None:
    queued, progress = example(MessageType.JOB_QUEUED), example(MessageType.JOB_PROGRESS, attempt=3)
    assert queued.kafka_key() == progress.kafka_key() == job_key(JOB_ID)
    assert job_key(JOB_ID).startswith(str(JOB_ID).encode())  # readable in a console consumer


def test_new_message_stamps_a_fresh_event_id_and_utc_now_at_the_latest_version() -> None:
    before = datetime.now(UTC)
    first = new_message(JobStarted(worker="w"), job_id=JOB_ID, attempt=1, producer="encoder")
    second = new_message(JobStarted(worker="w"), job_id=JOB_ID, attempt=1, producer="encoder")
    assert first.event_id != second.event_id
    assert first.version == LATEST_VERSION["JobStarted"]
    assert before <= first.occurred_at <= datetime.now(UTC)
    assert first.occurred_at.tzinfo is UTC


def test_the_type_and_version_of_a_message_are_those_of_its_payload_class() -> None:
    message = new_message(CancelJob(requested_by="instructor-42"), job_id=JOB_ID, attempt=1, producer="api")
    assert (message.type, message.version) == (MessageType.CANCEL_JOB, CancelJob.version)
    assert message.is_command


def test_envelope_refuses_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Envelope(
            event_id=uuid.uuid4(),
            job_id=JOB_ID,
            attempt=1,
            occurred_at=datetime(2026, 3, 1, 9, 30),
            producer="encoder",
            data=JobStarted(worker="w"),
        )


def test_envelope_stores_an_offset_timestamp_as_the_same_instant_in_utc() -> None:
    seoul = timezone(timedelta(hours=9))
    message = new_message(
        JobStarted(worker="w"),
        job_id=JOB_ID,
        attempt=1,
        producer="encoder",
        occurred_at=OCCURRED_AT.astimezone(seoul),
    )
    assert message.occurred_at == OCCURRED_AT
    assert message.occurred_at.tzinfo is UTC


def test_equal_envelopes_hash_alike_so_they_can_be_deduplicated_in_a_set() -> None:
    message = example(MessageType.JOB_PROGRESS)
    assert len({message, decode(encode(message))}) == 1


# --- typed errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, b""])
def test_decode_rejects_a_record_without_value_as_empty(codec: Codec, raw: bytes | None) -> None:
    assert "no value" in reason_of(codec, raw, EmptyMessage)


def test_decode_rejects_bytes_that_are_not_json_as_malformed(codec: Codec) -> None:
    assert "not valid JSON" in reason_of(codec, b"not json", MalformedMessage)


def test_decode_rejects_json_that_is_not_an_object_as_malformed(codec: Codec) -> None:
    assert "got a JSON array" in reason_of(codec, b"[1]", MalformedMessage)


def test_decode_rejects_a_missing_envelope_field_with_its_name(codec: Codec) -> None:
    document = progress_document()
    del document["job_id"]
    assert "'job_id' is a required property" in reason_of(codec, orjson.dumps(document), SchemaViolation)


def test_decode_rejects_an_extra_envelope_field_with_its_name(codec: Codec) -> None:
    document = {**progress_document(), "partition": 3}
    assert "'partition' was unexpected" in reason_of(codec, orjson.dumps(document), SchemaViolation)


@pytest.mark.parametrize("bad", ["not-a-uuid", "0B7C5E2A-4F1D-4C3E-9A6B-2D8F1E0C7A51", 42])
def test_decode_rejects_a_bad_uuid_with_the_field_path(codec: Codec, bad: object) -> None:
    document = {**progress_document(), "event_id": bad}
    reason = reason_of(codec, orjson.dumps(document), SchemaViolation)
    assert reason.startswith("JobProgress v1: $.event_id: ")


@pytest.mark.parametrize(
    "bad", ["2026-03-01T09:30:15+09:00", "2026-03-01T09:30:15", "2026-13-01T09:30:15Z", "yesterday"]
)
def test_decode_rejects_a_timestamp_that_is_not_a_valid_utc_instant(codec: Codec, bad: str) -> None:
    document = {**progress_document(), "occurred_at": bad}
    assert "$.occurred_at" in reason_of(codec, orjson.dumps(document), SchemaViolation)


def test_decode_rejects_a_bad_data_field_with_the_field_path_and_the_rule(codec: Codec) -> None:
    raw = orjson.dumps(progress_document(percent=150))
    assert reason_of(codec, raw, SchemaViolation) == (
        "JobProgress v1: $.data.percent: 150 is greater than the maximum of 100"
    )


def test_decode_rejects_a_bad_nested_data_field_with_its_path(codec: Codec) -> None:
    document = as_document(example(MessageType.JOB_COMPLETED))
    document["data"]["outputs"]["videos"][1]["renditions"][0]["bandwidth"] = "fast"
    reason = reason_of(codec, orjson.dumps(document), SchemaViolation)
    assert reason.startswith("JobCompleted v1: $.data.outputs.videos[1].renditions[0].bandwidth: ")


def test_decode_rejects_an_extra_data_field_with_its_name(codec: Codec) -> None:
    raw = orjson.dumps(progress_document(eta_s=12))
    reason = reason_of(codec, raw, SchemaViolation)
    assert reason.startswith("JobProgress v1: $.data: ")
    assert "'eta_s' was unexpected" in reason


def test_decode_rejects_unknown_type_with_reason(codec: Codec) -> None:
    document = {**progress_document(), "type": "JobExploded"}
    assert reason_of(codec, orjson.dumps(document), UnknownMessageType) == (
        "no schema for message type 'JobExploded'"
    )


def test_decode_rejects_unknown_version_with_reason(codec: Codec) -> None:
    document = {**progress_document(), "version": 7}
    reason = reason_of(codec, orjson.dumps(document), UnknownMessageType)
    assert reason.startswith("no schema for JobProgress v7; this service knows up to v1")


def test_decode_reports_a_broken_envelope_before_an_unknown_type(codec: Codec) -> None:
    document = {**progress_document(), "type": "JobExploded", "attempt": 0}
    assert "$.attempt" in reason_of(codec, orjson.dumps(document), SchemaViolation)


def test_decode_accepts_an_integral_float_version_as_an_int(codec: Codec) -> None:
    document = {**progress_document(), "version": 1.0, "attempt": 2.0}
    message = codec.decode(orjson.dumps(document))
    assert (type(message.version), type(message.attempt)) == (int, int)


def test_encode_refuses_an_invalid_message_so_it_is_never_produced(codec: Codec) -> None:
    with pytest.raises(SchemaViolation, match=r"\$\.data\.step"):
        codec.encode(example(MessageType.JOB_PROGRESS, step="dancing"))


class JobStartedV9(Payload, frozen=True, kw_only=True):
    """A version of JobStarted no codec knows."""

    message_type = MessageType.JOB_STARTED
    version = 9

    worker: str


def test_encode_refuses_an_unknown_version(codec: Codec) -> None:
    message = dataclasses.replace(example(MessageType.JOB_STARTED), data=JobStartedV9(worker="w"))
    with pytest.raises(UnknownMessageType, match="no schema for JobStarted v9"):
        codec.encode(message)


def test_encode_refuses_a_naive_datetime_inside_data(codec: Codec) -> None:
    message = example(MessageType.JOB_STALLED, last_heartbeat_at=datetime(2026, 3, 1, 9, 25))
    with pytest.raises(SchemaViolation, match=r"\$\.data\.last_heartbeat_at"):
        codec.encode(message)


def test_encode_writes_an_aware_datetime_inside_data_as_rfc3339_utc(codec: Codec) -> None:
    message = example(MessageType.JOB_STALLED, last_heartbeat_at=OCCURRED_AT)
    assert as_document(message)["data"]["last_heartbeat_at"] == "2026-03-01T09:30:15.123456Z"
    decoded = codec.decode(codec.encode(message))
    assert isinstance(decoded.data, JobStalled)
    assert decoded.data.last_heartbeat_at == OCCURRED_AT


def test_encode_refuses_data_that_is_not_json(codec: Codec) -> None:
    with pytest.raises(MalformedMessage, match="not serializable"):
        codec.encode(example(MessageType.JOB_PROGRESS, message=object()))


def test_codec_errors_carry_distinct_short_codes_for_dlq_headers() -> None:
    codes = [cls.code for cls in (EmptyMessage, MalformedMessage, SchemaViolation, UnknownMessageType)]
    assert len(set(codes)) == len(codes)
    assert all(code.isidentifier() and len(code) <= 20 for code in codes)


def test_a_reason_stays_short_even_when_the_offending_value_is_huge(codec: Codec) -> None:
    document = {**progress_document(), "producer": ["x" * 100_000]}
    assert len(reason_of(codec, orjson.dumps(document), SchemaViolation)) <= 500


# --- nothing but CodecError escapes decode (G6) ----------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(raw=st.binary(max_size=300) | json_values.map(orjson.dumps))
def test_arbitrary_bytes_either_decode_or_raise_a_codec_error(codec: Codec, raw: bytes) -> None:
    decodes_or_raises_codec_error(codec, raw)


@settings(max_examples=300)
@given(message_type=st.sampled_from(list(MessageType)), in_data=st.booleans(), draw=st.data())
def test_any_json_value_in_any_field_either_decodes_or_raises_a_codec_error(
    codec: Codec, message_type: MessageType, in_data: bool, draw: st.DataObject
) -> None:
    document = as_document(example(message_type))
    target = document["data"] if in_data else document
    field = draw.draw(st.sampled_from(sorted(target)) | st.text(max_size=12), label="field")
    if draw.draw(st.booleans(), label="delete instead"):
        target.pop(field, None)
    else:
        target[field] = draw.draw(json_values, label="value")
    decodes_or_raises_codec_error(codec, orjson.dumps(document))


# --- upcasting: handlers only ever see the latest version ------------------------------------------

PROGRESS_V2: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_BASE + "JobProgress.v2.json",
    "title": "JobProgress (test-only v2: percent becomes a fraction; video_index always present)",
    "type": "object",
    "additionalProperties": False,
    "required": ["fraction", "step", "video_index"],
    "properties": {
        "fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "step": {"enum": ["probing", "transcoding", "thumbnails", "uploading"]},
        "video_index": {"type": ["integer", "null"], "minimum": 0},
        "message": {"type": "string"},
    },
}


class JobProgressV2(Payload, frozen=True, kw_only=True):
    """The payload class of the test-only JobProgress v2."""

    message_type = MessageType.JOB_PROGRESS
    version = 2

    fraction: float
    step: ProgressStep
    video_index: int | None
    message: str | None = None


def progress_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    upcast = {"fraction": data.pop("percent") / 100, "video_index": data.pop("video_index", None)}
    return {**data, **upcast}


@pytest.fixture
def codec_with_v2() -> Codec:
    """A private codec that knows a test-only JobProgress v2, so the shipped registry stays untouched."""
    codec = Codec.from_directory()
    codec.register_schema(JobProgressV2, PROGRESS_V2)
    codec.register_upcaster("JobProgress", 1, progress_v1_to_v2)
    return codec


def test_a_v1_message_decodes_in_the_v2_shape_through_the_registered_upcaster(codec_with_v2: Codec) -> None:
    v1 = example(MessageType.JOB_PROGRESS, percent=42.5, step="transcoding")
    decoded = codec_with_v2.decode(codec_with_v2.encode(v1))
    assert decoded.version == 2
    expected = JobProgressV2(fraction=0.425, step=ProgressStep.TRANSCODING, video_index=1, message="720p")
    assert decoded.data == expected
    assert (decoded.event_id, decoded.job_id, decoded.occurred_at) == (v1.event_id, v1.job_id, v1.occurred_at)


def test_a_v2_message_decodes_unchanged_once_v2_is_the_latest(codec_with_v2: Codec) -> None:
    v2 = new_message(
        JobProgressV2(fraction=1.0, step=ProgressStep.UPLOADING, video_index=None),
        job_id=JOB_ID,
        attempt=1,
        producer="encoder",
    )
    assert codec_with_v2.latest_version["JobProgress"] == 2
    assert codec_with_v2.decode(codec_with_v2.encode(v2)) == v2


def test_a_job_queued_v1_from_the_log_reaches_handlers_as_v2_with_its_job_as_course_and_numbered_titles(
    codec: Codec,
) -> None:
    raw = orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": "JobQueued",
            "version": 1,
            "job_id": str(JOB_ID),
            "attempt": 1,
            "occurred_at": "2026-03-01T09:30:15.123456Z",
            "producer": "api",
            "data": JOB_QUEUED_V1,
        }
    )
    decoded = codec.decode(raw)
    assert decoded.version == 2
    assert isinstance(decoded.data, JobQueued)
    assert decoded.data.course_id == JOB_ID
    assert decoded.data.lectures == (
        QueuedLecture(index=0, title="Lecture 1"),
        QueuedLecture(index=1, title="Lecture 2"),
    )
    assert decoded.data.publish_command() == PublishCourse(**JOB_QUEUED_V1)
    # What it was queued with is untouched; a v1 message still encodes (as v1) for old readers' tests.
    v1 = msgspec.convert(JOB_QUEUED_V1, JobQueuedV1)
    assert codec.decode(codec.encode(dataclasses.replace(decoded, data=v1))) == decoded


def test_an_old_version_without_an_upcaster_chain_is_rejected_not_handed_over() -> None:
    codec = Codec.from_directory()
    codec.register_schema(JobProgressV2, PROGRESS_V2)
    raw = codec.encode(example(MessageType.JOB_PROGRESS))
    with pytest.raises(UnknownMessageType, match="no upcaster from JobProgress v1 to v2"):
        codec.decode(raw)


def test_a_faulty_upcaster_cannot_hand_a_handler_invalid_data() -> None:
    codec = Codec.from_directory()
    codec.register_schema(JobProgressV2, PROGRESS_V2)
    codec.register_upcaster("JobProgress", 1, lambda data: {**data, "fraction": 42})
    with pytest.raises(SchemaViolation, match="JobProgress v2"):
        codec.decode(codec.encode(example(MessageType.JOB_PROGRESS)))


def test_a_published_schema_version_can_never_be_replaced() -> None:
    with pytest.raises(ValueError, match="already registered"):
        Codec.from_directory().register_schema(JobProgress, PROGRESS_V2)


def test_an_upcaster_needs_the_schemas_of_both_versions_first() -> None:
    with pytest.raises(ValueError, match="JobProgress v2"):
        Codec.from_directory().register_upcaster("JobProgress", 1, progress_v1_to_v2)


def test_the_module_level_registration_functions_upcast_for_module_level_decode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A private default codec for this test, so the v2 below never leaks into other tests.
    monkeypatch.setattr(codec_module, "default_codec", Codec.from_directory())
    codec_module.register_schema(JobProgressV2, PROGRESS_V2)
    codec_module.register_upcaster("JobProgress", 1, progress_v1_to_v2)
    decoded = codec_module.decode(codec_module.encode(example(MessageType.JOB_PROGRESS)))
    assert isinstance(decoded.data, JobProgressV2)
    assert (decoded.version, decoded.data.fraction) == (2, 0.425)


@pytest.fixture(autouse=True)
def _shipped_registry_is_untouched() -> Iterator[None]:
    yield
    assert dict(codec_module.default_codec.latest_version) == dict(LATEST_VERSION)


# --- no control characters in any string (Postgres cannot store U+0000; logs must not be steered) --

FREE_TEXT_FIELDS = {"message", "reason"}
CONTROL_CHARACTERS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x9f"]
LINE_BREAKS = ["\t", "\n", "\r"]


def string_schemas(node: object, name: str | None = None) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Every (property name, schema) of a string in a schema document, however deeply nested."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "string" or (isinstance(kind, list) and "string" in kind):
            yield name, node
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for child_name, child in value.items():
                    yield from string_schemas(child, child_name)
            else:
                yield from string_schemas(value, name)
    elif isinstance(node, list):
        for item in node:
            yield from string_schemas(item, name)


def string_paths(node: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every string value in a JSON document."""
    if isinstance(node, str):
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from string_paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from string_paths(value, (*path, index))


def replaced(document: Any, path: tuple[str | int, ...], value: str) -> Any:
    """A deep copy of `document` with the string at `path` replaced."""
    copied = orjson.loads(orjson.dumps(document))
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copied


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_string_of_every_schema_forbids_control_characters_by_pattern(path: Any) -> None:
    strings = list(string_schemas(orjson.loads(path.read_bytes())))
    assert strings, path.name
    for name, schema in strings:
        assert "pattern" in schema, f"{path.name}: {name} has no pattern"
        check = Draft202012Validator({"type": "string", "pattern": schema["pattern"]})
        for control in CONTROL_CHARACTERS:
            assert not check.is_valid(f"a{control}b"), f"{path.name}: {name} allows {control!r}"
        for line_break in LINE_BREAKS:
            allowed = name in FREE_TEXT_FIELDS
            assert check.is_valid(f"a{line_break}b") == allowed, f"{path.name}: {name} and {line_break!r}"


@pytest.mark.parametrize("message_type", list(MessageType))
@pytest.mark.parametrize("control", ["\x00", "\x1b", "\x7f", "\x85"])
def test_decode_rejects_a_control_character_in_any_string_of_any_message(
    codec: Codec, message_type: MessageType, control: str
) -> None:
    document = as_document(example(message_type))
    paths = list(string_paths(document))
    assert ("producer",) in paths
    for path in paths:
        raw = orjson.dumps(replaced(document, path, f"a{control}b"))
        reason = reason_of(codec, raw, SchemaViolation)
        assert str(path[-1]) in reason, reason
        assert f"control character U+{ord(control):04X} at position 1" in reason, reason


def test_decode_rejects_an_escaped_nul_in_a_cancel_reason_with_the_field_and_code_point(codec: Codec) -> None:
    document = as_document(example(MessageType.CANCEL_JOB))
    raw = orjson.dumps(document).replace(b'"wrong video uploaded"', b'"a\\u0000b"')
    assert b"\\u0000" in raw
    reason = reason_of(codec, raw, SchemaViolation)
    assert reason.startswith(
        "CancelJob v1: $.data.reason: contains the control character U+0000 at position 1"
    )


def test_encode_refuses_a_nul_so_a_producer_never_emits_one(codec: Codec) -> None:
    cancel = example(MessageType.CANCEL_JOB, reason="a\x00b")
    with pytest.raises(SchemaViolation, match=r"\$\.data\.reason: contains the control character U\+0000"):
        codec.encode(cancel)
    nul_producer = dataclasses.replace(example(MessageType.JOB_STARTED), producer="api\x00")
    with pytest.raises(SchemaViolation, match=r"\$\.producer: contains the control character U\+0000"):
        codec.encode(nul_producer)


@pytest.mark.parametrize("line_break", LINE_BREAKS)
def test_free_text_keeps_tabs_and_line_breaks(codec: Codec, line_break: str) -> None:
    failed = new_message(
        JobFailed(error_type="invalid_media", message=f"line one{line_break}line two", retryable=False),
        job_id=JOB_ID,
        attempt=1,
        producer="encoder@host:1",
    )
    assert codec.decode(codec.encode(failed)) == failed


@pytest.mark.parametrize("line_break", LINE_BREAKS)
def test_a_single_line_field_refuses_a_line_break_even_at_its_end(codec: Codec, line_break: str) -> None:
    for value in (f"Intro{line_break}", f"Intro{line_break}duction"):
        document = replaced(as_document(example(MessageType.JOB_QUEUED)), ("data", "course_name"), value)
        reason = reason_of(codec, orjson.dumps(document), SchemaViolation)
        assert "$.data.course_name" in reason, reason


def test_unicode_text_that_is_not_a_control_character_is_accepted(codec: Codec) -> None:
    document = replaced(
        as_document(example(MessageType.JOB_QUEUED)), ("data", "course_name"), "알고리즘 · Ünïcödé ☃ \u2028"
    )
    queued = codec.decode(orjson.dumps(document)).data
    assert isinstance(queued, JobQueued)
    assert queued.course_name == "알고리즘 · Ünïcödé ☃ \u2028"


def test_printable_makes_machine_text_acceptable_as_a_free_text_field(codec: Codec) -> None:
    stderr_line = "\x1b[31mmoov atom not found\x1b[0m\x00\tat\r\n0x7f:\x7f"
    failed = new_message(
        JobFailed(error_type="invalid_media", message=printable(stderr_line), retryable=False),
        job_id=JOB_ID,
        attempt=1,
        producer="encoder@host:1",
    )
    assert failed.data.message == "\ufffd[31mmoov atom not found\ufffd[0m\ufffd\tat\r\n0x7f:\ufffd"
    assert codec.decode(codec.encode(failed)) == failed


def test_a_lone_surrogate_is_malformed_at_consume_and_at_produce(codec: Codec) -> None:
    # Postgres (UTF-8) cannot hold half a surrogate pair either; JSON's escape must not smuggle one in.
    document = as_document(example(MessageType.CANCEL_JOB))
    raw = orjson.dumps(document).replace(b'"wrong video uploaded"', b'"a\\ud800b"')
    assert "surrogate" in reason_of(codec, raw, MalformedMessage)
    cancel = example(MessageType.CANCEL_JOB, reason="a\ud800b")
    with pytest.raises(MalformedMessage, match="not serializable as JSON"):
        codec.encode(cancel)
