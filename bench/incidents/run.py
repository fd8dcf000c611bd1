"""`python -m bench incidents`: both production incidents, on the Celery + Redis replica and on
CourseCast, printed side by side (a Markdown table, then one JSON line for docs/reliability.md).

Installs what the replica needs when it is missing (bench/incidents/setup.sh: Debian's redis-server,
the [incidents] extra). Exit status 1 if CourseCast shows either incident; the replica is expected to.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.incidents.figures import RedeliveryFigures, StoppedEncodeFigures
from bench.report import Check, Section, Table, render_table
from services.core.settings import PROJECT_ROOT, Settings
from tests.support.staging import make_clip

Row = tuple[str, Callable[[Any], str]]


def ensure_installed() -> None:
    """Run the bench's setup script when redis-server or celery is missing."""
    try:
        importlib.import_module("celery")
        have_celery = True
    except ModuleNotFoundError:
        have_celery = False
    if not have_celery or shutil.which("redis-server") is None:
        subprocess.run(["bash", str(PROJECT_ROOT / "bench" / "incidents" / "setup.sh")], check=True)
        importlib.invalidate_caches()


def clips(workdir: Path) -> dict[str, Path]:
    """The clips of the run, generated now (testsrc2 + sine, 320x180): the job a redelivery hits, the
    long encode that makes it wait, and an encode longer than the hard time limit."""
    return {
        "short": make_clip(workdir / "short.mp4", seconds=2),
        "blocker": make_clip(workdir / "blocker.mp4", seconds=12),
        "long": make_clip(workdir / "long.mp4", seconds=20),
    }


def run(settings: Settings, workdir: Path) -> dict[str, Any]:
    """Both incidents on both sides; the figures of each."""
    from bench.incidents import coursecast_side, replica_side  # the replica side needs celery

    made = clips(workdir)
    return {
        "redelivery": {
            "replica": replica_side.redelivery(settings, workdir, made["blocker"], made["short"]),
            "coursecast": coursecast_side.redelivery(settings, workdir, made["long"]),
        },
        "time_limit": {
            "replica": replica_side.time_limit(settings, workdir, made["long"]),
            "coursecast": coursecast_side.time_limit(settings, workdir, made["long"]),
        },
        "worker_killed": {
            "replica": replica_side.worker_killed(settings, workdir, made["long"]),
            "coursecast": coursecast_side.worker_killed(settings, workdir, made["long"]),
        },
    }


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _text(value: str | None, width: int = 48) -> str:
    if not value:
        return "—"
    return value if len(value) <= width else value[: width - 1] + "…"


REDELIVERY_ROWS: list[Row] = [
    ("deliveries of the job's message to a worker", lambda f: str(f.deliveries)),
    ("times the job's work started", lambda f: str(f.runs)),
    ("ffmpeg encodes of the job's video", lambda f: str(f.encodes)),
    ("times the job was marked completed", lambda f: str(f.completions)),
    ("final status", lambda f: f.final_status),
    ("completed_at set", lambda f: _yes(f.completed_at_set)),
    ("completed_at still the first completion's", lambda f: _yes(f.completed_at_kept)),
    ("final error on the job", lambda f: _text(f.final_error)),
    ("**completed job overwritten**", lambda f: f"**{_yes(f.corrupted)}**"),
    ("scenario wall time", lambda f: f"{f.duration_s:.1f} s"),
]

STOPPED_ROWS: list[Row] = [
    ("what stopped the encode", lambda f: f.cause),
    ("final status", lambda f: f.final_status),
    ("error_type", lambda f: f.error_type or "—"),
    ("error message on the job", lambda f: _text(f.error_message)),
    (
        "seconds after the stop with no reason on the job",
        lambda f: f"≥ {f.unexplained_s:.1f} (still processing)" if f.stuck else f"{f.unexplained_s:.1f}",
    ),
    ("records that end the job with a reason", lambda f: str(f.endings_recorded)),
    ("a log line names the cause and the job (or its task)", lambda f: _yes(f.cause_logged)),
    ("ffmpeg processes of the job left running", lambda f: str(f.ffmpeg_left)),
    ("**job stuck processing**", lambda f: f"**{_yes(f.stuck)}**"),
    ("scenario wall time", lambda f: f"{f.duration_s:.1f} s"),
]


def figures_table(title: str, rows: list[Row], replica: Any, coursecast: Any) -> Table:
    """One incident as a table: a row per figure, the replica and CourseCast side by side."""
    return Table(
        (title, "Celery + Redis replica", "CourseCast"),
        tuple((label, cell(replica), cell(coursecast)) for label, cell in rows),
    )


def table(title: str, rows: list[Row], replica: Any, coursecast: Any) -> str:
    """One incident as a Markdown table: a row per figure, the replica and CourseCast side by side."""
    return render_table(figures_table(title, rows, replica, coursecast))


def held(figures: dict[str, Any]) -> bool:
    """CourseCast showed neither incident."""
    redelivery: RedeliveryFigures = figures["redelivery"]["coursecast"]
    stopped: list[StoppedEncodeFigures] = [
        figures[name]["coursecast"] for name in ("time_limit", "worker_killed")
    ]
    return (
        not redelivery.corrupted
        and redelivery.encodes == 1
        and all(not f.stuck and f.explained for f in stopped)
        and figures["time_limit"]["coursecast"].ffmpeg_left == 0
    )


def main(argv: list[str]) -> Section:
    """Run both incidents on both sides, print the tables and return them."""
    parser = argparse.ArgumentParser(prog="python -m bench incidents")
    parser.parse_args(argv)
    ensure_installed()
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="bench-incidents-") as tmp:
        figures = run(settings, Path(tmp))
    one, two, killed = figures["redelivery"], figures["time_limit"], figures["worker_killed"]
    print("incidents bench: the seed's two incidents, Celery + Redis replica vs CourseCast")
    print("(replica: visibility_timeout 3 s, prefetch 4, acks_late False, time_limit 6 s, retry delay 1 s;")
    print(" CourseCast: max.poll.interval.ms 10 s, time limit 6 s, stall timeout 6 s)\n")
    print(table("Incident 1 — redelivery", REDELIVERY_ROWS, one["replica"], one["coursecast"]))
    print()
    print(table("Incident 2 — hard time limit", STOPPED_ROWS, two["replica"], two["coursecast"]))
    print()
    print(
        table("Incident 2's mechanism — worker killed", STOPPED_ROWS, killed["replica"], killed["coursecast"])
    )
    print()
    summary = {name: {side: f.as_dict() for side, f in sides.items()} for name, sides in figures.items()}
    print(orjson.dumps(summary, default=str).decode())
    return Section(
        "incidents",
        "Incidents: Celery + Redis replica against CourseCast",
        "python -m bench incidents",
        (
            figures_table("Incident 1 — redelivery", REDELIVERY_ROWS, one["replica"], one["coursecast"]),
            figures_table("Incident 2 — hard time limit", STOPPED_ROWS, two["replica"], two["coursecast"]),
            figures_table(
                "Incident 2's mechanism — worker killed",
                STOPPED_ROWS,
                killed["replica"],
                killed["coursecast"],
            ),
        ),
        (
            Check(
                "CourseCast shows neither incident",
                "held" if held(figures) else "not held",
                "neither incident",
                held(figures),
            ),
        ),
        "replica: visibility_timeout 3 s, prefetch 4, acks_late False, time_limit 6 s, retry delay 1 s;"
        " CourseCast: max.poll.interval.ms 10 s, time limit 6 s, stall timeout 6 s",
    )
