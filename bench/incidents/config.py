"""The replica's configuration and its one table, shared by the bench and the worker it starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

# The seed's PublishJob model (Django), as a table of the run's own Postgres schema.
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.publish_job (
    id uuid PRIMARY KEY,
    status text NOT NULL,
    course_name text NOT NULL,
    staging_dir text NOT NULL,
    error_message text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
)
"""


@dataclass(frozen=True)
class ReplicaConfig:
    """The replica's knobs, read from INCIDENTS_* variables set by the bench for its worker process."""

    broker_url: str
    schema: str
    prefix: str
    visibility_timeout_s: float
    time_limit_s: float
    retry_delay_s: float
    app_log: str

    @classmethod
    def from_env(cls) -> ReplicaConfig:
        """The configuration the bench handed to this worker process."""
        return cls(
            broker_url=os.environ.get("INCIDENTS_BROKER_URL", "redis://127.0.0.1:6379/0"),
            schema=os.environ.get("INCIDENTS_SCHEMA", "incidents"),
            prefix=os.environ.get("INCIDENTS_PREFIX", "incidents/"),
            visibility_timeout_s=float(os.environ.get("INCIDENTS_VISIBILITY_TIMEOUT_S", "3600")),
            time_limit_s=float(os.environ.get("INCIDENTS_TIME_LIMIT_S", "7200")),
            retry_delay_s=float(os.environ.get("INCIDENTS_RETRY_DELAY_S", "30")),
            app_log=os.environ.get("INCIDENTS_APP_LOG", "incidents-app.log"),
        )

    @property
    def work_prefix(self) -> str:
        """Name prefix of the task's temporary work folders; a killed task leaves its folder behind."""
        return f"incidents-replica-{self.schema}-"

    def env(self) -> dict[str, str]:
        """These settings as the INCIDENTS_* variables of a worker process."""
        return {
            "INCIDENTS_BROKER_URL": self.broker_url,
            "INCIDENTS_SCHEMA": self.schema,
            "INCIDENTS_PREFIX": self.prefix,
            "INCIDENTS_VISIBILITY_TIMEOUT_S": str(self.visibility_timeout_s),
            "INCIDENTS_TIME_LIMIT_S": str(self.time_limit_s),
            "INCIDENTS_RETRY_DELAY_S": str(self.retry_delay_s),
            "INCIDENTS_APP_LOG": self.app_log,
        }
