"""Run the real services of a test as `coursecast <service>` subprocesses, and always stop them.

`running(settings, log_dir)` yields a `Services` runner: each `projector()`, `encoder(name)`,
`watchdog()`, `notifier()` or `api()` call starts one process on the test's own settings; when the
block ends, every process still running is resumed (if a test froze it with SIGSTOP), sent SIGTERM,
waited for with a deadline and killed past it. Exit codes are kept in start order in `Services.codes`,
so a test can assert that every service it left running stopped cleanly (exit 0).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.core.settings import PROJECT_ROOT, Settings, environment

# The api's JSON log lines, kept for reading after a failure.
API_LOG_DIR = PROJECT_ROOT / ".cache" / "test-logs"

Process = subprocess.Popen[bytes]


def start_service(service: str, settings: Settings, log_path: Path | None, *args: str, **env: str) -> Process:
    """A `coursecast <service>` process for these settings; stderr (its JSON log) goes to `log_path`."""
    if log_path is None:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", service, *args],
            cwd=PROJECT_ROOT,
            env=environment(settings, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", service, *args],
            cwd=PROJECT_ROOT,
            env=environment(settings, **env),
            # The watchdog (a faust worker) logs to stdout as well: keep both in its file.
            stdout=log_file if service == "watchdog" else subprocess.DEVNULL,
            stderr=log_file,
        )


def start_projector(settings: Settings, **env: str) -> Process:
    """A `coursecast projector` process for these settings."""
    return start_service("projector", settings, None, **env)


def start_encoder(settings: Settings, log_path: Path, **env: str) -> Process:
    """A `coursecast encoder` process for these settings; its JSON log lines go to `log_path`."""
    return start_service("encoder", settings, log_path, **env)


def start_conductor(settings: Settings, log_path: Path, **env: str) -> Process:
    """A `coursecast conductor` process for these settings; its JSON log lines go to `log_path`."""
    return start_service("conductor", settings, log_path, **env)


def start_watchdog(settings: Settings, log_path: Path, **env: str) -> Process:
    """A `coursecast watchdog` process for these settings; stdout and stderr go to `log_path`."""
    return start_service("watchdog", settings, log_path, **env)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_api(settings: Settings, **env: str) -> tuple[Process, str]:
    """A `coursecast api` process for these settings, answering /healthz; returns it and its base URL."""
    port = free_port()
    API_LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = API_LOG_DIR / f"api-{port}.log"
    process = start_service("api", settings, log_path, "--port", str(port), **env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"api exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop(process)
    raise AssertionError("api did not answer /healthz within 30 s")


def stop(process: Process, timeout_s: float = 30.0) -> int:
    """SIGCONT (in case a test froze it), SIGTERM, then wait; SIGKILL past the deadline. The exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


class Services:
    """The service processes of one test; see `running`."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.processes: list[Process] = []  # started and not yet stopped by the test, in start order
        self.codes: list[int] = []  # exit codes of `processes` once the block has ended
        # The conductor the encoders need to finish a course (docs/fan-out.md), started with the
        # first encoder unless the test starts its own; stopped last.
        self.background: Process | None = None

    def log(self, name: str) -> Path:
        """The log file of the service started under `name`."""
        return self.log_dir / f"{name}.log"

    def _keep(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def projector(self, **env: str) -> Process:
        """Start a projector."""
        return self._keep(start_projector(self.settings, **env))

    def encoder(self, name: str = "encoder", **env: str) -> Process:
        """Start an encoder logging to `log(name)` (and the conductor, if none runs yet)."""
        if self.background is None or self.background.poll() is not None:
            self.background = start_conductor(self.settings, self.log("conductor"))
        return self._keep(start_encoder(self.settings, self.log(name), **env))

    def conductor(self, name: str = "conductor", **env: str) -> Process:
        """Start a conductor of the test's own, logging to `log(name)`."""
        return self._keep(start_conductor(self.settings, self.log(name), **env))

    def watchdog(self, name: str = "watchdog", **env: str) -> Process:
        """Start a watchdog logging to `log(name)`."""
        return self._keep(start_watchdog(self.settings, self.log(name), **env))

    def notifier(self, name: str = "notifier", **env: str) -> Process:
        """Start a notifier (webhook delivery) logging to `log(name)`."""
        return self._keep(start_service("notifier", self.settings, self.log(name), **env))

    def api(self, **env: str) -> str:
        """Start an api; returns its base URL once it answers /healthz."""
        process, base = start_api(self.settings, **env)
        self._keep(process)
        return base

    def stop(self, process: Process) -> int:
        """Stop `process` now (SIGTERM, deadline, SIGKILL); returns its exit code."""
        self.processes.remove(process)
        return stop(process)

    def kill(self, process: Process) -> None:
        """kill -9 `process` and reap it; it takes no further part (no exit code is kept)."""
        self.processes.remove(process)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> list[int]:
        """Stop every process still running, in start order; returns (and keeps) their exit codes."""
        self.codes = [stop(process) for process in self.processes]
        self.processes = []
        if self.background is not None:
            stop(self.background)
            self.background = None
        return self.codes


@contextmanager
def running(settings: Settings, log_dir: Path) -> Iterator[Services]:
    """A `Services` runner whose processes are all stopped when the block ends, however it ends."""
    services = Services(settings, log_dir)
    try:
        yield services
    finally:
        services.stop_all()


def wait_until(
    what: str,
    condition: Callable[[], object],
    timeout_s: float,
    processes: Iterable[Process] = (),
    interval_s: float = 0.25,
) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout_s`, or as soon as one of the
    `processes` the wait relies on has exited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for process in processes:
            assert process.poll() is None, f"a service exited early with {process.returncode}"
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(interval_s)
