"""The JSON log lines: bound context on every line of its context, the call's fields over it."""

from __future__ import annotations

import logging
import threading
import warnings

import orjson
import pytest

from services.core import logs


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord(
        {"name": "coursecast.test", "levelno": 20, "levelname": "INFO", "msg": message}
    )
    made.__dict__.update(extra)
    return made


def line(message: str, **extra: object) -> dict[str, object]:
    parsed = orjson.loads(logs.JsonFormatter().format(record(message, **extra)))
    assert isinstance(parsed, dict)
    return parsed


def test_a_line_has_the_bound_context_and_the_calls_fields_win() -> None:
    assert "request_id" not in line("before")
    with logs.bound(request_id="r-1", job_id="j-1"):
        inside = line("inside", job_id="j-2", event="claimed")
        with logs.bound(attempt=2):
            nested = line("nested")
    after = line("after")
    assert inside == {**inside, "request_id": "r-1", "job_id": "j-2", "event": "claimed", "message": "inside"}
    assert (nested["request_id"], nested["job_id"], nested["attempt"]) == ("r-1", "j-1", 2)
    assert "request_id" not in after
    assert "attempt" not in after
    assert {"timestamp", "level", "logger", "message"} <= after.keys()


def test_a_thread_does_not_see_another_threads_context() -> None:
    seen: list[dict[str, object]] = []
    with logs.bound(request_id="main-only"):
        worker = threading.Thread(target=lambda: seen.append(line("in a thread")))
        worker.start()
        worker.join()
    assert "request_id" not in seen[0]


def test_configure_sets_the_level_and_routes_warnings_through_the_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    kept_handlers, kept_level = root.handlers[:], root.level
    try:
        logs.configure("WARNING")
        logging.getLogger("coursecast.test").info("not shown")
        logging.getLogger("coursecast.test").warning("shown", extra={"job_id": "j-3"})
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a library's deprecation", DeprecationWarning, stacklevel=1)
        lines = [orjson.loads(text) for text in capsys.readouterr().err.splitlines()]
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = kept_handlers, kept_level
    assert [(entry["logger"], entry["level"]) for entry in lines] == [
        ("coursecast.test", "WARNING"),
        ("py.warnings", "WARNING"),
    ]
    assert lines[0]["job_id"] == "j-3"
    assert "a library's deprecation" in lines[1]["message"]
