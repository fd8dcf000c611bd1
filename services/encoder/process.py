"""ffmpeg as a subprocess: its own process group, a deadline, a stop check, and progress on stdout.

G2: however an encode ends — finished, past the time limit, canceled, or its claim lost — the whole
process group is killed and reaped before this module returns, so no ffmpeg outlives its attempt.

G5: when the input is streamed from storage, a read that failed in transport (reported by ffmpeg as
`<url>: <error>`) ends the run with SourceReadError even when ffmpeg exits 0: it would otherwise
take the failed read for the end of the input and write a shortened video. The input's URL (a
presigned credential) is never logged: it is replaced by the input's name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO

from services.core.mediaprobe import MediaInput, die_with_parent, read_failure
from services.encoder.errors import (
    AttemptError,
    PermanentError,
    SourceReadError,
    TimeLimitError,
    ffmpeg_killed,
    signal_name,
    without_paths,
)
from services.encoder.progress import ProgressParser

log = logging.getLogger("coursecast.encoder")

WAIT_STEP_S = 0.2
_STDERR_TAIL = 4_000


def run_ffmpeg(
    argv: Sequence[str],
    *,
    deadline: float,
    time_limit_s: int,
    should_stop: Callable[[], AttemptError | None],
    parser: ProgressParser | None = None,
    on_progress: Callable[[float], None] | None = None,
    what: str = "video",
    source: MediaInput | None = None,
) -> None:
    """Run ffmpeg to completion; raise TimeLimitError past `deadline` (monotonic), the error
    `should_stop` returns when it returns one, PermanentError if ffmpeg refused its input, a
    transient MediaToolKilledError if a signal killed it (the OOM killer's SIGKILL is no verdict on
    the file, G5), or SourceReadError if reading the remote input `source` failed (see above)."""
    with tempfile.TemporaryFile() as stderr:
        # start_new_session: ffmpeg leads a process group of its own, so killpg reaches any child too.
        # die_with_parent: even a kill -9 of this encoder leaves no ffmpeg behind (G2).
        process = subprocess.Popen(
            die_with_parent(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        started = time.monotonic()
        log.info("ffmpeg started", extra={"event": "ffmpeg_started", "pid": process.pid, "what": what})
        reader = threading.Thread(target=_read_progress, args=(process, parser, on_progress), daemon=True)
        reader.start()
        stop_error: AttemptError | None = None
        try:
            while process.poll() is None:
                if time.monotonic() >= deadline:
                    stop_error = TimeLimitError(
                        f"The encode took longer than the time limit of {_duration(time_limit_s)} and "
                        "was stopped. Very long or very high-resolution videos may need to be split, "
                        "or an administrator can raise COURSECAST_ENCODE_TIME_LIMIT_S."
                    )
                else:
                    stop_error = should_stop()
                if stop_error is not None:
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(WAIT_STEP_S)
        finally:
            if process.poll() is None:
                kill_group(process)
            reader.join(5)
        if stop_error is not None:
            log.info("ffmpeg stopped", extra={"event": "ffmpeg_stopped", "reason": stop_error.error_type})
            raise stop_error
        elapsed = round(time.monotonic() - started, 3)
        log.info("ffmpeg finished", extra={"event": "ffmpeg_finished", "what": what, "seconds": elapsed})
        failure = _read_failure(stderr, source, failed=process.returncode != 0)
        if failure is not None and source is not None:
            log.warning(
                "ffmpeg could not read its input",
                extra={"event": "ffmpeg_read_failed", "what": what, "error": failure},
            )
            raise SourceReadError(what, failure)
        if process.returncode < 0:
            log.warning(
                "ffmpeg killed by %s",
                signal_name(-process.returncode),
                extra={"event": "ffmpeg_killed", "what": what, "returncode": process.returncode},
            )
            raise ffmpeg_killed(what, process.returncode)
        if process.returncode != 0:
            stderr.seek(0)
            tail = stderr.read()[-_STDERR_TAIL:].decode("utf-8", "replace").strip().splitlines()
            if source is not None:
                tail = [source.hide(line) for line in tail]
            # The whole tail goes to the log; the job's message gets ffmpeg's last line without the
            # worker's paths (G5: a reason a person can act on, no internals).
            log.warning("ffmpeg failed", extra={"event": "ffmpeg_failed", "stderr": tail[-5:]})
            last = without_paths(tail[-1]) if tail else ""
            reported = f" ffmpeg reported “{last}”." if last else ""
            raise PermanentError(
                f"The {what} could not be converted.{reported} The file may be damaged or truncated; "
                "please export it again and upload it.",
                "invalid_media",
                detail="\n".join(tail[-5:]),
            )


def _read_failure(stderr: IO[bytes], source: MediaInput | None, *, failed: bool) -> str | None:
    """The transport error ffmpeg reported for a remote `source` in its stderr, or None."""
    if source is None or not source.remote:
        return None
    stderr.seek(0)
    lines = (raw.decode("utf-8", "replace") for raw in stderr)
    return read_failure(lines, source, failed=failed)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ffmpeg's whole process group and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read_progress(
    process: subprocess.Popen[bytes],
    parser: ProgressParser | None,
    on_progress: Callable[[float], None] | None,
) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        if parser is None:
            continue
        fraction = parser.feed(raw.decode("ascii", "replace"))
        if fraction is not None and on_progress is not None:
            on_progress(fraction)


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"
