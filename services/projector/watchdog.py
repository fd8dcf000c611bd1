"""`coursecast watchdog`: a faust-streaming app that gives every silent or overlong job an explicit end (G2).

It keeps, per job, whether an attempt is running and when its worker last spoke (a faust table with
a changelog topic, so a restarted watchdog knows everything it knew), and on a timer judges each
running attempt with `liveness.judge`. A verdict is an ordinary event on the log — JobStalled or
JobTimedOut for that attempt — so the state machine decides, as for any event, whether it still
applies: if the job completed in the meantime, the verdict is rejected and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import faust
from confluent_kafka import Producer

from services.core import bus, codec
from services.core.kafka_config import producer_config
from services.core.messages import new_message
from services.core.settings import Settings
from services.projector.liveness import Running, judge, observe

log = logging.getLogger("coursecast.watchdog")


def create_app(settings: Settings) -> faust.App:
    """The watchdog app for these settings (one app id per deployment; its table is co-partitioned)."""
    app = faust.App(
        settings.watchdog_app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        store="memory://",
        # The table's changelog has as many partitions as the log it mirrors (co-partitioned by job id).
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        producer_acks=-1,
    )
    events = app.topic(settings.events_topic, key_type=bytes, value_type=bytes, value_serializer="raw")
    # Values are JSON (faust's default serializer): Running.to_json() of the attempt in flight.
    liveness = app.Table("liveness", default=None, partitions=settings.topic_partitions)
    producer = Producer(producer_config(settings, "watchdog"))
    judged: set[tuple[str, int]] = set()
    grace_s = settings.watchdog_time_limit_grace_s

    @app.agent(events)
    async def follow(stream: Any) -> None:
        async for value in stream:
            try:
                event = codec.decode(value)
            except codec.CodecError:
                continue  # the projector dead-letters it; it says nothing about liveness
            key = str(event.job_id)
            stored = liveness.get(key)
            after = observe(Running.from_json(stored) if stored else None, event)
            if after is None:
                if stored is not None:
                    del liveness[key]
            else:
                liveness[key] = after.to_json()

    @app.timer(interval=settings.watchdog_interval_s)  # type: ignore[untyped-decorator]
    async def patrol() -> None:
        now = datetime.now(UTC)
        verdicts = []
        for key, value in list(liveness.items()):
            if value is None:
                continue
            running = Running.from_json(value)
            if (key, running.attempt) in judged:
                continue
            verdict = judge(running, now, settings.stall_timeout_s, settings.encode_time_limit_s, grace_s)
            if verdict is not None:
                verdicts.append(
                    new_message(
                        verdict.type,
                        job_id=UUID(key),
                        attempt=verdict.attempt,
                        data=verdict.data,
                        producer="watchdog",
                    )
                )
                judged.add((key, running.attempt))
        if verdicts:
            # acks=all, off the event loop: the verdicts are durable before the patrol ends.
            await asyncio.get_running_loop().run_in_executor(
                None, bus.publish, producer, settings.events_topic, verdicts
            )
            for message in verdicts:
                log.warning("verdict %s for job %s attempt %d", message.type, message.job_id, message.attempt)

    return app


def run_watchdog(settings: Settings) -> None:
    """Run one watchdog worker until SIGTERM."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="info", redirect_stdouts=False)
    worker.execute_from_commandline()
