"""Projector throughput against the raw ceilings of the same run: bare Kafka consume and bare Postgres COPY.

    python -m bench projector [--events N] [--replay-events N]

Prints events/s for each and the projector's share of the slower raw ceiling (target ≥ 50 %, and
≥ 20,000 events/s), then the time of `replay --rebuild` over --replay-events events (target < 60 s
for 1,000,000).
"""

from __future__ import annotations

import argparse
import time
from uuid import uuid4

import psycopg
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.report import Check, Section, Table
from devtools.synthetic import history
from services.core import codec
from services.core.kafka_config import consumer_config
from services.core.messages import Envelope
from services.core.settings import Settings
from services.projector.replay import replay
from services.projector.store import EVENT_COLUMNS, JobStore, binary_copy
from tests.support.projector import end_offsets, isolated, produce, running_projector, wait_caught_up


def raw_consume(settings: Settings) -> tuple[int, float]:
    """Consume every record of the events topic with no processing at all."""
    target = {p: o for p, o in end_offsets(settings).items() if o > 0}
    consumer = Consumer(consumer_config(settings, f"bench-raw-{uuid4()}", "bench"))
    consumer.assign([TopicPartition(settings.events_topic, p, 0) for p in target])
    seen = 0
    total = sum(target.values())
    started = time.perf_counter()
    while seen < total:
        seen += len(consumer.consume(settings.projector_batch_size, 1.0))
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen, elapsed


def raw_copy(settings: Settings, events: list[Envelope]) -> float:
    """COPY the same rows into a bare (logged) table of the same columns: no keys, no triggers."""
    table = f"bench_copy_{uuid4().hex[:8]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (event_id uuid, job_id uuid, attempt int, type text,"
                " version int, occurred_at timestamptz, producer text, data jsonb,"
                " kafka_partition int, kafka_offset bigint)"
            ).format(sql.Identifier(table))
        )
        try:
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                # The same binary COPY the projector uses, into a table with nothing to check.
                statement, types = binary_copy(table, EVENT_COLUMNS)
                with cur.copy(statement) as copy:
                    copy.set_types(types)
                    for offset, e in enumerate(events):
                        copy.write_row(
                            (e.event_id, e.job_id, e.attempt, e.type, e.version, e.occurred_at, e.producer,
                             Jsonb(e.data), 0, offset)
                        )  # fmt: skip
            return time.perf_counter() - started
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def project(settings: Settings) -> float:
    """Run one projector from offset 0 until it has applied the whole topic."""
    store = JobStore.open(settings.database_url, settings.database_schema, settings.events_topic)
    started = time.perf_counter()
    with running_projector(settings, store):
        wait_caught_up(settings, timeout_s=1800)
        elapsed = time.perf_counter() - started
    store.close()
    return elapsed


def main(argv: list[str]) -> Section:
    """Run the projector benchmark, print its figures and return them (a target missed: not `met`)."""
    parser = argparse.ArgumentParser(prog="python -m bench projector")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--replay-events", type=int, default=0, help="also time replay --rebuild of this many"
    )
    args, _ = parser.parse_known_args(argv)
    with isolated(Settings(), partitions=6) as own:
        jobs = max(1, args.events // 20)
        events = history(jobs=jobs, events_per_job=20, seed=42)
        started = time.perf_counter()
        produce(own, events)
        produce_s = time.perf_counter() - started
        n = len(events)
        print(
            f"projector bench: {n:,} events over {jobs:,} jobs, 6 partitions (produced in {produce_s:.1f} s)"
        )

        consumed, consume_s = raw_consume(own)
        copy_s = raw_copy(own, events)
        apply_s = project(own)
        decode_s = _decode_time(events[:20_000])

        raw_kafka, raw_pg, applied = consumed / consume_s, n / copy_s, n / apply_s
        ceiling = min(raw_kafka, raw_pg)
        share = applied / ceiling
        print(f"  raw Kafka consume      {raw_kafka:>12,.0f} events/s")
        print(f"  raw Postgres COPY      {raw_pg:>12,.0f} events/s")
        print(f"  codec decode alone     {20_000 / decode_s:>12,.0f} events/s")
        print(f"  projector (guarantees) {applied:>12,.0f} events/s")
        print(f"  ratio projector / slower raw ceiling = {share:.2f}  (target ≥ 0.50, and ≥ 20,000 events/s)")
    rows = [
        ("raw Kafka consume (confluent-kafka `consume()`, no processing)", f"{raw_kafka:,.0f}"),
        ("raw Postgres binary COPY of the same rows into a bare logged table", f"{raw_pg:,.0f}"),
        ("codec decode alone (orjson + schema validation)", f"{20_000 / decode_s:,.0f}"),
        ("**projector with its full guarantees**", f"**{applied:,.0f}**"),
    ]
    checks = [
        Check("ratio projector ÷ slower raw ceiling", f"{share:.2f}", "≥ 0.50", share >= 0.5),
        Check("absolute throughput", f"{applied:,.0f} events/s", "≥ 20,000", applied >= 20_000),
    ]
    command = f"python -m bench projector --events {args.events}"

    if args.replay_events:
        with isolated(Settings(), partitions=6) as own:
            events = history(jobs=max(1, args.replay_events // 20), events_per_job=20, seed=43)
            produce(own, events)
            result = replay(own, f"bench_replay_{uuid4().hex[:8]}")
            print(
                f"  replay --rebuild of {result.events:,} events: {result.seconds:.1f} s "
                f"({result.events_per_second:,.0f} events/s; target < 60 s for 1,000,000)"
            )
            # The target is for 1,000,000 events: scaled to the number replayed.
            limit_s = 60 * result.events / 1_000_000
            checks.append(
                Check(
                    f"`replay --rebuild` of {result.events:,} events"
                    f" ({result.events_per_second:,.0f} events/s)",
                    f"{result.seconds:.1f} s",
                    f"< {limit_s:.0f} s (60 s per 1,000,000)",
                    result.seconds < limit_s,
                )
            )
            command += f" --replay-events {args.replay_events}"
            with psycopg.connect(own.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(result.schema)))
    note = f"{n:,} synthetic events over {jobs:,} jobs, 6 partitions"
    return Section(
        "projector", "Projector", command, (Table(("measure", "events/s"), tuple(rows)),), tuple(checks), note
    )


def _decode_time(events: list[Envelope]) -> float:
    raws = [codec.encode(e) for e in events]
    started = time.perf_counter()
    for raw in raws:
        codec.decode(raw)
    return time.perf_counter() - started
