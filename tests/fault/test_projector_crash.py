"""G3 under crashes: kill -9 a projector at chosen instants; after restart nothing is lost or doubled.

Also G3 under concurrency: two projector processes sharing a 6-partition log build the same table
as one process replaying it; and G3 under a broken database connection: its backend terminated
mid-stream, the projector reconnects and the table is still exactly the log.
"""

from __future__ import annotations

import signal
import time

import psycopg
import pytest
from psycopg import sql

from devtools.synthetic import history
from services.core.messages import MessageType
from services.core.settings import Settings
from tests.support.messages import event
from tests.support.projection_checks import assert_table_is_the_log
from tests.support.projector import isolated, produce, wait_caught_up
from tests.support.services import start_projector, stop

# A short session timeout lets the group notice the killed member in seconds rather than 45 s.
pytestmark = pytest.mark.own(partitions=3, projector_batch_size=100, session_timeout_ms=6000)


@pytest.mark.parametrize("point", ["projector.after_db_commit", "projector.mid_batch"])
def test_projector_killed_at_any_point_resumes_without_loss_or_duplicate(own: Settings, point: str) -> None:
    events = history(jobs=150, events_per_job=8, seed=11)
    produce(own, events)

    doomed = start_projector(own, COURSECAST_FAULT_POINT=f"{point}:3")
    assert doomed.wait(120) == -signal.SIGKILL, "the fault hook did not kill the projector"

    survivor = start_projector(own)
    try:
        wait_caught_up(own, timeout_s=120, processes=[survivor])
    finally:
        assert stop(survivor) == 0
    assert_table_is_the_log(own, events)


def test_two_projector_processes_build_the_table_one_process_rebuilds(settings: Settings) -> None:
    with isolated(settings, partitions=6) as own:
        events = history(jobs=500, events_per_job=20, seed=5)
        assert len(events) >= 10_000
        produce(own, events)
        first, second = start_projector(own), start_projector(own)
        try:
            wait_caught_up(own, timeout_s=240, processes=[first, second])
        finally:
            codes = stop(first), stop(second)
        assert codes == (0, 0)
        assert_table_is_the_log(own, events)


def backends_of(own: Settings, conn: psycopg.Connection[tuple[object, ...]]) -> dict[int, str]:
    """pid -> state of every Postgres backend of the projector process writing `own`'s schema."""
    rows = conn.execute(
        "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s",
        (f"coursecast projector {own.database_schema}",),
    ).fetchall()
    return {int(str(pid)): str(state) for pid, state in rows}


def terminate_busy_backend(
    own: Settings, conn: psycopg.Connection[tuple[object, ...]], timeout_s: float = 60.0
) -> tuple[int, str]:
    """Terminate the projector's backend, preferably while it is inside a batch; returns (pid, state)."""
    deadline = time.monotonic() + timeout_s
    backends: dict[int, str] = {}
    while time.monotonic() < deadline:
        backends = backends_of(own, conn)
        busy = [(pid, state) for pid, state in backends.items() if state != "idle"]
        if busy:
            break
        time.sleep(0.005)
    assert backends, "the projector has no Postgres connection"
    pid, state = busy[0] if busy else next(iter(backends.items()))
    (terminated,) = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() or (False,)
    assert terminated
    return pid, state


def applied_so_far(own: Settings, conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """How many log records the projector has applied, summed over partitions (0 before it starts)."""
    exists = conn.execute("SELECT to_regclass(%s)", (f"{own.database_schema}.projector_offsets",)).fetchone()
    if not exists or exists[0] is None:
        return 0
    row = conn.execute(
        sql.SQL("SELECT coalesce(sum(next_offset), 0) FROM {}.projector_offsets").format(
            sql.Identifier(own.database_schema)
        )
    ).fetchone()
    return int(str(row[0])) if row else 0


def test_projector_rides_out_its_postgres_connection_killed_mid_stream_without_loss_or_duplicate(
    settings: Settings,
) -> None:
    small_batches = settings.model_copy(update={"projector_batch_size": 50})
    with isolated(small_batches, partitions=3) as own:
        events = history(jobs=400, events_per_job=10, seed=13)
        half = len(events) // 2
        produce(own, events[:half])
        projector = start_projector(own)
        killed: list[tuple[int, str]] = []
        try:
            with psycopg.connect(own.database_url, autocommit=True) as admin:
                # Three kills while the first half streams in, one more after the second half arrives.
                for share in (0.1, 0.3, 0.6):
                    deadline = time.monotonic() + 120
                    while applied_so_far(own, admin) < share * half:
                        assert projector.poll() is None, "the projector exited"
                        assert time.monotonic() < deadline, f"no progress to {share:.0%} of the first half"
                        time.sleep(0.01)
                    killed.append(terminate_busy_backend(own, admin))
                produce(own, events[half:])
                killed.append(terminate_busy_backend(own, admin))
                wait_caught_up(own, timeout_s=180, processes=[projector])
                survivors = backends_of(own, admin)
            assert projector.poll() is None, "the projector exited instead of reconnecting"
        finally:
            code = stop(projector)
        stderr = (projector.stderr.read() if projector.stderr else b"").decode()
        assert code == 0, stderr[-2000:]
        print(f"terminated backends (pid, state): {killed}")
        assert len(killed) == 4
        assert survivors, "the projector has no connection left"
        assert not set(survivors) & {pid for pid, _ in killed}, "a terminated backend is still listed"
        assert stderr.count("reconnected to postgres") >= len(killed)
        assert_table_is_the_log(own, events)


def test_projector_killed_while_isolating_a_refused_event_resumes_without_loss_or_duplicate(
    settings: Settings,
) -> None:
    # One partition, so the refused event is in the first batch and the kill lands in its isolation:
    # the batch's first try fails at COPY (no fault point reached), each part that goes in reaches one.
    quick = settings.model_copy(update={"projector_batch_size": 100, "session_timeout_ms": 6000})
    with isolated(quick, partitions=1) as own:
        good = history(jobs=60, events_per_job=8, seed=17)
        running = next(e.job_id for e in good if e.type == "JobStarted")
        refused = event(MessageType.JOB_PROGRESS, running, attempt=2**31)
        produce(own, [*good[:10], refused, *good[10:]])

        doomed = start_projector(own, COURSECAST_FAULT_POINT="projector.mid_batch:3")
        assert doomed.wait(120) == -signal.SIGKILL, "the fault hook did not kill the projector"
        doomed_log = (doomed.stderr.read() if doomed.stderr else b"").decode()
        assert "isolating the event it refuses" in doomed_log
        survivor = start_projector(own)
        try:
            wait_caught_up(own, timeout_s=120, processes=[survivor])
        finally:
            assert stop(survivor) == 0
        result = assert_table_is_the_log(own, good)
        assert result.refused == 1
        with psycopg.connect(own.database_url) as conn:
            rows = conn.execute(
                sql.SQL("SELECT event_id, sqlstate FROM {}.refused_events").format(
                    sql.Identifier(own.database_schema)
                )
            ).fetchall()
        assert rows == [(refused.event_id, "22003")]
