"""`coursecast conductor`: run one conductor process until SIGTERM."""

from __future__ import annotations

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings


def conductor() -> None:
    """Run a conductor: queue each planned course's tasks, stitch its lectures, end it, until SIGTERM."""
    from services.conductor import metrics
    from services.conductor.worker import run_conductor

    logs.configure()
    settings = get_settings()
    metrics.serve(settings)
    run_conductor(settings, stop_on_signals())
