"""Detached server processes that the stack starts, recognises again later, and stops."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from devtools.stack.model import INSTALL_HINT, StackError

# Children started by this Python process, kept so they are reaped (no zombies) when stopped here.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True, slots=True)
class ProcessRecord:
    """What a pid file holds: enough to tell our process from an unrelated one that reused its pid."""

    name: str
    pid: int
    # The kernel's start time of the process (/proc/<pid>/stat field 22): a reused pid has another.
    start_ticks: int
    # A string our process's command line contains, e.g. its config path.
    marker: str
    log: str


def _proc_start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its exit status remains
        return None
    return int(fields[19])


def _proc_cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def describe(record: ProcessRecord | None) -> str:
    """What /proc says of a recorded process, for an error message: pid, state, start time, command."""
    if record is None:
        return "no pid file"
    try:
        stat = Path(f"/proc/{record.pid}/stat").read_text()
    except OSError:
        return f"pid {record.pid}: no such process"
    fields = stat[stat.rindex(")") + 2 :].split()
    cmdline = _proc_cmdline(record.pid)
    return (
        f"pid {record.pid}: state {fields[0]}, start {fields[19]} (recorded {record.start_ticks}), "
        f"marker {'in' if record.marker in cmdline else 'NOT in'} its command line ({len(cmdline)} chars)"
    )


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]


def is_running(record: ProcessRecord) -> bool:
    """True only if the pid is alive and is still the very process the record describes."""
    _reap(record.pid)
    return _proc_start_ticks(record.pid) == record.start_ticks and record.marker in _proc_cmdline(record.pid)


def spawn_detached(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    pid_file: Path,
    marker: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessRecord:
    """Start argv in its own session (it outlives us and our terminal), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    _children[child.pid] = child
    ticks = _proc_start_ticks(child.pid)
    if ticks is None:
        raise StackError(f"{name} exited immediately; see {log_path}")
    record = ProcessRecord(name=name, pid=child.pid, start_ticks=ticks, marker=marker, log=str(log_path))
    write_record(pid_file, record)
    return record


def write_record(pid_file: Path, record: ProcessRecord) -> None:
    """Write the pid file atomically: a reader never sees half a record."""
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(pid_file)


def read_record(pid_file: Path) -> ProcessRecord | None:
    """The record in pid_file, or None if there is none (or it is unreadable, e.g. from an old layout)."""
    try:
        return ProcessRecord(**json.loads(pid_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def stop(record: ProcessRecord, *, grace_s: float, kill: bool = False) -> str:
    """SIGTERM our process, SIGKILL it if still alive after grace_s; never signals a stranger's pid.

    kill=True sends SIGKILL at once: the process gets no chance to shut down cleanly (a crash).
    """
    if not is_running(record):
        return "not running"
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
        if wait_for(lambda: not is_running(record), timeout_s=10.0, interval_s=0.05):
            return "killed (SIGKILL)"
        raise StackError(f"{record.name} (pid {record.pid}) survived SIGKILL")
    # The process leads its own session and group (start_new_session), so the group holds only it
    # and anything it forked; signalling the group leaves no orphan behind.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    if wait_for(lambda: not is_running(record), timeout_s=grace_s, interval_s=0.1):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)
    if wait_for(lambda: not is_running(record), timeout_s=10.0, interval_s=0.1):
        return f"killed (no exit within {grace_s:.0f} s of SIGTERM)"
    raise StackError(f"{record.name} (pid {record.pid}) survived SIGKILL")


def stop_pid_file(pid_file: Path, *, grace_s: float) -> str | None:
    """Stop the process a pid file names, then remove the file; None if there was no pid file."""
    record = read_record(pid_file)
    if record is None:
        pid_file.unlink(missing_ok=True)
        return None
    outcome = stop(record, grace_s=grace_s)
    pid_file.unlink(missing_ok=True)
    return outcome


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll check until it returns True (-> True) or timeout_s passes (-> False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_checked(argv: Sequence[str], *, what: str, timeout_s: float = 120.0) -> str:
    """Run a short command to completion; its output is returned, or raised with the failure."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError as exc:
        raise StackError(f"{what}: {argv[0]} not found ({INSTALL_HINT})") from exc
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what}: no result within {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise StackError(f"{what} failed (exit {done.returncode}):\n{output}")
    return done.stdout
