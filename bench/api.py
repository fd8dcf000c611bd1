"""The api against a bare FastAPI route of the same run, POST latency, and event-to-API lag.

    python -m bench api [--seconds S] [--concurrency C] [--posts N]

1. GET /v1/jobs/{id} throughput and p50/p99 against a bare FastAPI route returning the same
   publish_jobs row from Postgres (bench/api_bare.py), same uvicorn settings, same load generator
   (target: the api ≥ 70 % of the bare route's throughput).
2. POST /v1/courses p50/p99 for a small upload (a 1 s, 160x120 clip): stream to S3, ffprobe, manifest,
   Kafka transaction, wait for the projector's NOTIFY.
3. Event-to-API lag: from JobCompleted acknowledged (acks=all) to GET /v1/jobs/{id} showing completed
   (target p99 < 250 ms), once per job posted in step 2.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

import httpx

from bench.report import Check, Section, Table
from services.core.messages import new_message
from services.core.payloads import JobCompleted, JobOutputs, JobStarted, PublishedVideo, Rendition
from services.core.settings import PROJECT_ROOT, Settings, environment
from tests.support.api import ApiStack, own_bucket
from tests.support.projector import isolated, produce
from tests.support.services import free_port, start_api, start_projector, stop
from tests.support.staging import make_clip


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def load(
    base: str, path: str, headers: dict[str, str], seconds: float, concurrency: int
) -> tuple[float, list[float]]:
    """Closed-loop load: `concurrency` keep-alive connections GET `path` for `seconds`.

    A minimal HTTP/1.1 client on asyncio streams, so the load generator costs far less CPU per request
    than the servers it measures (httpx would be the bottleneck on a 2-core machine).
    Returns (requests/s, latencies in s).
    """
    host, port = base.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode()
    latencies: list[float] = []

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request)
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"{path}: {status!r}")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)

    start = asyncio.Event()
    window: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(20):  # warm-up: connection, pool, caches
            await one(reader, writer)
        await start.wait()
        while time.perf_counter() < window[0]:
            started = time.perf_counter()
            await one(reader, writer)
            latencies.append(time.perf_counter() - started)
        writer.close()

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await asyncio.sleep(2)  # every connection warmed up
    started = time.perf_counter()
    window.append(started + seconds)
    start.set()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


def start_bare(settings: Settings) -> tuple[subprocess.Popen[bytes], str]:
    """The bare route under uvicorn, one worker, like the api."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.api_bare:create_app", "--factory", "--port", str(port),
         "--no-access-log", "--log-level", "warning"],
        cwd=PROJECT_ROOT,
        env=environment(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            httpx.get(f"{base}/docs", timeout=1)
            return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the bare app did not start")


def ms(seconds: float) -> str:
    """Seconds as milliseconds, for printing."""
    return f"{seconds * 1000:.1f} ms"


def summary(latencies: list[float]) -> str:
    """p50 and p99 of a list of latencies."""
    return f"p50 {ms(statistics.median(latencies))}  p99 {ms(percentile(latencies, 99))}"


def post_courses(stack: ApiStack, token: str, body: bytes, count: int) -> tuple[list[float], list[str]]:
    """POST `count` one-video courses one after another; returns (latencies, job ids)."""
    latencies: list[float] = []
    job_ids: list[str] = []
    with stack.client(token) as client:
        for i in range(count):
            started = time.perf_counter()
            answer = client.post(
                "/v1/courses",
                data={"name": f"Bench {i}", "curriculum": "BENCH-1"},
                files=[("videos", ("clip.mp4", body, "video/mp4"))],
            )
            latencies.append(time.perf_counter() - started)
            answer.raise_for_status()
            job_ids.append(answer.json()["job_id"])
    return latencies, job_ids


def get_rounds(
    api: str, bare: str, job_id: str, token: str, rounds: int, seconds: float, concurrency: int
) -> tuple[float, list[float], float, list[float]]:
    """Alternating rounds, so load from other work on the machine hits both sides alike."""
    api_rps: list[float] = []
    bare_rps: list[float] = []
    api_lat: list[float] = []
    bare_lat: list[float] = []
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(rounds):
        rps, lat = asyncio.run(load(api, f"/v1/jobs/{job_id}", auth, seconds, concurrency))
        api_rps.append(rps)
        api_lat += lat
        rps, lat = asyncio.run(load(bare, f"/bare/jobs/{job_id}", {}, seconds, concurrency))
        bare_rps.append(rps)
        bare_lat += lat
    return statistics.median(api_rps), api_lat, statistics.median(bare_rps), bare_lat


def main(argv: list[str]) -> Section:
    """Run the three measurements, print them with their ratios and return them."""
    parser = argparse.ArgumentParser(prog="python -m bench api")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--posts", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    with isolated(Settings(), partitions=3) as scoped, tempfile.TemporaryDirectory() as tmp:
        body = make_clip(Path(tmp) / "bench.mp4", seconds=1.0, size="160x120").read_bytes()
        for settings in own_bucket(scoped):
            projector = start_projector(settings)
            api, base = start_api(settings)
            # The same api without the read-your-writes wait: what the request itself costs.
            quick, quick_base = start_api(settings.model_copy(update={"read_your_writes_timeout_s": 0.0}))
            bare, bare_base = start_bare(settings)
            try:
                stack = ApiStack(settings, base, api)
                _, token = stack.user()
                post_lat, job_ids = post_courses(stack, token, body, args.posts)
                quick_lat, _ = post_courses(ApiStack(settings, quick_base, quick), token, body, args.posts)
                api_rps, api_lat, bare_rps, bare_lat = get_rounds(
                    base, bare_base, job_ids[0], token, args.rounds, args.seconds, args.concurrency
                )
                lags = event_to_api_lag(settings, stack, token, job_ids)
            finally:
                for process in (bare, quick, api, projector):
                    stop(process)

    print(
        f"api benchmark ({args.concurrency} keep-alive connections, {args.rounds} alternating rounds of"
        f" {args.seconds:.0f} s, 1 uvicorn worker each; median round shown)"
    )
    print(f"  GET /v1/jobs/{{id}}    {api_rps:>8,.0f} req/s  {summary(api_lat)}")
    print(f"  bare FastAPI route    {bare_rps:>8,.0f} req/s  {summary(bare_lat)}")
    print(f"  ratio api / bare = {api_rps / bare_rps:.2f}  (target ≥ 0.70)")
    print(f"  POST /v1/courses ({len(body):,} bytes, n={len(post_lat)})  {summary(post_lat)}")
    print(f"  POST /v1/courses without the read-your-writes wait  {summary(quick_lat)}")
    print(f"  event-to-API lag (n={len(lags)})  {summary(lags)}  max {ms(max(lags))}  (target p99 < 250 ms)")
    ratio, lag_p99 = api_rps / bare_rps, percentile(lags, 99)
    rows = (
        ("`GET /v1/jobs/{id}`", f"{api_rps:,.0f} req/s, {summary(api_lat)}"),
        ("bare FastAPI route, same row", f"{bare_rps:,.0f} req/s, {summary(bare_lat)}"),
        (f"`POST /v1/courses`, {len(body) / 1000:.0f} KB one-video course, sequential (n={len(post_lat)})",
         summary(post_lat)),
        ("same, without the read-your-writes wait", summary(quick_lat)),
        (f"event-to-API lag, JobCompleted acked → GET shows completed (n={len(lags)})",
         f"{summary(lags)}, max {ms(max(lags))}"),
    )  # fmt: skip
    return Section(
        "api",
        "API",
        f"python -m bench api --seconds {args.seconds:g} --rounds {args.rounds}"
        f" --concurrency {args.concurrency} --posts {args.posts}",
        (Table(("measure", "result"), rows),),
        (
            Check("ratio api ÷ bare (median round)", f"{ratio:.2f}", "≥ 0.70", ratio >= 0.7),
            Check("event-to-API lag p99", ms(lag_p99), "< 250 ms", lag_p99 < 0.25),
        ),
        f"{args.concurrency} keep-alive connections, {args.rounds} alternating rounds of {args.seconds:g} s,"
        " 1 uvicorn worker each",
    )


COMPLETED_OUTPUTS = JobOutputs(
    videos=(
        PublishedVideo(
            video_index=0,
            master_playlist_url="http://cdn/x/master.m3u8",
            renditions=(Rendition(name="360p", width=640, height=360, bandwidth=900_000, codecs="avc1"),),
            duration_s=1.0,
            thumbnail_url="http://cdn/x/t.jpg",
            poster_url=None,
        ),
    )
)


def event_to_api_lag(settings: Settings, stack: ApiStack, token: str, job_ids: list[str]) -> list[float]:
    """Per job: JobCompleted acknowledged (acks=all) → GET shows completed, polled every 2 ms."""
    lags: list[float] = []
    started = [
        new_message(JobStarted(worker="bench"), job_id=UUID(j), attempt=1, producer="bench") for j in job_ids
    ]
    produce(settings, started)
    time.sleep(1.0)
    with stack.client(token) as client:
        for job_id in job_ids:
            completed = new_message(
                JobCompleted(outputs=COMPLETED_OUTPUTS),
                job_id=UUID(job_id),
                attempt=1,
                producer="bench",
            )
            produce(settings, [completed])  # returns once acknowledged
            acked = time.perf_counter()
            while client.get(f"/v1/jobs/{job_id}").json()["status"] != "completed":
                time.sleep(0.002)
            lags.append(time.perf_counter() - acked)
    return lags


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]).met else 1)
