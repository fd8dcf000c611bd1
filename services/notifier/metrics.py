"""The notifier's Prometheus series: each delivery attempt and how the notifications ended, and its
group's lag on the events topic (a failing endpoint holds its partition's offset back, by design)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.core import metrics
from services.core.settings import Settings

ATTEMPTS = Counter(
    "coursecast_webhook_attempts",
    "Webhook POSTs, by result: delivered (2xx) or failed (anything else, a timeout included)",
    ["result"],
)
ENDED = Counter(
    "coursecast_webhook_notifications",
    "Notifications that ended, by how: delivered, or given up (too old, refused for good, endpoint deleted)",
    ["state"],
)
ATTEMPT_SECONDS = Histogram(
    "coursecast_webhook_attempt_seconds",
    "Time of one webhook POST, from connect to the answer (or the deadline)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Every series shows from the first scrape, at 0, so rate() and increase() work from the start.
for _result in ("delivered", "failed"):
    ATTEMPTS.labels(_result)
for _state in ("delivered", "given_up"):
    ENDED.labels(_state)


def attempted(delivered: bool, seconds: float) -> None:
    """Count one POST."""
    ATTEMPTS.labels("delivered" if delivered else "failed").inc()
    ATTEMPT_SECONDS.observe(seconds)


def ended(state: str) -> None:
    """Count a notification that will not be attempted again."""
    ENDED.labels(state).inc()


def serve(settings: Settings) -> None:
    """Serve the notifier's metrics on its port (if any), with its group's lag."""
    if settings.notifier_metrics_port == 0:
        return
    metrics.watch_lag(settings, settings.webhook_group_id, [settings.events_topic])
    metrics.serve(settings, settings.notifier_metrics_port, "notifier")
