"""The encoder's two consumer groups as the rest of the system sees them: the healthcheck asks for both,
and one lag collector reports both (a Prometheus registry takes each metric name from one collector)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.core import metrics
from services.core.membership import group_of, groups_of
from services.core.settings import Settings


def test_an_encoder_is_checked_in_both_its_groups_and_every_other_worker_in_its_one() -> None:
    settings = Settings()
    assert groups_of(settings, "encoder") == [settings.encoder_group_id, settings.encoder_retry_group_id]
    for worker in ("projector", "watchdog", "notifier", "conductor"):
        assert groups_of(settings, worker) == [group_of(settings, worker)]


def test_one_collector_registers_the_lag_of_both_encoder_groups() -> None:
    settings = Settings()
    registry = CollectorRegistry()
    collector = metrics.watch_lags(
        settings,
        {
            settings.encoder_group_id: [settings.commands_topic],
            settings.encoder_retry_group_id: [settings.commands_retry_topic],
        },
        registry,
    )
    assert [(c.group, c.topics) for c in collector.collectors] == [
        (settings.encoder_group_id, [settings.commands_topic]),
        (settings.encoder_retry_group_id, [settings.commands_retry_topic]),
    ]
    assert sorted(f.name for f in collector.describe()) == [
        "coursecast_consumer_lag_error",
        "coursecast_consumer_lag_messages",
    ]
