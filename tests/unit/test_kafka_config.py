"""Delivery settings that must agree with each other (kafka_config.py, bus.py and faust's app)."""

from __future__ import annotations

import faust

from services.api.publisher import Publisher
from services.core import bus
from services.core.kafka_config import (
    WATCHDOG_ISOLATION_LEVEL,
    consumer_config,
    producer_config,
    reader_config,
    request_bounds,
    transactional_producer_config,
    watchdog_app_config,
    watchdog_probe_config,
)
from services.core.settings import Settings


def test_a_flush_waits_longer_than_librdkafka_tries_to_deliver() -> None:
    # When bus gives up waiting, librdkafka has already given up too: every record has its final
    # delivery report, so "not acknowledged" is never said about a record that may still be written.
    settings = Settings()
    for config in (
        producer_config(settings, "encoder"),
        transactional_producer_config(settings, "api", "tx-1"),
    ):
        delivery_timeout_s = config["delivery.timeout.ms"] / 1000
        assert delivery_timeout_s + bus.REPORT_MARGIN_S <= bus.FLUSH_TIMEOUT_S
        assert bus.REPORT_MARGIN_S >= 2  # librdkafka scans for timed-out records about once a second
        # No in-flight request outlives its records' deadline: librdkafka sets the request's timeout
        # from the oldest record; a request.timeout.ms of our own must not be longer either.
        assert config.get("request.timeout.ms", 0) / 1000 <= delivery_timeout_s


def test_producers_still_wait_for_every_in_sync_replica_idempotently() -> None:
    config = producer_config(Settings(), "encoder")
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)


def test_the_watchdogs_faust_app_gets_the_group_timeouts_of_every_other_consumer() -> None:
    for session_timeout_ms in (45_000, 6_000, 180_000):
        settings = Settings(
            kafka_bootstrap_servers="127.0.0.1:9092, 127.0.0.1:9093", session_timeout_ms=session_timeout_ms
        )
        conf = faust.App("coursecast-test-watchdog", **watchdog_app_config(settings), store="memory://").conf
        consumer = consumer_config(settings, "g", "encoder")
        assert [str(url) for url in conf.broker] == ["kafka://127.0.0.1:9092", "kafka://127.0.0.1:9093"]
        assert conf.broker_client_id.startswith("coursecast-watchdog@")
        assert conf.producer_acks == -1
        assert conf.consumer_auto_offset_reset == consumer["auto.offset.reset"]
        assert conf.broker_session_timeout * 1000 == consumer["session.timeout.ms"]
        assert conf.broker_max_poll_interval * 1000 == consumer["max.poll.interval.ms"]
        # faust refuses a session timeout past its request timeout; heartbeats fit in a session.
        assert conf.broker_session_timeout <= conf.broker_request_timeout
        assert conf.broker_heartbeat_interval * 3 <= conf.broker_session_timeout


def test_the_watchdogs_probe_reads_what_faust_applies_and_every_other_consumer_reads_committed() -> None:
    settings = Settings()
    assert consumer_config(settings, "g", "encoder")["isolation.level"] == "read_committed"
    assert reader_config(settings, "g", "replay")["isolation.level"] == "read_committed"
    probe = watchdog_probe_config(settings, "coursecast-watchdog")
    # faust-streaming's worker consumer reads uncommitted unless the app is exactly-once.
    assert probe["isolation.level"] == WATCHDOG_ISOLATION_LEVEL == "read_uncommitted"
    assert probe["enable.auto.commit"] is False


def test_the_api_producer_settings_bound_every_kafka_call_of_a_request() -> None:
    settings = Settings(api_kafka_timeout_s=4.0)
    # The api's publisher asks kafka_config, with a transactional id of its own.
    config = Publisher(settings)._atomic._config
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    assert config["transactional.id"].startswith("coursecast-api-")
    assert config["delivery.timeout.ms"] == 4_000 == request_bounds(settings)["delivery.timeout.ms"]
    assert config["socket.connection.setup.timeout.ms"] <= config["delivery.timeout.ms"]
    # librdkafka refuses a transaction timeout shorter than the delivery timeout.
    assert config["transaction.timeout.ms"] >= config["delivery.timeout.ms"]
