"""Messages that must appear together or not at all: a verdict and the next attempt's command.

A JobStalled / JobTimedOut (or a takeover's JobStalled) that requeues a job as attempt N + 1 moves the
job to `queued`; if the PublishCourse of attempt N + 1 did not exist too, the job would stay queued
forever. Both are produced in one Kafka transaction: every consumer reads with read_committed, so
either both exist for everyone or neither does. The api's JobQueued + PublishCourse go the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from services.core import codec
from services.core.bus import FLUSH_TIMEOUT_S, DeliveryFailedError, flush_on_close
from services.core.kafka_config import transactional_producer_config
from services.core.messages import Envelope
from services.core.settings import Settings

log = logging.getLogger("coursecast.transactions")


class TransactionFailedError(DeliveryFailedError):
    """A transaction was not committed.

    `ready` is False when the producer could not even start (no broker answered init_transactions).
    `maybe_committed` is False when the transaction is known to be aborted (or never began): nothing
    reached any read_committed consumer. It is True only when a commit failed and could not be
    aborted; the caller must then act as if the messages might exist after all.
    """

    def __init__(
        self, reason: str, detail: str, *, ready: bool = True, maybe_committed: bool = False
    ) -> None:
        super().__init__(reason)
        self.detail = detail
        self.ready = ready
        self.maybe_committed = maybe_committed


class AtomicPublisher:
    """One transactional producer; `publish` is all-or-nothing and thread-safe."""

    def __init__(
        self,
        settings: Settings,
        role: str,
        transactional_id: str,
        *,
        timeout_s: float = FLUSH_TIMEOUT_S,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self._config = {
            **transactional_producer_config(settings, role, transactional_id),
            **(overrides or {}),
        }
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def _ready(self) -> Producer:
        if self._producer is None:
            producer = Producer(self._config)
            # Fences an older producer with the same transactional id and aborts its open transaction.
            producer.init_transactions(self._timeout_s)
            self._producer = producer
        return self._producer

    def publish(self, batch: Sequence[tuple[str, Envelope]]) -> None:
        """Produce each (topic, message) in one transaction and return once it is committed.

        Raises TransactionFailedError when the transaction was not committed (it is aborted if it can
        be; a caller that retries produces a new transaction, and duplicates are rejected downstream).
        """
        encoded = [(topic, codec.encode(message), message.kafka_key()) for topic, message in batch]
        with self._lock:
            try:
                producer = self._ready()
            except KafkaException as exc:
                detail = _detail(exc)
                raise TransactionFailedError(
                    f"transactional producer not ready: {detail}", detail, ready=False
                ) from None
            began = False
            try:
                producer.begin_transaction()
                began = True
                for topic, value, key in encoded:
                    producer.produce(topic, value=value, key=key)
                # Flushes, then writes the commit markers with acks=all before returning (G3).
                producer.commit_transaction(self._timeout_s)
            except (KafkaException, BufferError) as exc:
                aborted = self._recover(producer, began, exc)
                detail = _detail(exc)
                raise TransactionFailedError(
                    f"transaction not committed: {detail}", detail, maybe_committed=not aborted
                ) from None

    def _recover(self, producer: Producer, began: bool, exc: BaseException) -> bool:
        """Abort what was begun and drop a producer that can no longer be trusted; True if surely aborted."""
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        if not began:
            self._producer = None
            return True
        if not (isinstance(error, KafkaError) and error.fatal()):
            try:
                producer.abort_transaction(self._timeout_s)
                return True
            except KafkaException:
                log.warning("could not abort a Kafka transaction; replacing the producer")
        self._producer = None  # the next call starts from a fresh init_transactions
        return False

    def close(self) -> None:
        """Flush and forget the producer (any transaction is already committed or aborted)."""
        with self._lock:
            if self._producer is not None:
                flush_on_close(self._producer, self._timeout_s)
                self._producer = None


def _detail(exc: BaseException) -> str:
    """What Kafka said, without the exception's wrapping."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)
