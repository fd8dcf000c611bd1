"""The watchdog's command: run one worker of the watchdog's faust app until SIGTERM."""

from __future__ import annotations

from services.core import logs
from services.core.settings import get_settings


def watchdog() -> None:
    """Run a watchdog worker: explicit JobStalled / JobTimedOut for silent or overlong jobs, until SIGTERM."""
    from services.watchdog import metrics
    from services.watchdog.worker import run_watchdog

    settings = get_settings()
    logs.configure(settings.log_level)
    metrics.serve(settings)
    run_watchdog(settings)
