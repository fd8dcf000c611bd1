"""The notifier's Postgres: the projector's verdict on an event, the owner's endpoints, delivery records.

It reads the projector's tables (job_events, rejected_events, refused_events, publish_jobs) and the
api's endpoints (api_webhook_endpoints), and writes only its own `webhook_deliveries`: one row per
(event, endpoint), updated after every attempt. Every connection names itself in
`application_name`, and every call is one short autocommit statement on a pooled connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from services.core.migrations import migrate
from services.core.pg_pool import CONNECT_TIMEOUT_S, schema_pool
from services.notifier.notifications import Accepted, Job, NotificationType, Refused, Verdict

# The longest a statement may wait for a pooled connection before it fails (and is retried).
POOL_TIMEOUT_S = 30.0

# An event the projector has applied is in job_events; a rejected one is also in rejected_events; one
# Postgres refused is only in refused_events. Neither yet: the projector has not reached it.
_VERDICTS = (
    "SELECT e.event_id, r.rejection, j.owner, j.course_name, j.curriculum, j.video_count"
    " FROM job_events e LEFT JOIN rejected_events r USING (event_id)"
    " LEFT JOIN publish_jobs j ON j.job_id = e.job_id WHERE e.event_id = ANY(%(ids)s)"
    " UNION ALL SELECT event_id, 'refused by Postgres', NULL, NULL, NULL, NULL"
    " FROM refused_events WHERE event_id = ANY(%(ids)s)"
)
_ENDPOINT = (
    "SELECT endpoint_id, url, secret,"
    " CASE WHEN previous_secret_expires_at > now() THEN previous_secret END AS previous_secret"
    " FROM api_webhook_endpoints"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to POST, and the secrets that sign (the current one, and the previous during a rotation)."""

    endpoint_id: UUID
    url: str
    secret: str
    previous_secret: str | None

    @property
    def secrets(self) -> list[str]:
        """Every secret that signs now."""
        return [self.secret] if self.previous_secret is None else [self.secret, self.previous_secret]


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """A row of webhook_deliveries as it stands."""

    state: str  # pending | delivered | given_up
    attempts: int
    first_attempt_at: datetime
    next_attempt_at: datetime | None


def migrate_schema(database_url: str, schema: str) -> list[str]:
    """Apply the schema's pending migrations (the notifier's table, and the tables it reads)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        return migrate(conn, schema)


class DeliveryStore:
    """The notifier's Postgres, on an async pool used from the delivery loop."""

    def __init__(self, database_url: str, schema: str, size: int) -> None:
        self._pool = schema_pool(database_url, schema, size=size, timeout_s=POOL_TIMEOUT_S, name="notifier")

    async def open(self) -> None:
        """Start the pool (connections are made in the background)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        """Close every connection."""
        await self._pool.close()

    async def _rows(self, query: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query.encode(), params)
            return await cur.fetchall() if cur.description else []

    async def verdicts(self, event_ids: Sequence[UUID]) -> dict[UUID, Verdict]:
        """The projector's verdict on each of `event_ids` it has reached; the others are left out."""
        found: dict[UUID, Verdict] = {}
        for row in await self._rows(_VERDICTS, {"ids": list(event_ids)}):
            if row["rejection"] is not None:
                found[row["event_id"]] = Refused(row["rejection"])
            elif row["owner"] is None:
                found[row["event_id"]] = Refused("the projector has no row for its job")
            else:
                job = Job(row["owner"], row["course_name"], row["curriculum"], row["video_count"])
                found.setdefault(row["event_id"], Accepted(job))
        return found

    async def endpoints(self, owner: str, kind: NotificationType, occurred_at: datetime) -> list[Endpoint]:
        """The owner's endpoints subscribed to `kind` that were registered when the event occurred.

        An endpoint learns of the ends that happen after it is registered, never of older ones, so a
        notifier group started on an old log (or a replay) does not flood a new endpoint with history.
        """
        rows = await self._rows(
            f"{_ENDPOINT} WHERE owner = %s AND %s = ANY(events) AND created_at <= %s ORDER BY endpoint_id",
            (owner, kind.value, occurred_at),
        )
        return [Endpoint(**row) for row in rows]

    async def endpoint(self, endpoint_id: UUID) -> Endpoint | None:
        """The endpoint as it is now (secrets rotate, endpoints are deleted), None once deleted."""
        rows = await self._rows(f"{_ENDPOINT} WHERE endpoint_id = %s", (endpoint_id,))
        return Endpoint(**rows[0]) if rows else None

    async def open_delivery(
        self, event_id: UUID, endpoint: Endpoint, job_id: UUID, owner: str, kind: NotificationType
    ) -> DeliveryRecord:
        """The delivery's record, created pending if this is its first sight."""
        await self._rows(
            "INSERT INTO webhook_deliveries"
            " (event_id, endpoint_id, job_id, owner, notification_type, url, state)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'pending') ON CONFLICT DO NOTHING",
            (event_id, endpoint.endpoint_id, job_id, owner, kind.value, endpoint.url),
        )
        rows = await self._rows(
            "SELECT state, attempts, first_attempt_at, next_attempt_at FROM webhook_deliveries"
            " WHERE event_id = %s AND endpoint_id = %s",
            (event_id, endpoint.endpoint_id),
        )
        return DeliveryRecord(**rows[0])

    async def attempted(
        self,
        event_id: UUID,
        endpoint_id: UUID,
        *,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None = None,
        counts: bool = True,
    ) -> None:
        """Record one attempt's outcome (or, with `counts` false, a give-up without an attempt)."""
        await self._rows(
            "UPDATE webhook_deliveries SET state = %(state)s,"
            " attempts = attempts + %(counted)s,"
            " last_attempt_at = CASE WHEN %(counts)s THEN now() ELSE last_attempt_at END,"
            " last_status = CASE WHEN %(counts)s THEN %(status)s::integer ELSE last_status END,"
            " last_error = %(error)s::text, next_attempt_at = %(next)s::timestamptz,"
            " delivered_at = CASE WHEN %(state)s::text = 'delivered' THEN now() END,"
            " given_up_at = CASE WHEN %(state)s::text = 'given_up' THEN now() END"
            " WHERE event_id = %(event)s AND endpoint_id = %(endpoint)s",
            {
                "state": state,
                "counted": 1 if counts else 0,
                "counts": counts,
                "status": status,
                "error": error,
                "next": next_attempt_at,
                "event": event_id,
                "endpoint": endpoint_id,
            },
        )
