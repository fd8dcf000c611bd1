"""Settings for every CourseCast process, read from COURSECAST_* environment variables.

Defaults point at the local stack started by `coursecast stack up`, all on 127.0.0.1. Settings that
protect a guarantee refuse values that would break it (see the validators).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Configuration shared by the api, encoder, projector, watchdog and tools."""

    model_config = SettingsConfigDict(env_prefix="COURSECAST_", extra="ignore", frozen=True)

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
    # Events applied per Postgres transaction: larger batches amortise the commit, smaller ones
    # shorten the event-to-API lag.
    projector_batch_size: int = Field(default=5_000, ge=1)

    # --- Object storage (S3-compatible) ------------------------------------------------------
    s3_endpoint_url: str | None = "http://127.0.0.1:9000"
    s3_bucket: str = "coursecast"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = "coursecast"
    s3_secret_access_key: str = "coursecast-local-secret"
    cdn_base_url: str = "http://127.0.0.1:9000/coursecast"

    # --- Job lifecycle (G2, G5) --------------------------------------------------------------
    encode_time_limit_s: int = Field(default=14_400, ge=1)
    heartbeat_interval_s: int = Field(default=30, ge=1)
    stall_timeout_s: int = Field(default=300, ge=1)
    max_attempts: int = Field(default=3, ge=1)

    # --- Local stack -------------------------------------------------------------------------
    stack_dir: Path = PROJECT_ROOT / ".cache" / "stack"

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
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
