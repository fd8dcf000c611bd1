"""Dependencies of the routes, as Annotated aliases: the process's services, a DB connection, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api.auth import AUTHENTICATE_SQL, Role, User, token_hash
from services.api.db import AsyncConn
from services.api.problems import ProblemError
from services.api.runtime import Services


def get_services(request: Request) -> Services:
    """The process's services."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_db(services: ServicesDep) -> AsyncIterator[AsyncConn]:
    """A pooled autocommit connection for the request."""
    async with services.pool.connection() as conn:
        yield conn


DbDep = Annotated[AsyncConn, Depends(get_db)]

_bearer = HTTPBearer(auto_error=False, description="an API token from `coursecast users create`")
_CHALLENGE = 'Bearer realm="coursecast"'


def _unauthorized(detail: str, challenge: str) -> ProblemError:
    """401 with the WWW-Authenticate challenge RFC 6750 asks for."""
    return ProblemError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def bearer_hash(credentials: HTTPAuthorizationCredentials | None) -> bytes:
    """The hash to look the token up by; 401 with WWW-Authenticate when there is no bearer token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("send an API token: Authorization: Bearer <token>", _CHALLENGE)
    return token_hash(credentials.credentials)


def credentials_of(header: str | None) -> HTTPAuthorizationCredentials | None:
    """The bearer credentials in an Authorization header value, None when there are none."""
    scheme, _, token = (header or "").partition(" ")
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip()) if token.strip() else None


def invalid_token() -> ProblemError:
    """401 for a token that is unknown or revoked."""
    return _unauthorized("the API token is unknown or revoked", f'{_CHALLENGE}, error="invalid_token"')


async def authenticate(db: AsyncConn, credentials: HTTPAuthorizationCredentials | None) -> User:
    """The caller named by the bearer token; 401 with WWW-Authenticate when missing, unknown or revoked."""
    # Looked up on every request, never cached: a revoked token stops working at once.
    cursor = await db.execute(AUTHENTICATE_SQL, (bearer_hash(credentials),))
    row = await cursor.fetchone()
    if row is None:
        raise invalid_token()
    return User(row[0], row[1], Role(row[2]))


def _guarded_user(request: Request) -> User | None:
    # RequestGuard authenticates every request that may carry a body before the body is read.
    user = getattr(request.state, "user", None)
    return user if isinstance(user, User) else None


async def get_current_user(
    request: Request,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The caller, authenticated on the request's own pooled connection (or by RequestGuard already)."""
    return _guarded_user(request) or await authenticate(db, credentials)


async def get_streaming_user(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The caller, authenticated on a connection returned at once, so a long body or stream holds none."""
    user = _guarded_user(request)
    if user is not None:
        return user
    async with services.pool.connection() as db:
        return await authenticate(db, credentials)


async def stream_slot(
    user: Annotated[User, Depends(get_streaming_user)], services: ServicesDep
) -> AsyncIterator[None]:
    """One of the caller's stream slots, held until the stream's response has ended (429 when none)."""
    with services.streams.hold(user):
        yield


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CurrentUser = Annotated[User, Depends(get_current_user)]
StreamingUser = Annotated[User, Depends(get_streaming_user)]
