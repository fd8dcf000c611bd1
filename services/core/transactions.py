"""Messages that must appear together or not at all: a verdict and the next attempt's command.

A JobStalled / JobTimedOut (or a takeover's JobStalled) that requeues a job as attempt N + 1 moves the
job to `queued`; if the PublishCourse of attempt N + 1 did not exist too, the job would stay queued
forever. Both are produced in one Kafka transaction: every consumer reads with read_committed, so
either both exist for everyone or neither does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from services.core import codec
from services.core.bus import FLUSH_TIMEOUT_S, DeliveryFailedError
from services.core.kafka_config import transactional_producer_config
from services.core.messages import Envelope
from services.core.settings import Settings

log = logging.getLogger("coursecast.transactions")


class AtomicPublisher:
    """One transactional producer; `publish` is all-or-nothing and thread-safe."""

    def __init__(self, settings: Settings, role: str, transactional_id: str) -> None:
        self._config = transactional_producer_config(settings, role, transactional_id)
        self._lock = threading.Lock()
        self._producer: Producer | None = None

    def _ready(self) -> Producer:
        if self._producer is None:
            producer = Producer(self._config)
            # Fences an older producer with the same transactional id and aborts its open transaction.
            producer.init_transactions(FLUSH_TIMEOUT_S)
            self._producer = producer
        return self._producer

    def publish(self, batch: Sequence[tuple[str, Envelope]]) -> None:
        """Produce each (topic, message) in one transaction and return once it is committed.

        Raises DeliveryFailedError when the transaction was not committed (it is aborted if it can be;
        a caller that retries produces a new transaction, and duplicates are rejected downstream).
        """
        encoded = [(topic, codec.encode(message), message.kafka_key()) for topic, message in batch]
        with self._lock:
            try:
                producer = self._ready()
            except KafkaException as exc:
                raise DeliveryFailedError(f"transactional producer not ready: {exc}") from None
            try:
                producer.begin_transaction()
                for topic, value, key in encoded:
                    producer.produce(topic, value=value, key=key)
                # Flushes, then writes the commit markers with acks=all before returning (G3).
                producer.commit_transaction(FLUSH_TIMEOUT_S)
            except (KafkaException, BufferError) as exc:
                self._recover(producer, exc)
                raise DeliveryFailedError(f"transaction not committed: {exc}") from None

    def _recover(self, producer: Producer, exc: BaseException) -> None:
        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        if isinstance(error, KafkaError) and not error.fatal():
            try:
                producer.abort_transaction(FLUSH_TIMEOUT_S)
                return
            except KafkaException:
                log.warning("could not abort a Kafka transaction; replacing the producer")
        self._producer = None  # the next call starts from a fresh init_transactions

    def close(self) -> None:
        """Forget the producer (any transaction is already committed or aborted)."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(FLUSH_TIMEOUT_S)
                self._producer = None
