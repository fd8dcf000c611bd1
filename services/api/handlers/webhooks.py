"""Webhook endpoints: register one (its signing secret is shown once), list, delete, rotate the secret.

The api only keeps the endpoints (`api_webhook_endpoints`); `coursecast notifier` reads them and
delivers. A URL is hostile input: it is checked here (`check_endpoint_url`, pure) before it is
stored, and every refusal is a 422 problem naming what is wrong. Endpoints are personal: a user
sees and deletes only their own (another user's is a 404, admins included).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from psycopg.rows import dict_row

from services.api.auth import User
from services.api.db import AsyncConn
from services.api.problems import ProblemError
from services.core.messages import control_character

NOTIFICATION_TYPES = ("course.completed", "course.failed", "course.canceled")
MAX_URL_LENGTH = 2048
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# A host name as DNS has them (labels of letters, digits and hyphens), or an IPv6 literal.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")


@dataclass(frozen=True, slots=True)
class Webhook:
    """A registered endpoint as its owner sees it (never its secret)."""

    webhook_id: UUID
    url: str
    events: list[str]
    created_at: datetime
    previous_secret_expires_at: datetime | None


def _invalid_url(detail: str) -> ProblemError:
    return ProblemError(
        422, "invalid-webhook-url", f"url: {detail}", title="Webhook URL not accepted", field="url"
    )


def check_endpoint_url(url: str) -> str:
    """`url` if a notification may be POSTed to it; a 422 problem saying why not otherwise (pure).

    Accepted: an absolute http:// or https:// URL of at most 2048 characters, ASCII, with a host and
    nothing a receiver should not be sent: no control character or space, no user or password (the
    signature authenticates us; credentials in a URL end up in logs), no fragment.
    """
    if len(url) > MAX_URL_LENGTH:
        raise _invalid_url(f"is longer than {MAX_URL_LENGTH} characters")
    found = control_character(url)
    if found is not None:
        raise _invalid_url(f"contains the control character {found}")
    if not url.isascii():
        raise _invalid_url("must be ASCII: percent-encode its path and write the host in punycode")
    if any(c.isspace() for c in url):
        raise _invalid_url("contains a space")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid_url(f"is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _invalid_url("must start with http:// or https://")
    if "@" in parts.netloc:
        raise _invalid_url("must not carry a user name or password; the signature authenticates CourseCast")
    host = parts.hostname or ""
    if not host:
        raise _invalid_url("has no host")
    if not (_HOSTNAME.match(host) or (":" in host and _IPV6.match(host))):
        raise _invalid_url(f"has an invalid host {host!r}")
    if port == 0:
        raise _invalid_url("has port 0")
    if parts.fragment or url.endswith("#"):
        raise _invalid_url("must not have a #fragment")
    return url


def chosen_events(events: Sequence[str] | None) -> list[str]:
    """The notification types asked for, each once, in the documented order; all three by default."""
    wanted = set(events) if events is not None else set(NOTIFICATION_TYPES)
    return [kind for kind in NOTIFICATION_TYPES if kind in wanted]


def new_secret() -> str:
    """A fresh signing secret (256 random bits), shown once to the endpoint's owner."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def not_found(webhook_id: UUID) -> ProblemError:
    """The one answer for an endpoint that does not exist or belongs to someone else."""
    return ProblemError(404, "webhook-not-found", f"no webhook {webhook_id}", title="Webhook not found")


_COLUMNS = "endpoint_id AS webhook_id, url, events, created_at, previous_secret_expires_at"


def _webhook(row: dict[str, Any]) -> Webhook:
    return Webhook(**row)


async def create_webhook(
    db: AsyncConn, user: User, url: str, events: Sequence[str] | None, max_per_user: int
) -> tuple[Webhook, str]:
    """Register an endpoint for `user`; returns it and its secret. 422 past `max_per_user` endpoints."""
    url = check_endpoint_url(url)
    secret = new_secret()
    async with db.transaction(), db.cursor(row_factory=dict_row) as cur:
        # One registration of a user at a time, so two concurrent requests cannot both pass the limit.
        await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"coursecast-webhooks:{user.name}",))
        await cur.execute("SELECT count(*) AS n FROM api_webhook_endpoints WHERE owner = %s", (user.name,))
        row = await cur.fetchone()
        if row is not None and row["n"] >= max_per_user:
            raise ProblemError(
                422,
                "too-many-webhooks",
                f"you already have {row['n']} webhook endpoints, the most allowed; delete one first",
                title="Too many webhooks",
                limit=max_per_user,
            )
        await cur.execute(
            "INSERT INTO api_webhook_endpoints (endpoint_id, owner, url, events, secret)"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (uuid4(), user.name, url, chosen_events(events), secret),
        )
        created = await cur.fetchone()
    assert created is not None
    return _webhook(created), secret


async def list_webhooks(db: AsyncConn, user: User) -> list[Webhook]:
    """The caller's endpoints, oldest first."""
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM api_webhook_endpoints WHERE owner = %s ORDER BY created_at, endpoint_id",
            (user.name,),
        )
        return [_webhook(row) for row in await cur.fetchall()]


async def get_webhook(db: AsyncConn, user: User, webhook_id: UUID) -> Webhook:
    """One of the caller's endpoints; 404 otherwise."""
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM api_webhook_endpoints WHERE endpoint_id = %s AND owner = %s",
            (webhook_id, user.name),
        )
        row = await cur.fetchone()
    if row is None:
        raise not_found(webhook_id)
    return _webhook(row)


async def delete_webhook(db: AsyncConn, user: User, webhook_id: UUID) -> None:
    """Delete one of the caller's endpoints; 404 otherwise. Deliveries still retrying to it stop at
    their next attempt (the notifier re-reads the endpoint before each one)."""
    cursor = await db.execute(
        "DELETE FROM api_webhook_endpoints WHERE endpoint_id = %s AND owner = %s", (webhook_id, user.name)
    )
    if cursor.rowcount == 0:
        raise not_found(webhook_id)


async def rotate_secret(db: AsyncConn, user: User, webhook_id: UUID, overlap_s: float) -> tuple[Webhook, str]:
    """A new secret for one of the caller's endpoints; the current one keeps signing for `overlap_s`
    (a second `v1=` in the signature), so receivers can switch without missing a notification."""
    secret = new_secret()
    async with db.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE api_webhook_endpoints SET previous_secret = secret,"
            " previous_secret_expires_at = now() + %s, secret = %s"
            f" WHERE endpoint_id = %s AND owner = %s RETURNING {_COLUMNS}",
            (timedelta(seconds=overlap_s), secret, webhook_id, user.name),
        )
        row = await cur.fetchone()
    if row is None:
        raise not_found(webhook_id)
    return _webhook(row), secret
