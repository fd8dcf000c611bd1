"""`coursecast encoder`: run one encoder process until SIGTERM."""

from __future__ import annotations

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings


def encoder() -> None:
    """Run an encoder process: turn PublishCourse commands into HLS, one job at a time, until SIGTERM."""
    from services.encoder.consumer import run_encoder

    logs.configure()
    run_encoder(get_settings(), stop_on_signals())
