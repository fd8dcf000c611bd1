"""Process lifecycle for long-running services: SIGTERM and SIGINT ask the main loop to stop."""

from __future__ import annotations

import gc
import signal
import threading


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, for a loop that finishes its batch and exits cleanly."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def tune_gc_for_batches() -> None:
    """Collect garbage for a process that handles large batches of short-lived objects.

    A batch allocates tens of thousands of objects that die with it; the default thresholds would
    run full collections over the long-lived heap many times a second. Freezing what exists now and
    raising the first threshold keeps collection cheap without turning it off.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
