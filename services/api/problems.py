"""RFC 9457 problem documents (application/problem+json) for every error the api returns."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.metrics import REQUEST_ID_HEADER, request_id_of

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://coursecast.dev/problems/"


class Problem(BaseModel):
    """An RFC 9457 problem document; extension members are allowed."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class ProblemError(Exception):
    """Raised anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = dict(headers or {})
        self.extensions = extensions


# How long a client should wait before trying again when the job log (Kafka) is unreachable.
KAFKA_RETRY_AFTER_S = 5


def kafka_unavailable(outcome: str) -> ProblemError:
    """503 + Retry-After when the job log did not take a request's messages; `outcome` says what that
    left behind ("nothing was accepted", "nothing was changed")."""
    return ProblemError(
        503,
        "kafka-unavailable",
        f"the job log is unreachable right now; {outcome}, try again later",
        headers={"Retry-After": str(KAFKA_RETRY_AFTER_S)},
    )


def too_large(subject: str, limit_bytes: int) -> ProblemError:
    """413 for `subject` (a request body, a file) past a limit of `limit_bytes`."""
    return ProblemError(
        413,
        "too-large",
        f"{subject} is larger than the limit of {limit_bytes} bytes",
        limit_bytes=limit_bytes,
    )


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str | None,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """A problem+json response for `request`, naming the request's id (metrics.RequestContext) so a
    client's report can be matched with the api's log lines."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    all_headers = dict(headers or {})
    request_id = request_id_of(request.scope)
    if request_id is not None:
        body["request_id"] = request_id
        # A 500 is sent by the server middleware, outside RequestContext: it needs the header here.
        all_headers[REQUEST_ID_HEADER] = request_id
    return JSONResponse(body, status_code=status, headers=all_headers, media_type=PROBLEM_MEDIA_TYPE)


# Short names for the problems raised by the framework itself (routing, method, validation).
_KIND_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    503: "unavailable",
}


def install(app: FastAPI) -> None:
    """Route every error — ours, routing's, validation's and unexpected ones — to a problem document."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ProblemError)
        return problem_response(
            request, exc.status, exc.kind, exc.detail, title=exc.title, headers=exc.headers, **exc.extensions
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        kind = _KIND_BY_STATUS.get(exc.status_code, "http-error")
        return problem_response(request, exc.status_code, kind, detail, headers=exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "location": ".".join(str(p) for p in error.get("loc", ())),
                "message": str(error.get("msg", "")),
            }
            for error in exc.errors()
        ]
        summary = "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5])
        return problem_response(
            request, 422, "invalid-request", f"the request is invalid: {summary}", errors=errors
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", extra={"path": request.url.path}, exc_info=exc)
        return problem_response(request, 500, "internal", "an unexpected error occurred; it was logged")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem documents for `statuses`."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
