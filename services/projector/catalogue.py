"""The catalogue's tables in Postgres: course_jobs, courses, lectures, unpublished_courses.

Written by `JobStore` inside the transaction that applies a batch (G3, G4), so the catalogue moves
with the status table or not at all, and a retried or replayed batch writes it exactly once. The
rules are services.core.catalogue's: this module loads the rows a batch touches into an
`InMemoryCatalogue`, folds the batch's events through it in log order, and writes back what changed.
A course whose lectures change (a re-encode, a retry's completion) is rewritten in that one
transaction: readers see the old objects' URLs or the new ones, never a mix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final
from uuid import UUID

import msgspec
import orjson
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.core import codec
from services.core.catalogue import (
    CATALOGUE_INPUTS,
    Course,
    CourseJob,
    InMemoryCatalogue,
    Lecture,
    Unpublished,
)
from services.core.messages import Envelope, carries
from services.core.payloads import CourseUnpublished, JobCompleted, JobQueued, QueuedLecture

COURSE_COLUMNS: Final = ("course_id", "owner", "name", "curriculum", "published_at", "updated_at", "job_id")
LECTURE_COLUMNS: Final = (
    "lecture_id",
    "course_id",
    "index",
    "title",
    "filename",
    "duration_s",
    "master_playlist_url",
    "thumbnail_url",
    "poster_url",
)
COURSE_JOB_COLUMNS: Final = ("job_id", "course_id", "owner", "course_name", "curriculum", "lectures")
UNPUBLISHED_COLUMNS: Final = ("course_id", "unpublished_at", "requested_by")
# Every table of the catalogue with its columns, for comparisons (replay) and for tests.
CATALOGUE_TABLES: Final = {
    "course_jobs": COURSE_JOB_COLUMNS,
    "courses": COURSE_COLUMNS,
    "lectures": LECTURE_COLUMNS,
    "unpublished_courses": UNPUBLISHED_COLUMNS,
}


def _columns(names: Sequence[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _copy(table: str, columns: Sequence[str]) -> str:
    return f"COPY {table} ({_columns(columns)}) FROM STDIN (FORMAT BINARY)"


class CatalogueTables:
    """Applies one batch's catalogue events (in log order) to the catalogue's tables, on `conn`."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def apply(self, events: Sequence[Envelope]) -> set[UUID]:
        """Fold `events` (accepted JobQueued / JobCompleted, and catalogue events) into the tables;
        returns the ids of the courses that changed."""
        if not events:
            return set()
        queued = [e for e in events if isinstance(e.data, JobQueued)]
        self._insert_course_jobs(queued)
        rest = [e for e in events if not isinstance(e.data, JobQueued)]
        if not rest:
            return set()
        catalogue = self._load(rest)
        loaded = dict(catalogue.courses)
        tombstones = set(catalogue.unpublished)
        changed = {course for course in map(catalogue.handle, rest) if course is not None}
        gone = [course_id for course_id in changed if course_id not in catalogue.courses]
        if gone:
            self._conn.execute("DELETE FROM courses WHERE course_id = ANY(%s)", (gone,))
        self._write_courses(
            [
                catalogue.courses[course_id]
                for course_id in changed
                if course_id in catalogue.courses and catalogue.courses[course_id] != loaded.get(course_id)
            ]
        )
        for course_id, unpublished in catalogue.unpublished.items():
            if course_id not in tombstones:
                self._insert_unpublished(unpublished)
        return changed

    # --- reads -------------------------------------------------------------------------------------

    def _load(self, events: Iterable[Envelope]) -> InMemoryCatalogue:
        """The part of the catalogue `events` can touch: their jobs, their courses, their tombstones."""
        job_ids = [e.job_id for e in events if isinstance(e.data, JobCompleted)]
        course_ids = {e.data.course_id for e in events if isinstance(e.data, CourseUnpublished)}
        catalogue = InMemoryCatalogue()
        with self._conn.cursor(row_factory=dict_row) as cur:
            if job_ids:
                _read_jobs(cur, catalogue, "WHERE job_id = ANY(%s)", [job_ids])
            course_ids |= {job.course_id for job in catalogue.jobs.values()}
            if course_ids:
                _read_courses(cur, catalogue, "WHERE course_id = ANY(%s)", [list(course_ids)])
        return catalogue

    # --- writes ------------------------------------------------------------------------------------

    def _insert_course_jobs(self, queued: Sequence[Envelope]) -> None:
        if not queued:
            return
        # Binary COPY, as for job_events: one JobQueued per job is ever accepted, and the batch's
        # offsets make it apply once, so a job's row is never written twice.
        with self._conn.cursor() as cur, cur.copy(_copy("course_jobs", COURSE_JOB_COLUMNS)) as copy:
            copy.set_types(["uuid", "uuid", "text", "text", "text", "jsonb"])
            for event in queued:
                if carries(event, JobQueued):
                    job = CourseJob.of(event)
                    copy.write_row(
                        (
                            job.job_id,
                            job.course_id,
                            job.owner,
                            job.course_name,
                            job.curriculum,
                            Jsonb(job.lectures),
                        )
                    )

    def _write_courses(self, courses: Sequence[Course]) -> None:
        """The courses' rows and lectures replaced, inside the batch's transaction: a reader sees a
        course's old lectures or its new ones, never a mix. Deleted (their lectures with them) and
        written again by binary COPY: one round trip per table, however many courses a batch completes."""
        if not courses:
            return
        with self._conn.cursor() as cur:
            ids = [course.course_id for course in courses]
            cur.execute("DELETE FROM courses WHERE course_id = ANY(%s)", (ids,))  # ON DELETE CASCADE
            with cur.copy(_copy("courses", COURSE_COLUMNS)) as copy:
                copy.set_types(["uuid", "text", "text", "text", "timestamptz", "timestamptz", "uuid"])
                for course in courses:
                    copy.write_row(tuple(getattr(course, name) for name in COURSE_COLUMNS))
            with cur.copy(_copy("lectures", LECTURE_COLUMNS)) as copy:
                copy.set_types(["uuid", "uuid", "int4", "text", "text", "float8", "text", "text", "text"])
                for course in courses:
                    for lecture in course.lectures:
                        copy.write_row(
                            (
                                lecture.lecture_id,
                                course.course_id,
                                lecture.index,
                                lecture.title,
                                lecture.filename,
                                lecture.duration_s,
                                lecture.master_playlist_url,
                                lecture.thumbnail_url,
                                lecture.poster_url,
                            )
                        )

    def _insert_unpublished(self, unpublished: Unpublished) -> None:
        self._conn.execute(
            f"INSERT INTO unpublished_courses ({_columns(UNPUBLISHED_COLUMNS)}) VALUES (%s, %s, %s)"
            " ON CONFLICT (course_id) DO NOTHING",
            (unpublished.course_id, unpublished.unpublished_at, unpublished.requested_by),
        )


def backfill(conn: Any) -> int:
    """Build the catalogue from every stored event, once per schema; returns how many events it
    folded (0 when it had been done: catalogue_backfill has its row).

    The catalogue is a function of the log (G4): the fold of the stored events the state machine
    accepted (JobQueued, JobCompleted) and of the catalogue's own, in log order, i.e. what the
    projector would have applied had the tables always existed. A schema migrated to the catalogue
    over an existing log held only the fold of the events after the migration; this rebuilds it whole.
    One transaction, the catalogue's tables locked against a projector's batch meanwhile: a crash
    leaves the catalogue as it was and no row here, and the next start does it again.
    """
    if _backfilled(conn):
        return 0  # every start after the first: one indexed read, no lock
    with conn.transaction():
        conn.execute(
            "LOCK TABLE catalogue_backfill, course_jobs, courses, lectures, unpublished_courses"
            " IN EXCLUSIVE MODE"
        )
        if _backfilled(conn):
            return 0  # another projector did it while this one waited for the lock
        rows = conn.execute(
            "SELECT e.event_id, e.job_id, e.attempt, e.type, e.version, e.occurred_at, e.producer, e.data"
            " FROM job_events e WHERE e.type = ANY(%s)"
            " AND NOT EXISTS (SELECT 1 FROM rejected_events r WHERE r.event_id = e.event_id)"
            " ORDER BY e.kafka_partition, e.kafka_offset",
            ([str(t) for t in CATALOGUE_INPUTS],),
        ).fetchall()
        events = [
            codec.decode(
                orjson.dumps(
                    {
                        "event_id": str(event_id),
                        "type": type_,
                        "version": version,
                        "job_id": str(job_id),
                        "attempt": attempt,
                        "occurred_at": occurred_at.isoformat(),
                        "producer": producer,
                        "data": data,
                    }
                )
            )
            for event_id, job_id, attempt, type_, version, occurred_at, producer, data in rows
        ]
        conn.execute("TRUNCATE course_jobs, courses, lectures, unpublished_courses")
        CatalogueTables(conn).apply(events)
        conn.execute("INSERT INTO catalogue_backfill (events) VALUES (%s)", (len(events),))
        return len(events)


def _backfilled(conn: Any) -> bool:
    done = conn.execute("SELECT EXISTS (SELECT 1 FROM catalogue_backfill)").fetchone()
    return bool(done and done[0])


def catalogue_of(conn: Any) -> InMemoryCatalogue:
    """The whole catalogue as stored (tests and small tools; the api pages through SQL instead)."""
    catalogue = InMemoryCatalogue()
    with conn.cursor(row_factory=dict_row) as cur:
        _read_jobs(cur, catalogue, "", [])
        _read_courses(cur, catalogue, "", [])
    return catalogue


def _read_jobs(cur: Any, into: InMemoryCatalogue, where: str, params: list[Any]) -> None:
    cur.execute(f"SELECT {_columns(COURSE_JOB_COLUMNS)} FROM course_jobs {where}", params)
    for row in cur.fetchall():
        lectures = msgspec.convert(row["lectures"], tuple[QueuedLecture, ...])
        into.jobs[row["job_id"]] = CourseJob(**{**row, "lectures": lectures})


def _read_courses(cur: Any, into: InMemoryCatalogue, where: str, params: list[Any]) -> None:
    """Courses with their lectures in order, and tombstones, of the courses `where` selects."""
    cur.execute(f"SELECT {_columns(UNPUBLISHED_COLUMNS)} FROM unpublished_courses {where}", params)
    for row in cur.fetchall():
        into.unpublished[row["course_id"]] = Unpublished(**row)
    cur.execute(f"SELECT {_columns(LECTURE_COLUMNS)} FROM lectures {where} ORDER BY index", params)
    lectures: dict[UUID, list[Lecture]] = {}
    for row in cur.fetchall():
        lectures.setdefault(row.pop("course_id"), []).append(Lecture(**row))
    cur.execute(f"SELECT {_columns(COURSE_COLUMNS)} FROM courses {where}", params)
    for row in cur.fetchall():
        into.courses[row["course_id"]] = Course(**row, lectures=tuple(lectures.get(row["course_id"], ())))
