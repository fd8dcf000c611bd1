"""ffprobe and ffmpeg inputs on a leash, shared by the api and the encoder: one implementation.

Guarantees, for every file we hand to ffmpeg or ffprobe:
- only the demuxers we accept may open it (`-format_whitelist`): a DASH/HLS/concat playlist or a
  polyglot such as `<!--free--><MPD …>` disguised as .mp4 is refused before its demuxer runs, so it
  can never make ffmpeg fetch a URL or read another local file;
- only the `file` protocol may be used (`-protocol_whitelist file`), for the input and anything it
  could try to open, and the input is named `file:<path>` so no name is read as a protocol;
- a remote input (the encoder streams its source from a presigned S3 URL, `remote_input`) may use
  only the protocols its own URL needs (`http,tcp`, or `https,tls,tcp`): no `file`, no other
  scheme, so even a playlist that got past the demuxer check could not read a local file; it is
  read with ranged requests that resume after a dropped connection or a 5xx, and a read that still
  fails is reported (`read_failure`), never taken for the end of the file or for a damaged file;
- probing reads a bounded amount (`-probesize`, `-analyzeduration`), decodes no picture larger than
  the pixel limit (`-max_pixels`), and has a real timeout: ffprobe is killed when it expires.
Image sizes are read from the file header (pure) before any decoder allocates a frame.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

# Demuxers of the containers the api's magic-byte check accepts (ffmpeg 5.1 names, `ffprobe -demuxers`).
VIDEO_DEMUXERS: Final = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "mpeg", "flv")
# Demuxers of a single uploaded JPEG, PNG or WebP image.
IMAGE_DEMUXERS: Final = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe")
LOCAL_PROTOCOLS: Final = "file"
# The protocols a remote input may use, by its URL's scheme: exactly what that URL needs.
REMOTE_PROTOCOLS: Final = {"http": "http,tcp", "https": "https,tls,tcp"}
# How a remote input is read (ffmpeg's http protocol options, before -i):
HTTP_READ_OPTIONS: Final[dict[str, Any]] = {
    # A connection that ends before the requested range does is resumed from the byte it stopped at
    # (the source is read with ranged GETs: every seek is a new request).
    "reconnect": 1,
    # …and so is a request that fails to connect or is reset, or that S3 answers with a 5xx.
    "reconnect_on_network_error": 1,
    "reconnect_on_http_error": "5xx",
    # Back-off 0, 1, 3, 7 s between tries, then give up: the read failure is reported (G5).
    "reconnect_delay_max": 10,
    # A read that gets no byte for this long (µs) fails (and is retried as above) instead of hanging
    # until the time limit.
    "rw_timeout": 30_000_000,
}
# Bounds on what probing reads: ffmpeg's defaults, made explicit so nobody raises them by accident.
PROBE_SIZE_BYTES: Final = 5_000_000
ANALYZE_DURATION_US: Final = 5_000_000
# The first bytes of an image that `image_dimensions` reads: enough for any JPEG SOF after EXIF.
IMAGE_HEADER_BYTES: Final = 256 * 1024

_NOT_ON_WHITELIST = re.compile(r"^\[([\w,]+) @ [^\]]*\] Format not on whitelist")
_COMPLAINT = re.compile(r"^\[[^\]]* @ 0x[0-9a-f]+\] ")


# G2: a process killed with SIGKILL cannot stop its children, so the kernel does it: `setpriv
# --pdeathsig KILL` (util-linux) asks for SIGKILL when the parent thread dies and keeps that across
# the exec, so no ffmpeg or ffprobe outlives the encoder or api that started it.
_SETPRIV: Final = shutil.which("setpriv")


def die_with_parent(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the kernel kills it if the thread that started it dies (see _SETPRIV)."""
    if _SETPRIV is None:
        return list(argv)
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]


class MediaRefusedError(Exception):
    """ffprobe could not or would not read the file; `reason` is safe to show (no paths)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProbeTimeoutError(Exception):
    """ffprobe did not answer within its timeout and was killed."""


class ProbeKilledError(Exception):
    """A signal killed ffprobe (the OOM killer, an operator): no verdict on the file, so callers
    retry it rather than refuse it (G5)."""


class InputReadError(Exception):
    """Reading a remote input failed in transport (S3 answered 4xx/5xx, the connection broke or
    stalled, even after the retries): no verdict on the file. `reason` is ffmpeg's words for it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaInput:
    """What ffmpeg or ffprobe opens, and the only protocols it may use to read it."""

    url: str
    protocols: str
    # How messages and logs name the input: a local path, or the staged file's name for a remote
    # one, never its URL (a presigned URL is a credential until it expires).
    name: str

    @property
    def remote(self) -> bool:
        """True for an input read over the network."""
        return self.protocols != LOCAL_PROTOCOLS

    def hide(self, text: str) -> str:
        """`text` with the input's URL replaced by its name (pure)."""
        return text.replace(self.url, self.name)


def remote_input(url: str, name: str) -> MediaInput:
    """An http(s) URL as an input allowed exactly the protocols that URL needs (pure)."""
    protocols = REMOTE_PROTOCOLS.get(urlsplit(url).scheme)
    if protocols is None:
        raise ValueError("a remote input must be an http or https URL")
    return MediaInput(url, protocols, name)


def media_input(source: Path | MediaInput) -> MediaInput:
    """`source` as a MediaInput: a local path becomes `file:<absolute path>` (pure)."""
    if isinstance(source, MediaInput):
        return source
    return MediaInput(local_input(source), LOCAL_PROTOCOLS, str(source))


def input_options(
    demuxers: tuple[str, ...], max_pixels: int | None = None, source: MediaInput | None = None
) -> dict[str, Any]:
    """ffmpeg-python `input()` options that keep one input on the leash (see the module docstring);
    `source` None is a local file."""
    options: dict[str, Any] = {
        "format_whitelist": ",".join(demuxers),
        "protocol_whitelist": source.protocols if source is not None else LOCAL_PROTOCOLS,
    }
    if source is not None and source.remote:
        options.update(HTTP_READ_OPTIONS)
    if max_pixels is not None:
        # Before -i, a codec option applies to that input's decoder: no larger frame is allocated.
        options["max_pixels"] = max_pixels
    return options


def input_args(
    source: Path | MediaInput, demuxers: tuple[str, ...], max_pixels: int | None = None
) -> list[str]:
    """`-option value …` `-i <input>`: `source` opened on the leash, for an argv built by hand (pure)."""
    opened = media_input(source)
    args: list[str] = []
    for name, value in input_options(demuxers, max_pixels, opened).items():
        args += [f"-{name}", str(value)]
    return [*args, "-i", opened.url]


def local_input(path: Path) -> str:
    """The input name for a local file: `file:` + absolute path, never read as another protocol."""
    return f"file:{path.resolve()}"


# How ffmpeg and ffprobe report that reading their input failed: `<url>: <error>` (the fftools print
# the input's own name before the error). These errors are the transport's; "Invalid data found when
# processing input" may be the file's, or a read cut short: then the protocol's own complaints decide.
_TRANSPORT_ERRORS = re.compile(
    r"Input/output error|Server returned|Connection (?:refused|reset|timed out)|timed out|"
    r"Network is unreachable|No route to host|Broken pipe|Immediate exit requested",
    re.IGNORECASE,
)
# What the network protocols themselves log (at warning level and above only): a failed request
# ("HTTP error 503 Service Unavailable"), a body that ended early, a reconnection.
_PROTOCOL_COMPLAINT = re.compile(r"^\[(?:https?|tcp|tls) @ [^\]]*\] (.+)$")


def read_failure(stderr_lines: Iterable[str], source: MediaInput, *, failed: bool) -> str | None:
    """Why reading the remote input `source` failed in transport, from ffmpeg's or ffprobe's stderr,
    or None when it did not (or the input is local) (pure). `failed`: the tool exited non-zero.

    A failure is a transport error reported for the input (`<url>: Input/output error`, `Server
    returned 404 Not Found`…), or any failure to read the input — or of the tool — while the
    protocol complained (a reconnect that did not help). A protocol complaint alone, after which the
    read went on and the tool succeeded, is no failure. ffmpeg goes on after a failed read as if the
    input had ended and exits 0 with a shortened output: callers treat a failure as one even then."""
    if not source.remote:
        return None
    prefix = f"{source.url}: "
    input_errors: list[str] = []
    complaints: list[str] = []
    for line in stderr_lines:
        line = line.strip()
        if line.startswith(prefix):
            error = line[len(prefix) :].strip()
            if _TRANSPORT_ERRORS.search(error):
                return error
            input_errors.append(error)
        elif complained := _PROTOCOL_COMPLAINT.match(line):
            complaints.append(complained.group(1).strip())
    if complaints and (input_errors or failed):
        return complaints[-1]
    return None


def probe_argv(
    source: Path | MediaInput, demuxers: tuple[str, ...], max_pixels: int | None = None
) -> list[str]:
    """The ffprobe argv that describes `source`'s streams and format as JSON, on the leash."""
    opened = media_input(source)
    argv = ["ffprobe", "-hide_banner", "-v", "error"]
    for name, value in input_options(demuxers, max_pixels, opened).items():
        argv += [f"-{name}", str(value)]
    argv += ["-probesize", str(PROBE_SIZE_BYTES), "-analyzeduration", str(ANALYZE_DURATION_US)]
    argv += ["-show_streams", "-show_format", "-of", "json", opened.url]
    return argv


def probe(
    source: Path | MediaInput, demuxers: tuple[str, ...], timeout_s: float, max_pixels: int | None = None
) -> dict[str, Any]:
    """ffprobe's JSON for a local file or a remote input: MediaRefusedError if it cannot read it,
    InputReadError if reading a remote input failed in transport, ProbeTimeoutError if it hangs."""
    try:
        # subprocess.run kills ffprobe (SIGKILL) and reaps it when the timeout expires.
        done = subprocess.run(
            die_with_parent(probe_argv(source, demuxers, max_pixels)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProbeTimeoutError(f"ffprobe gave no answer within {timeout_s:g} s") from None
    if done.returncode < 0:
        raise ProbeKilledError(f"ffprobe was killed by signal {-done.returncode}")
    stderr = done.stderr.decode("utf-8", "replace")
    failure = read_failure(stderr.splitlines(), media_input(source), failed=done.returncode != 0)
    if failure is not None:
        raise InputReadError(failure)
    if done.returncode != 0:
        raise MediaRefusedError(refusal_reason(stderr, source))
    try:
        result = json.loads(done.stdout or b"{}")
    except ValueError:
        raise MediaRefusedError("ffprobe's answer was not readable") from None
    if not isinstance(result, dict):
        raise MediaRefusedError("ffprobe's answer was not readable")
    return result


def refusal_reason(stderr: str, source: Path | MediaInput) -> str:
    """Why ffprobe refused a file, in words safe to show an uploader: no local path, no URL (pure)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        refused = _NOT_ON_WHITELIST.match(line)
        if refused:
            return f"its content is in the {refused.group(1).split(',')[0]} format, which we do not accept"
    # The demuxer's own complaint ("moov atom not found") says more than the final generic line.
    complaints = [_COMPLAINT.sub("", line) for line in lines if _COMPLAINT.match(line)]
    if not complaints and not lines:
        return ""
    reason = complaints[-1] if complaints else lines[-1]
    if isinstance(source, MediaInput):
        return reason.replace(f"{source.url}: ", "").replace(source.url, source.name)
    for name in (local_input(source), str(source.resolve()), str(source)):
        reason = reason.replace(f"{name}: ", "").replace(name, source.name)
    return reason


def image_dimensions(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG or WebP header without decoding it, or None (pure)."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_dimensions(head)
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg_dimensions(head)
    return None


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(head[24:27], "little")
        height = 1 + int.from_bytes(head[27:30], "little")
        return width, height
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


# JPEG start-of-frame markers (baseline, progressive, lossless, …), which carry the picture size.
_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)


def _jpeg_dimensions(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if marker in _SOF_MARKERS:
            if at + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        if marker == 0xDA or length < 2:  # start of scan: no frame header before it
            return None
        at += 2 + length
    return None


def read_image_dimensions(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header of a local image file, reading at most IMAGE_HEADER_BYTES."""
    with path.open("rb") as file:
        return image_dimensions(file.read(IMAGE_HEADER_BYTES))
