"""From one end of a job to its notifications: await the projector's verdict, then deliver to each
of the owner's endpoints until it is delivered or given up. Runs on the notifier's asyncio loop.

Delivery is at least once. Each (event, endpoint) has a row in webhook_deliveries, written after
every attempt: a restarted notifier resumes a pending delivery where it stopped (its first attempt,
so its retry age, and its next attempt's time) and skips one already delivered or given up. A
crash between a receiver's 2xx and that row's update re-sends the notification once more, under the
same event id, which the receiver deduplicates.

A slow or hostile receiver cannot stall the others: each attempt is bounded (sender.py), one
endpoint has at most `webhook_concurrency_per_endpoint` requests in flight out of the process's
`webhook_concurrency`, and a delivery waiting for its next attempt holds no slot. What a failing
endpoint does hold back is its partition's committed offset, for at most `webhook_max_retry_age_s`
(consumer.py): the deliveries behind it go on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from uuid import UUID

from services.core.messages import Envelope
from services.core.settings import Settings
from services.notifier import metrics
from services.notifier.notifications import Accepted, Job, NotificationType, Verdict, notification_body
from services.notifier.retry import gives_up, retry_delay
from services.notifier.sender import Sender
from services.notifier.store import DeliveryStore, Endpoint

log = logging.getLogger("coursecast.notifier")

# How often the projector's tables are asked about the events still awaiting a verdict (one query).
VERDICT_POLL_S = 0.25
# After Postgres fails a notification's bookkeeping, it is tried again this much later.
STORE_RETRY_S = 2.0


class VerdictBoard:
    """Waits for the projector's verdicts on many events with one query per tick."""

    def __init__(self, store: DeliveryStore, interval_s: float = VERDICT_POLL_S) -> None:
        self._store = store
        self._interval_s = interval_s
        self._waiting: dict[UUID, list[asyncio.Future[Verdict]]] = defaultdict(list)
        self._poller: asyncio.Task[None] | None = None

    async def verdict(self, event_id: UUID) -> Verdict:
        """The projector's verdict on `event_id`, once it has one."""
        future: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._waiting[event_id].append(future)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="verdicts")
        try:
            return await future
        finally:
            waiters = self._waiting.get(event_id)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiting[event_id]

    async def _poll(self) -> None:
        while self._waiting:
            try:
                found = await self._store.verdicts(list(self._waiting))
            except Exception:
                log.exception("reading the projector's verdicts failed; trying again")
                await asyncio.sleep(STORE_RETRY_S)
                continue
            for event_id, verdict in found.items():
                for future in self._waiting.pop(event_id, []):
                    if not future.done():
                        future.set_result(verdict)
            await asyncio.sleep(self._interval_s)


class Dispatcher:
    """Everything between a decoded end of a job and its delivered (or given-up) notifications."""

    def __init__(self, settings: Settings, store: DeliveryStore, sender: Sender) -> None:
        self._settings = settings
        self._store = store
        self._sender = sender
        self._verdicts = VerdictBoard(store)
        self._running: set[asyncio.Task[object]] = set()
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._endpoint_slots: defaultdict[UUID, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.webhook_concurrency_per_endpoint)
        )

    async def notify(self, envelope: Envelope, kind: NotificationType) -> None:
        """Returns once every notification `envelope` causes is delivered or given up (or it causes none).

        Postgres failing the bookkeeping is retried here, forever: the record stays unfinished, so its
        offset is not committed, and nothing is lost if the process dies meanwhile.
        """
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            while True:
                try:
                    await self._notify(envelope, kind)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("notifying %s of job %s failed; trying again", kind.value, envelope.job_id)
                    await asyncio.sleep(STORE_RETRY_S)
        finally:
            self._running.discard(task)

    async def settled(self, timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until no notification is running, e.g. after cancelling them all."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)

    async def _notify(self, envelope: Envelope, kind: NotificationType) -> None:
        verdict = await self._verdicts.verdict(envelope.event_id)
        if not isinstance(verdict, Accepted):
            log.info(
                "no notification for a refused event",
                extra={
                    "job_id": str(envelope.job_id),
                    "event_id": str(envelope.event_id),
                    "why": verdict.why,
                },
            )
            return
        endpoints = await self._store.endpoints(verdict.job.owner, kind, envelope.occurred_at)
        if not endpoints:
            return
        body = notification_body(envelope, kind, verdict.job)
        # A task group: if one delivery's bookkeeping fails, the others are cancelled too before the
        # whole notification is tried again, so no endpoint ever has two deliveries of it running.
        async with asyncio.TaskGroup() as group:
            for endpoint in endpoints:
                group.create_task(self._deliver(envelope, kind, verdict.job, endpoint, body))

    async def _deliver(
        self, envelope: Envelope, kind: NotificationType, job: Job, endpoint: Endpoint, body: bytes
    ) -> None:
        """Attempt until delivered or given up, recording every attempt."""
        settings = self._settings
        event_id, endpoint_id = envelope.event_id, endpoint.endpoint_id
        where = {"job_id": str(envelope.job_id), "event_id": str(event_id), "endpoint_id": str(endpoint_id)}
        record = await self._store.open_delivery(event_id, endpoint, envelope.job_id, job.owner, kind)
        if record.state != "pending":
            return  # delivered or given up before a restart or a rebalance
        attempts = record.attempts
        await _sleep_until(record.next_attempt_at)
        while True:
            current = await self._store.endpoint(endpoint_id)
            if current is None:
                await self._store.attempted(
                    event_id,
                    endpoint_id,
                    state="given_up",
                    status=None,
                    counts=False,
                    error="the endpoint was deleted before the notification was delivered",
                )
                log.info("endpoint deleted; delivery stopped", extra=where)
                metrics.ended("given_up")
                return
            async with self._endpoint_slots[endpoint_id], self._slots:
                started = time.monotonic()
                result = await self._sender.post(current.url, event_id, body, current.secrets)
                metrics.attempted(result.delivered, time.monotonic() - started)
            attempts += 1
            if result.delivered:
                await self._store.attempted(
                    event_id, endpoint_id, state="delivered", status=result.status, error=None
                )
                log.info("delivered %s", kind.value, extra={**where, "attempts": attempts})
                metrics.ended("delivered")
                return
            delay = retry_delay(attempts, settings.webhook_retry_base_s, settings.webhook_retry_max_s)
            next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
            if result.final or gives_up(
                record.first_attempt_at, next_attempt_at, settings.webhook_max_retry_age_s
            ):
                await self._store.attempted(
                    event_id, endpoint_id, state="given_up", status=result.status, error=result.error
                )
                log.error(
                    "gave up delivering %s after %d attempts: %s",
                    kind.value,
                    attempts,
                    result.error,
                    extra={**where, "host": urlsplit(current.url).hostname},
                )
                metrics.ended("given_up")
                return
            await self._store.attempted(
                event_id,
                endpoint_id,
                state="pending",
                status=result.status,
                error=result.error,
                next_attempt_at=next_attempt_at,
            )
            log.warning(
                "delivery attempt %d of %s failed (%s); next in %.1f s",
                attempts,
                kind.value,
                result.error,
                delay,
                extra=where,
            )
            await asyncio.sleep(delay)


async def _sleep_until(moment: datetime | None) -> None:
    if moment is not None:
        await asyncio.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))
