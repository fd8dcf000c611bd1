"""The heartbeat of a running attempt: a thread that renews the claim's lease and publishes JobProgress.

G2: a running attempt is never silent: JobProgress at least every heartbeat interval, the lease
renewed with it (G1). A renewal that finds the claim someone else's sets `fenced`, and the attempt
stops its ffmpeg and publishes nothing. Everything else — a Postgres restart, a terminated
connection, a broker away — is logged and tried again a second later on a fresh connection: the
thread outlives every blip and stops only when the attempt is done or fenced.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

from services.core.payloads import JobProgress
from services.core.settings import Settings
from services.encoder import metrics
from services.encoder.claims import ClaimStore
from services.encoder.progress import Step, overall_percent
from services.encoder.publisher import AttemptEvents

log = logging.getLogger("coursecast.encoder")

# Progress is looked at this often, and reported when it moved this much (or the step changed).
PROGRESS_CHECK_S = 1.0
PROGRESS_REPORT_PERCENT = 5.0


class Progress:
    """Where the attempt is (step, video, percent): written by the encode, read by the heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._step = Step.PROBING
        self._video_index = 0
        self._percent = 0.0

    def set_step(self, position: int, count: int, step: Step, fraction: float) -> None:
        """Video `position` of `count` is `fraction` through `step`."""
        with self._lock:
            self._step, self._video_index = step, position
            self._percent = overall_percent(position, count, step, fraction)

    def snapshot(self) -> tuple[float, Step, JobProgress]:
        """(percent, step, JobProgress data), read together."""
        with self._lock:
            data = JobProgress(percent=self._percent, step=self._step, video_index=self._video_index)
            return self._percent, self._step, data


class Heartbeat:
    """The heartbeat thread of one attempt; `beating()` runs it around the attempt's work."""

    def __init__(
        self,
        settings: Settings,
        events: AttemptEvents,
        progress: Progress,
        claims: ClaimStore,
        open_claims: Callable[[], ClaimStore] | None,
        fenced: threading.Event,
    ) -> None:
        self.settings = settings
        self.events = events
        self.progress = progress
        # The attempt's own claim connection, used when no connection of its own can be opened.
        self.claims = claims
        self._open_claims = open_claims
        self._fenced = fenced
        self._done = threading.Event()
        self._log_extra = events.log_extra

    @contextlib.contextmanager
    def beating(self) -> Iterator[None]:
        """Beat while the block runs; the thread has stopped when the block is left."""
        thread = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._done.set()
            thread.join()

    def _heartbeat(self) -> None:
        """G2: JobProgress at least every heartbeat interval, and the lease renewed with it (G1).

        Between heartbeats, progress is also reported as soon as it moves by PROGRESS_REPORT_PERCENT
        or the step changes, so a person watching sees the encode advance, not only a pulse.

        The thread outlives any error (a Postgres restart, a terminated connection, a broker away):
        it logs it, reconnects on its own connection, and tries again at the next check, a second
        later. It stops only when the attempt is done or the lease turns out to be someone else's.
        """
        interval = min(self.settings.heartbeat_interval_s, max(1.0, self.settings.encoder_lease_s / 3))
        last_sent, last_percent, last_step = time.monotonic(), 0.0, self.progress.snapshot()[1]
        lease: ClaimStore | None = None
        retry_now = False
        try:
            while not self._done.wait(min(interval, PROGRESS_CHECK_S)):
                percent, step, data = self.progress.snapshot()
                due = retry_now or time.monotonic() - last_sent >= interval
                moved = percent - last_percent >= PROGRESS_REPORT_PERCENT or step != last_step
                if not (due or moved):
                    continue
                last_sent, last_percent, last_step = time.monotonic(), percent, step
                retry_now = False
                try:
                    if lease is None:
                        lease = self._open_claims() if self._open_claims is not None else self.claims
                    if not lease.renew(self.events.job_id, self.events.attempt):
                        log.warning("lease lost; stopping", extra=self._log_extra)
                        self._fenced.set()
                        return
                except Exception:
                    log.warning("lease not renewed; reconnecting", exc_info=True, extra=self._log_extra)
                    retry_now = True
                    if lease is not None and lease is not self.claims:
                        with contextlib.suppress(Exception):
                            lease.close()
                    lease = None
                try:
                    self.events.publish(data)
                except Exception:
                    log.warning("heartbeat not acknowledged", exc_info=True, extra=self._log_extra)
                    retry_now = True
                else:
                    metrics.HEARTBEATS.inc()
                    metrics.LAST_HEARTBEAT.set_to_current_time()
        finally:
            if lease is not None and lease is not self.claims:
                with contextlib.suppress(Exception):
                    lease.close()
