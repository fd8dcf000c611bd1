"""The Postgres side of the projector: apply a batch of log records in one transaction, exactly once.

One transaction per batch (G3, G4):
1. lock this batch's partitions in `projector_offsets` and drop records below the stored offset —
   they were applied before (a crash between the Postgres and the Kafka commit, or a rebalance);
2. drop events whose event_id is already in `job_events` (a producer's redelivery);
3. append the rest to `job_events`, run each through the job state machine, write changed jobs to
   `publish_jobs` and refusals to `rejected_events`; fold the accepted JobQueued / JobCompleted and
   the catalogue's own events (CourseUnpublished, never shown to the state machine) into the
   catalogue of published courses (catalogue.py);
4. store the next offset per partition, NOTIFY listeners, commit.
A process that dies anywhere before the commit leaves nothing behind; after it, nothing is repeated.

Two kinds of trouble do not stop the projector:
- an event Postgres refuses (a value out of a column's range, a character it cannot hold, a violated
  constraint) fails its batch; the batch is then applied again under savepoints, halving the part
  that fails until the one event Postgres refuses is found. That event goes to `refused_events` with
  the database's reason, in the same transaction as everything else and the offsets (G3, G6);
- a lost connection (or any other OperationalError) is retried on a new connection, with backoff,
  for up to `reconnect_timeout_s`. The offset rows make the retry exactly once: what committed
  before the loss is skipped, what did not is applied.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar
from uuid import UUID

import msgspec
import orjson
import psycopg
from psycopg import errors, pq, sql
from psycopg.adapt import Buffer, Dumper
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from services.core import faults
from services.core.catalogue import CATALOGUE_EVENTS, CATALOGUE_INPUTS
from services.core.job_changes import JOB_CHANGED_CHANNEL
from services.core.jobs import JobState, JobStatus, Rejection, apply
from services.core.messages import Envelope, printable
from services.core.migrations import migrate
from services.core.payloads import (
    JobOutputs,
    PlannedLecture,
    PublishedVideo,
    TaskCompleted,
    TaskSpec,
)
from services.projector.catalogue import CatalogueTables
from services.projector.catalogue import backfill as backfill_catalogue

log = logging.getLogger("coursecast.projector")

JOB_COLUMNS = tuple(f.name for f in fields(JobState))
EVENT_COLUMNS = (
    "event_id",
    "job_id",
    "attempt",
    "type",
    "version",
    "occurred_at",
    "producer",
    "data",
    "kafka_partition",
    "kafka_offset",
)
REJECTION_COLUMNS = (
    "event_id",
    "job_id",
    "attempt",
    "type",
    "occurred_at",
    "rejection",
    "reason",
    "met_status",
    "met_attempt",
)

# msgspec for jsonb out (it writes the payload structs directly) and orjson in: several times faster
# than the json module on the hot path.
set_json_dumps(msgspec.json.Encoder().encode)
set_json_loads(orjson.loads)

# Column types for binary COPY: the server parses no text, and Python formats none (~1.5x faster).
COLUMN_TYPES = {
    "event_id": "uuid", "job_id": "uuid", "last_event_id": "uuid",
    "attempt": "int4", "version": "int4", "video_count": "int4", "kafka_partition": "int4",
    "met_attempt": "int4", "kafka_offset": "int8", "progress_percent": "float8",
    "occurred_at": "timestamptz", "created_at": "timestamptz", "updated_at": "timestamptz",
    "started_at": "timestamptz", "completed_at": "timestamptz", "failed_at": "timestamptz",
    "canceled_at": "timestamptz", "data": "jsonb", "outputs": "jsonb",
    "course_job_id": "uuid", "task": "jsonb", "task_result": "jsonb", "lectures": "jsonb",
    "published": "jsonb",
}  # fmt: skip

# The JobState fields stored as jsonb, and the type each is read back as.
JSON_FIELDS: Final[Mapping[str, Any]] = {
    "outputs": JobOutputs,
    "task": TaskSpec,
    "task_result": TaskCompleted,
    "lectures": tuple[PlannedLecture, ...],
    "published": tuple[PublishedVideo, ...],
}

Connection = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")

# How Postgres refuses the values of one event. Anything else (a lost connection, a programming
# error) is not the fault of one event and is never blamed on one.
REFUSALS: Final = (psycopg.DataError, psycopg.IntegrityError)
# Connections are tagged in pg_stat_activity with the role and the schema they write.
APPLICATION_NAME_MAX = 63
RECONNECT_FIRST_DELAY_S = 0.2
RECONNECT_MAX_DELAY_S = 5.0

INT4_MIN, INT4_MAX = -(2**31), 2**31 - 1
_PACK_INT4 = struct.Struct("!i").pack


class CheckedInt4BinaryDumper(Dumper):
    """int4 for binary COPY that refuses what does not fit, as Postgres does.

    psycopg's C dumper for a column declared int4 wraps silently: 2**32 + 5 would be stored as 5,
    a corrupted attempt number. This one raises the error Postgres itself raises for that value
    (22003, a DataError), so the event that carries it is refused, never truncated.
    """

    format = pq.Format.BINARY
    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: int) -> Buffer | None:
        if not INT4_MIN <= obj <= INT4_MAX:
            raise errors.NumericValueOutOfRange(f'value "{obj}" is out of range for type integer')
        return _PACK_INT4(obj)


def binary_copy(table: str, columns: Sequence[str]) -> tuple[sql.Composed, list[str]]:
    """A binary COPY statement for `columns` of `table`, and the types to declare for it."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    return statement, [COLUMN_TYPES.get(c, "text") for c in columns]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A decoded event and where it sits on the log."""

    envelope: Envelope
    partition: int
    offset: int


@dataclass
class EventCounts:
    """How many events were applied, rejected by the state machine, skipped as duplicates, or
    refused by Postgres: one batch's (BatchOutcome) or a projector's since it started."""

    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    refused: int = 0

    def count(self, other: EventCounts) -> None:
        """Add `other`'s counts to these."""
        self.applied += other.applied
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.refused += other.refused


@dataclass
class BatchOutcome(EventCounts):
    """What one batch did: counts for metrics and logs."""

    already_applied: int = 0
    changed_jobs: set[UUID] = field(default_factory=set)
    # The courses whose tasks changed: their lectures' progress did.
    changed_courses: set[UUID] = field(default_factory=set)
    # Rejected events by kind of rejection (Rejection.name), for the metrics.
    rejections: Counter[str] = field(default_factory=Counter)

    def add(self, other: BatchOutcome) -> None:
        """Count `other` (a part of this batch) in this outcome."""
        self.count(other)
        self.changed_jobs |= other.changed_jobs
        self.changed_courses |= other.changed_courses
        self.rejections.update(other.rejections)


@dataclass
class _BatchWork:
    """A batch's work so far: each job's state, the event ids already stored, what it did."""

    states: dict[UUID, JobState]
    known: set[UUID]
    outcome: BatchOutcome

    def trial(self) -> _BatchWork:
        """A copy to try a part of the batch on; `absorb` it if that part is kept."""
        return _BatchWork(dict(self.states), set(self.known), BatchOutcome())

    def absorb(self, trial: _BatchWork) -> None:
        """Keep what `trial` did."""
        self.states.update(trial.states)
        self.known |= trial.known
        self.outcome.add(trial.outcome)


class JobStore:
    """publish_jobs, job_events, rejected_events and projector_offsets in one Postgres schema."""

    def __init__(
        self,
        conn: Connection,
        schema: str,
        topic: str,
        *,
        database_url: str | None = None,
        role: str = "store",
        reconnect_timeout_s: float = 0.0,
    ) -> None:
        self._conn = conn
        self.schema = schema
        self.topic = topic
        self._cache = _JobCache()
        # Without a URL the store cannot open a new connection, and a lost one is final.
        self._database_url = database_url
        self._role = role
        self._reconnect_timeout_s = reconnect_timeout_s

    @classmethod
    def open(
        cls,
        database_url: str,
        schema: str,
        topic: str,
        *,
        role: str = "store",
        reconnect_timeout_s: float = 60.0,
    ) -> JobStore:
        """Connect, apply pending migrations and point the session at `schema`.

        The connection is named "coursecast <role> <schema>" in pg_stat_activity. A connection lost
        later is replaced, for up to `reconnect_timeout_s` of trying (0: never).
        """
        conn = _connect(database_url, schema, role)
        migrate(conn, schema)
        # A schema migrated to the catalogue over an existing log: the catalogue is built from it.
        backfill_catalogue(conn)
        return cls(
            conn,
            schema,
            topic,
            database_url=database_url,
            role=role,
            reconnect_timeout_s=reconnect_timeout_s,
        )

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @property
    def connection(self) -> Connection:
        """The underlying connection (autocommit; every write goes through a transaction block)."""
        return self._conn

    # --- offsets ---------------------------------------------------------------------------------

    def stored_offsets(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """The next offset to read per partition, as of the last committed batch."""
        query = "SELECT kafka_partition, next_offset FROM projector_offsets WHERE topic = %s"
        params: list[Any] = [self.topic]
        if partitions is not None:
            query += " AND kafka_partition = ANY(%s)"
            params.append(list(partitions))
        return self._reconnecting(lambda: {row[0]: row[1] for row in self._conn.execute(query, params)})

    # --- connection ------------------------------------------------------------------------------

    def _reconnecting(self, action: Callable[[], T]) -> T:
        """Run `action`, on a new connection after each OperationalError, until it succeeds or time is up.

        Safe for `apply_batch` because one batch is one transaction: a retry after a loss re-reads the
        offset rows and applies exactly what the lost transaction did not commit.
        """
        deadline = time.monotonic() + self._reconnect_timeout_s
        delay = RECONNECT_FIRST_DELAY_S
        while True:
            try:
                if self._conn.closed and self._database_url is not None:
                    self._conn = _connect(self._database_url, self.schema, self._role)
                    log.info("reconnected to postgres (schema %s)", self.schema)
                return action()
            except psycopg.OperationalError as exc:
                if self._database_url is None or time.monotonic() + delay > deadline:
                    raise
                log.warning("postgres: %s; retrying in %.1f s", str(exc).strip(), delay)
                if self._conn.broken:
                    self._conn.close()
                time.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY_S)

    # --- apply -----------------------------------------------------------------------------------

    def apply_batch(self, records: Sequence[LogRecord], next_offsets: Mapping[int, int]) -> BatchOutcome:
        """Apply `records` and advance each partition to `next_offsets[p]`, all in one transaction.

        `next_offsets` covers every partition the batch consumed, including messages that were not
        records (dead-lettered poison), so those are never read again either.
        """
        return self._reconnecting(lambda: self._apply_batch_once(records, next_offsets))

    def _apply_batch_once(
        self, records: Sequence[LogRecord], next_offsets: Mapping[int, int]
    ) -> BatchOutcome:
        try:
            return self._transaction(records, next_offsets, isolate=False)
        except REFUSALS as exc:
            # Rare, so the common path stays one COPY per table; only this batch pays for savepoints.
            log.warning("postgres refused the batch (%s); isolating the event it refuses", _reason(exc))
            return self._transaction(records, next_offsets, isolate=True)

    def _transaction(
        self, records: Sequence[LogRecord], next_offsets: Mapping[int, int], *, isolate: bool
    ) -> BatchOutcome:
        outcome = BatchOutcome()
        try:
            with self._conn.transaction():
                self._apply_in_transaction(records, next_offsets, outcome, isolate)
        except BaseException:
            # What this batch computed may not be in Postgres: trust only Postgres from here on.
            self._cache.clear()
            raise
        return outcome

    def _apply_in_transaction(
        self,
        records: Sequence[LogRecord],
        next_offsets: Mapping[int, int],
        outcome: BatchOutcome,
        isolate: bool,
    ) -> None:
        stored = self._lock_offsets(sorted(next_offsets))
        self._cache.keep_only_if_unchanged(stored)
        fresh = [r for r in records if r.offset >= stored.get(r.partition, 0)]
        outcome.already_applied = len(records) - len(fresh)
        known = self._known_event_ids([r.envelope.event_id for r in fresh])
        partition_of = {r.envelope.job_id: r.partition for r in fresh}
        states = self._cache.get_many(partition_of)
        states.update(self._load_jobs(set(partition_of) - set(states)))

        work = _BatchWork(states, known, outcome)
        if isolate:
            self._apply_isolating(fresh, work)
        else:
            self._apply_records(fresh, work)
        advanced = {p: max(o, stored.get(p, 0)) for p, o in next_offsets.items()}
        self._store_offsets(advanced)
        self._notify(outcome.changed_jobs | outcome.changed_courses)
        self._cache.remember(states, partition_of, advanced)

    def _apply_records(self, records: Sequence[LogRecord], work: _BatchWork) -> None:
        """Run `records` through the state machine from `work.states` and write what they did."""
        states, known, outcome = work.states, work.known, work.outcome
        new_events: list[LogRecord] = []
        rejections: list[tuple[Envelope, Rejection, JobState | None]] = []
        changed: set[UUID] = set()
        catalogue: list[Envelope] = []
        for record in records:
            envelope = record.envelope
            if envelope.event_id in known:
                outcome.duplicates += 1
                continue
            known.add(envelope.event_id)
            new_events.append(record)
            if envelope.type in CATALOGUE_EVENTS:
                # About a course, not a job: the state machine would refuse it as a TerminalState of
                # the course's completed first job. Kept in job_events under that job's id; only
                # the catalogue applies it.
                catalogue.append(envelope)
                continue
            current = states.get(envelope.job_id)
            result = apply(current, envelope)
            if isinstance(result, Rejection):
                rejections.append((envelope, result, current))
                continue
            states[envelope.job_id] = result
            changed.add(envelope.job_id)
            if result.course_job_id is not None:
                # A task's progress is its course's: whoever watches the course hears of it.
                outcome.changed_courses.add(result.course_job_id)
            if envelope.type in CATALOGUE_INPUTS:
                catalogue.append(envelope)

        self._append_events(new_events)
        faults.reach("projector.mid_batch")
        self._upsert_jobs([states[job_id] for job_id in changed])
        self._record_rejections(rejections)
        # A course's id is the id of its first job: listeners of that job hear of its catalogue changes.
        changed |= CatalogueTables(self._conn).apply(catalogue)
        outcome.applied += len(new_events) - len(rejections)
        outcome.rejected += len(rejections)
        outcome.rejections.update(rejection.name for _, rejection, _ in rejections)
        outcome.changed_jobs |= changed

    def _apply_isolating(self, records: Sequence[LogRecord], work: _BatchWork) -> None:
        """Apply `records` in order, setting aside each event Postgres refuses.

        A part is tried under a savepoint, from the states the parts before it left; if Postgres
        refuses it, it is rolled back and its halves are tried in turn, down to the single event
        that is refused. One refused event in n costs about 2·log2(n) savepoints.
        """
        if not records:
            return
        trial = work.trial()
        try:
            with self._conn.transaction():  # a savepoint inside the batch's transaction
                self._apply_records(records, trial)
        except REFUSALS as exc:
            if len(records) == 1:
                self._record_refusal(records[0], exc)
                work.outcome.refused += 1
                return
            middle = len(records) // 2
            self._apply_isolating(records[:middle], work)
            self._apply_isolating(records[middle:], work)
            return
        work.absorb(trial)

    def _record_refusal(self, record: LogRecord, error: psycopg.Error) -> None:
        e = record.envelope
        sqlstate = error.sqlstate or "XX000"
        reason = _reason(error)
        log.error(
            "postgres refused event %s (%s of job %s, %s[%d]@%d): %s %s",
            e.event_id,
            e.type,
            e.job_id,
            self.topic,
            record.partition,
            record.offset,
            sqlstate,
            reason,
        )
        document = {
            "event_id": str(e.event_id),
            "type": e.type,
            "version": e.version,
            "job_id": str(e.job_id),
            "attempt": e.attempt,
            "occurred_at": e.occurred_at.isoformat(),
            "producer": e.producer,
            "data": e.data,
        }
        self._conn.execute(
            "INSERT INTO refused_events"
            " (kafka_partition, kafka_offset, event_id, job_id, type, sqlstate, reason, event)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                record.partition,
                record.offset,
                e.event_id,
                e.job_id,
                e.type,
                sqlstate,
                reason,
                msgspec.json.encode(document),
            ),
        )

    def _lock_offsets(self, partitions: list[int]) -> dict[int, int]:
        # Row locks serialise two projectors that briefly hold the same partition during a
        # rebalance: the second waits, then sees the advanced offset and skips what the first did.
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO projector_offsets (topic, kafka_partition, next_offset) VALUES (%s, %s, 0)"
                " ON CONFLICT DO NOTHING",
                [(self.topic, p) for p in partitions],
            )
            cur.execute(
                "SELECT kafka_partition, next_offset FROM projector_offsets"
                " WHERE topic = %s AND kafka_partition = ANY(%s) ORDER BY kafka_partition FOR UPDATE",
                (self.topic, partitions),
            )
            return {row[0]: row[1] for row in cur.fetchall()}

    def _known_event_ids(self, event_ids: list[UUID]) -> set[UUID]:
        if not event_ids:
            return set()
        rows = self._conn.execute("SELECT event_id FROM job_events WHERE event_id = ANY(%s)", (event_ids,))
        return {row[0] for row in rows}

    def _load_jobs(self, job_ids: set[UUID]) -> dict[UUID, JobState]:
        if not job_ids:
            return {}
        with self._conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM publish_jobs WHERE job_id = ANY(%s)").format(
                    sql.SQL(", ").join(map(sql.Identifier, JOB_COLUMNS))
                ),
                (list(job_ids),),
            )
            return {row["job_id"]: row_to_state(row) for row in cur.fetchall()}

    def _append_events(self, records: list[LogRecord]) -> None:
        if not records:
            return
        statement, types = binary_copy("job_events", EVENT_COLUMNS)
        with self._conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(types)
            for r in records:
                e = r.envelope
                copy.write_row(
                    (
                        e.event_id,
                        e.job_id,
                        e.attempt,
                        e.type,
                        e.version,
                        e.occurred_at,
                        e.producer,
                        Jsonb(e.data),
                        r.partition,
                        r.offset,
                    )
                )

    def _upsert_jobs(self, states: list[JobState]) -> None:
        if not states:
            return
        # COPY into a scratch table, then one INSERT .. ON CONFLICT: a round trip per batch, not per job.
        columns = sql.SQL(", ").join(map(sql.Identifier, JOB_COLUMNS))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in JOB_COLUMNS if c != "job_id"
        )
        with self._conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE IF NOT EXISTS changed_jobs (LIKE publish_jobs INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS"
            )
            statement, types = binary_copy("changed_jobs", JOB_COLUMNS)
            with cur.copy(statement) as copy:
                copy.set_types(types)
                for state in states:
                    copy.write_row(state_to_row(state))
            # Emptied at once: a batch being isolated upserts once per part, in one transaction.
            cur.execute(
                sql.SQL(
                    "INSERT INTO publish_jobs ({c}) SELECT {c} FROM changed_jobs"
                    " ON CONFLICT (job_id) DO UPDATE SET {u}; DELETE FROM changed_jobs"
                ).format(c=columns, u=updates)
            )

    def _record_rejections(self, rejections: list[tuple[Envelope, Rejection, JobState | None]]) -> None:
        if not rejections:
            return
        statement, types = binary_copy("rejected_events", REJECTION_COLUMNS)
        with self._conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types(types)
            for e, rejection, met in rejections:
                copy.write_row(
                    (
                        e.event_id,
                        e.job_id,
                        e.attempt,
                        e.type,
                        e.occurred_at,
                        rejection.name,
                        rejection.reason,
                        met.status.value if met else None,
                        met.attempt if met else None,
                    )
                )

    def _store_offsets(self, next_offsets: Mapping[int, int]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "UPDATE projector_offsets SET next_offset = %s WHERE topic = %s AND kafka_partition = %s",
                [(offset, self.topic, p) for p, offset in next_offsets.items()],
            )

    def _notify(self, job_ids: set[UUID]) -> None:
        # Delivered at commit, and only if the transaction commits: listeners never see a change
        # that did not happen.
        if job_ids:
            self._conn.execute(
                "SELECT pg_notify(%s, job_id) FROM unnest(%s::text[]) AS job_id",
                (JOB_CHANGED_CHANNEL, [str(j) for j in job_ids]),
            )

    # --- reads -----------------------------------------------------------------------------------

    def job(self, job_id: UUID) -> JobState | None:
        """One job's row, or None."""
        return self._load_jobs({job_id}).get(job_id)

    def jobs(self) -> dict[UUID, JobState]:
        """Every job (for tests and small tools; the API pages through SQL instead)."""
        with self._conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                sql.SQL("SELECT {} FROM publish_jobs").format(
                    sql.SQL(", ").join(map(sql.Identifier, JOB_COLUMNS))
                )
            )
            return {row["job_id"]: row_to_state(row) for row in cur.fetchall()}


class _JobCache:
    """Job states this process wrote, per partition, valid while no one else wrote that partition.

    Validity is proven, not assumed: the offset row locked at the start of a batch must still hold
    the offset this process stored last; if another projector advanced it (a rebalance), the
    partition's entries are dropped and reloaded from Postgres.
    """

    MAX_JOBS = 200_000

    def __init__(self) -> None:
        self._jobs: dict[int, dict[UUID, JobState]] = {}
        self._written: dict[int, int] = {}

    def clear(self) -> None:
        self._jobs.clear()
        self._written.clear()

    def keep_only_if_unchanged(self, stored: Mapping[int, int]) -> None:
        for partition, offset in stored.items():
            if self._written.get(partition) != offset:
                self._jobs.pop(partition, None)
                self._written.pop(partition, None)

    def get_many(self, partition_of: Mapping[UUID, int]) -> dict[UUID, JobState]:
        found = {}
        for job_id, partition in partition_of.items():
            state = self._jobs.get(partition, {}).get(job_id)
            if state is not None:
                found[job_id] = state
        return found

    def remember(
        self, states: Mapping[UUID, JobState], partition_of: Mapping[UUID, int], written: Mapping[int, int]
    ) -> None:
        if sum(len(jobs) for jobs in self._jobs.values()) > self.MAX_JOBS:
            self.clear()
        for job_id, state in states.items():
            partition = partition_of.get(job_id)
            if partition is not None:
                self._jobs.setdefault(partition, {})[job_id] = state
        self._written.update(written)


def _connect(database_url: str, schema: str, role: str) -> Connection:
    """An autocommit connection whose session writes `schema`, named for pg_stat_activity."""
    name = f"coursecast {role} {schema}"[:APPLICATION_NAME_MAX]
    conn: Connection = psycopg.connect(database_url, autocommit=True, application_name=name)
    conn.adapters.register_dumper(None, CheckedInt4BinaryDumper)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn


def _reason(error: psycopg.Error) -> str:
    """The database's message and detail, without the COPY line context that varies with the batch."""
    diag = error.diag
    reason = diag.message_primary or str(error).strip()
    if diag.message_detail:
        reason += f" ({diag.message_detail})"
    return printable(reason)


def state_to_row(state: JobState) -> tuple[Any, ...]:
    """A JobState as publish_jobs column values, in JOB_COLUMNS order."""
    values = []
    for name in JOB_COLUMNS:
        value = getattr(state, name)
        if name == "status":
            value = value.value
        elif name in JSON_FIELDS and value is not None:
            value = Jsonb(value)
        values.append(value)
    return tuple(values)


def row_to_state(row: Mapping[str, Any]) -> JobState:
    """A publish_jobs row as the JobState the state machine works on."""
    values = {name: row[name] for name in JOB_COLUMNS}
    values["status"] = JobStatus(values["status"])
    for name, kind in JSON_FIELDS.items():
        if values[name] is not None:
            values[name] = msgspec.convert(values[name], kind)
    return JobState(**values)
