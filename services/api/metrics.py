"""The api's Prometheus series (served at GET /metrics), and the middleware that gives every request
its request id and its latency.

`RequestContext` is the outermost middleware, so every answer — a route's, a RequestGuard refusal, a
problem document — carries `X-Request-Id`, is timed, and logs with the request id:
- the id is the client's `X-Request-Id` when it is a short printable token, else a new one; it is
  echoed in the response header, bound to every log line of the request (logs.bind) and put in every
  problem document (problems.problem_response);
- latency is observed per route *template* (`/v1/jobs/{job_id}`), never the raw path, so the label
  set is the api's routes and no client can grow it; a path no route matches counts as `unmatched`.
  It runs from the request's arrival to its response's headers, so a live stream (SSE) counts the
  time it took to open, not how long it stayed open.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import logs

log = logging.getLogger("coursecast.api")

REQUEST_ID_HEADER = "X-Request-Id"
# A client's request id is kept only if it is a short token of these characters; anything else (too
# long, control characters, spaces) is replaced, so no client can forge log lines through it.
_ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes, logged at DEBUG so they do not drown the requests people make.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

HTTP_LATENCY = Histogram(
    "coursecast_api_request_seconds",
    "Time from a request's arrival to its response's headers, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
SSE_CLIENTS = Gauge(
    "coursecast_api_sse_clients", "Live job streams (Server-Sent Events) open in this process"
)


def request_id_of(scope: Scope) -> str | None:
    """The id RequestContext gave this request (None outside one)."""
    state = scope.get("state")
    value = state.get("request_id") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def route_template(scope: Scope, routes: Sequence[BaseRoute] = ()) -> str:
    """The path template of the route that handled the request, or, for a request refused before
    routing (RequestGuard), of the first of `routes` that matches it; `unmatched` when none does."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] is not Match.NONE), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestContext:
    """Request id, JSON log context and latency for every HTTP request (see the module docstring).

    `routes` are the api's routes, for naming the template of a request refused before routing.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = Request(scope).headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _ACCEPTED_REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Each request runs in a task of its own, so what is bound here stays with this request.
        logs.bind(request_id=request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
                self._observe(scope, status, started, self.routes)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if not _observed(scope):
                # No response was started (the app raised): the 500 comes from the server middleware.
                self._observe(scope, status, started, self.routes)

    @staticmethod
    def _observe(scope: Scope, status: int, started: float, routes: Sequence[BaseRoute]) -> None:
        state = scope.setdefault("state", {})
        if state.get("observed"):
            return
        state["observed"] = True
        seconds = time.perf_counter() - started
        route = route_template(scope, routes)
        HTTP_LATENCY.labels(scope["method"], route, str(status)).observe(seconds)
        level = logging.DEBUG if scope.get("path") in _QUIET_PATHS else logging.INFO
        extra: dict[str, object] = {"event": "http_request", "status": status, "seconds": round(seconds, 4)}
        job_id = (scope.get("path_params") or {}).get("job_id")
        if job_id is not None:
            extra["job_id"] = str(job_id)
        log.log(level, "%s %s %d", scope["method"], route, status, extra=extra)


def _observed(scope: Scope) -> bool:
    state = scope.get("state")
    return isinstance(state, dict) and bool(state.get("observed"))


def metrics_response() -> Response:
    """This process's metrics in Prometheus's text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
