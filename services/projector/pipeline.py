"""Overlap reading the log with writing Postgres, without giving up order or offsets-after-commit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from services.projector.store import BatchOutcome, JobStore, LogRecord

Committed = Callable[[BatchOutcome, dict[int, int]], None]
"""Called on the reading thread once a batch's Postgres transaction has committed."""


class OrderedBatchWriter:
    """Applies batches on one writer thread, strictly in order, with at most one batch in flight.

    While Postgres applies batch N, the caller consumes and decodes batch N+1 (the server works on
    another core, and psycopg releases the GIL while it waits). `on_committed` runs for batch N on the
    caller's thread before batch N+1 is submitted, so whatever it does — a Kafka commit — still
    happens only after the Postgres commit (G3).
    """

    def __init__(self, store: JobStore, on_committed: Committed) -> None:
        self._store = store
        self._on_committed = on_committed
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projector-writer")
        self._pending: tuple[Future[BatchOutcome], dict[int, int]] | None = None

    def submit(self, records: Sequence[LogRecord], next_offsets: dict[int, int]) -> None:
        """Finish the batch in flight, then start applying this one."""
        self.finish()
        future = self._executor.submit(self._store.apply_batch, records, next_offsets)
        self._pending = (future, next_offsets)

    def finish(self) -> None:
        """Wait for the batch in flight (re-raising its error) and report it committed."""
        if self._pending is None:
            return
        future, next_offsets = self._pending
        self._pending = None
        self._on_committed(future.result(), next_offsets)

    def close(self) -> None:
        """Finish the batch in flight and stop the writer thread."""
        try:
            self.finish()
        finally:
            self._executor.shutdown(wait=True)
