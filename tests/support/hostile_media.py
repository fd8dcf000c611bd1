"""Hostile media for the api and encoder tests: playlists and polyglots disguised as .mp4, a loopback
HTTP server that counts every connection, a local "secret" that records whether anything opened it,
and an image far over the pixel limit."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET = b"TOP-SECRET-7f3a9c: never to be read by ffmpeg\n"


class CountingServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 (port 0) that counts every TCP connection it accepts."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _NotFound)
        self.connections = 0
        self.paths: list[str] = []

    def verify_request(self, _request: Any, _client_address: Any) -> bool:
        # Called once per accepted connection, before any byte is read: a bare connect counts too.
        self.connections += 1
        return True

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, CountingServer)
        self.server.paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, _format: str, *_args: Any) -> None:  # quiet test output
        return


@contextlib.contextmanager
def loopback_server() -> Iterator[CountingServer]:
    """A CountingServer serving in a thread for the duration of the block; stopped afterwards."""
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class SecretFifo:
    """A local file that knows whether any process opened it for reading.

    It is a FIFO with a writer thread blocked in open(): POSIX makes that open return only when a
    reader opens the FIFO, so `opened` is set if and only if some process opened the path for reading
    (independent of atime or mount options). A reader then gets SECRET.
    """

    def __init__(self, folder: Path, name: str = "secret.mp4") -> None:
        self.path = folder / name
        os.mkfifo(self.path)
        self.opened = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError), self.path.open("wb") as fifo:
            if self._closing:
                return
            self.opened.set()
            fifo.write(SECRET)

    def close(self) -> None:
        """Unblock and join the writer thread (opening the FIFO ourselves, flagged as not a hit)."""
        self._closing = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self._thread.join(5)
        finally:
            os.close(fd)


@contextlib.contextmanager
def secret_fifo(folder: Path) -> Iterator[SecretFifo]:
    """A SecretFifo for the duration of the block."""
    secret = SecretFifo(folder)
    try:
        yield secret
    finally:
        secret.close()


# --- playlists and polyglots, each pointing at two locations in the order given -------------------


def dash_polyglot(first: str, second: str) -> bytes:
    """A DASH manifest that starts `<!--free-->`: bytes 4-7 spell "free", an MP4 box type, so a
    magic-byte check takes it for an MP4, while ffmpeg's dash demuxer takes it for an MPD and opens
    each representation's BaseURL (the first, then, if it loads, the second)."""
    sets = "".join(
        f'<AdaptationSet mimeType="video/mp4"><Representation id="{n}" bandwidth="1000" width="320"'
        f' height="180" codecs="avc1.640028"><BaseURL>{url}</BaseURL></Representation></AdaptationSet>'
        for n, url in enumerate((first, second))
    )
    return (
        '<!--free--><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"'
        ' profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" mediaPresentationDuration="PT4S"'
        f' minBufferTime="PT1S"><Period>{sets}</Period></MPD>\n'
    ).encode()


def hls_playlist(first: str, second: str) -> bytes:
    """An HLS media playlist whose segments are the two locations."""
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:2.0,\n{first}\n#EXTINF:2.0,\n{second}\n#EXT-X-ENDLIST\n"
    ).encode()


def ffconcat(first: str, second: str) -> bytes:
    """An ffconcat script that concatenates the two locations."""
    return f"ffconcat version 1.0\nfile '{first}'\nfile '{second}'\n".encode()


HOSTILE_KINDS: dict[str, Callable[[str, str], bytes]] = {
    "dash-free-polyglot": dash_polyglot,
    "hls-m3u8": hls_playlist,
    "ffconcat": ffconcat,
}


def huge_png(path: Path, width: int = 16_000, height: int = 16_000) -> Path:
    """A valid all-black RGB PNG of width x height: under 1 MB on disk, about 768 MB once decoded.

    Written row by row through zlib, so making it never holds the picture in memory.
    """
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)  # filter byte 0, then black pixels
    data = bytearray()
    for _ in range(height):
        data += compressor.compress(row)
    data += compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(data)) + chunk(b"IEND", b"")
    )
    return path
