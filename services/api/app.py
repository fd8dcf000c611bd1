"""The FastAPI application: the factory, and the one bootstrap place that chooses its dependencies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from services.api import problems
from services.api.db import JobChanges, Pool, migrate_api
from services.api.guard import RequestGuard
from services.api.handlers.uploads import start_sweeper
from services.api.metrics import RequestContext
from services.api.problems import PROBLEM_MEDIA_TYPE, Problem
from services.api.publisher import Publisher
from services.api.routes import courses, dashboard, health, jobs, uploads, webhooks
from services.api.routes import metrics as metrics_route
from services.api.runtime import Services, StreamSlots
from services.core.kafka_config import admin_config
from services.core.settings import Settings, get_settings
from services.core.storage import presigning_client, s3_client

DESCRIPTION = """\
CourseCast's HTTP API: upload a course, follow its publish job, read its history, retry or cancel it.

Authenticate with `Authorization: Bearer <token>` (`coursecast users create NAME --role instructor`).
Every error is an RFC 9457 `application/problem+json` document.
"""


def bootstrap(settings: Settings) -> Services:
    """Choose and build the process's dependencies (called once, at startup)."""
    return Services(
        settings=settings,
        pool=Pool(
            settings.database_url,
            settings.database_schema,
            settings.api_db_pool_size,
            settings.api_db_pool_timeout_s,
        ),
        changes=JobChanges(settings.database_url),
        publisher=Publisher(settings),
        s3=s3_client(settings),
        admin=AdminClient(admin_config(settings)),
        streams=StreamSlots(settings.api_max_streams_per_user),
        presigner=presigning_client(settings),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The api, wired to `settings` (the environment's by default)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrate_api(settings.database_url, settings.database_schema)
        services = bootstrap(settings)
        app.state.services = services
        await services.pool.open()
        await services.changes.start()
        sweeper = start_sweeper(services)
        try:
            yield
        finally:
            sweeper.cancel()
            await services.changes.stop()
            await services.pool.close()
            services.publisher.close()

    app = FastAPI(title="CourseCast API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    problems.install(app)
    app.add_middleware(RequestGuard)
    modules = (health, courses, uploads, jobs, webhooks, metrics_route)
    # Added last, so outermost: every answer, RequestGuard's refusals included, is timed and named.
    app.add_middleware(
        RequestContext, routes=[route for m in (*modules, dashboard) for route in m.router.routes]
    )
    for module in modules:
        app.include_router(module.router)
    app.include_router(dashboard.router)
    app.mount(dashboard.ASSETS_PATH, dashboard.assets(), name="dashboard")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, with every error documented as a problem document."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema()
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = {"content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for route, path in schema.get("paths", {}).items():
        for method, operation in path.items():
            responses = operation.setdefault("responses", {})
            errors = [("400", "Malformed request"), ("422", "Invalid request"), ("405", "Method not allowed")]
            if route.startswith("/v1/"):
                errors.append(("503", "Service unavailable (database or Kafka busy or unreachable)"))
                if method in ("post", "put", "patch", "delete"):
                    # RequestGuard: authentication and the body bound come before the route.
                    errors += [("401", "Unauthorized"), ("413", "Request body too large")]
            for status, description in errors:
                responses.setdefault(status, {"description": description, **problem})
    app.openapi_schema = schema
    return schema
