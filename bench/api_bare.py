"""The baseline of the api benchmark: a bare FastAPI route returning the same publish_jobs row.

No authentication, no ownership check, no response model, no problem documents: one pooled
connection, one SELECT, one JSON response. `bench/api.py` serves it with the same uvicorn settings
as the api.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from fastapi import FastAPI
from fastapi.responses import ORJSONResponse
from psycopg.rows import dict_row

from services.api.db import Pool
from services.core.settings import get_settings


def create_app() -> FastAPI:
    """A FastAPI app with GET /bare/jobs/{job_id}."""
    settings = get_settings()
    pool = Pool(
        settings.database_url,
        settings.database_schema,
        settings.api_db_pool_size,
        settings.api_db_pool_timeout_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/bare/jobs/{job_id}")
    async def bare(job_id: UUID) -> Any:
        async with pool.connection() as db, db.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT * FROM publish_jobs WHERE job_id = %s", (job_id,))
            return ORJSONResponse(await cur.fetchone())

    return app
