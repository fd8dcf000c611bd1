"""Bearer API tokens: high-entropy secrets shown once, stored only as SHA-256 hashes; two roles."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

TOKEN_PREFIX = "cc_"
# 32 random bytes = 256 bits: guessing is hopeless, so an unsalted fast hash is enough to make a
# leaked table useless (there is no low-entropy password to brute-force).
TOKEN_BYTES = 32


class Role(StrEnum):
    """What a user may see: an instructor their own jobs, an admin every job."""

    INSTRUCTOR = "instructor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    """The authenticated caller."""

    user_id: uuid.UUID
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        """True when the user sees and acts on every job."""
        return self.role is Role.ADMIN

    def may_see(self, owner: str) -> bool:
        """True when a job owned by `owner` is visible to this user (otherwise it is a 404)."""
        return self.is_admin or owner == self.name


class UserExistsError(Exception):
    """A user of that name exists already."""


class UnknownUserError(Exception):
    """No user of that name."""


def new_token() -> str:
    """A fresh bearer token, to be shown once and never stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


AnyConn = psycopg.Connection[Any]

# Revocations are announced on this channel, so every api process ends that user's live streams at once.
TOKEN_REVOKED_CHANNEL = "api_token_revoked"


def _announce_revocation(conn: AnyConn, user_id: object) -> None:
    conn.execute("SELECT pg_notify(%s, %s)", (TOKEN_REVOKED_CHANNEL, str(user_id)))


def create_user(conn: AnyConn, name: str, role: Role) -> tuple[User, str]:
    """Create a user and their first token; returns the user and the token (shown once)."""
    user = User(uuid.uuid4(), name, role)
    token = new_token()
    with conn.transaction():
        try:
            conn.execute(
                "INSERT INTO api_users (user_id, name, role) VALUES (%s, %s, %s)",
                (user.user_id, name, role.value),
            )
        except psycopg.errors.UniqueViolation:
            raise UserExistsError(f"a user named {name!r} exists already") from None
        conn.execute(
            "INSERT INTO api_tokens (token_hash, user_id) VALUES (%s, %s)", (token_hash(token), user.user_id)
        )
    return user, token


def issue_token(conn: AnyConn, name: str) -> str:
    """A new additional token for an existing user."""
    row = conn.execute("SELECT user_id FROM api_users WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise UnknownUserError(f"no user named {name!r}")
    token = new_token()
    conn.execute("INSERT INTO api_tokens (token_hash, user_id) VALUES (%s, %s)", (token_hash(token), row[0]))
    return token


def revoke_user_tokens(conn: AnyConn, name: str) -> int:
    """Revoke every live token of a user; returns how many. Requests and live streams stop at once."""
    row = conn.execute("SELECT user_id FROM api_users WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise UnknownUserError(f"no user named {name!r}")
    cur = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (row[0],)
    )
    _announce_revocation(conn, row[0])
    return cur.rowcount


def revoke_token(conn: AnyConn, token: str) -> bool:
    """Revoke one token; True when it was live."""
    row = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL"
        " RETURNING user_id",
        (token_hash(token),),
    ).fetchone()
    if row is not None:
        _announce_revocation(conn, row[0])
    return row is not None


# Checked on every request against the database (no cache), so a revocation takes effect at once.
AUTHENTICATE_SQL = (
    "SELECT u.user_id, u.name, u.role FROM api_tokens t JOIN api_users u USING (user_id)"
    " WHERE t.token_hash = %s AND t.revoked_at IS NULL"
)
