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

import os
import socket
import uuid
from collections.abc import Sequence

from services.core.kafka_config import request_bounds
from services.core.messages import Envelope
from services.core.settings import Settings
from services.core.transactions import AtomicPublisher, TransactionFailedError


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
        # A transactional id unique to this process: each api transaction is self-contained (a new job
        # id, or one command), so there is no zombie to fence across restarts.
        tx_id = f"coursecast-api-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._atomic = AtomicPublisher(
            settings,
            "api",
            tx_id,
            timeout_s=settings.api_kafka_timeout_s,
            # Every Kafka call of a request is bounded by COURSECAST_API_KAFKA_TIMEOUT_S.
            overrides=request_bounds(settings),
        )

    def publish(self, batches: Sequence[tuple[str, Envelope]]) -> None:
        """Produce each (topic, message) in one transaction and wait for the commit; all or nothing."""
        try:
            self._atomic.publish(batches)
        except TransactionFailedError as exc:
            if not exc.ready:
                raise KafkaUnavailableError(f"Kafka is unreachable: {exc.detail}") from None
            raise KafkaUnavailableError(
                f"Kafka did not take the messages: {exc.detail}", maybe_committed=exc.maybe_committed
            ) from None

    def close(self) -> None:
        """Flush and forget the producer."""
        self._atomic.close()
