"""ffprobe and ffmpeg inputs on a leash, shared by the api and the encoder: one implementation.

Guarantees, for every file we hand to ffmpeg or ffprobe:
- only the demuxers we accept may open it (`-format_whitelist`): a DASH/HLS/concat playlist or a
  polyglot such as `<!--free--><MPD …>` disguised as .mp4 is refused before its demuxer runs, so it
  can never make ffmpeg fetch a URL or read another local file;
- only the `file` protocol may be used (`-protocol_whitelist file`), for the input and anything it
  could try to open, and the input is named `file:<path>` so no name is read as a protocol;
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

# Demuxers of the containers the api's magic-byte check accepts (ffmpeg 5.1 names, `ffprobe -demuxers`).
VIDEO_DEMUXERS: Final = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "mpeg", "flv")
# Demuxers of a single uploaded JPEG, PNG or WebP image.
IMAGE_DEMUXERS: Final = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe")
LOCAL_PROTOCOLS: Final = "file"
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


def input_options(demuxers: tuple[str, ...], max_pixels: int | None = None) -> dict[str, Any]:
    """ffmpeg-python `input()` options that keep one input on the leash (see the module docstring)."""
    options: dict[str, Any] = {
        "format_whitelist": ",".join(demuxers),
        "protocol_whitelist": LOCAL_PROTOCOLS,
    }
    if max_pixels is not None:
        # Before -i, a codec option applies to that input's decoder: no larger frame is allocated.
        options["max_pixels"] = max_pixels
    return options


def local_input(path: Path) -> str:
    """The input name for a local file: `file:` + absolute path, never read as another protocol."""
    return f"file:{path.resolve()}"


def probe_argv(path: Path, demuxers: tuple[str, ...], max_pixels: int | None = None) -> list[str]:
    """The ffprobe argv that describes `path`'s streams and format as JSON, on the leash."""
    argv = ["ffprobe", "-hide_banner", "-v", "error"]
    for name, value in input_options(demuxers, max_pixels).items():
        argv += [f"-{name}", str(value)]
    argv += ["-probesize", str(PROBE_SIZE_BYTES), "-analyzeduration", str(ANALYZE_DURATION_US)]
    argv += ["-show_streams", "-show_format", "-of", "json", local_input(path)]
    return argv


def probe(
    path: Path, demuxers: tuple[str, ...], timeout_s: float, max_pixels: int | None = None
) -> dict[str, Any]:
    """ffprobe's JSON for a local file: MediaRefusedError if it cannot read it, ProbeTimeoutError
    if it hangs."""
    try:
        # subprocess.run kills ffprobe (SIGKILL) and reaps it when the timeout expires.
        done = subprocess.run(
            die_with_parent(probe_argv(path, demuxers, max_pixels)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProbeTimeoutError(f"ffprobe gave no answer within {timeout_s:g} s") from None
    if done.returncode < 0:
        raise ProbeKilledError(f"ffprobe was killed by signal {-done.returncode}")
    if done.returncode != 0:
        raise MediaRefusedError(refusal_reason(done.stderr.decode("utf-8", "replace"), path))
    try:
        result = json.loads(done.stdout or b"{}")
    except ValueError:
        raise MediaRefusedError("ffprobe's answer was not readable") from None
    if not isinstance(result, dict):
        raise MediaRefusedError("ffprobe's answer was not readable")
    return result


def refusal_reason(stderr: str, path: Path) -> str:
    """Why ffprobe refused a file, in words safe to show an uploader: no local path (pure)."""
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
    for name in (local_input(path), str(path.resolve()), str(path)):
        reason = reason.replace(f"{name}: ", "").replace(name, path.name)
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
