"""A fault-injecting HTTP proxy in front of the S3 endpoint: answers 503 to chosen requests.

The encoder talks to it exactly as to S3 (COURSECAST_S3_ENDPOINT_URL), so the transient error it sees
is a real 503 from the wire, retried by botocore and then classified by the encoder — no mock.
`faulty_s3` is the general form: per request, serve it, answer a chosen status, or cut the body
mid-way (for ffmpeg reading a source through a presigned URL, whose ranged GETs go through it too).
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final
from urllib.parse import urlsplit

# A 503 that is not a throttling code: botocore retries it with back-off, but its adaptive mode does
# not also slow the whole client down, which would only make the test longer.
UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>Service is unable to handle request.</Message></Error>"
)


ERROR_BODIES: Final = {
    503: UNAVAILABLE,
    404: b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
    b"<Message>The specified key does not exist.</Message></Error>",
    403: b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>",
}
# What `faulty_s3`'s rule may answer besides a status: send half of the body, then drop the connection.
CUT: Final = -1
_RANGE_START = re.compile(r"bytes=(\d+)-")


@dataclass(frozen=True, slots=True)
class Request:
    """A request as the proxy saw it: method, path (with query) and where its Range starts."""

    method: str
    path: str
    range_start: int | None


@contextmanager
def failing_s3(upstream: str, fails: Callable[[str, str], bool]) -> Iterator[tuple[str, list[str]]]:
    """(proxy URL, list of failed "METHOD path") for a proxy that 503s when `fails(method, path)`."""
    with faulty_s3(upstream, lambda request: 503 if fails(request.method, request.path) else None) as proxy:
        yield proxy


@contextmanager
def faulty_s3(upstream: str, rule: Callable[[Request], int | None]) -> Iterator[tuple[str, list[str]]]:
    """(proxy URL, list of faulted "METHOD path") for a proxy that forwards each request to
    `upstream` unless `rule(request)` says otherwise: a status (503, 404, 403: answered with S3's
    error document), or CUT (forwarded, but only half of the body is sent before the connection is
    dropped, as a network failure mid-read would)."""
    target = urlsplit(upstream)
    failed: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            return

        def _forward(self) -> None:
            body = self._read_body()
            started = _RANGE_START.match(self.headers.get("Range", ""))
            fault = rule(Request(self.command, self.path, int(started.group(1)) if started else None))
            if fault is not None:
                failed.append(f"{self.command} {self.path}")
            if fault is not None and fault != CUT:
                error = ERROR_BODIES.get(fault, UNAVAILABLE)
                self.send_response(fault)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(error)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() != "transfer-encoding"}
            headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in {"transfer-encoding", "content-length", "connection"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if fault == CUT:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if self.command != "HEAD":
                self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        # http.server dispatches on these names.
        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", failed
    finally:
        server.shutdown()
        server.server_close()
