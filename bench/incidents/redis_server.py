"""A private Debian `redis-server` for one bench run: 127.0.0.1, a free port, its own folder under
.cache/incidents/, no persistence, stopped (and its folder removed) when the block ends."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from services.core.settings import PROJECT_ROOT

CACHE = PROJECT_ROOT / ".cache" / "incidents"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def redis_server(tag: str, timeout_s: float = 30.0) -> Iterator[str]:
    """Start redis-server, wait until it answers PING, yield its URL; stop exactly that process after."""
    folder = CACHE / f"redis-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (folder / "redis.log").open("ab")
    process = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_ping(url, process, timeout_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ping(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    client = redis.Redis.from_url(url, socket_timeout=1)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
    finally:
        client.close()
    raise RuntimeError(f"redis-server on {url} did not answer within {timeout_s} s")


def is_installed() -> bool:
    """Whether Debian's redis-server is on PATH."""
    return shutil.which("redis-server") is not None
