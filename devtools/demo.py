"""`python -m devtools demo`: publish a sample course through the whole pipeline and show it ending.

Starts a projector, an encoder, the conductor, the watchdog, the notifier and the api against the
running local stack, creates an instructor, registers a webhook to a receiver on 127.0.0.1, uploads a
course of two generated lectures (testsrc2 + sine) with a Korean course name — the second long enough
to be cut into chunks (docs/fan-out.md) — follows the job over Server-Sent Events until it ends,
lecture by lecture, proves every master playlist plays (ffprobe reads it over HTTP), shows the signed
`course.completed` webhook that arrived and the course's catalogue entry, checks that
`replay --rebuild` finds no difference, and stops what it started. The steps are also the building
blocks of the end-to-end test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
from rich.console import Console

from services.core.settings import PROJECT_ROOT, Settings, environment
from services.notifier.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, verify

console = Console()
SERVICES = ("projector", "encoder", "conductor", "watchdog", "notifier", "api")
# The demo's chunk length: its 60 s lecture becomes 3 chunks (24 + 24 + 12 s) and an audio task.
DEMO_CHUNK_S = 24
WEBHOOK_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 600.0


def coursecast(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a `coursecast` command with these settings and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=PROJECT_ROOT,
        env=environment(settings, COLUMNS="200"),
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


@contextmanager
def running_services(settings: Settings, logs: Path, names: tuple[str, ...] = SERVICES) -> Iterator[None]:
    """The named services in the background (output in logs/<name>.log), answering before the block
    starts and stopped with SIGTERM when it ends."""
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        processes = [stack.enter_context(_service(settings, name, logs)) for name in names]
        if "api" in names:
            _wait_ready(api_base(settings), processes)
        yield


@contextmanager
def _service(settings: Settings, name: str, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (logs / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", name],
        cwd=PROJECT_ROOT,
        env=environment(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


def api_base(settings: Settings) -> str:
    """Where the api answers."""
    return f"http://{settings.api_host}:{settings.api_port}"


def _wait_ready(base: str, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a service exited during start-up; see its log")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the api was not ready within {READY_TIMEOUT_S:.0f} s")


def create_instructor(settings: Settings) -> tuple[str, str]:
    """A new instructor and the token printed for them once."""
    name = f"demo-{uuid4().hex[:6]}"
    printed = coursecast(settings, "users", "create", name, "--role", "instructor").stdout
    return name, printed.strip().splitlines()[-1]


def make_lecture(path: Path, seconds: int = 20, size: str = "1280x720") -> Path:
    """A lecture-like clip: a moving test pattern with a tone, H.264 + AAC."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(path)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return path


def follow(client: httpx.Client, job_id: str, echo: bool = True) -> list[dict[str, Any]]:
    """Every job update of the SSE stream until the job ends."""
    updates: list[dict[str, Any]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/stream", timeout=JOB_TIMEOUT_S) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.partition(":")[2].strip()
            elif line.startswith("data:") and kind == "job":
                update = orjson.loads(line.partition(":")[2])
                updates.append(update)
                if echo:
                    console.print(
                        f"  {datetime.now():%H:%M:%S}  {update['status']:<10} attempt {update['attempt']}  "
                        f"{float(update['progress_percent']):5.1f}%  {update.get('current_step') or ''}"
                        f"  {lectures_line(update)}"
                    )
            elif line.startswith("data:") and kind == "end":
                break
    return updates


def lectures_line(update: dict[str, Any]) -> str:
    """Each lecture's state in a few characters: `1 published 100% | 2 processing 41% (1/4 tasks)`."""
    return " | ".join(
        f"{lecture['index'] + 1} {lecture['status']} {float(lecture['progress_percent']):.0f}%"
        f" ({lecture['tasks_completed']}/{lecture['tasks']} tasks)"
        for lecture in update.get("lectures") or []
    )


def playable(url: str) -> bool:
    """True when ffprobe, fetching over HTTP like a player, finds a video stream behind `url`."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "compact", url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return probe.returncode == 0 and "codec_type=video" in probe.stdout


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps (headers, body) of each;
    yields its URL and that list."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/coursecast-webhook", received
    finally:
        server.shutdown()
        server.server_close()


def wait_for_webhook(
    received: list[tuple[dict[str, str], bytes]],
    job_id: str,
    secret: str,
    timeout_s: float = WEBHOOK_TIMEOUT_S,
) -> dict[str, Any] | None:
    """The first notification about `job_id` whose signature verifies with `secret`, or None in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for headers, body in list(received):
            notification: dict[str, Any] = orjson.loads(body)
            if notification["data"]["job_id"] == job_id and verify(
                headers[SIGNATURE_HEADER.lower()], body, secret, now=time.time()
            ):
                notification["event_id_header"] = headers[EVENT_ID_HEADER.lower()]
                return notification
        time.sleep(0.2)
    return None


def run_demo(settings: Settings) -> int:
    """The whole demo; returns the process exit status."""
    settings = settings.model_copy(update={"chunk_s": DEMO_CHUNK_S})
    logs = PROJECT_ROOT / ".cache" / "demo"
    console.print(
        "[bold]1. starting projector, encoder, conductor, watchdog, notifier and api[/bold]"
        " (logs in .cache/demo/)"
    )
    with running_services(settings, logs), webhook_receiver() as (hook_url, received):
        user, token = create_instructor(settings)
        console.print(f"[bold]2. created instructor[/bold] {user} (token shown once, stored as a hash)")
        lectures = [
            ("1강 배열.mp4", make_lecture(logs / "lecture-01.mp4", seconds=20)),
            ("2강 연결 리스트.mp4", make_lecture(logs / "lecture-02.mp4", seconds=60, size="854x480")),
        ]
        client = httpx.Client(
            base_url=api_base(settings), headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        hook = client.post("/v1/webhooks", json={"url": hook_url, "events": ["course.completed"]})
        if hook.status_code != 201:
            console.print(f"[red]webhook refused: {hook.status_code} {hook.text}[/red]")
            return 1
        console.print(f"   webhook registered: {hook_url} (signing secret shown once)")
        with ExitStack() as files:
            videos = [
                ("videos", (name, files.enter_context(path.open("rb")), "video/mp4"))
                for name, path in lectures
            ]
            response = client.post(
                "/v1/courses",
                data={"name": "자료구조 입문 (demo)", "curriculum": "CS-101"},
                files=videos,
                headers={"Idempotency-Key": f"demo-{user}"},
            )
        if response.status_code != 202:
            console.print(f"[red]upload refused: {response.status_code} {response.text}[/red]")
            return 1
        job_id = str(response.json()["job_id"])
        console.print(
            "[bold]3. uploaded[/bold] a course of 2 lectures (20 s 720p; 60 s 480p, cut into "
            f"{DEMO_CHUNK_S} s chunks) → 202 Accepted, {response.headers['location']}"
        )

        console.print(
            "[bold]4. following the job[/bold] (Server-Sent Events; lectures: state, percent, tasks)"
        )
        follow(client, job_id)
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] != "completed":
            console.print(
                f"[red]job ended {job['status']}: {job.get('error_type')}: {job.get('error_message')}[/red]"
            )
            return 1
        console.print(f"[bold green]5. completed[/bold green] at {job['completed_at']}")
        plays = True
        for video, lecture in zip(job["outputs"]["videos"], job["lectures"], strict=True):
            master = video["master_playlist_url"]
            playing = playable(master)
            plays = plays and playing
            console.print(
                f"   lecture {lecture['index'] + 1} {lecture['title']!r}: {video['duration_s']:.1f} s, "
                f"{lecture['tasks']} task(s), {'playable' if playing else 'NOT playable'} (ffprobe over HTTP)"
            )
            console.print(f"     master playlist: {master}")
            console.print(f"     renditions: {', '.join(r['name'] for r in video['renditions'])}")
            console.print(f"     thumbnail: {video['thumbnail_url']}")
        notification = wait_for_webhook(received, job_id, hook.json()["secret"])
        if notification is None:
            console.print(f"[red]no signed course.completed webhook within {WEBHOOK_TIMEOUT_S:g} s[/red]")
            return 1
        console.print(
            f"[bold green]6. webhook[/bold green] {notification['type']} received, signature verified"
            f" (CourseCast-Event-Id {notification['event_id_header']})"
        )
        course = client.get(f"/v1/courses/{job_id}").json()
        console.print(
            f"   catalogue: {course['name']} ({course['curriculum']}), published {course['published_at']}"
        )
        for lecture in course["lectures"]:
            number, title = lecture["index"] + 1, lecture["title"]
            console.print(f"     {number}. {title}  {lecture['master_playlist_url']}")

    console.print("[bold]7. checking the status table against the log[/bold]")
    rebuild = coursecast(settings, "replay", "--rebuild", check=False)
    console.print(rebuild.stdout.strip().splitlines()[-1] if rebuild.stdout.strip() else rebuild.stderr)
    return 0 if plays and rebuild.returncode == 0 else 1
