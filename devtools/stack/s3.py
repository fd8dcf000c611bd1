"""An S3-compatible endpoint on loopback (moto's server), reached through boto3 like AWS S3 or MinIO."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devtools.stack import processes
from devtools.stack.layout import StackLayout
from devtools.stack.model import LOOPBACK, ComponentStatus, Echo, StackError
from services.core import storage
from services.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HEALTH_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0


def _endpoint(settings: Settings) -> tuple[str, int] | None:
    """(host, port) of the local endpoint, or None when s3_endpoint_url is unset (real AWS)."""
    if settings.s3_endpoint_url is None:
        return None
    url = urlsplit(settings.s3_endpoint_url)
    if url.hostname not in (LOOPBACK, "localhost") or url.port is None:
        raise StackError(
            f"the local stack serves S3 on {LOOPBACK}:<port> only, but COURSECAST_S3_ENDPOINT_URL is "
            f"{settings.s3_endpoint_url!r}"
        )
    return LOOPBACK, url.port


def _pid_file(layout: StackLayout) -> Path:
    return layout.run_dir / "s3.pid"


def _log_file(layout: StackLayout) -> Path:
    return layout.logs_dir / "s3.log"


def _argv(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]


def _marker(host: str, port: int) -> str:
    # The command line names the module and the port: another moto on another port is not ours.
    return " ".join(_argv(host, port)[1:])


def client(settings: Settings) -> S3Client:
    """The services' S3 client, but failing fast instead of retrying: a health check wants an answer."""
    return storage.s3_client(settings, Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))


def running(layout: StackLayout) -> bool:
    """True if the moto server that `up` started is alive."""
    record = processes.read_record(_pid_file(layout))
    return record is not None and processes.is_running(record)


def preflight(settings: Settings, layout: StackLayout) -> None:
    """Refuse to go on if the endpoint's port is taken by anything but our moto server."""
    endpoint = _endpoint(settings)
    if endpoint is not None and not running(layout) and processes.port_in_use(*endpoint):
        raise StackError(
            f"port {endpoint[1]} (S3) is in use by a process the stack did not start; stop it, or point "
            f"COURSECAST_S3_ENDPOINT_URL at another port"
        )


def start(settings: Settings, layout: StackLayout, echo: Echo) -> bool:
    """Start moto's server unless ours runs; True if started now. In-memory: a restart empties it."""
    endpoint = _endpoint(settings)
    if endpoint is None:
        echo("s3: COURSECAST_S3_ENDPOINT_URL is unset (AWS S3); nothing to start")
        return False
    host, port = endpoint
    if running(layout):
        echo(f"s3: already running at {settings.s3_endpoint_url}")
        return False
    preflight(settings, layout)
    processes.spawn_detached(
        "s3 (moto)",
        _argv(host, port),
        log_path=_log_file(layout),
        pid_file=_pid_file(layout),
        marker=_marker(host, port),
        cwd=layout.root,
    )
    echo(f"s3: started moto at {settings.s3_endpoint_url}")
    return True


def ensure_bucket(settings: Settings) -> bool:
    """Create settings.s3_bucket if missing and let players (web pages too) read published HLS; True if
    created now."""
    s3 = client(settings)
    created = storage.ensure_bucket(s3, settings.s3_bucket, settings.s3_region)
    # Locally the bucket itself is the CDN origin: published files are world-readable, staging is not.
    storage.allow_public_read(s3, settings.s3_bucket, storage.PUBLISHED_PREFIX)
    # ...and by the dashboard's player, a page of another origin (the api's).
    storage.allow_cross_origin_reads(s3, settings.s3_bucket)
    return created


def wait_healthy(settings: Settings, layout: StackLayout, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """Wait for ListBuckets to succeed, then ensure the bucket; True if the bucket was created."""
    if settings.s3_endpoint_url is None:
        return False
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ensure_bucket(settings)
        except (BotoCoreError, ClientError) as exc:
            error = str(exc)
        record = processes.read_record(_pid_file(layout))
        if record is not None and not processes.is_running(record):
            log = _log_file(layout)
            raise StackError(f"s3 (moto) exited during startup; see {log}\n{processes.log_tail(log)}")
        if time.monotonic() >= deadline:
            raise StackError(f"s3 did not answer within {timeout_s:.0f} s ({error}); see {_log_file(layout)}")
        time.sleep(0.3)


def stop(layout: StackLayout, echo: Echo) -> None:
    """Stop the moto server that `up` started (verified by pid, start time and command line)."""
    outcome = processes.stop_pid_file(_pid_file(layout), grace_s=STOP_GRACE_S)
    if outcome is not None:
        echo(f"s3: {outcome}")


def status(settings: Settings, layout: StackLayout) -> ComponentStatus:
    """Whether ListBuckets succeeds and the bucket exists."""
    if settings.s3_endpoint_url is None:
        return ComponentStatus("s3", "AWS", True, "COURSECAST_S3_ENDPOINT_URL unset: not part of the stack")
    try:
        names = {b["Name"] for b in client(settings).list_buckets().get("Buckets", []) if "Name" in b}
    except (BotoCoreError, ClientError) as exc:
        detail = (
            "not running (python -m devtools stack up)"
            if not running(layout)
            else f"ListBuckets failed: {exc}"
        )
        return ComponentStatus("s3", settings.s3_endpoint_url, False, detail)
    owner = "moto" if running(layout) else "not started by the stack"
    if settings.s3_bucket not in names:
        return ComponentStatus(
            "s3", settings.s3_endpoint_url, False, f"{owner}; bucket {settings.s3_bucket} missing"
        )
    return ComponentStatus("s3", settings.s3_endpoint_url, True, f"{owner}, bucket {settings.s3_bucket}")
