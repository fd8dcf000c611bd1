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
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.core.catalogue import Course, CourseJob, InMemoryCatalogue, Lecture, Unpublished
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
        rows = []
        for event in queued:
            if not carries(event, JobQueued):
                continue
            job = CourseJob.of(event)
            rows.append(
                (job.job_id, job.course_id, job.owner, job.course_name, job.curriculum, Jsonb(job.lectures))
            )
        with self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO course_jobs ({_columns(COURSE_JOB_COLUMNS)})"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
                rows,
            )

    def _write_courses(self, courses: Sequence[Course]) -> None:
        """The courses' rows upserted and their lectures replaced, inside the batch's transaction: a
        reader sees a course's old lectures or its new ones, never a mix."""
        if not courses:
            return
        updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in COURSE_COLUMNS if c != "course_id")
        with self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO courses ({_columns(COURSE_COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                f" ON CONFLICT (course_id) DO UPDATE SET {updates}",
                [tuple(getattr(course, name) for name in COURSE_COLUMNS) for course in courses],
            )
            cur.execute(
                "DELETE FROM lectures WHERE course_id = ANY(%s)", ([course.course_id for course in courses],)
            )
            cur.executemany(
                f"INSERT INTO lectures ({_columns(LECTURE_COLUMNS)})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [
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
                    for course in courses
                    for lecture in course.lectures
                ],
            )

    def _insert_unpublished(self, unpublished: Unpublished) -> None:
        self._conn.execute(
            f"INSERT INTO unpublished_courses ({_columns(UNPUBLISHED_COLUMNS)}) VALUES (%s, %s, %s)"
            " ON CONFLICT (course_id) DO NOTHING",
            (unpublished.course_id, unpublished.unpublished_at, unpublished.requested_by),
        )


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
