"""The door of the api (ASGI middleware): checks that need no body run before any body is read.

Guarantees, for every request under /v1/ that may carry a body (POST, PUT, PATCH, DELETE):
- the caller is authenticated first, so an anonymous client cannot make the api read (or spool) a
  single body byte: it gets 401 at once;
- a JSON body is bounded (`api_max_json_bytes`): a larger Content-Length is refused with 413 before
  reading, and a body streamed without one is cut off with 413 as soon as it passes the bound;
- a Content-Length that is not a number, or larger than anything the route accepts, is 400/413.
And for every request: no query parameter may hold a control character (422 naming it).
All refusals are problem documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.auth import AUTHENTICATE_SQL, Role, User
from services.api.deps import bearer_hash, credentials_of, invalid_token
from services.api.problems import ProblemError, problem_response, too_large
from services.api.text import refuse_control_characters

if TYPE_CHECKING:
    from services.api.runtime import Services

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The one route whose body is a (streamed, multipart) upload rather than JSON.
UPLOAD_ROUTE = ("POST", "/v1/courses")
FORM_OVERHEAD_BYTES = 1024**2


class RequestGuard:
    """Authenticate, bound the body and check the query string before the route reads anything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: the guard itself never reads the body
        try:
            _check_query(request)
            if scope["method"] in BODY_METHODS and scope["path"].startswith("/v1/"):
                services: Services = request.app.state.services
                scope.setdefault("state", {})["user"] = await _authenticate(services, request)
                limit = _body_limit(services, scope["method"], scope["path"])
                _check_content_length(request, limit)
                receive = _bounded(receive, limit)
        except ProblemError as exc:
            response = problem_response(
                request,
                exc.status,
                exc.kind,
                exc.detail,
                title=exc.title,
                headers=exc.headers,
                **exc.extensions,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _check_query(request: Request) -> None:
    query = request.scope.get("query_string", b"").decode("latin-1")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ProblemError(422, "invalid-query", "the query string is not valid UTF-8") from None
    for name, value in pairs:
        refuse_control_characters(name, "a query parameter name")
        refuse_control_characters(value, f"query parameter {name!r}")


async def _authenticate(services: Services, request: Request) -> User:
    token = bearer_hash(credentials_of(request.headers.get("authorization")))
    async with services.pool.connection() as db:
        cursor = await db.execute(AUTHENTICATE_SQL, (token,))
        row = await cursor.fetchone()
    if row is None:
        raise invalid_token()
    return User(row[0], row[1], Role(row[2]))


def _body_limit(services: Services, method: str, path: str) -> int:
    settings = services.settings
    if (method, path.rstrip("/")) == UPLOAD_ROUTE:
        # Each file is bounded by the staging itself; this only refuses what no course could be.
        return settings.max_upload_bytes * settings.max_videos * 2 + FORM_OVERHEAD_BYTES
    return settings.api_max_json_bytes


def _check_content_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isascii() or not declared.isdigit():
        raise ProblemError(400, "bad-request", "the Content-Length header is not a number of bytes")
    if int(declared) > limit:
        raise too_large("the request body", limit)


def _bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing (413) a body that streams past `limit` bytes without announcing its size."""
    received = 0

    async def bounded() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # Raised inside the route's body read: FastAPI re-raises HTTPException as it is,
                # and the problem handlers turn it into a 413 problem document.
                raise HTTPException(413, f"the request body is larger than the limit of {limit} bytes")
        return message

    return bounded
