"""Liveness and readiness, unauthenticated, for orchestrators and load balancers."""

from __future__ import annotations

import asyncio

from anyio import to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import ServicesDep
from services.api.models import Health

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 3.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Anyone: the process is alive and serving."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"description": "a dependency is unreachable", "model": Health}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Anyone: Kafka, Postgres and S3 all answer (503 naming the one that does not)."""
    settings = services.settings

    async def postgres() -> None:
        async with services.pool.connection() as db:
            await db.execute("SELECT 1")

    def kafka() -> None:
        # The process's one admin client: a client per request would leak threads and sockets.
        services.admin.list_topics(settings.events_topic, timeout=CHECK_TIMEOUT_S)

    def s3() -> None:
        services.s3.head_bucket(Bucket=settings.s3_bucket)

    checks: dict[str, str] = {}
    probes = {
        "postgres": postgres(),
        "kafka": to_thread.run_sync(kafka),
        "s3": to_thread.run_sync(s3),
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(probe, CHECK_TIMEOUT_S + 1) for probe in probes.values()), return_exceptions=True
    )
    for name, result in zip(probes, results, strict=True):
        checks[name] = (
            "ok" if not isinstance(result, BaseException) else f"unreachable: {type(result).__name__}"
        )
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
