"""The commands docker-compose.yml runs besides the services: `coursecast init` (its one-shot init
service) and `coursecast healthcheck WORKER` (the healthcheck of the encoder, projector and watchdog),
run as real processes against the local stack."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from uuid import uuid4

import pytest
from confluent_kafka.admin import AdminClient

from services.core.kafka_config import admin_config
from services.core.membership import Worker, is_member_here
from services.core.settings import PROJECT_ROOT, Settings, environment
from services.core.storage import PUBLISHED_PREFIX, delete_prefix, s3_client
from services.core.topics import topic_specs
from tests.support.fixtures import QUICK_LIVENESS
from tests.support.services import Process, running, wait_until

pytestmark = pytest.mark.own(partitions=1, **QUICK_LIVENESS)

WORKERS: list[Worker] = ["projector", "encoder", "watchdog"]


def coursecast(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=environment(settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def healthy(settings: Settings, worker: Worker) -> bool:
    return coursecast(settings, "healthcheck", worker).returncode == 0


def test_a_worker_is_healthy_only_while_its_process_of_this_host_is_in_its_group(
    own: Settings, tmp_path: Path
) -> None:
    assert [healthy(own, worker) for worker in WORKERS] == [False, False, False]
    with running(own, tmp_path) as run:
        processes: dict[Worker, Process] = {
            "projector": run.projector(),
            "encoder": run.encoder(),
            "watchdog": run.watchdog(),
        }
        for worker, process in processes.items():
            wait_until(f"{worker} healthy", partial(healthy, own, worker), 90, [process])
        # Another replica (another host name) is not vouched for by this one's membership.
        assert not is_member_here(own, "encoder", host=f"elsewhere-{uuid4().hex[:6]}")
        assert run.stop(processes["projector"]) == 0
        # A consumer that closes leaves its group at once; the others stay healthy.
        wait_until("projector unhealthy once stopped", lambda: not healthy(own, "projector"), 30)
        assert healthy(own, "encoder")
        assert healthy(own, "watchdog")


@pytest.fixture
def fresh_bucket(own: Settings) -> Iterator[Settings]:
    """The test's settings with a bucket name nobody has created; the bucket is deleted afterwards."""
    scoped = own.model_copy(update={"s3_bucket": f"init-{uuid4().hex[:12]}"})
    yield scoped
    s3 = s3_client(scoped)
    delete_prefix(s3, scoped.s3_bucket, "")
    s3.delete_bucket(Bucket=scoped.s3_bucket)


def test_init_creates_the_topics_and_the_bucket_with_only_published_hls_readable(
    fresh_bucket: Settings,
) -> None:
    settings = fresh_bucket
    admin = AdminClient(admin_config(settings))
    admin.delete_topics([settings.events_dlq_topic], operation_timeout=30)[settings.events_dlq_topic].result(
        30
    )
    wait_until(
        "the dead-letter topic deleted",
        lambda: settings.events_dlq_topic not in admin.list_topics(timeout=10).topics,
        30,
    )

    first = coursecast(settings, "init")
    again = coursecast(settings, "init")

    assert first.returncode == 0, first.stderr
    assert settings.events_dlq_topic in first.stdout
    assert "created" in first.stdout
    assert again.returncode == 0, again.stderr
    assert "all topics exist" in again.stdout
    assert "exists" in again.stdout
    topics = admin.list_topics(timeout=10).topics
    assert {spec.name for spec in topic_specs(settings)} <= set(topics)
    policy = json.loads(s3_client(settings).get_bucket_policy(Bucket=settings.s3_bucket)["Policy"])
    statements = policy["Statement"]
    # Anyone may GET what is published; nothing grants anything under staging/ or uploads/.
    assert [(s["Effect"], s["Principal"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{settings.s3_bucket}/{PUBLISHED_PREFIX}*")
    ]
