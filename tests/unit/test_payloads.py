"""The payload classes and the JSON Schemas agree: one class per schema file and one file per class,
the same fields, the same required and optional ones, the same types; and any data a schema accepts
goes through the codec into its class and back to the same JSON."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.codec import SCHEMAS, decode, encode
from services.core.messages import MessageType, Payload
from services.core.payloads import LATEST_PAYLOADS, LATEST_VERSION, PAYLOAD_CLASSES

SCHEMA_FILES = {
    (path.name.split(".")[0], int(path.name.split(".")[1].removeprefix("v"))): path
    for path in SCHEMAS.iterdir()
    if path.name.endswith(".json") and path.name != "envelope.v1.json"
}
PAIRS = sorted(SCHEMA_FILES)


def schema_of(type_: str, version: int) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(SCHEMA_FILES[(type_, version)].read_bytes())
    return document


# --- shapes: what two schemas must share, whoever wrote them ---------------------------------------
# A shape is a frozenset of alternatives: ("string",), ("integer",), ("number",), ("boolean",),
# ("null",), ("enum", values), ("array", item shape), ("object", fields); fields are
# (name, required, shape) triples. Bounds, patterns and formats are the schema's alone: the codec
# checks them before a class is built, so they need no twin in Python.

Shape = frozenset[tuple[Any, ...]]


def shape(node: Mapping[str, Any], root: Mapping[str, Any], *, strip_null: bool = False) -> Shape:
    """The shape of a schema node; `strip_null` drops null (a Python default of None, see below)."""
    if "$ref" in node:
        target: Any = root
        for step in node["$ref"].removeprefix("#/").split("/"):
            target = target[step]
        return shape(target, root, strip_null=strip_null)
    alternatives: set[tuple[Any, ...]] = set()
    if "anyOf" in node:
        for member in node["anyOf"]:
            alternatives |= shape(member, root)
    elif "enum" in node:
        alternatives.add(("enum", frozenset(node["enum"])))
    else:
        kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
        for kind in kinds:
            if kind == "object":
                alternatives.add(("object", fields(node, root)))
            elif kind == "array":
                alternatives.add(("array", shape(node["items"], root)))
            else:
                alternatives.add((kind,))
    if strip_null:
        alternatives.discard(("null",))
    return frozenset(alternatives)


def fields(node: Mapping[str, Any], root: Mapping[str, Any]) -> frozenset[tuple[str, bool, Shape]]:
    required = set(node.get("required", ()))
    # An optional field of the contract is absent, never null; in Python it defaults to None and is
    # left out of the JSON (omit_defaults), so the class's "or None" is not part of its type.
    return frozenset(
        (
            name,
            name in required,
            shape(child, root, strip_null=name not in required and child.get("default", ...) is None),
        )
        for name, child in node.get("properties", {}).items()
    )


def class_shape(cls: type[Payload]) -> Shape:
    generated = msgspec.json.schema(cls)
    return shape(generated, generated)


def file_shape(type_: str, version: int) -> Shape:
    schema = schema_of(type_, version)
    return shape(schema, schema)


# --- one class per schema file, one schema file per class -------------------------------------------


def test_every_schema_file_has_a_payload_class_and_every_class_a_schema_file() -> None:
    assert set(SCHEMA_FILES) == set(PAYLOAD_CLASSES)


def test_every_payload_class_is_registered_under_its_own_type_and_version() -> None:
    for (type_, version), cls in PAYLOAD_CLASSES.items():
        assert (cls.message_type.value, cls.version) == (type_, version)


def test_the_latest_class_of_every_type_is_its_highest_version() -> None:
    assert set(LATEST_PAYLOADS) == {t.value for t in MessageType}
    for type_, cls in LATEST_PAYLOADS.items():
        assert cls.version == LATEST_VERSION[type_] == max(v for t, v in PAYLOAD_CLASSES if t == type_)


@pytest.mark.parametrize(("type_", "version"), PAIRS, ids=[f"{t}.v{v}" for t, v in PAIRS])
def test_class_and_schema_have_the_same_fields_required_fields_and_types(type_: str, version: int) -> None:
    cls = PAYLOAD_CLASSES[(type_, version)]
    assert class_shape(cls) == file_shape(type_, version)


@pytest.mark.parametrize(("type_", "version"), PAIRS, ids=[f"{t}.v{v}" for t, v in PAIRS])
def test_an_optional_field_of_a_schema_is_never_null_so_absent_and_none_mean_the_same(
    type_: str, version: int
) -> None:
    ((_, fields_of_file),) = file_shape(type_, version)
    defaults = {f.name: f.default for f in msgspec.structs.fields(PAYLOAD_CLASSES[(type_, version)])}
    for name, required, alternatives in fields_of_file:
        if not required:
            assert ("null",) not in alternatives, f"{type_} v{version}: {name}"
            assert defaults[name] is None, f"{type_} v{version}: {name}"


def test_the_shape_comparison_notices_a_difference() -> None:
    # A control for the test above: a class that drifts from its schema is told apart.
    class Drifted(Payload, frozen=True, kw_only=True):
        message_type = MessageType.JOB_STARTED
        version = 1

        worker: str
        host: str | None = None

    class Retyped(Payload, frozen=True, kw_only=True):
        message_type = MessageType.JOB_STARTED
        version = 1

        worker: int

    for cls in (Drifted, Retyped):
        assert class_shape(cls) != file_shape("JobStarted", 1)


# --- any valid data goes through the codec into its class and back, unchanged -----------------------

NO_CONTROL = st.characters(exclude_categories=("Cc", "Cs"))


def strategy(node: Mapping[str, Any], root: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values a schema node accepts (a subset: short strings, moderate numbers)."""
    if "$ref" in node:
        return strategy(root["$defs"][node["$ref"].removeprefix("#/$defs/")], root)
    if "anyOf" in node:
        return st.one_of([strategy(member, root) for member in node["anyOf"]])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kinds = node["type"] if isinstance(node["type"], list) else [node["type"]]
    if len(kinds) > 1:
        return st.one_of([strategy({**node, "type": kind}, root) for kind in kinds])
    kind = kinds[0]
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = node.get("minimum", 0)
        return st.integers(min_value=low, max_value=node.get("maximum", low + 10**6))
    if kind == "number":
        low = float(node.get("minimum", 0))
        high = float(node.get("maximum", low + 1e6))
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if kind == "string":
        return string_strategy(node)
    if kind == "array":
        return st.lists(strategy(node["items"], root), min_size=node.get("minItems", 0), max_size=3)
    required = set(node.get("required", ()))
    properties = node["properties"]
    return st.fixed_dictionaries(
        {name: strategy(child, root) for name, child in properties.items() if name in required},
        optional={name: strategy(child, root) for name, child in properties.items() if name not in required},
    )


def string_strategy(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    if node.get("format") == "date-time":
        instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))
        return instants.map(lambda at: at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z"))
    pattern: str = node["pattern"]
    if pattern.startswith("^[^\\u0000"):  # the contract's "no control character" patterns
        free_text = "\\u0009" not in pattern and "\\u0008" in pattern  # tab, LF, CR allowed
        alphabet = st.one_of(NO_CONTROL, st.sampled_from("\t\n\r")) if free_text else NO_CONTROL
        low, high = node.get("minLength", 0), min(node.get("maxLength", 40), 40)
        return st.text(alphabet=alphabet, min_size=low, max_size=high)
    return st.from_regex(pattern, fullmatch=True)


DOCUMENTS = {
    pair: strategy(schema_of(*pair), schema_of(*pair)) for pair in PAIRS if pair[1] == LATEST_VERSION[pair[0]]
}


@settings(max_examples=400, deadline=None)
@given(pair=st.sampled_from(sorted(DOCUMENTS)), draw=st.data())
def test_any_valid_data_of_any_type_round_trips_through_its_class(
    pair: tuple[str, int], draw: st.DataObject
) -> None:
    type_, version = pair
    data = draw.draw(DOCUMENTS[pair], label="data")
    raw = orjson.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "type": type_,
            "version": version,
            "job_id": str(uuid.uuid4()),
            "attempt": 1,
            "occurred_at": "2026-03-01T09:30:15.123456Z",
            "producer": "test",
            "data": data,
        }
    )
    decoded = decode(raw)
    assert type(decoded.data) is PAYLOAD_CLASSES[pair]
    again = encode(decoded)
    assert orjson.loads(again)["data"] == data
    assert decode(again) == decoded
