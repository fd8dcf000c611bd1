"""GET /metrics: the process's Prometheus metrics, unauthenticated like /healthz (keep the api's port
off the public internet, or let only the scraper reach /metrics at the load balancer)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from services.api.metrics import metrics_response

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Anyone: this process's metrics, in Prometheus's text format."""
    return metrics_response()
