"""A streaming multipart/form-data reader: text fields are collected, file parts go straight to S3.

Unlike Starlette's `request.form()`, which spools every file to a temporary file before the handler
runs, this hands each chunk to a `StagedObject` as it arrives, so the request's memory stays bounded
by one S3 part per file and nothing touches the local disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.api.problems import ProblemError
from services.api.staging import StagedObject
from services.api.text import refuse_control_characters

MAX_FIELD_BYTES = 4096
MAX_FIELDS = 200
# RFC 2046 §5.1.1: a boundary is 1 to 70 characters.
MAX_BOUNDARY_BYTES = 70


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    text: bytearray = field(default_factory=bytearray)
    sink: StagedObject | None = None


@dataclass
class ParsedForm:
    """What the form held: text fields by name, and the staged files in arrival order."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[StagedObject] = field(default_factory=list)


FileOpener = Callable[[str, str, str | None], StagedObject]
"""(field name, file name, declared content type) -> a StagedObject to write to, or raise a problem."""


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary, or a 415 problem when the body is not multipart/form-data."""
    media, params = parse_options_header(content_type or "")
    if media != b"multipart/form-data" or b"boundary" not in params:
        raise ProblemError(
            415,
            "unsupported-media-type",
            "send the course as multipart/form-data (fields name, curriculum, titles, videos, thumbnails)",
        )
    boundary: bytes = params[b"boundary"]
    printable = boundary.isascii() and boundary.decode().isprintable()
    if not 1 <= len(boundary) <= MAX_BOUNDARY_BYTES or not printable:
        raise ProblemError(
            400,
            "bad-request",
            f"the multipart boundary must be 1 to {MAX_BOUNDARY_BYTES} printable ASCII characters (RFC 2046)",
        )
    return boundary


def _text(raw: bytes, what: str, *, multiline: bool = False) -> str:
    """`raw` as UTF-8 text; 422 naming `what` when it is not UTF-8 or holds a control character."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProblemError(
            422, "invalid-utf8", f"{what} is not valid UTF-8", title="Invalid text in the request"
        ) from None
    return refuse_control_characters(value, what, multiline=multiline)


async def read_form(
    boundary: bytes, chunks: AsyncIterator[bytes], open_file: FileOpener, form: ParsedForm
) -> None:
    """Parse the body into `form` as it streams; file bytes go to S3 whenever a whole part is waiting.

    On error, `form.files` still lists every file begun, so the caller can abort them.
    """
    ended: list[StagedObject] = []
    current = _Part()
    header_name = bytearray()
    header_value = bytearray()
    field_count = 0

    def on_part_begin() -> None:
        nonlocal current
        current = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        current.headers[bytes(header_name).lower()] = bytes(header_value)
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal field_count
        _, options = parse_options_header(current.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise ProblemError(400, "bad-request", 'a form part has no Content-Disposition "name"')
        current.name = _text(options[b"name"], "a form field name")
        field_count += 1
        if field_count > MAX_FIELDS:
            raise ProblemError(422, "too-many-parts", f"the form has more than {MAX_FIELDS} parts")
        if b"filename" in options:
            current.filename = _text(options[b"filename"], f"the file name in form field {current.name!r}")
            declared = current.headers.get(b"content-type")
            current.sink = open_file(
                current.name, current.filename, declared.decode("latin-1") if declared else None
            )
            form.files.append(current.sink)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if current.sink is not None:
            current.sink.feed(data[start:end])
            return
        if len(current.text) + (end - start) > MAX_FIELD_BYTES:
            raise ProblemError(
                422, "field-too-long", f"form field {current.name!r} is longer than {MAX_FIELD_BYTES} bytes"
            )
        current.text.extend(data[start:end])

    def on_part_end() -> None:
        if current.sink is None:
            value = _text(bytes(current.text), f"form field {current.name!r}", multiline=True)
            form.fields.setdefault(current.name, []).append(value)
        else:
            ended.append(current.sink)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in chunks:
            parser.write(chunk)
            # Back-pressure: the next chunk is read from the socket only after full parts are in S3.
            for staged in form.files:
                if staged.full:
                    await staged.drain()
            # A finished file is completed at once, so its last part does not wait for the others.
            while ended:
                await ended.pop(0).complete()
        parser.finalize()
    except MultipartParseError as exc:
        raise ProblemError(400, "bad-request", f"the multipart body is malformed: {exc}") from None
    while ended:
        await ended.pop(0).complete()
    if any(not staged.done and staged.size for staged in form.files):
        raise ProblemError(400, "bad-request", "the multipart body ended in the middle of a file")
