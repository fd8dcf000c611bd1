"""The conductor's Prometheus series: its group's lag on the events topic (a course whose tasks wait
to be queued, stitched or ended shows here first), the lectures it stitched, and the batches it had
to read again (Kafka or S3 away: nothing of such a batch is committed, G3)."""

from __future__ import annotations

from prometheus_client import Counter

from services.core import metrics
from services.core.settings import Settings

STITCHES = Counter(
    "coursecast_conductor_stitches",
    "Chunked lectures put together from their tasks' outputs, by outcome: stitched, or failed (the"
    " course fails with the reason)",
    ["outcome"],
)
BATCHES_RETRIED = Counter(
    "coursecast_conductor_batches_retried",
    "Batches aborted and read again on a rebuilt book (Kafka or S3 unreachable)",
)
# Every series shows from the first scrape, at 0, so rate() and increase() work from the start.
for _outcome in ("stitched", "failed"):
    STITCHES.labels(_outcome)


def stitched(ok: bool) -> None:
    """Count one stitch run (a batch read again stitches again: each run counts)."""
    STITCHES.labels("stitched" if ok else "failed").inc()


def batch_retried() -> None:
    """Count one batch that was not committed and will be read again."""
    BATCHES_RETRIED.inc()


def serve(settings: Settings) -> None:
    """Serve the conductor's metrics on its port (if any), with its group's lag."""
    if settings.conductor_metrics_port == 0:
        return
    metrics.watch_lag(settings, settings.conductor_group_id, [settings.events_topic])
    metrics.serve(settings, settings.conductor_metrics_port, "conductor")
