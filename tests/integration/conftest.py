"""Integration fixtures: the real local stack (Kafka, Postgres, S3, ffmpeg) on 127.0.0.1.

If the stack is not running, the session starts it and stops exactly what it started at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from confluent_kafka import Producer

import devtools.stack.manager as manager
from services.core.kafka_config import producer_config
from services.core.settings import Settings
from services.core.storage import s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture(scope="session", autouse=True)
def stack(settings: Settings) -> Iterator[None]:
    """The local stack, up for the whole session."""
    already_up = all(component.ok for component in manager.status(settings))
    if not already_up:
        manager.up(settings, brokers=1)
    yield
    if not already_up:
        manager.down(settings)


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    """An idempotent acks=all producer, flushed at the end of the test."""
    client = Producer(producer_config(settings, "test"))
    yield client
    client.flush(10)


@pytest.fixture
def s3(settings: Settings) -> S3Client:
    """A boto3 S3 client for the local endpoint."""
    return s3_client(settings)


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A Postgres connection to the project's database."""
    with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
        yield conn
