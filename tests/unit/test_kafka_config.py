"""Delivery settings that must agree with each other (kafka_config.py and bus.py)."""

from __future__ import annotations

from services.core import bus
from services.core.kafka_config import producer_config, transactional_producer_config
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
