"""Settings for every CourseCast process, read from COURSECAST_* environment variables.

Defaults point at the local stack started by `python -m devtools stack up`, all on 127.0.0.1. Settings that
protect a guarantee refuse values that would break it (see the validators).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _state_root() -> Path:
    """Default home of local state: `.cache/` of a checkout; for an installed package, the user's
    state folder (XDG_STATE_HOME, else ~/.local/state), never the read-only site-packages."""
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".cache"
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "coursecast"


class Settings(BaseSettings):
    """Configuration shared by the api, encoder, projector, watchdog and tools."""

    model_config = SettingsConfigDict(env_prefix="COURSECAST_", extra="ignore", frozen=True)

    # "production" refuses the built-in secrets below (they are public, in this repository).
    env: Literal["development", "test", "production"] = "development"

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    commands_topic: str = "publish.commands"
    events_topic: str = "publish.job-events"
    commands_dlq_topic: str = "publish.commands.dlq"
    events_dlq_topic: str = "publish.job-events.dlq"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # With RF 3 a write is acknowledged only once two replicas have it (G3 under broker loss).
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    max_poll_interval_ms: int = Field(default=300_000, ge=1_000)
    session_timeout_ms: int = Field(default=45_000, ge=1_000)

    # --- Postgres ----------------------------------------------------------------------------
    database_url: str = "postgresql://coursecast:coursecast@127.0.0.1:5432/coursecast"
    # The Postgres schema holding the projections; tests and replays use schemas of their own.
    database_schema: str = Field(default="coursecast", pattern=r"^[a-z_][a-z0-9_]{0,62}$")

    # --- Projector ---------------------------------------------------------------------------
    projector_group_id: str = "projector"
    # The conductor (docs/fan-out.md): the consumer group that runs courses' tasks from the log.
    conductor_group_id: str = "conductor"
    # Events applied per Postgres transaction: larger batches amortise the commit, smaller ones
    # shorten the event-to-API lag.
    projector_batch_size: int = Field(default=10_000, ge=1)
    # How long the projector keeps reconnecting to Postgres (with backoff) after losing its connection,
    # before it gives up and exits for its supervisor to restart it. Nothing is lost either way (G3).
    projector_reconnect_timeout_s: float = Field(default=300.0, ge=0)

    # --- Watchdog (G2) -----------------------------------------------------------------------
    watchdog_app_id: str = "coursecast-watchdog"
    # The watchdog's local state folder (faust's datadir; its table itself lives in memory and in
    # its changelog topic). One folder per app id below it.
    watchdog_data_dir: Path = _state_root() / "watchdog"
    # How often running attempts are judged; a verdict comes at most this long after it is due.
    watchdog_interval_s: float = Field(default=10.0, gt=0)
    # Past the encode time limit the encoder stops ffmpeg itself; the watchdog steps in only if it
    # has not done so this much later.
    watchdog_time_limit_grace_s: float = Field(default=120.0, ge=0)
    # Event times are stamped by the encoder's clock and compared with the watchdog's: every
    # threshold is widened by this much, so a worker whose clock runs behind is never judged early.
    watchdog_clock_skew_s: float = Field(default=5.0, ge=0)

    # --- Object storage (S3-compatible) ------------------------------------------------------
    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "coursecast"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = "coursecast"
    s3_secret_access_key: str = "coursecast-local-secret"
    cdn_base_url: str = "http://127.0.0.1:9000/coursecast"
    # The S3 endpoint as clients outside the deployment reach it: presigned upload URLs are signed for
    # this host (SigV4 signs the Host header), so a browser or `curl` can PUT to them. Unset: the
    # endpoint itself, which is right whenever clients and services reach S3 at the same address.
    s3_public_url: str | None = None

    # --- Job lifecycle (G2, G5) --------------------------------------------------------------
    encode_time_limit_s: int = Field(default=14_400, ge=1)
    heartbeat_interval_s: int = Field(default=30, ge=1)
    stall_timeout_s: int = Field(default=300, ge=1)
    max_attempts: int = Field(default=3, ge=1)

    # --- Encoder -----------------------------------------------------------------------------
    encoder_group_id: str = "encoders"
    # G5: transient failures come back through this topic after a back-off, so a waiting retry
    # never holds up the commands partition it came from.
    commands_retry_topic: str = "publish.commands.retry"
    # First retry waits about this long; each further attempt doubles it (plus up to 50 % jitter).
    retry_backoff_base_s: float = Field(default=10.0, ge=0)
    retry_backoff_max_s: float = Field(default=600.0, ge=0)
    # G1: a claim lease not renewed for this long marks its worker dead; the next owner takes over.
    encoder_lease_s: int = Field(default=120, ge=2)
    # G5: inputs past these limits fail at once, with a message the instructor can act on.
    max_video_duration_s: float = Field(default=6 * 3600, gt=0)
    max_video_height: int = Field(default=2160, ge=1)
    max_video_width: int = Field(default=4096, ge=1)
    # x264 speed/quality trade-off of every rendition.
    encoder_x264_preset: str = "veryfast"
    # Test/demo knob: read the input at its native frame rate (ffmpeg -re), so an encode lasts as
    # long as the video and a long encode needs no CPU-heavy clip. Never set in production.
    encoder_realtime_input: bool = False
    encoder_upload_concurrency: int = Field(default=8, ge=1)
    # Fan-out (docs/fan-out.md): a lecture longer than this is cut into chunks of about this length,
    # each a task of its own that any encoder may run; the time limit is per task, so no course is
    # too long for it. Rounded down to a multiple of the HLS segment length (6 s), at least one.
    chunk_s: int = Field(default=300, ge=6)
    # ffmpeg threads of every encode (decoder, filters, each x264 encoder); 0 is ffmpeg's own choice
    # (about one per core). 1 lets N encoders share N cores without contending for them.
    encoder_threads: int = Field(default=0, ge=0)
    # G1/G4: after a job ends, its staging files are deleted once the projector shows that end in
    # publish_jobs; an end not applied within this long leaves them to `coursecast staging sweep`.
    staging_cleanup_wait_s: float = Field(default=600.0, gt=0)
    # A completed job's uploaded sources (its staging folder) are kept this many days after its
    # completion, so the course can be re-encoded (`coursecast reencode`); `coursecast staging sweep`
    # deletes them once expired. 0: deleted as soon as the completion is applied.
    source_retention_days: int = Field(default=30, ge=0)

    # --- Media probing (api and encoder) -------------------------------------------------------
    # ffprobe is killed past this; in the encoder that is a transient error (retried), in the api a 503.
    probe_timeout_s: float = Field(default=30.0, gt=0)
    # An uploaded thumbnail with more pixels than this is refused before any decoder allocates it.
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # The api probes a local sparse copy of an upload's first and last this-many bytes (the MP4
    # index may sit at the end), never the object over the network.
    api_probe_window_bytes: int = Field(default=8 * 1024**2, ge=64 * 1024)

    # --- API ---------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65_535)
    # 413 past this many bytes in one uploaded file (default 4 GiB).
    max_upload_bytes: int = Field(default=4 * 1024**3, ge=1)
    max_videos: int = Field(default=50, ge=1)
    # S3 multipart part size while streaming an upload: the api holds about one part per file in memory.
    upload_part_bytes: int = Field(default=8 * 1024**2, ge=5 * 1024**2)
    # A direct upload not completed (or not used by a course) within this time is aborted.
    upload_expiry_s: int = Field(default=86_400, ge=1)
    # How long POST /v1/courses waits for the projector to show a new job before answering 202.
    read_your_writes_timeout_s: float = Field(default=2.0, ge=0)
    # Bounds every Kafka call of a request, so an unreachable broker becomes a quick 503.
    api_kafka_timeout_s: float = Field(default=10.0, gt=0)
    api_db_pool_size: int = Field(default=10, ge=1)
    # A request that cannot get a Postgres connection within this time gets 503 + Retry-After.
    api_db_pool_timeout_s: float = Field(default=5.0, gt=0)
    # 413 past this many bytes in a JSON request body.
    api_max_json_bytes: int = Field(default=64 * 1024, ge=1024)
    # 429 past this many live job streams (SSE) of one user in one api process.
    api_max_streams_per_user: int = Field(default=8, ge=1)
    # An Idempotency-Key reserved by a request that died (crash, lost connection) is free again
    # after this long; a live request renews its reservation in the background every third of it.
    api_idempotency_lease_s: float = Field(default=60.0, ge=1)

    # --- Webhooks (the api registers endpoints, `coursecast notifier` delivers) ----------------
    webhook_group_id: str = "notifier"
    # One delivery attempt: connecting may take this long...
    webhook_connect_timeout_s: float = Field(default=5.0, gt=0)
    # ...and the whole attempt (connect, send, status line, capped body) at most this long, however
    # slowly a receiver trickles bytes: a slow or hostile receiver holds a slot no longer than this.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # At most this much of a receiver's answer is read (kept for the delivery record), never more.
    webhook_max_response_bytes: int = Field(default=16 * 1024, ge=0)
    # A failed attempt is retried after half to all of base * 2^(attempts - 1) seconds, capped.
    webhook_retry_base_s: float = Field(default=5.0, gt=0)
    webhook_retry_max_s: float = Field(default=3600.0, gt=0)
    # A notification still failing this long after its first attempt is given up: recorded as
    # `given_up` in webhook_deliveries and logged at ERROR; its partition's offset then moves on.
    webhook_max_retry_age_s: float = Field(default=86_400.0, gt=0)
    # Requests in flight at once, across all endpoints, and to one endpoint.
    webhook_concurrency: int = Field(default=32, ge=1)
    webhook_concurrency_per_endpoint: int = Field(default=2, ge=1)
    # Notifications in progress (waiting, sending or retrying) before the notifier stops reading.
    webhook_max_pending: int = Field(default=1000, ge=1)
    # 422 past this many endpoints for one user.
    webhook_max_endpoints_per_user: int = Field(default=10, ge=1)
    # After a secret rotation the previous secret also signs for this long.
    webhook_secret_overlap_s: float = Field(default=86_400.0, ge=0)
    # May webhooks go to loopback, private, link-local addresses (SSRF)? Unset: yes, except under
    # COURSECAST_ENV=production (see webhook_private_addresses_allowed).
    webhook_allow_private_addresses: bool | None = None

    # --- Local stack -------------------------------------------------------------------------
    stack_dir: Path = _state_root() / "stack"

    @property
    def webhook_private_addresses_allowed(self) -> bool:
        """Whether the notifier may deliver to non-public addresses: as set, or outside production."""
        if self.webhook_allow_private_addresses is None:
            return self.env != "production"
        return self.webhook_allow_private_addresses

    @property
    def encoder_retry_group_id(self) -> str:
        """The encoders' consumer group on the retry topic: `<COURSECAST_ENCODER_GROUP_ID>.retry`.

        Each of the encoder's two topics has a group of its own, so cooperative-sticky (which evens out
        the number of partitions per member, not per topic) spreads each topic over every encoder: in
        one group of both topics, a second encoder was given all the retry partitions and none of the
        commands ones, and a course's tasks all ran on the first (bench/text/fanout.md)."""
        return f"{self.encoder_group_id}.retry"

    # --- Observability -----------------------------------------------------------------------
    # Level of every process's JSON log lines (stderr).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Address the encoder, projector and watchdog serve Prometheus metrics on (the api serves them
    # at its own /metrics). Each process has its own port; 0 serves none (tests running several).
    metrics_host: str = "127.0.0.1"
    encoder_metrics_port: int = Field(default=9401, ge=0, le=65_535)
    projector_metrics_port: int = Field(default=9402, ge=0, le=65_535)
    watchdog_metrics_port: int = Field(default=9403, ge=0, le=65_535)
    notifier_metrics_port: int = Field(default=9404, ge=0, le=65_535)
    conductor_metrics_port: int = Field(default=9405, ge=0, le=65_535)
    # A scrape waits at most this long for Kafka to report a consumer group's offsets (lag series).
    metrics_kafka_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _guarantees_hold(self) -> Settings:
        # G2: a stall is only detectable if a live job speaks more often than the stall timeout.
        if self.heartbeat_interval_s >= self.stall_timeout_s:
            raise ValueError(
                "COURSECAST_HEARTBEAT_INTERVAL_S must be shorter than COURSECAST_STALL_TIMEOUT_S, "
                "or every live job would look stalled"
            )
        # G3: a replicated write needs at least min.insync.replicas replicas to exist.
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                "COURSECAST_TOPIC_MIN_INSYNC_REPLICAS cannot exceed COURSECAST_TOPIC_REPLICATION_FACTOR"
            )
        if self.env == "production":
            built_in = [name for name, value in BUILT_IN_SECRETS.items() if value(self)]
            if built_in:
                raise ValueError(
                    "COURSECAST_ENV=production refuses the built-in (public) secrets of the local stack: set "
                    + ", ".join(f"COURSECAST_{name.upper()}" for name in built_in)
                )
        return self


# The local stack's credentials are in this repository, so they protect nothing: production must set
# its own. Each entry says whether a setting still holds (or embeds) the built-in secret.
_LOCAL_PASSWORD = "coursecast"
BUILT_IN_SECRETS: dict[str, Callable[[Settings], bool]] = {
    "s3_secret_access_key": lambda s: s.s3_secret_access_key == "coursecast-local-secret",
    "s3_access_key_id": lambda s: s.s3_access_key_id == "coursecast",
    "database_url": lambda s: _url_password(s.database_url) == _LOCAL_PASSWORD,
}


def _url_password(url: str) -> str | None:
    """The password in a postgresql:// URL (or key=value conninfo), None when there is none."""
    if "://" in url:
        return urlsplit(url).password
    for pair in url.split():
        key, _, value = pair.partition("=")
        if key == "password":
            return value
    return None


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with `settings` as COURSECAST_* variables: a child `coursecast`
    process started with it uses exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSECAST_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"COURSECAST_{name.upper()}"] = str(value)
    env.update(extra)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
