"""The notifier's consumer loop: read the job-event log, hand each end of a job to the dispatcher,
commit a partition's offset only past records whose notifications are all finished.

Two threads. This one speaks Kafka only: it polls (so the group keeps it as a member however long a
delivery takes), decodes, submits, reaps finished work, commits and applies back-pressure. The
delivery loop (an asyncio loop on its own thread) speaks HTTP and Postgres (dispatch.py).

G3 for webhooks, at least once: `OffsetBook` commits a partition only up to its first unfinished
record, so a kill -9 at any instant re-reads every record whose notifications were not all delivered
or given up. G6: a record the codec refuses is skipped with a log line; the projector, which reads
the same log, is the one that dead-letters it with its reason, so it is not dead-lettered twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.core import codec
from services.core.kafka_config import consumer_config
from services.core.settings import Settings
from services.notifier.dispatch import Dispatcher
from services.notifier.notifications import notification_type
from services.notifier.offsets import OffsetBook
from services.notifier.sender import Sender
from services.notifier.store import DeliveryStore, migrate_schema

log = logging.getLogger("coursecast.notifier")

POLL_TIMEOUT_S = 0.2
BATCH = 500
T = TypeVar("T")


@dataclass
class NotifierStats:
    """Running totals, for logs."""

    read: int = 0
    skipped_undecodable: int = 0
    ends: int = 0
    commits: int = 0


class DeliveryLoop:
    """An asyncio event loop on a thread of its own, for HTTP and Postgres."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="notifier-delivery", daemon=True)

    def start(self) -> None:
        """Start the loop's thread."""
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run `coroutine` on the loop; its result (or cancellation) through a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def stop(self) -> None:
        """Stop the loop and wait for its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


class Notifier:
    """One notifier process: a member of the notifier group on the job-event log."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = NotifierStats()
        self._consumer = Consumer(consumer_config(settings, settings.webhook_group_id, "notifier"))
        self._book = OffsetBook()
        self._in_flight: dict[tuple[int, int], Future[None]] = {}
        self._paused = False
        self._loop = DeliveryLoop()
        self._store = DeliveryStore(
            settings.database_url, settings.database_schema, size=min(settings.webhook_concurrency, 10) + 2
        )
        self._sender: Sender | None = None
        self._dispatcher: Dispatcher | None = None

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; on the way out, commit what is finished and drop the rest
        (its offsets stay uncommitted, so the next owner delivers it)."""
        self._loop.start()
        self._loop.submit(self._start()).result()
        self._consumer.subscribe(
            [self.settings.events_topic], on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        try:
            while not stop.is_set():
                # Never more at once than the room left under webhook_max_pending.
                room = self.settings.webhook_max_pending - len(self._in_flight)
                for message in self._consumer.consume(max(1, min(BATCH, room)), POLL_TIMEOUT_S):
                    self._take(message)
                self._reap()
                self._commit()
                self._apply_back_pressure()
        finally:
            for future in self._in_flight.values():
                future.cancel()
            self._reap()
            self._commit()
            self._consumer.close()
            self._loop.submit(self._close()).result(timeout=30)
            self._loop.stop()

    async def _start(self) -> None:
        await self._store.open()
        self._sender = Sender(self.settings)
        self._dispatcher = Dispatcher(self.settings, self._store, self._sender)

    async def _close(self) -> None:
        # The notifications were cancelled before this was submitted: let them unwind first.
        if self._dispatcher is not None:
            await self._dispatcher.settled(timeout_s=10)
        if self._sender is not None:
            await self._sender.close()
        await self._store.close()

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", error)
            return
        partition, offset = message.partition() or 0, message.offset() or 0
        self.stats.read += 1
        self._book.read(partition, offset)
        try:
            envelope = codec.decode(message.value())
        except codec.CodecError as exc:
            # G6: never stops the notifier; the projector dead-letters the same record with its reason.
            self.stats.skipped_undecodable += 1
            log.warning(
                "skipped an undecodable record %s[%d]@%d: %s", message.topic(), partition, offset, exc.reason
            )
            self._book.finish(partition, offset)
            return
        kind = notification_type(envelope)
        if kind is None:
            self._book.finish(partition, offset)
            return
        assert self._dispatcher is not None
        self.stats.ends += 1
        self._in_flight[(partition, offset)] = self._loop.submit(self._dispatcher.notify(envelope, kind))

    def _reap(self) -> None:
        """Finish the records whose notifications are all delivered or given up."""
        for key, future in list(self._in_flight.items()):
            if future.done():
                del self._in_flight[key]
                if not future.cancelled():
                    self._book.finish(*key)

    def _commit(self) -> None:
        """Commit each partition up to its first unfinished record (G3: never past one)."""
        moved = self._book.to_commit()
        if not moved:
            return
        topic = self.settings.events_topic
        try:
            self._consumer.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in moved.items()], asynchronous=False
            )
        except KafkaException as exc:
            # Tried again on the next turn; until then a restart re-reads (and re-skips) a little more.
            log.info("kafka commit failed (%s); trying again", exc)
            return
        for partition, offset in moved.items():
            self._book.committed(partition, offset)
        self.stats.commits += 1

    def _apply_back_pressure(self) -> None:
        """Stop fetching while `webhook_max_pending` notifications are in progress; keep polling, so
        the group keeps this member, and resume once half of them have finished."""
        pending = len(self._in_flight)
        if pending >= self.settings.webhook_max_pending or self._paused:
            assignment = self._consumer.assignment()
            if pending >= self.settings.webhook_max_pending:
                if not self._paused:
                    log.info("%d notifications in progress: pausing reads", pending)
                self._consumer.pause(assignment)
                self._paused = True
            elif pending <= self.settings.webhook_max_pending // 2:
                self._consumer.resume(assignment)
                self._paused = False

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions leave: commit what they finished, stop their deliveries, forget them. Their next
        owner resumes each unfinished delivery from its record in webhook_deliveries."""
        self._reap()
        self._commit()
        revoked = {p.partition for p in partitions}
        for key in [k for k in self._in_flight if k[0] in revoked]:
            self._in_flight.pop(key).cancel()
        self._book.forget(revoked)
        log.info("revoked %s", sorted(revoked))


def run_notifier(settings: Settings, stop: threading.Event) -> None:
    """Entry point of `coursecast notifier`."""
    migrate_schema(settings.database_url, settings.database_schema)
    Notifier(settings).run(stop)
