"""Bytes <-> Envelope for Kafka: orjson, JSON Schema validation at produce and at consume, and upcasting.

The JSON Schemas (schemas/ at the top of the repository, installed as the package services.schemas)
are the contract; each (type, version) is paired with its payload class of services.core.payloads,
which `decode` builds from the validated JSON and `encode` turns back into JSON.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.resources
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.resources.abc import Traversable
from typing import Any, ClassVar, Final

import msgspec
import orjson
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from services.core.messages import CONTROL_IN_LINE, Envelope, Payload
from services.core.payloads import PAYLOAD_CLASSES

__all__ = [
    "SCHEMAS",
    "SCHEMA_PACKAGE",
    "UPCASTERS",
    "Codec",
    "CodecError",
    "EmptyMessage",
    "MalformedMessage",
    "SchemaViolation",
    "UnknownMessageType",
    "Upcaster",
    "decode",
    "default_codec",
    "encode",
    "job_queued_v1_to_v2",
    "register_schema",
    "register_upcaster",
]

# The top-level schemas/ folder, shipped in the wheel as this package (see setup.py): a plain
# `pip install .` carries the contract, and a checkout reads the very same files.
SCHEMA_PACKAGE: Final = "services.schemas"
SCHEMAS: Final[Traversable] = importlib.resources.files(SCHEMA_PACKAGE)
ENVELOPE_SCHEMA_FILE: Final = "envelope.v1.json"
_SCHEMA_FILE = re.compile(r"^(?P<type>[A-Z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.json$")
# A DLQ header and a log line stay readable even when the offending value is huge.
_MAX_REASON = 500
# Enforces "format" (uuid, date-time via rfc3339-validator), which JSON Schema treats as advisory by default.
_FORMATS: Final = Draft202012Validator.FORMAT_CHECKER

JSONObject = dict[str, Any]
Upcaster = Callable[[JSONObject], JSONObject]
"""Turns the `data` of version N of a type into the `data` of version N + 1."""


class CodecError(Exception):
    """A message that cannot be encoded or decoded; consumers route it to the dead-letter topic."""

    code: ClassVar[str] = "codec_error"

    def __init__(self, reason: str) -> None:
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 1] + "…"
        super().__init__(reason)
        self.reason = reason


class EmptyMessage(CodecError):  # noqa: N818  (names of the contract, read in DLQ reports)
    """The record has no value (a tombstone or an empty payload)."""

    code = "empty"


class MalformedMessage(CodecError):  # noqa: N818  (names of the contract, read in DLQ reports)
    """The value is not JSON, or not a JSON object."""

    code = "malformed"


class SchemaViolation(CodecError):  # noqa: N818  (names of the contract, read in DLQ reports)
    """The envelope or its data breaks the schema of the message's type and version."""

    code = "schema_violation"


class UnknownMessageType(CodecError):  # noqa: N818  (names of the contract, read in DLQ reports)
    """No schema (or no upcaster chain) is registered for the message's type and version."""

    code = "unknown_type"


def _type_name(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _load_accelerator() -> Any | None:
    """jsonschema-rs (Rust, same draft 2020-12 semantics, ~100x faster) if it is installed."""
    try:
        return importlib.import_module("jsonschema_rs")
    except ImportError:
        return None


_ACCELERATOR: Final = _load_accelerator()


@functools.cache
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled with ECMA-262's meaning of a final `$`: the very end of the string.

    Python's `$` also matches before a final line feed, so "name\\n" would pass a single-line pattern
    in jsonschema while jsonschema-rs refuses it; the contract must not depend on the back end.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(
    validator: Any, pattern: str, instance: Any, _schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """The `pattern` keyword of JSON Schema, with ECMA-262 anchors."""
    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Explainer: Final = validators.extend(Draft202012Validator, {"pattern": _pattern})  # type: ignore[no-untyped-call]


def _explain(error: ValidationError) -> str:
    """The rule a value broke, in words; a control character is named by its code point and position."""
    # A string refused by its pattern, format or enum (alone or under anyOf): the character says why.
    if error.validator not in ("type", "minLength", "maxLength") and isinstance(error.instance, str):
        # Every string of the contract forbids control characters through a `pattern`.
        found = CONTROL_IN_LINE.search(error.instance)
        if found is not None:
            return (
                f"contains the control character U+{ord(found.group()):04X} at position {found.start()};"
                " strings of the contract may not hold control characters"
            )
    return error.message


@dataclass(frozen=True, slots=True)
class _CompiledSchema:
    """One message schema compiled twice: a fast yes/no check, and jsonschema to explain a no."""

    label: str
    explainer: Any  # a Draft202012Validator with ECMA-262 `pattern` anchors
    fast: Any | None  # a jsonschema_rs validator, when the accelerator is installed

    def check(self, document: Any) -> None:
        """Raise SchemaViolation, naming the field and the rule, unless `document` is valid."""
        if self.fast is not None and self.fast.is_valid(document):
            return
        # The slow path runs only for invalid messages (or without the accelerator).
        error = best_match(self.explainer.iter_errors(document))
        if error is not None:
            path = error.json_path if error.path else "$"
            raise SchemaViolation(f"{self.label}: {path}: {_explain(error)}")
        if self.fast is not None:
            # The two validators disagree: the stricter one wins, so nothing doubtful reaches a handler.
            fast_error = next(iter(self.fast.iter_errors(document)), None)
            detail = fast_error.message if fast_error is not None else "rejected by the schema"
            raise SchemaViolation(f"{self.label}: {detail}")


def _compile(schema: JSONObject, label: str, accelerate: bool) -> _CompiledSchema:
    fast = None
    if accelerate and _ACCELERATOR is not None:
        fast = _ACCELERATOR.validator_for(schema, validate_formats=True)
    return _CompiledSchema(label, _Explainer(schema, format_checker=_FORMATS), fast)


# Guarantees of the codec:
# - a producer can never emit a message a consumer would reject: `encode` runs the checks of `decode` on
#   the very bytes it returns;
# - a handler never sees an old version: `decode` validates a message against the schema of its own
#   (type, version), then upcasts it step by step to the latest version of its type, and checks the result;
# - nothing but a CodecError leaves `decode`, with a reason a person can read and a short code for the
#   dead-letter headers (G6).
class Codec:
    """A registry of schemas and upcasters that encodes and decodes envelopes against it."""

    def __init__(self, envelope_schema: Mapping[str, Any], *, accelerate: bool = True) -> None:
        Draft202012Validator.check_schema(envelope_schema)
        self._accelerate = accelerate and _ACCELERATOR is not None
        self._envelope_schema: JSONObject = dict(envelope_schema)
        self._envelope = _compile(self._envelope_schema, "envelope", self._accelerate)
        # One compiled schema per (type, version) checks envelope and data in a single pass.
        self._validators: dict[tuple[str, int], _CompiledSchema] = {}
        # The payload class of each (type, version); `decode` builds the one of the latest version.
        self._payloads: dict[tuple[str, int], type[Payload]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._latest: dict[str, int] = {}

    @classmethod
    def from_directory(
        cls,
        directory: Traversable = SCHEMAS,
        *,
        payloads: Mapping[tuple[str, int], type[Payload]] = PAYLOAD_CLASSES,
        upcasters: Mapping[tuple[str, int], Upcaster] | None = None,
        accelerate: bool = True,
    ) -> Codec:
        """A codec holding every `<Type>.v<N>.json` of `directory`, each with its class in `payloads`,
        and the upcasters between their versions (default: the shipped ones, `UPCASTERS`)."""
        codec = cls(
            orjson.loads(directory.joinpath(ENVELOPE_SCHEMA_FILE).read_bytes()), accelerate=accelerate
        )
        for path in sorted(directory.iterdir(), key=lambda path: path.name):
            if not path.name.endswith(".json") or path.name == ENVELOPE_SCHEMA_FILE:
                continue
            match = _SCHEMA_FILE.match(path.name)
            if match is None:
                raise ValueError(f"{path}: schema files are named <Type>.v<N>.json")
            payload = payloads.get((match["type"], int(match["version"])))
            if payload is None:
                raise ValueError(f"{path}: no payload class for {match['type']} v{match['version']}")
            codec.register_schema(payload, orjson.loads(path.read_bytes()))
        for (type_, from_version), upcaster in (UPCASTERS if upcasters is None else upcasters).items():
            codec.register_upcaster(type_, from_version, upcaster)
        return codec

    # --- registry --------------------------------------------------------------------------------

    @property
    def accelerated(self) -> bool:
        """Whether valid messages are checked by jsonschema-rs rather than the pure-Python jsonschema."""
        return self._accelerate

    @property
    def latest_version(self) -> Mapping[str, int]:
        """The highest registered version of each type: the version `decode` always returns."""
        return self._latest

    def register_schema(self, payload: type[Payload], schema: Mapping[str, Any]) -> None:
        """Add the `data` schema of the type and version of `payload`, the class its data decodes to.

        A published version can never be replaced.
        """
        type, version = payload.message_type.value, payload.version
        if version < 1:
            raise ValueError(f"version must be >= 1, got {version}")
        if (type, version) in self._validators:
            raise ValueError(f"a schema for {type} v{version} is already registered")
        Draft202012Validator.check_schema(schema)
        # The data schema is embedded whole (its $id makes it its own resource, so its local $refs resolve).
        message_schema = copy.deepcopy(self._envelope_schema)
        data_schema = copy.deepcopy(dict(schema))
        # Same dialect as the envelope; without its own `$schema` the explainer keeps our `pattern`.
        data_schema.pop("$schema", None)
        message_schema["properties"]["data"] = data_schema
        self._validators[(type, version)] = _compile(message_schema, f"{type} v{version}", self._accelerate)
        self._payloads[(type, version)] = payload
        self._latest[type] = max(version, self._latest.get(type, 0))

    def register_upcaster(self, type: str, from_version: int, upcaster: Upcaster) -> None:
        """Add the function that turns `data` of `type` v`from_version` into v`from_version + 1`."""
        for version in (from_version, from_version + 1):
            if (type, version) not in self._validators:
                raise ValueError(f"register the schema of {type} v{version} before its upcaster")
        if (type, from_version) in self._upcasters:
            raise ValueError(f"an upcaster from {type} v{from_version} is already registered")
        self._upcasters[(type, from_version)] = upcaster

    # --- encode / decode -------------------------------------------------------------------------

    def encode(self, envelope: Envelope) -> bytes:
        """The message as JSON bytes, after checking it against its schema; raises CodecError if invalid."""
        document = {
            "event_id": envelope.event_id,
            "type": envelope.type,
            "version": envelope.version,
            "job_id": envelope.job_id,
            "attempt": envelope.attempt,
            "occurred_at": envelope.occurred_at,
            "producer": envelope.producer,
            "data": envelope.data,  # a payload struct, turned into JSON by _to_json
        }
        if envelope.course_job_id is not None:
            document["course_job_id"] = envelope.course_job_id
        try:
            raw = orjson.dumps(document, default=_to_json, option=orjson.OPT_UTC_Z)
        except orjson.JSONEncodeError as exc:
            label = f"{envelope.type} v{envelope.version}"
            raise MalformedMessage(f"{label}: not serializable as JSON: {exc}") from None
        # Check the exact bytes that will be sent, parsed back, with the consumer's own checks.
        self._check(orjson.loads(raw))
        return raw

    def decode(self, raw: bytes | None) -> Envelope:
        """The envelope in `raw`, at the latest version of its type; raises CodecError if it is not one."""
        if not raw:
            raise EmptyMessage("the record has no value (a tombstone or an empty payload)")
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"not valid JSON: {exc}") from None
        type_, version = self._check(document)
        latest = self._latest[type_]
        data = document["data"] if version == latest else self._upcast(document, type_, version, latest)
        try:
            return Envelope(
                event_id=uuid.UUID(document["event_id"]),
                job_id=uuid.UUID(document["job_id"]),
                attempt=int(document["attempt"]),
                occurred_at=datetime.fromisoformat(document["occurred_at"]),
                producer=document["producer"],
                # Valid against the schema already: the class only gives the fields their Python types
                # (non-strict, so an integral 1.0 the schema counts as an integer becomes a real int).
                data=msgspec.convert(data, self._payloads[(type_, latest)], strict=False),
                course_job_id=uuid.UUID(document["course_job_id"]) if "course_job_id" in document else None,
            )
        # Unreachable while the schema checks formats and each class matches its schema (a unit test
        # holds them together); kept as a safety net so that only a CodecError leaves `decode`.
        except (ValueError, msgspec.ValidationError) as exc:
            raise SchemaViolation(f"{type_} v{version}: {exc}") from None

    def _check(self, document: Any) -> tuple[str, int]:
        """Validate a parsed message against the schema of its (type, version); returns that pair."""
        if not isinstance(document, dict):
            raise MalformedMessage(f"expected a JSON object, got a JSON {_type_name(document)}")
        type_, version = document.get("type"), document.get("version")
        if type(version) is float and version.is_integer():
            version = int(version)  # JSON Schema counts 1.0 as an integer; handlers get a real int
        if isinstance(type_, str) and type(version) is int:
            compiled = self._validators.get((type_, version))
            if compiled is not None:
                compiled.check(document)
                return type_, version
        # An unknown type is only reported as such when the envelope itself is sound.
        self._envelope.check(document)
        known = self._latest.get(str(type_))
        if known is None:
            raise UnknownMessageType(f"no schema for message type {type_!r}")
        raise UnknownMessageType(
            f"no schema for {type_} v{version}; this service knows up to v{known} "
            "(deploy consumers before producers)"
        )

    def _upcast(self, document: JSONObject, type_: str, version: int, latest: int) -> JSONObject:
        """The `data` of an older message brought up to `latest`, one version at a time, and checked."""
        data: JSONObject = document["data"]
        while version < latest:
            upcaster = self._upcasters.get((type_, version))
            if upcaster is None:
                raise UnknownMessageType(f"no upcaster from {type_} v{version} to v{version + 1}")
            data = upcaster(data)
            version += 1
        # A faulty upcaster must not hand a handler data its schema forbids.
        self._check({**document, "version": version, "data": data})
        return data


# --- the shipped upcasters: one per published version that is no longer the latest --------------------

_V1_STAGING_PREFIX = re.compile(r"^staging/(?P<job_id>[0-9a-f-]{36})/$")


def job_queued_v1_to_v2(data: JSONObject) -> JSONObject:
    """JobQueued v1 -> v2: the course id and one title per video, which v1 did not carry.

    Every v1 job published a new course, and the api staged it under staging/<job_id>/ (its schema
    pins that shape), so its course id is the job id read from there. Its videos are titled
    "Lecture 1", "Lecture 2", ... in manifest order; their file names stay in the manifest only.
    """
    found = _V1_STAGING_PREFIX.match(data["staging_prefix"])
    if found is None:  # unreachable for schema-valid v1 data; the v2 check below would refuse it
        raise SchemaViolation(f"JobQueued v1: staging_prefix {data['staging_prefix']!r} names no job")
    lectures = [{"index": i, "title": f"Lecture {i + 1}"} for i in range(data["video_count"])]
    return {**data, "course_id": found["job_id"], "lectures": lectures}


UPCASTERS: Final[Mapping[tuple[str, int], Upcaster]] = {("JobQueued", 1): job_queued_v1_to_v2}
"""The shipped upcasters by (type, from version); `Codec.from_directory` registers them."""


def _to_json(value: object) -> object:
    """Serialize what orjson does not know natively: the payload structs (absent optional fields left out)."""
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


default_codec: Final = Codec.from_directory()
"""The process-wide codec over the schemas and payload classes, loaded and compiled once at import."""


def encode(envelope: Envelope) -> bytes:
    """Encode with the process-wide codec; see `Codec.encode`."""
    return default_codec.encode(envelope)


def decode(raw: bytes | None) -> Envelope:
    """Decode with the process-wide codec; see `Codec.decode`."""
    return default_codec.decode(raw)


def register_schema(payload: type[Payload], schema: Mapping[str, Any]) -> None:
    """Register a schema with the process-wide codec; see `Codec.register_schema`."""
    default_codec.register_schema(payload, schema)


def register_upcaster(type: str, from_version: int, upcaster: Upcaster) -> None:
    """Register an upcaster with the process-wide codec; see `Codec.register_upcaster`."""
    default_codec.register_upcaster(type, from_version, upcaster)
