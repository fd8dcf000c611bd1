"""Where the local stack keeps its jars, data, logs and pid files: everything under Settings.stack_dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.core.settings import Settings

# Checked-in inputs (pom.xml, log4j2.yaml, install.sh); everything generated goes under stack_dir.
STACK_SOURCES = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class StackLayout:
    """The stack directory's folders; deleting stack_dir (with the stack down) resets everything."""

    root: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> StackLayout:
        """The layout for settings.stack_dir (COURSECAST_STACK_DIR)."""
        return cls(Path(settings.stack_dir).resolve())

    @property
    def run_dir(self) -> Path:
        """Pid files and the running Kafka mode."""
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        """One log file per process."""
        return self.root / "logs"

    @property
    def kafka_lib(self) -> Path:
        """The Kafka classpath assembled by stack/install.sh."""
        return self.root / "kafka" / "lib"

    @property
    def kafka_data(self) -> Path:
        """Kafka node configs and logs, one sub-folder per mode so switching modes keeps both."""
        return self.root / "kafka" / "data"

    @property
    def postgres_dir(self) -> Path:
        """The stack's own Postgres cluster (owned by the postgres user when run as root)."""
        return self.root / "postgres"

    def ensure(self) -> None:
        """Create the folders every component writes to."""
        for folder in (self.run_dir, self.logs_dir, self.kafka_data, self.postgres_dir):
            folder.mkdir(parents=True, exist_ok=True)
