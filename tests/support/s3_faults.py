"""A fault-injecting HTTP proxy in front of the S3 endpoint: answers 503 to chosen requests.

The encoder talks to it exactly as to S3 (COURSECAST_S3_ENDPOINT_URL), so the transient error it sees
is a real 503 from the wire, retried by botocore and then classified by the encoder — no mock.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# A 503 that is not a throttling code: botocore retries it with back-off, but its adaptive mode does
# not also slow the whole client down, which would only make the test longer.
UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>Service is unable to handle request.</Message></Error>"
)


@contextmanager
def failing_s3(upstream: str, fails: Callable[[str, str], bool]) -> Iterator[tuple[str, list[str]]]:
    """(proxy URL, list of failed "METHOD path") for a proxy that 503s when `fails(method, path)`."""
    target = urlsplit(upstream)
    failed: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            return

        def _forward(self) -> None:
            body = self._read_body()
            if fails(self.command, self.path):
                failed.append(f"{self.command} {self.path}")
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(UNAVAILABLE)))
                self.end_headers()
                self.wfile.write(UNAVAILABLE)
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
