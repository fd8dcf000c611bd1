"""Readiness: does each dependency of the api (Postgres, Kafka, S3) answer a real request in time?"""

from __future__ import annotations

import asyncio

from anyio import to_thread

from services.api.runtime import Services

CHECK_TIMEOUT_S = 3.0


async def readiness(services: Services) -> dict[str, str]:
    """Each dependency's answer: "ok", or "unreachable: <error type>"; all are asked at once."""
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
    return checks
