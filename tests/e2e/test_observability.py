"""Observability of the real processes: each one's /metrics and its JSON log lines.

api, encoder, conductor, projector, watchdog and notifier run as `coursecast <service>` processes on
topics, a schema and groups of this test's own, each serving metrics on a port of its own; one small
course is published through them, then every process is scraped as Prometheus would scrape it.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson
import pytest

from devtools.demo import create_instructor, make_lecture
from services.core.settings import Settings
from tests.support.fixtures import Isolate
from tests.support.metrics import samples, scrape, scrape_if_up, value
from tests.support.services import API_LOG_DIR, Services, running, wait_until


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports nobody listens on right now."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]


@pytest.fixture
def own(isolate: Isolate) -> Settings:
    encoder, projector, watchdog, notifier, conductor = free_ports(5)
    return isolate(
        encoder_metrics_port=encoder,
        conductor_metrics_port=conductor,
        projector_metrics_port=projector,
        watchdog_metrics_port=watchdog,
        notifier_metrics_port=notifier,
        watchdog_interval_s=1.0,
    )


@pytest.fixture
def run(own: Settings, tmp_path: Path) -> Iterator[Services]:
    with running(own, tmp_path) as services:
        yield services


def metrics_url(own: Settings, port: int) -> str:
    return f"http://{own.metrics_host}:{port}/metrics"


def lag(own: Settings, port: int, group: str, topic: str) -> dict[str, float]:
    """Partition → lag, as the process on `port` reports it for `group` on `topic`."""
    found = samples(
        scrape_if_up(metrics_url(own, port)), "coursecast_consumer_lag_messages", group=group, topic=topic
    )
    return {s.labels["partition"]: s.value for s in found}


def test_every_process_exports_lag_and_the_encoder_its_encode_time(own: Settings, run: Services) -> None:
    projector, encoder, watchdog = run.projector(), run.encoder(), run.watchdog()
    notifier = run.notifier()
    # The conductor, started with the first encoder, ends the course (docs/fan-out.md).
    conductor = run.background
    assert conductor is not None
    base = run.api()
    processes = [projector, encoder, conductor, watchdog, notifier]
    _, token = create_instructor(own)
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
    lecture = make_lecture(run.log_dir / "lecture.mp4", seconds=4, size="426x240")

    request_id = f"test-{uuid.uuid4().hex}"
    with lecture.open("rb") as video:
        accepted = client.post(
            "/v1/courses",
            data={"name": "관측 (metrics)", "curriculum": "OPS-101"},
            files={"videos": ("1강.mp4", video, "video/mp4")},
            headers={"X-Request-Id": request_id},
        )
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["x-request-id"] == request_id
    job_id = accepted.json()["job_id"]

    # Follow the job over SSE; while the stream is open the api counts one live client.
    open_streams: list[float] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/stream", timeout=180) as stream:
        kind = ""
        for line in stream.iter_lines():
            if not open_streams:
                open_streams.append(value(scrape(f"{base}/metrics"), "coursecast_api_sse_clients"))
            if line.startswith("event:"):
                kind = line.partition(":")[2].strip()
            elif line.startswith("data:") and kind == "end":
                break
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "completed"
    assert open_streams == [1.0]

    # Consumer lag, per partition of each group's topics, from each process's own port. Everything is
    # consumed; a partition whose last record is a transaction's commit marker (the api's JobQueued +
    # PublishCourse, and the conductor's batches: TaskQueued + EncodeTask, the course's end) keeps a
    # lag of 1: lag counts offsets, and the marker takes one. So no partition lags by more than 1.
    every = {str(p) for p in range(own.topic_partitions)}

    def settled(port: int, group: str, topic: str) -> bool:
        seen = lag(own, port, group, topic)
        return seen.keys() == every and max(seen.values()) <= 1

    wait_until(
        "the encoder reports its group's lag on every commands partition, all consumed",
        lambda: settled(own.encoder_metrics_port, own.encoder_group_id, own.commands_topic),
        60,
        processes,
    )
    # The retry topic is read by the encoders' retry group (services/encoder/consumer.py).
    retry = lag(own, own.encoder_metrics_port, own.encoder_retry_group_id, own.commands_retry_topic)
    assert retry == dict.fromkeys(every, 0.0)
    wait_until(
        "the projector reports its group's lag on every event partition, all consumed",
        lambda: settled(own.projector_metrics_port, own.projector_group_id, own.events_topic),
        60,
        processes,
    )
    wait_until(
        "the notifier reports its group's lag on every event partition, all consumed",
        lambda: settled(own.notifier_metrics_port, own.webhook_group_id, own.events_topic),
        60,
        processes,
    )
    wait_until(
        "the conductor reports its group's lag on every event partition, all consumed",
        lambda: settled(own.conductor_metrics_port, own.conductor_group_id, own.events_topic),
        60,
        processes,
    )
    conductor_metrics = scrape(metrics_url(own, own.conductor_metrics_port))
    assert value(conductor_metrics, "coursecast_consumer_lag_error", group=own.conductor_group_id) == 0
    # The 4 s lecture was one task, published as it was: nothing to stitch, no batch read again.
    assert value(conductor_metrics, "coursecast_conductor_stitches_total", outcome="stitched") == 0
    assert value(conductor_metrics, "coursecast_conductor_stitches_total", outcome="failed") == 0
    assert value(conductor_metrics, "coursecast_conductor_batches_retried_total") == 0
    notifier_metrics = scrape(metrics_url(own, own.notifier_metrics_port))
    # No endpoint is registered: the course's end was read and nothing was sent.
    assert value(notifier_metrics, "coursecast_webhook_attempts_total", result="delivered") == 0
    assert value(notifier_metrics, "coursecast_webhook_notifications_total", state="given_up") == 0
    wait_until(
        "the watchdog reports its group's lag on every event partition",
        lambda: lag(own, own.watchdog_metrics_port, own.watchdog_app_id, own.events_topic).keys() == every,
        60,
        processes,
    )

    # The encoder: one ladder encoded (4 s of 240p video, the course's one task), timed, its speed known;
    # the course's attempt planned it, the task's attempt completed it.
    encoder_metrics = scrape(metrics_url(own, own.encoder_metrics_port))
    assert value(encoder_metrics, "coursecast_encoder_encode_seconds_count", rung="240p") == 1
    assert value(encoder_metrics, "coursecast_encoder_encode_seconds_sum", rung="240p") > 0
    assert value(encoder_metrics, "coursecast_encoder_realtime_factor_count", rung="240p") == 1
    assert value(encoder_metrics, "coursecast_encoder_realtime_factor_sum", rung="240p") > 0
    assert value(encoder_metrics, "coursecast_encoder_attempts_total", outcome="planned") == 1
    assert value(encoder_metrics, "coursecast_encoder_attempts_total", outcome="completed") == 1
    assert value(encoder_metrics, "coursecast_encoder_attempts_total", outcome="failed") == 0
    assert value(encoder_metrics, "coursecast_encoder_busy") == 0
    assert value(encoder_metrics, "coursecast_consumer_lag_error", group=own.encoder_group_id) == 0
    assert value(encoder_metrics, "coursecast_consumer_lag_error", group=own.encoder_retry_group_id) == 0
    # Each group reports its own topic only: the commands group never read the retry topic.
    assert lag(own, own.encoder_metrics_port, own.encoder_group_id, own.commands_retry_topic) == {}

    # The projector: the job's events applied, none rejected, the job counted as completed: the course
    # and its one task (publish_jobs keeps a row per task, docs/fan-out.md).
    wait_until(
        "the projector counts the course and its task as completed",
        lambda: (
            value(scrape(metrics_url(own, own.projector_metrics_port)), "coursecast_jobs", status="completed")
            == 2
        ),
        30,
        processes,
    )
    projector_metrics = scrape(metrics_url(own, own.projector_metrics_port))
    # JobQueued, JobStarted, VideoEncoded, ThumbnailSaved, JobCompleted at least (and JobProgress).
    assert value(projector_metrics, "coursecast_projector_events_total", outcome="applied") >= 5
    assert value(projector_metrics, "coursecast_projector_events_total", outcome="rejected") == 0
    assert value(projector_metrics, "coursecast_jobs", status="processing") == 0

    # The watchdog patrols (its own heartbeat) and judged nobody: the worker spoke in time.
    watchdog_metrics = scrape(metrics_url(own, own.watchdog_metrics_port))
    assert value(watchdog_metrics, "coursecast_watchdog_patrols_total") > 0
    assert value(watchdog_metrics, "coursecast_watchdog_last_patrol_timestamp_seconds") > time.time() - 60
    assert value(watchdog_metrics, "coursecast_watchdog_verdicts_total") == 0

    # The api: latency by route template, never by raw path (no job id in any label).
    api_metrics = scrape(f"{base}/metrics")
    posted = samples(
        api_metrics, "coursecast_api_request_seconds_count", method="POST", route="/v1/courses", status="202"
    )
    assert [s.value for s in posted] == [1.0]
    streamed = samples(api_metrics, "coursecast_api_request_seconds_count", route="/v1/jobs/{job_id}/stream")
    assert sum(s.value for s in streamed) == 1
    assert not [s for s in api_metrics if any(job_id in v for v in s.labels.values())]
    assert value(api_metrics, "coursecast_api_sse_clients") == 0


def test_request_ids_reach_problem_documents_and_the_api_log(own: Settings, run: Services) -> None:
    base = run.api()
    _, token = create_instructor(own)
    client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    given = f"support-{uuid.uuid4().hex}"
    missing = client.get(f"/v1/jobs/{uuid.uuid4()}", headers={"X-Request-Id": given})
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == given
    assert missing.json()["request_id"] == given

    # An id that could forge log lines (a newline, past 128 characters) is replaced by a new one.
    refused = client.get(f"/v1/jobs/{uuid.uuid4()}", headers={"X-Request-Id": "x" * 200})
    issued = refused.headers["x-request-id"]
    assert issued != "x" * 200
    assert refused.json()["request_id"] == issued
    unauthenticated = httpx.post(f"{base}/v1/courses", timeout=30)  # refused by RequestGuard
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["request_id"] == unauthenticated.headers["x-request-id"]

    # Paths no route matches share one label, however many a client makes up.
    for _ in range(3):
        assert client.get(f"/v1/nowhere/{uuid.uuid4()}").status_code == 404
    scraped = scrape(f"{base}/metrics")
    routes = {s.labels["route"] for s in samples(scraped, "coursecast_api_request_seconds_count")}
    assert routes == {"/healthz", "/v1/jobs/{job_id}", "/v1/courses", "unmatched"}, routes

    log_path = API_LOG_DIR / f"api-{httpx.URL(base).port}.log"

    def request_lines() -> list[dict[str, object]]:
        lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.strip()]
        return [line for line in lines if line.get("request_id") == given]

    wait_until("the api logged the request under its id", request_lines, 10, run.processes)
    [line] = request_lines()
    assert line["event"] == "http_request"
    assert line["status"] == 404
    assert line["message"] == "GET /v1/jobs/{job_id} 404"


def test_the_watchdog_logs_json_lines_only_faust_included(own: Settings, run: Services) -> None:
    watchdog = run.watchdog()
    log_path = run.log("watchdog")

    def lines() -> list[dict[str, object]]:
        return [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.strip()]

    # Its table recovered and a patrol ran: the faust worker started and logged through our handler.
    wait_until(
        "the watchdog serves metrics and has patrolled",
        lambda: (
            value(
                scrape_if_up(metrics_url(own, own.watchdog_metrics_port)), "coursecast_watchdog_patrols_total"
            )
            > 0
        ),
        90,
        [watchdog],
    )
    assert run.stop(watchdog) == 0
    logged = lines()  # every line parses as JSON: one that does not fails here
    assert logged
    for line in logged:
        assert {"timestamp", "level", "logger", "message"} <= line.keys(), line
    loggers = {str(line["logger"]) for line in logged}
    assert any(name.startswith(("faust", "mode", "aiokafka")) for name in loggers), loggers
    assert any(line.get("event") == "metrics_served" for line in logged)
