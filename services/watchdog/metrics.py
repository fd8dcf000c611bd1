"""The watchdog's Prometheus series: its verdicts, its patrols, and its group's lag on the event log."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from services.core import metrics
from services.core.settings import Settings

VERDICTS = Counter(
    "coursecast_watchdog_verdicts",
    "Verdicts published (committed on the log), by type (JobStalled, JobTimedOut) and will_retry",
    ["type", "will_retry"],
)
PATROLS = Counter("coursecast_watchdog_patrols", "Patrols run (one every COURSECAST_WATCHDOG_INTERVAL_S)")
LAST_PATROL = Gauge(
    "coursecast_watchdog_last_patrol_timestamp_seconds",
    "Unix time the last patrol finished: the watchdog's own heartbeat",
)
LAGGING_PARTITIONS = Gauge(
    "coursecast_watchdog_lagging_partitions",
    "Assigned partitions the last patrol did not judge because the watchdog had not caught up with them",
)
TRACKED = Gauge("coursecast_watchdog_tracked_jobs", "Jobs in the watchdog's liveness table")


def serve(settings: Settings) -> None:
    """Serve the watchdog's metrics on its port (if any), with its group's lag (read uncommitted, as
    the watchdog reads: kafka_config.WATCHDOG_ISOLATION_LEVEL)."""
    if settings.watchdog_metrics_port == 0:
        return
    metrics.watch_lag(settings, settings.watchdog_app_id, [settings.events_topic], "read_uncommitted")
    metrics.serve(settings, settings.watchdog_metrics_port, "watchdog")
