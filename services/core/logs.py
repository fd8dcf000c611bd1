"""Structured logs: one JSON object per line on stderr, so every line can be searched by job_id.

Fields come from three places: the record itself (timestamp, level, logger, message), the `extra=` of
the call (job_id, attempt, event, ...), and the context of the code running (`bound(...)`: the api's
request_id for every line a request writes, wherever in the call stack it is logged).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# Fields added to every line logged in this context (a thread, an asyncio task and what it awaits).
_context: ContextVar[Mapping[str, Any]] = ContextVar("coursecast_log_context", default=MappingProxyType({}))


class JsonFormatter(logging.Formatter):
    """Timestamp, level, logger, message, the bound context, and any `extra=` fields of the call."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get())
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def json_handler() -> logging.Handler:
    """A handler writing JSON lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def configure(level: str = "INFO") -> None:
    """Send every logger (ours and our libraries') to stderr as JSON lines, from `level` up."""
    root = logging.getLogger()
    root.handlers[:] = [json_handler()]
    root.setLevel(level)
    # Python's warnings (a library's DeprecationWarning) as log records too: stderr stays JSON only.
    logging.captureWarnings(True)


def bind(**fields: Any) -> None:
    """Add `fields` to every line logged from now on in this context (e.g. one request's task)."""
    _context.set({**_context.get(), **fields})


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged in this context while the block runs."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def context() -> Mapping[str, Any]:
    """The fields bound in this context."""
    return _context.get()
