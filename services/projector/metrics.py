"""The projector's Prometheus series: what each event did, the jobs by status, the group's lag.

Counted once a batch is committed in Postgres (the Kafka commit comes after), so a batch that a crash
or a lost connection rolled back is never counted; one that is applied again after a crash between the
two commits is counted as `already_applied` the second time, not as applied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import psycopg
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.core import metrics
from services.core.jobs import JobStatus
from services.core.settings import Settings
from services.projector.store import BatchOutcome

log = logging.getLogger("coursecast.projector")

EVENTS = Counter(
    "coursecast_projector_events",
    "Events read by the projector, by what became of them: applied, rejected (by the state machine),"
    " duplicate (an event id already stored), refused (by Postgres), already_applied (below the stored"
    " offset)",
    ["outcome"],
)
REJECTED = Counter(
    "coursecast_projector_rejected_events",
    "Events the job state machine refused, by rejection (TerminalState, StaleAttempt, ...)",
    ["reason"],
)
BATCHES = Counter("coursecast_projector_batches", "Batches committed in Postgres, then in Kafka")
# Every outcome shows from the first scrape, at 0, so rate() and increase() work from the start.
for _outcome in ("applied", "rejected", "duplicate", "refused", "already_applied"):
    EVENTS.labels(_outcome)


def count_batch(outcome: BatchOutcome) -> None:
    """Count a batch Postgres has committed."""
    BATCHES.inc()
    EVENTS.labels("applied").inc(outcome.applied)
    EVENTS.labels("rejected").inc(outcome.rejected)
    EVENTS.labels("duplicate").inc(outcome.duplicates)
    EVENTS.labels("refused").inc(outcome.refused)
    EVENTS.labels("already_applied").inc(outcome.already_applied)
    for reason, count in outcome.rejections.items():
        REJECTED.labels(reason).inc(count)


class JobsByStatus(Collector):
    """`coursecast_jobs{status}`: publish_jobs rows per status, counted at scrape time.

    Its own connection (never the writer's), opened on first use and again after Postgres drops it,
    with a statement timeout so a slow count cannot hold a scrape.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = make_conninfo(settings.database_url, application_name="coursecast-projector-metrics")
        self.query = sql.SQL("SELECT status, count(*) FROM {}.publish_jobs GROUP BY status").format(
            sql.Identifier(settings.database_schema)
        )
        self.timeout_s = settings.metrics_kafka_timeout_s
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = self._family()
        try:
            counts = self.counts()
        except psycopg.Error as exc:
            log.warning("jobs by status unavailable: %s", exc)
            self._close()
            return [family]
        for status in JobStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        return [family]

    def counts(self) -> dict[str, int]:
        """Status → number of jobs in it."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(self.timeout_s)),
                options=f"-c statement_timeout={int(self.timeout_s * 1000)}",
            )
        return {str(status): int(str(count)) for status, count in self._conn.execute(self.query).fetchall()}

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "coursecast_jobs", "Publish jobs by status (publish_jobs)", labels=["status"]
        )


def serve(settings: Settings) -> None:
    """Serve the projector's metrics on its port (if any), with its group's lag and the jobs by status."""
    if settings.projector_metrics_port == 0:
        return
    metrics.watch_lag(settings, settings.projector_group_id, [settings.events_topic])
    REGISTRY.register(JobsByStatus(settings))
    metrics.serve(settings, settings.projector_metrics_port, "projector")
