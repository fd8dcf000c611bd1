"""`coursecast encoder`: run one encoder process until SIGTERM."""

from __future__ import annotations

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings


def encoder() -> None:
    """Run an encoder process: turn PublishCourse commands into HLS, one job at a time, until SIGTERM."""
    from services.encoder import metrics
    from services.encoder.consumer import run_encoder

    settings = get_settings()
    logs.configure(settings.log_level)
    metrics.serve(settings)
    run_encoder(settings, stop_on_signals())


def staging_sweep() -> None:
    """Delete the staging files of canceled jobs, and of completed jobs whose sources have been kept
    COURSECAST_SOURCE_RETENTION_DAYS."""
    import os
    from datetime import timedelta

    from psycopg.conninfo import make_conninfo

    from services.core.storage import s3_client
    from services.encoder.claims import ClaimStore
    from services.encoder.staging import sweep

    settings = get_settings()
    logs.configure(settings.log_level)
    url = make_conninfo(settings.database_url, application_name=f"coursecast-staging-sweep:{os.getpid()}")
    store = ClaimStore.open(url, settings.database_schema, "staging-sweep", settings.encoder_lease_s)
    try:
        retention = timedelta(days=settings.source_retention_days)
        swept = sweep(store, s3_client(settings), settings.s3_bucket, retention)
    finally:
        store.close()
    print(f"swept {len(swept)} staging folder(s)")
