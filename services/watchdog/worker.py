"""`coursecast watchdog`: a faust-streaming app that gives every silent or overlong job an explicit end (G2).

It keeps, per job, the job's command data, whether an attempt is running and when its worker last
spoke (a faust table with a changelog topic, so a restarted watchdog knows everything it knew), and on
a timer judges each running attempt with `liveness.judge`. A verdict is an ordinary event on the log —
JobStalled or JobTimedOut for that attempt — so the state machine decides, as for any event, whether it
still applies: if the job completed in the meantime, the verdict is rejected and changes nothing.

Guarantees:
- No verdict for a live worker: a patrol takes the time first, then the log's end offsets, and judges
  only the partitions whose every event below those offsets is in the table (catchup.py). A watchdog
  that was stopped, restarted or is lagging therefore judges nothing until it has read the heartbeats
  written meanwhile. Event times are compared with a clock-skew margin (liveness.py).
- No job queued forever: a verdict that requeues the job (attempts left) is produced in one Kafka
  transaction with the next attempt's PublishCourse, on the commands topic behind the job's earlier
  commands. A duplicate of that command (a competing encoder takeover) is skipped by the encoder's
  claims; a verdict that lost the race is rejected by the state machine.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import faust

from services.core import bus, codec
from services.core.kafka_config import watchdog_app_config
from services.core.messages import Envelope, new_message
from services.core.settings import Settings
from services.core.transactions import AtomicPublisher
from services.watchdog import metrics
from services.watchdog.catchup import CatchUpProbe
from services.watchdog.liveness import WATCHDOG, Command, Policy, Tracked, Verdict, judge, observe

log = logging.getLogger("coursecast.watchdog")

# A patrol waits at most this long (or one interval, if longer) for the table to reach the log's end.
CATCH_UP_WAIT_S = 5.0
CATCH_UP_RECHECK_S = 0.2


def create_app(settings: Settings) -> faust.App:
    """The watchdog app for these settings (one app id per deployment; its table is co-partitioned)."""
    # faust creates the app's own folder but not its parents (a fresh checkout has no .cache/watchdog).
    settings.watchdog_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.watchdog_app_id,
        # Its Kafka clients' settings, the isolation level it reads with included, are in kafka_config.
        **watchdog_app_config(settings),
        store="memory://",
        datadir=str(settings.watchdog_data_dir / settings.watchdog_app_id),
        # The table's changelog has as many partitions as the log it mirrors (co-partitioned by job id).
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        web_enabled=False,
    )
    topic = settings.events_topic
    events = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    # Values are JSON (faust's default serializer): Tracked.to_json() plus the job's partition.
    liveness = app.Table("liveness", default=None, partitions=settings.topic_partitions)
    # A stable transactional id: a restarted watchdog fences its predecessor and aborts whatever
    # transaction it left open, so read_committed consumers are never held up by it.
    verdicts = AtomicPublisher(settings, "watchdog", f"{settings.watchdog_app_id}-verdicts")
    probe = CatchUpProbe(settings, settings.watchdog_app_id)
    policy = Policy(
        stall_timeout_s=settings.stall_timeout_s,
        time_limit_s=settings.encode_time_limit_s,
        grace_s=settings.watchdog_time_limit_grace_s,
        clock_skew_s=settings.watchdog_clock_skew_s,
        max_attempts=settings.max_attempts,
    )
    # Partition → offset after the last event applied to the table by this process.
    applied: dict[int, int] = {}
    # (job, attempt) already given a committed verdict by this process: never a second one.
    judged: set[tuple[str, int]] = set()

    @app.agent(events)
    async def follow(stream: Any) -> None:
        async for record in stream.events():
            partition, offset = record.message.partition, record.message.offset
            try:
                event = codec.decode(record.value)
            except codec.CodecError:
                applied[partition] = offset + 1
                continue  # the projector dead-letters it; it says nothing about liveness
            key = str(event.job_id)
            stored = liveness.get(key)
            after = observe(Tracked.from_json(stored) if stored else None, event)
            if after is None:
                if stored is not None:
                    del liveness[key]
            else:
                liveness[key] = {**after.to_json(), "partition": partition}
            applied[partition] = offset + 1

    async def caught_up_partitions() -> set[int]:
        """Assigned partitions whose every event written before this call is in the table."""
        if app.rebalancing or not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return set()
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
        if not assigned:
            return set()
        loop = asyncio.get_running_loop()
        ends = await loop.run_in_executor(None, probe.end_offsets, topic, sorted(assigned))
        committed = await loop.run_in_executor(None, probe.committed, topic, sorted(assigned))
        caught_up: set[int] = set()
        deadline = loop.time() + max(CATCH_UP_WAIT_S, settings.watchdog_interval_s)
        while True:
            for p in assigned - caught_up:
                low, high = ends[p]
                start = max(applied.get(p, 0), committed.get(p, 0), low)
                if start >= high or not await loop.run_in_executor(
                    None, probe.has_events, topic, p, start, high
                ):
                    caught_up.add(p)
            if caught_up == assigned or loop.time() >= deadline:
                return caught_up
            await asyncio.sleep(CATCH_UP_RECHECK_S)

    @app.timer(interval=settings.watchdog_interval_s)  # type: ignore[untyped-decorator]
    async def patrol() -> None:
        # The time is taken before the log's end: every event written before it is below that end.
        now = datetime.now(UTC)
        ready = await caught_up_partitions()
        lagging = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic} - ready
        metrics.LAGGING_PARTITIONS.set(len(lagging))
        metrics.TRACKED.set(len(liveness))
        if lagging:
            log.info(
                "not judging partitions %s: the watchdog has not caught up with the log", sorted(lagging)
            )
        for key, value in list(liveness.items()):
            if value is None or value.get("partition") not in ready:
                continue
            tracked = Tracked.from_json(value)
            verdict = judge(tracked, now, policy)
            if verdict is None or (key, verdict.attempt) in judged:
                continue
            batch = verdict_messages(settings, UUID(key), verdict)
            try:
                # Committed (acks=all) off the event loop before the patrol moves on.
                await asyncio.get_running_loop().run_in_executor(None, verdicts.publish, batch)
            except bus.DeliveryFailedError as exc:
                log.warning("verdict for job %s not published (%s); judging again next patrol", key, exc)
                continue
            judged.add((key, verdict.attempt))
            metrics.VERDICTS.labels(verdict.type, str(verdict.data.will_retry).lower()).inc()
            log.warning(
                "verdict %s for job %s attempt %d (will_retry=%s)",
                verdict.type,
                key,
                verdict.attempt,
                verdict.data.will_retry,
                extra={"job_id": key, "attempt": verdict.attempt, "event": "verdict"},
            )
        metrics.PATROLS.inc()
        metrics.LAST_PATROL.set_to_current_time()

    return app


def verdict_messages(settings: Settings, job_id: UUID, verdict: Verdict) -> list[tuple[str, Envelope]]:
    """The verdict event and, when it requeues the job, the next attempt's command (one transaction)."""
    course = verdict.course_job_id
    event = new_message(
        verdict.data, job_id=job_id, attempt=verdict.attempt, producer=WATCHDOG, course_job_id=course
    )
    batch: list[tuple[str, Envelope]] = [(settings.events_topic, event)]
    if verdict.retry is not None:
        command = next_command(job_id, verdict.attempt + 1, verdict.retry, course)
        batch.append((settings.commands_topic, command))
    return batch


def next_command(
    job_id: UUID, attempt: int, data: Command, course_job_id: UUID | None = None
) -> Envelope[Command]:
    """The command of `attempt` (a course's PublishCourse or a task's EncodeTask), with the job's data."""
    return new_message(data, job_id=job_id, attempt=attempt, producer=WATCHDOG, course_job_id=course_job_id)


def run_watchdog(settings: Settings) -> None:
    """Run one watchdog worker until SIGTERM."""
    # faust creates its versioned folder inside the datadir, but not the datadir's parents.
    (settings.watchdog_data_dir / settings.watchdog_app_id).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    # Logging stays ours (logs.configure: JSON lines on stderr): mode's worker would otherwise replace
    # the root handlers with its colored text handler on stdout when it starts. quiet: no banner.
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        redirect_stdouts=False,
        override_logging=False,
        quiet=True,
    )
    # Its terminal spinner writes cursor escapes to stdout even when stdout is no terminal.
    worker.spinner = None
    worker.execute_from_commandline()
