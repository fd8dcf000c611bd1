"""The notifier's command: deliver webhooks until SIGTERM."""

from __future__ import annotations

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings


def notifier() -> None:
    """Run a notifier process: POST signed course.completed / failed / canceled webhooks, at least once."""
    from services.notifier.consumer import run_notifier

    logs.configure()
    run_notifier(get_settings(), stop_on_signals())
