"""Liveness and readiness, unauthenticated, for orchestrators and load balancers."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import ServicesDep
from services.api.handlers.health import readiness
from services.api.models import Health

router = APIRouter(tags=["health"])


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
    checks = await readiness(services)
    ready = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
