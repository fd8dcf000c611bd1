"""The api's Kafka side: JobQueued + PublishCourse in one transaction, and single commands or events.

Guarantees:
- Atomic birth (G4/G6): JobQueued (events topic) and PublishCourse (commands topic) are produced in one
  Kafka transaction, keyed by job id. Every consumer reads with isolation.level=read_committed, so
  either both exist for everyone or neither does: no job is queued without its command, and no
  command runs for a job the log has never queued.
- Bounded waits: every call is bounded by `api_kafka_timeout_s`; an unreachable broker surfaces as
  `KafkaUnavailableError`, which the handlers turn into 503 + Retry-After.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from services.core import codec
from services.core.kafka_config import transactional_producer_config
from services.core.messages import Envelope
from services.core.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnavailableError(Exception):
    """The brokers could not take the messages in time.

    `maybe_committed` is False when the transaction is known to be aborted (or never began): nothing
    reached any read_committed consumer. It is True only when a commit timed out and could not be
    aborted; the caller then keeps the staged files, since a job may exist after all.
    """

    def __init__(self, reason: str, *, maybe_committed: bool = False) -> None:
        super().__init__(reason)
        self.maybe_committed = maybe_committed


class Publisher:
    """One transactional producer per api process; transactions run one at a time under a lock."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.api_kafka_timeout_s
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def _config(self) -> dict[str, Any]:
        # A transactional id unique to this process: each api transaction is self-contained (a new job
        # id, or one command), so there is no zombie to fence across restarts.
        tx_id = f"coursecast-api-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        config = transactional_producer_config(self._settings, "api", tx_id)
        timeout_ms = int(self._timeout * 1000)
        config.update(
            {
                # A request waits at most this long for acknowledgements before it answers 503.
                "delivery.timeout.ms": timeout_ms,
                "transaction.timeout.ms": max(timeout_ms, 60_000),
                "socket.connection.setup.timeout.ms": min(timeout_ms, 10_000),
                "linger.ms": 0,
            }
        )
        return config

    def _ready_producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(self._config())
            try:
                producer.init_transactions(self._timeout)
            except KafkaException as exc:
                raise KafkaUnavailableError(f"Kafka is unreachable: {exc.args[0].str()}") from None
            self._producer = producer
        return self._producer

    def publish(self, batches: Sequence[tuple[str, Envelope]]) -> None:
        """Produce each (topic, message) in one transaction and wait for the commit; all or nothing."""
        encoded = [(topic, codec.encode(message), message.kafka_key()) for topic, message in batches]
        with self._lock:
            producer = self._ready_producer()
            began = False
            try:
                producer.begin_transaction()
                began = True
                for topic, value, key in encoded:
                    producer.produce(topic, value=value, key=key)
                # commit_transaction flushes, then commits; it returns only when the brokers have
                # durably written the commit marker (acks=all).
                producer.commit_transaction(self._timeout)
            except (KafkaException, BufferError) as exc:
                aborted = self._recover(producer, began, exc)
                reason = exc.args[0].str() if isinstance(exc, KafkaException) else str(exc)
                raise KafkaUnavailableError(
                    f"Kafka did not take the messages: {reason}", maybe_committed=not aborted
                ) from None

    def _recover(self, producer: Producer, began: bool, exc: BaseException) -> bool:
        """Abort what was begun and drop a producer that can no longer be trusted; True if surely aborted."""
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        fatal = isinstance(error, KafkaError) and error.fatal()
        if not began:
            self._producer = None
            return True
        if not fatal:
            try:
                producer.abort_transaction(self._timeout)
                return True
            except KafkaException:
                log.warning("could not abort a Kafka transaction; replacing the producer")
        # The next request starts from a fresh producer (and a fresh init_transactions).
        self._producer = None
        return False

    def close(self) -> None:
        """Flush and forget the producer."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self._timeout)
                self._producer = None
