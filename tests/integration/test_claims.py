"""G1 at the claim: ClaimStore against real Postgres, with real concurrent connections.

Each test runs in a Postgres schema of its own. Two ClaimStores are two encoders (two connections,
two threads); the lease is judged only by the database clock (`now()` in SQL), never the caller's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from uuid import UUID, uuid4

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.core import codec
from services.core.kafka_config import consumer_config, producer_config
from services.core.messages import Envelope, MessageType
from services.core.settings import Settings
from services.core.storage import s3_client
from services.encoder.attempt import JobRunner, Outcome
from services.encoder.cancel import CancelWatcher
from services.encoder.claims import Claim, ClaimStore, Decision, Verdict, decide
from services.encoder.publisher import Publisher
from services.projector.replay import drop_schema
from tests.support.examples import example_payload
from tests.support.messages import publish_course
from tests.support.projector import isolated

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 3


@pytest.fixture
def schema(settings: Settings) -> Iterator[str]:
    name = f"test_claims_{uuid4().hex[:10]}"
    yield name
    drop_schema(settings.database_url, name)


@pytest.fixture
def clock(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection that only reads the database clock."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def encoders(settings: Settings, schema: str) -> Iterator[Callable[[str, int], ClaimStore]]:
    """A factory of ClaimStores (one connection each) in the test's schema, all closed at the end."""
    with ExitStack() as stack:

        def open_store(worker: str, lease_s: int) -> ClaimStore:
            store = ClaimStore.open(settings.database_url, schema, worker, lease_s)
            stack.callback(store.close)
            return store

        yield open_store


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds, or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.05)


def try_to_claim(store: ClaimStore, job_id: UUID, command_attempt: int = 1) -> tuple[Decision, bool]:
    """What the consumer does with one delivery: read the claim, decide, and try to acquire."""
    seen = store.claim(job_id)
    decision = decide(command_attempt, seen, store.job(job_id), MAX_ATTEMPTS)
    if decision.verdict not in (Verdict.RUN, Verdict.TAKE_OVER):
        return decision, False
    return decision, store.acquire(job_id, decision, command_attempt, seen)


def claimants(stores: list[ClaimStore], job_id: UUID) -> list[Callable[[], bool]]:
    """One delivery of attempt 1's command to each store's encoder: did it win the claim?"""
    return [lambda store=store: try_to_claim(store, job_id)[1] for store in stores]  # type: ignore[misc]


def race(contenders: list[Callable[[], bool]]) -> list[bool]:
    """Run the contenders at the same instant on threads of their own; their results, in order."""
    gate = threading.Barrier(len(contenders))
    results: list[bool | None] = [None] * len(contenders)

    def run(index: int) -> None:
        gate.wait(10)
        results[index] = contenders[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(contenders))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(result is not None for result in results), "a contender did not finish"
    return [bool(result) for result in results]


def started_claim_of_a_dead_worker(
    encoders: Callable[[str, int], ClaimStore], job_id: UUID, lease_s: int = 1
) -> tuple[ClaimStore, Claim]:
    """A worker claims attempt 1, gets JobStarted acknowledged, then never renews: its lease runs out."""
    dead = encoders("encoder@dead", lease_s)
    decision, won = try_to_claim(dead, job_id)
    assert won
    assert decision.verdict is Verdict.RUN
    assert dead.mark_started(job_id, 1)
    wait_until(lambda: dead.claim(job_id).lease_expired, 30, "the dead worker's lease expiry")  # type: ignore[union-attr]
    claim = dead.claim(job_id)
    assert claim is not None
    return dead, claim


def test_two_encoders_racing_for_one_attempt_never_both_win(
    encoders: Callable[[str, int], ClaimStore],
) -> None:
    first, second = encoders("encoder@a", 30), encoders("encoder@b", 30)
    for _ in range(40):
        job_id = uuid4()
        wins = race(claimants([first, second], job_id))
        assert wins.count(True) == 1, wins
        claim = first.claim(job_id)
        assert claim is not None
        assert claim.worker == ("encoder@a" if wins[0] else "encoder@b")
        assert (claim.attempt, claim.state, claim.started) == (1, "running", False)
        # The loser, looking again, is told to wait for the live owner: it never runs the attempt.
        loser = second if wins[0] else first
        assert try_to_claim(loser, job_id)[0].verdict is Verdict.WAIT


def test_two_survivors_racing_to_take_over_a_dead_workers_attempt_never_both_win(
    encoders: Callable[[str, int], ClaimStore],
) -> None:
    first, second = encoders("encoder@a", 30), encoders("encoder@b", 30)
    for _ in range(5):
        job_id = uuid4()
        started_claim_of_a_dead_worker(encoders, job_id)
        wins = race(claimants([first, second], job_id))
        assert wins.count(True) == 1, wins
        claim = first.claim(job_id)
        assert claim is not None
        # The winner holds the dead attempt itself, still marked started: it is there to end it
        # (JobStalled + the next attempt's command), never to run it again.
        assert (claim.attempt, claim.origin_attempt, claim.state, claim.started) == (1, 1, "running", True)
        assert claim.worker == ("encoder@a" if wins[0] else "encoder@b")


def test_a_lease_not_renewed_expires_by_the_database_clock_and_the_next_claimant_takes_over(
    encoders: Callable[[str, int], ClaimStore], clock: psycopg.Connection[tuple[object, ...]]
) -> None:
    job_id = uuid4()
    owner, next_claimant = encoders("encoder@owner", 2), encoders("encoder@next", 30)
    assert try_to_claim(owner, job_id)[1]
    assert owner.mark_started(job_id, 1)
    # While the lease runs, the next claimant is told to wait and could not win even if it tried.
    live = next_claimant.claim(job_id)
    assert live is not None
    assert not live.lease_expired
    assert try_to_claim(next_claimant, job_id) == (
        Decision(Verdict.WAIT, "attempt 1 is running on encoder@owner", attempt=1),
        False,
    )
    takeover = Decision(Verdict.TAKE_OVER, "forced", attempt=1, stalled_attempt=1)
    assert not next_claimant.acquire(job_id, takeover, 1, live)

    wait_until(lambda: next_claimant.claim(job_id).lease_expired, 30, "lease expiry")  # type: ignore[union-attr]
    expired = next_claimant.claim(job_id)
    assert expired is not None
    # The verdict agrees with the database clock.
    assert clock.execute("SELECT now() > %s", (expired.lease_expires_at,)).fetchone() == (True,)
    decision, won = try_to_claim(next_claimant, job_id)
    assert (decision.verdict, decision.attempt, decision.next_attempt, decision.stalled_attempt, won) == (
        Verdict.TAKE_OVER,
        1,
        2,
        1,
        True,
    )
    # The dead owner, if it ever wakes up, can neither renew, nor finish, nor publish.
    assert not owner.renew(job_id, 1)
    with owner.finishing(job_id, 1, "completed") as ours:
        assert not ours
    claim = owner.claim(job_id)
    assert claim is not None
    assert (claim.worker, claim.attempt, claim.state) == ("encoder@next", 1, "running")


def test_a_renewed_lease_never_expires_and_no_one_can_take_the_attempt(
    encoders: Callable[[str, int], ClaimStore], clock: psycopg.Connection[tuple[object, ...]]
) -> None:
    job_id = uuid4()
    owner, rival = encoders("encoder@owner", 1), encoders("encoder@rival", 30)
    assert try_to_claim(owner, job_id)[1]
    assert owner.mark_started(job_id, 1)
    first = owner.claim(job_id)
    assert first is not None
    # Renew well inside the 1 s lease until the database clock is 3 leases past the first expiry.

    def three_leases_later() -> bool:
        row = clock.execute("SELECT now() > %s + interval '3 seconds'", (first.lease_expires_at,)).fetchone()
        return bool(row and row[0])

    renewals = 0
    while not three_leases_later():
        assert owner.renew(job_id, 1)
        renewals += 1
        decision, won = try_to_claim(rival, job_id)
        assert (decision.verdict, won) == (Verdict.WAIT, False)
        time.sleep(0.2)  # the renewal cadence of a heartbeat, well inside the 1 s lease
    assert renewals >= 10
    claim = owner.claim(job_id)
    assert claim is not None
    assert (claim.worker, claim.attempt, claim.state, claim.lease_expired) == (
        "encoder@owner",
        1,
        "running",
        False,
    )


def test_a_takeover_blocks_behind_a_finishing_attempt_and_then_finds_it_done(
    encoders: Callable[[str, int], ClaimStore], clock: psycopg.Connection[tuple[object, ...]]
) -> None:
    job_id = uuid4()
    dying, claim = started_claim_of_a_dead_worker(encoders, job_id)
    survivor = encoders("encoder@survivor", 30)
    decision = decide(1, claim, survivor.job(job_id), MAX_ATTEMPTS)
    assert decision.verdict is Verdict.TAKE_OVER
    result: list[bool] = []
    with dying.finishing(job_id, 1, "completed") as ours:
        # The slow worker's lease expired, but it got to its final event first: it is still the owner.
        assert ours
        contender = threading.Thread(
            target=lambda: result.append(survivor.acquire(job_id, decision, 1, claim))
        )
        contender.start()
        wait_until(
            lambda: waits_on_a_lock(clock, survivor), 30, "the takeover to block on the claim's row lock"
        )
        assert not result
    contender.join(30)
    assert result == [False]
    done = survivor.claim(job_id)
    assert done is not None
    assert (done.worker, done.attempt, done.state, done.outcome) == ("encoder@dead", 1, "done", "completed")
    assert decide(1, done, None, MAX_ATTEMPTS).verdict is Verdict.SKIP


def test_a_zombie_finishing_after_a_takeover_never_publishes_its_completion(
    settings: Settings, encoders: Callable[[str, int], ClaimStore]
) -> None:
    with isolated(settings, partitions=1) as own:
        job_id = uuid4()
        zombie, _ = started_claim_of_a_dead_worker(encoders, job_id)
        survivor = encoders("encoder@survivor", 30)
        decision, won = try_to_claim(survivor, job_id)
        assert won
        assert decision.verdict is Verdict.TAKE_OVER

        # The zombie wakes up with its encode done and runs the real final-event transaction.
        producer = Producer(producer_config(own, "test-zombie"))
        watcher = CancelWatcher(own)
        watcher.start()
        try:
            runner = JobRunner(
                own,
                publish_course(job_id),
                Decision(Verdict.RUN, "zombie", attempt=1),
                zombie,
                Publisher(producer, own, "encoder@dead"),
                s3_client(own),
                watcher,
            )
            completed = example_payload(MessageType.JOB_COMPLETED)
            result = runner._finish(Outcome.COMPLETED, [completed], delete_staging=True)
            # A control: the survivor, the owner, ends the dead attempt through the same claim
            # (JobStalled + the next command, one transaction), then runs attempt 2 from its command.
            survivor_runner = JobRunner(
                own,
                publish_course(job_id),
                decision,
                survivor,
                Publisher(producer, own, "encoder@survivor"),
                s3_client(own),
                watcher,
            )
            takeover_result = survivor_runner._end_dead_attempt()
            next_decision, won_next = try_to_claim(survivor, job_id, command_attempt=2)
            assert (next_decision.verdict, next_decision.attempt, won_next) == (Verdict.RUN, 2, True)
            next_runner = JobRunner(
                own,
                publish_course(job_id, attempt=2),
                next_decision,
                survivor,
                Publisher(producer, own, "encoder@survivor"),
                s3_client(own),
                watcher,
            )
            survivor_result = next_runner._finish(Outcome.COMPLETED, [completed])
        finally:
            watcher.close()
            producer.flush(10)
        assert takeover_result.outcome is Outcome.RETRY_SCHEDULED
        assert result.outcome is Outcome.FENCED
        assert not result.delete_staging
        assert survivor_result.outcome is Outcome.COMPLETED
        published = [(e.type, e.attempt, e.producer) for e in read_events(own)]
        assert published == [("JobStalled", 1, "encoder@survivor"), ("JobCompleted", 2, "encoder@survivor")]


def read_events(settings: Settings) -> list[Envelope]:
    """Every committed event on the (single-partition) events topic, up to its high watermark
    (transaction markers take offsets too, so the position, not the count, says when it is read)."""
    consumer = Consumer(consumer_config(settings, f"read-{uuid4().hex}", "test"))
    partition = TopicPartition(settings.events_topic, 0, 0)
    try:
        _, high = consumer.get_watermark_offsets(partition, timeout=10)
        consumer.assign([partition])
        events: list[Envelope] = []
        deadline = time.monotonic() + 30
        while consumer.position([partition])[0].offset < high:
            assert time.monotonic() < deadline, f"the events topic was not read to offset {high}"
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                events.append(codec.decode(message.value()))
        return events
    finally:
        consumer.close()


def waits_on_a_lock(clock: psycopg.Connection[tuple[object, ...]], store: ClaimStore) -> bool:
    """Whether `store`'s backend is blocked waiting for a lock."""
    pid = store._conn.info.backend_pid
    row = clock.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"
