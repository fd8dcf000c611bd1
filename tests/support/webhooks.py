"""Webhook receivers for tests: a real HTTP server on 127.0.0.1 that answers from a script, and
readers of what the notifier did (its group's committed offsets, its delivery records)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID, uuid4

import orjson
import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql
from psycopg.rows import dict_row

from services.core.kafka_config import consumer_config
from services.core.settings import Settings
from services.notifier.signing import EVENT_ID_HEADER, SIGNATURE_HEADER

# A status in a receiver's script that answers 200 one byte at a time, slower than any deadline.
TRICKLE = -1
TRICKLE_GAP_S = 0.25


@dataclass(frozen=True)
class Received:
    """One request the receiver got, and the status it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float  # time.monotonic() when it arrived

    @property
    def event_id(self) -> str:
        return self.headers[EVENT_ID_HEADER.lower()]

    @property
    def signature(self) -> str:
        return self.headers[SIGNATURE_HEADER.lower()]

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """An HTTP server on 127.0.0.1 that answers each POST with the next status of its script (200 once
    the script is used up, or `after` if set), and keeps every request."""

    def __init__(self, script: list[int] | None = None, after: int = 200) -> None:
        self.script = list(script or [])
        self.after = after
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else receiver.after
                    receiver.received.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            status,
                            time.monotonic(),
                        )
                    )
                if status == TRICKLE:
                    self._trickle()
                    return
                answer = b'{"ok": true}' if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def _trickle(self) -> None:
                # A hostile receiver: a valid answer, one byte every TRICKLE_GAP_S, for a minute.
                answer = b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n" + b"x" * 60
                with contextlib.suppress(OSError):
                    for byte in answer:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(TRICKLE_GAP_S)
                self.close_connection = True

            def log_message(self, *_: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/coursecast"

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def accept_everything(self) -> None:
        """From now on every request gets 200."""
        with self._lock:
            self.script.clear()
            self.after = 200

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiver(script: list[int] | None = None, after: int = 200) -> Iterator[Receiver]:
    """A running `Receiver`, shut down when the block ends."""
    server = Receiver(script, after)
    server.start()
    try:
        yield server
    finally:
        server.close()


def committed_offsets(settings: Settings) -> dict[int, int]:
    """The notifier group's committed offset of each partition of the events topic (-1001: none)."""
    consumer = Consumer(consumer_config(settings, settings.webhook_group_id, f"test-{uuid4().hex[:6]}"))
    try:
        metadata = consumer.list_topics(settings.events_topic, timeout=10).topics[settings.events_topic]
        wanted = [TopicPartition(settings.events_topic, p) for p in metadata.partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(wanted, timeout=10)}
    finally:
        consumer.close()


def deliveries(settings: Settings, event_id: UUID | None = None) -> list[dict[str, Any]]:
    """Rows of webhook_deliveries (of one event, when given)."""
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema)))
        if event_id is None:
            return conn.execute("SELECT * FROM webhook_deliveries ORDER BY first_attempt_at").fetchall()
        return conn.execute("SELECT * FROM webhook_deliveries WHERE event_id = %s", (event_id,)).fetchall()


def register(settings: Settings, owner: str, url: str, events: list[str] | None = None) -> tuple[UUID, str]:
    """An endpoint written straight into the api's table (the api's own tests cover POST /v1/webhooks);
    returns its id and secret."""
    endpoint_id, secret = uuid4(), f"whsec_test_{uuid4().hex}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema)))
        conn.execute(
            "INSERT INTO api_webhook_endpoints (endpoint_id, owner, url, events, secret)"
            " VALUES (%s, %s, %s, %s, %s)",
            (
                endpoint_id,
                owner,
                url,
                events or ["course.completed", "course.failed", "course.canceled"],
                secret,
            ),
        )
    return endpoint_id, secret


def unregister(settings: Settings, endpoint_id: UUID) -> None:
    """Delete an endpoint as DELETE /v1/webhooks/{id} does."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema)))
        conn.execute("DELETE FROM api_webhook_endpoints WHERE endpoint_id = %s", (endpoint_id,))
