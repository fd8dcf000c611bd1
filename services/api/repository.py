"""Reads of the projector's tables, and the api's own submissions; the api never writes publish_jobs."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import orjson
from psycopg.rows import dict_row

from services.api.auth import Role, User
from services.api.db import AsyncConn
from services.api.models import CoursePublic, JobEventPublic, JobPublic, LecturePublic
from services.api.problems import ProblemError
from services.api.redact import public_data, public_job_row, public_producer, public_text

_PUBLIC = (
    "job_id, owner, course_name, curriculum, video_count, status, attempt, progress_percent, current_step,"
    " error_type, error_message, created_at, updated_at, started_at, completed_at, failed_at, canceled_at,"
    " outputs, lectures, published"
)
# A course's tasks, for its lectures' progress (one round trip with the course's row; indexed).
_TASKS = (
    "(SELECT coalesce(jsonb_agg(jsonb_build_object('task', t.task, 'status', t.status,"
    " 'progress_percent', t.progress_percent, 'error_message', t.error_message)), '[]'::jsonb)"
    " FROM publish_jobs t WHERE t.course_job_id = publish_jobs.job_id) AS tasks"
)
# Lists and reads show course jobs; a course's tasks are its lectures' detail.
_COURSES = "course_job_id IS NULL"
# A job whose JobQueued is committed on the log but not yet projected: shown as queued, from the api's
# own record of the accepted submission (read-your-writes; see handlers/courses.py).
_ACCEPTED = (
    "SELECT s.job_id, s.owner, s.course_name, s.curriculum, s.video_count, 'queued' AS status, 1 AS attempt,"
    " 0.0::float8 AS progress_percent, NULL::text AS current_step, NULL::text AS error_type,"
    " NULL::text AS error_message, s.created_at, s.created_at AS updated_at,"
    " NULL::timestamptz AS started_at, NULL::timestamptz AS completed_at, NULL::timestamptz AS failed_at,"
    " NULL::timestamptz AS canceled_at, NULL::jsonb AS outputs, '[]'::jsonb AS lectures,"
    " '[]'::jsonb AS published"
    " FROM api_submissions s WHERE s.published_at IS NOT NULL"
)


def not_found(job_id: UUID) -> ProblemError:
    """The one answer for a job that does not exist or belongs to someone else (never 403)."""
    return ProblemError(404, "job-not-found", f"no job {job_id}", title="Job not found")


async def get_job(db: AsyncConn, user: User, job_id: UUID) -> JobPublic:
    """The job if the user may see it; 404 otherwise."""
    return JobPublic.model_validate(await get_job_row(db, user, job_id))


async def get_job_row(db: AsyncConn, user: User, job_id: UUID) -> dict[str, Any]:
    """The job's columns as JobPublic has them, if the user may see it; 404 otherwise."""
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_PUBLIC}, {_TASKS} FROM publish_jobs WHERE job_id = %s AND {_COURSES}", (job_id,)
        )
        row = await cur.fetchone()
        if row is None:
            await cur.execute(f"{_ACCEPTED} AND s.job_id = %s", (job_id,))
            row = await cur.fetchone()
    if row is None or not user.may_see(row["owner"]):
        raise not_found(job_id)
    return public_job_row(row)


# The hot path (GET /v1/jobs/{id}) authenticates and reads the job in one round trip: the row of the
# projector's table comes back only joined to a live token, and is shown only if that user may see it.
_AUTHENTICATED_JOB = (
    "SELECT u.user_id AS auth_user_id, u.name AS auth_name, u.role AS auth_role, j.*"
    " FROM api_tokens t JOIN api_users u USING (user_id)"
    f" LEFT JOIN (SELECT {_PUBLIC}, {_TASKS} FROM publish_jobs WHERE job_id = %s AND {_COURSES}) j ON TRUE"
    " WHERE t.token_hash = %s AND t.revoked_at IS NULL"
)


async def authenticated_job_row(
    db: AsyncConn, token_hash: bytes, job_id: UUID
) -> tuple[User, dict[str, Any]] | None:
    """(caller, job row) in one query; None when the token is unknown or revoked; 404 if not visible."""
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(_AUTHENTICATED_JOB, (job_id, token_hash))
        row = await cur.fetchone()
    if row is None:
        return None
    user = User(row.pop("auth_user_id"), row.pop("auth_name"), Role(row.pop("auth_role")))
    if row["job_id"] is None:
        return user, await get_job_row(db, user, job_id)  # not projected yet: the api's own record
    if not user.may_see(row["owner"]):
        raise not_found(job_id)
    return user, public_job_row(row)


def encode_cursor(created_at: datetime, job_id: UUID) -> str:
    """An opaque cursor pointing just past (created_at, job_id) — or any (time, id) ordering key: the
    course list pages by (published_at, course_id) with the same cursors."""
    return base64.urlsafe_b64encode(orjson.dumps([created_at.isoformat(), str(job_id)])).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor points past; 422 when it is not one of ours."""
    try:
        created_at, job_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        position = datetime.fromisoformat(created_at), UUID(job_id)
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise ProblemError(422, "invalid-cursor", "the cursor is not one this api issued") from None
    if position[0].tzinfo is None:
        # Ours always carry their offset; a naive time would compare against the server's zone.
        raise ProblemError(422, "invalid-cursor", "the cursor is not one this api issued")
    return position


async def list_jobs(
    db: AsyncConn, user: User, status: str | None, cursor: str | None, limit: int
) -> tuple[list[JobPublic], str | None]:
    """One page of the jobs the user may see, newest first (created_at, then job_id, descending)."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit + 1}
    courses = f" AND {_COURSES}"
    if not user.is_admin:
        where.append("owner = %(owner)s")
        params["owner"] = user.name
    if status is not None:
        where.append("status = %(status)s")
        params["status"] = status
    if cursor is not None:
        params["c_at"], params["c_id"] = decode_cursor(cursor)
        where.append("(created_at, job_id) < (%(c_at)s, %(c_id)s)")
    condition = " AND ".join(where)
    query = (
        f"SELECT {_PUBLIC}, tasks FROM ("
        f" SELECT {_PUBLIC}, {_TASKS} FROM publish_jobs WHERE {condition}{courses}"
        f" UNION ALL"
        f" SELECT *, '[]'::jsonb AS tasks FROM ({_ACCEPTED}"
        f"  AND NOT EXISTS (SELECT 1 FROM publish_jobs j WHERE j.job_id = s.job_id)) a WHERE {condition}"
        f") page ORDER BY created_at DESC, job_id DESC LIMIT %(limit)s"
    )
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode(), params)
        rows = await cur.fetchall()
    items = [JobPublic.model_validate(public_job_row(row)) for row in rows[:limit]]
    next_cursor = encode_cursor(items[-1].created_at, items[-1].job_id) if len(rows) > limit else None
    return items, next_cursor


async def job_events(db: AsyncConn, job_id: UUID) -> list[JobEventPublic]:
    """The job's events in log order, each with its rejection if the state machine refused it."""
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT e.event_id, e.type, e.attempt, e.occurred_at, e.producer, e.data,"
            " r.rejection, r.reason AS rejection_reason, r.event_id IS NOT NULL AS rejected"
            " FROM job_events e LEFT JOIN rejected_events r USING (event_id)"
            " WHERE e.job_id = %s ORDER BY e.kafka_partition, e.kafka_offset",
            (job_id,),
        )
        rows = await cur.fetchall()
    # Event data and reasons are written by the pipeline: clients see their public part only.
    return [
        JobEventPublic.model_validate(
            {
                **row,
                "producer": public_producer(row["producer"]),
                "data": public_data(row["data"]),
                "rejection_reason": public_text(row["rejection_reason"]),
            }
        )
        for row in rows
    ]


# --- the catalogue of published courses (the projector's courses / lectures) --------------------------

_COURSE = "course_id, owner, name, curriculum, published_at, updated_at, job_id"
_LECTURE = (
    "course_id, lecture_id, index, title, filename, duration_s,"
    " master_playlist_url, thumbnail_url, poster_url"
)


def course_not_found(course_id: UUID) -> ProblemError:
    """The one answer for a course that is not published or belongs to someone else (never 403)."""
    return ProblemError(404, "course-not-found", f"no published course {course_id}", title="Course not found")


async def _with_lectures(db: AsyncConn, rows: list[dict[str, Any]]) -> list[CoursePublic]:
    """The courses of `rows` (in their order), each with its lectures in course order."""
    if not rows:
        return []
    lectures: dict[UUID, list[LecturePublic]] = {}
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_LECTURE} FROM lectures WHERE course_id = ANY(%s) ORDER BY course_id, index",
            ([row["course_id"] for row in rows],),
        )
        for lecture in await cur.fetchall():
            lectures.setdefault(lecture.pop("course_id"), []).append(LecturePublic.model_validate(lecture))
    return [CoursePublic(**row, lectures=lectures.get(row["course_id"], [])) for row in rows]


async def get_course(db: AsyncConn, user: User, course_id: UUID) -> CoursePublic:
    """The published course if the user may see it; 404 otherwise. Its row and its lectures are read
    in one snapshot, so a re-encode's switch of every lecture's URLs is seen whole or not at all."""
    async with db.transaction(), db.cursor(row_factory=dict_row) as cur:
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await cur.execute(f"SELECT {_COURSE} FROM courses WHERE course_id = %s", (course_id,))
        row = await cur.fetchone()
        if row is None or not user.may_see(row["owner"]):
            raise course_not_found(course_id)
        (course,) = await _with_lectures(db, [row])
    return course


async def list_courses(
    db: AsyncConn, user: User, cursor: str | None, limit: int
) -> tuple[list[CoursePublic], str | None]:
    """One page of the published courses the user may see, newest first (published_at, then course_id,
    descending), with the same opaque cursors as the job list."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit + 1}
    if not user.is_admin:
        where.append("owner = %(owner)s")
        params["owner"] = user.name
    if cursor is not None:
        params["c_at"], params["c_id"] = decode_cursor(cursor)
        where.append("(published_at, course_id) < (%(c_at)s, %(c_id)s)")
    query = (
        f"SELECT {_COURSE} FROM courses WHERE {' AND '.join(where)}"
        " ORDER BY published_at DESC, course_id DESC LIMIT %(limit)s"
    )
    async with db.transaction(), db.cursor(row_factory=dict_row) as cur:
        await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        await cur.execute(query.encode(), params)
        rows = await cur.fetchall()
        items = await _with_lectures(db, rows[:limit])
    next_cursor = encode_cursor(items[-1].published_at, items[-1].course_id) if len(rows) > limit else None
    return items, next_cursor


async def course_standing(db: AsyncConn, user: User, course_id: UUID) -> Literal["published", "unpublished"]:
    """Whether the user's course is published, or was and is unpublished; 404 for any other id."""
    async with db.cursor() as cur:
        await cur.execute(
            "SELECT owner, 'published' FROM courses WHERE course_id = %(id)s"
            " UNION ALL SELECT j.owner, 'unpublished' FROM unpublished_courses u"
            " JOIN course_jobs j ON j.job_id = u.course_id WHERE u.course_id = %(id)s",
            {"id": course_id},
        )
        found = await cur.fetchall()
    standing = {state for owner, state in found if user.may_see(owner)}
    if "unpublished" in standing:
        return "unpublished"
    if "published" in standing:
        return "published"
    raise course_not_found(course_id)


async def open_tasks(db: AsyncConn, course_job_id: UUID) -> list[tuple[UUID, int]]:
    """(task id, attempt) of every task of a course still queued or running (docs/fan-out.md)."""
    cursor = await db.execute(
        "SELECT job_id, attempt FROM publish_jobs WHERE course_job_id = %s"
        " AND status IN ('queued', 'processing') ORDER BY job_id",
        (course_job_id,),
    )
    return [(row[0], row[1]) for row in await cursor.fetchall()]


async def course_job_ids(db: AsyncConn, course_id: UUID) -> list[UUID]:
    """Every job that ever published (or tried to publish) the course, and every task of those jobs
    (docs/fan-out.md: a task writes under its own id): the course's objects are theirs."""
    cursor = await db.execute(
        "SELECT job_id FROM course_jobs WHERE course_id = %(course)s"
        " UNION SELECT t.job_id FROM publish_jobs t JOIN course_jobs c ON t.course_job_id = c.job_id"
        " WHERE c.course_id = %(course)s ORDER BY job_id",
        {"course": course_id},
    )
    return [row[0] for row in await cursor.fetchall()]
