"""The encoder's Prometheus series: encode time and speed per ladder, attempts and their outcomes,
heartbeats, and its groups' lag: the commands group's on the commands topic, the retry group's on the
retry topic.

One ffmpeg run encodes a video's whole ladder (ladder.py), so an encode is labelled by its ladder's
top rung (`rung="720p"` for a 720p/480p/360p/240p ladder): the series compare like with like, and
the label set stays the handful of standard rungs.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from services.core import metrics
from services.core.settings import Settings
from services.encoder.ladder import Rendition

ENCODE_SECONDS = Histogram(
    "coursecast_encoder_encode_seconds",
    "Wall time of one video's HLS ladder encode (one ffmpeg run), by the ladder's top rung",
    ["rung"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
REALTIME_FACTOR = Histogram(
    "coursecast_encoder_realtime_factor",
    "Seconds of video encoded per second of wall time (above 1: faster than real time), by top rung",
    ["rung"],
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
ATTEMPTS_STARTED = Counter("coursecast_encoder_attempts_started", "Attempts this encoder claimed and ran")
ATTEMPTS = Counter(
    "coursecast_encoder_attempts",
    "Attempts ended, by outcome (completed, failed, retry_scheduled, canceled, fenced, unpublished,"
    " abandoned)",
    ["outcome"],
)
ERRORS = Counter(
    "coursecast_encoder_attempt_errors",
    "Attempts stopped by an error, by its error type (what JobFailed / JobRetryScheduled carry)",
    ["error_type", "retryable"],
)
BUSY = Gauge("coursecast_encoder_busy", "1 while this encoder runs an attempt, else 0")
HEARTBEATS = Counter("coursecast_encoder_heartbeats", "JobProgress heartbeats acknowledged by Kafka")
LAST_HEARTBEAT = Gauge(
    "coursecast_encoder_last_heartbeat_timestamp_seconds",
    "Unix time of the last JobProgress heartbeat Kafka acknowledged (G2)",
)


def top_rung(ladder: Sequence[Rendition]) -> str:
    """The label of a ladder: its best rendition's name ("audio" for an audio-only source)."""
    return ladder[0].name if ladder else "none"


def observe_encode(ladder: Sequence[Rendition], seconds: float, media_seconds: float) -> None:
    """Count one finished ladder encode of `media_seconds` of video that took `seconds`."""
    rung = top_rung(ladder)
    ENCODE_SECONDS.labels(rung).observe(seconds)
    if seconds > 0 and media_seconds > 0:
        REALTIME_FACTOR.labels(rung).observe(media_seconds / seconds)


def serve(settings: Settings) -> None:
    """Serve the encoder's metrics on its port (if any), with its group's lag."""
    from services.encoder.attempt import Outcome  # attempt.py counts through this module

    if settings.encoder_metrics_port == 0:
        return
    for outcome in Outcome:  # every outcome shows from the first scrape, at 0
        ATTEMPTS.labels(outcome.value)
    # Each topic is read by a consumer group of its own (consumer.py): the lag is each group's on its topic.
    metrics.watch_lags(
        settings,
        {
            settings.encoder_group_id: [settings.commands_topic],
            settings.encoder_retry_group_id: [settings.commands_retry_topic],
        },
    )
    metrics.serve(settings, settings.encoder_metrics_port, "encoder")
