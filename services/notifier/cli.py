"""The notifier's command: deliver webhooks until SIGTERM."""

from __future__ import annotations

import logging

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings


def notifier() -> None:
    """Run a notifier process: POST signed course.completed / failed / canceled webhooks, at least once."""
    from services.notifier.consumer import run_notifier

    logs.configure()
    # httpx logs every request's full URL at INFO; an endpoint's URL may carry its receiver's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_notifier(get_settings(), stop_on_signals())
