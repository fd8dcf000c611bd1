"""docs/benchmarks.md from one run: each benchmark's figures as data, and the page they render into.

A benchmark module's main(argv) returns a `Section`: its title, the command that reproduces it, its
measured table(s) and its checks (the ratio against the baseline of the same run, and each target,
met or missed). `render` puts them under a header of the run's facts (date, cores, load average,
versions of the stack), each followed by the benchmark's explanatory prose from bench/text/<name>.md.
A benchmark not run in this run renders as such, with its prose: the page never shows a figure that
this run did not measure, except where the prose itself says it is an earlier measurement and when.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TEXT_DIR = Path(__file__).parent / "text"


@dataclass(frozen=True)
class Table:
    """A measured table: a header row and rows of cells, all already formatted."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Check:
    """One figure held against its target: the ratio to the same run's baseline, or an absolute one.

    `target` is None for a figure reported without a target (then `met` is ignored).
    """

    label: str
    value: str
    target: str | None = None
    met: bool = True


@dataclass(frozen=True)
class Section:
    """What one benchmark measured in this run."""

    name: str  # the bench module's name: `python -m bench NAME`, bench/text/NAME.md
    title: str
    command: str  # the command that reproduces the run, with its options
    tables: tuple[Table, ...]
    checks: tuple[Check, ...]
    note: str = ""  # one line on what was run (sizes, clip, rounds)

    @property
    def met(self) -> bool:
        """Every check with a target was met."""
        return all(c.met for c in self.checks if c.target is not None)


@dataclass(frozen=True)
class RunFacts:
    """Where and when the run happened; the load average tells how busy the machine was."""

    started_utc: datetime
    finished_utc: datetime
    cpu_count: int
    memory_gib: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    versions: tuple[tuple[str, str], ...]  # (component, version or status line)
    command: str = "python -m bench --write docs/benchmarks.md"  # what `make bench` runs


def run_facts(
    started: datetime,
    load_before: tuple[float, float, float],
    versions: tuple[tuple[str, str], ...],
    command: str = RunFacts.command,
) -> RunFacts:
    """The facts of a run that has just finished."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return RunFacts(
        started_utc=started,
        finished_utc=datetime.now(UTC),
        cpu_count=os.cpu_count() or 0,
        memory_gib=pages / 2**30,
        load_before=load_before,
        load_after=os.getloadavg(),
        versions=versions,
        command=command,
    )


def stack_versions() -> tuple[tuple[str, str], ...]:
    """ffmpeg, Kafka and Postgres as the local stack reports them (`python -m devtools stack status`)."""
    from devtools.stack import kafka, manager  # the stack's own checks: the same lines `make` prints
    from services.core.settings import Settings

    rows: list[tuple[str, str]] = []
    for status in manager.status(Settings()):
        if status.name == "ffprobe" or status.name == "s3":
            continue
        detail = status.detail
        if status.name.startswith("kafka"):
            detail = f"Kafka {kafka.kafka_version()}, {detail}"
        rows.append(
            (status.name, f"{detail} ({status.address})" if status.ok else f"not answering: {detail}")
        )
    return tuple(rows)


def ffmpeg_version() -> str:
    """`ffmpeg -version`'s first line, for a run without the stack's status."""
    done = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0] if done.stdout else "ffmpeg not found"


def prose(name: str) -> str:
    """The explanatory text kept in bench/text/NAME.md (empty when there is none)."""
    path = TEXT_DIR / f"{name}.md"
    return path.read_text(encoding="utf-8").strip() if path.is_file() else ""


def render_table(table: Table) -> str:
    """A Markdown table; pipes inside cells are escaped."""

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [row(table.columns), "|" + "---|" * len(table.columns)]
    lines += [row(r) for r in table.rows]
    return "\n".join(lines)


def render_check(check: Check) -> str:
    """`- label: **value** (target T: **met**)`."""
    if check.target is None:
        return f"- {check.label}: **{check.value}** (no target)"
    return (
        f"- {check.label}: **{check.value}** (target {check.target}: **{'met' if check.met else 'missed'}**)"
    )


def _generated_by(command: str) -> str:
    """`make bench` (`python -m bench --write docs/benchmarks.md`), or the command that was run."""
    if command == RunFacts.command:
        return f"`make bench` (`{command}`)"
    return f"`{command}`"


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def render_header(facts: RunFacts) -> str:
    """The run's facts, at the top of the page."""
    stamp = "%Y-%m-%d %H:%M UTC"
    lines = [
        "## This run",
        "",
        f"Generated by {_generated_by(facts.command)} from one run,"
        f" {facts.started_utc.strftime(stamp)} to {facts.finished_utc.strftime(stamp)}:",
        "",
        f"- machine: {facts.cpu_count} cores (`os.cpu_count()`), {facts.memory_gib:.1f} GiB",
        f"- load average (1 / 5 / 15 min): {_load(facts.load_before)} before the run,"
        f" {_load(facts.load_after)} after it",
    ]
    lines += [f"- {name}: {version}" for name, version in facts.versions]
    return "\n".join(lines)


def render_section(name: str, title: str, section: Section | None, text: Callable[[str], str] = prose) -> str:
    """One benchmark: its measured tables and checks, then its prose; or `not run`, then its prose."""
    parts = [f"## {title}"]
    if section is None:
        parts.append(f"Not run in this run; `python -m bench {name}`.")
    else:
        parts.append(f"This run: `{section.command}`" + (f" — {section.note}" if section.note else "") + ".")
        parts += [render_table(t) for t in section.tables]
        if section.checks:
            parts.append("\n".join(render_check(c) for c in section.checks))
    explanation = text(name)
    if explanation:
        parts.append(explanation)
    return "\n\n".join(parts)


def render(
    facts: RunFacts,
    sections: Mapping[str, Section | None],
    titles: Mapping[str, str],
    text: Callable[[str], str] = prose,
) -> str:
    """The whole page: title, the intro prose, the run's facts, one section per benchmark in order.

    `sections` maps every benchmark's name to what it measured, or None when it was not run.
    """
    parts = ["# Benchmarks", text("intro"), render_header(facts)]
    for name, section in sections.items():
        parts.append(render_section(name, section.title if section else titles[name], section, text))
    return "\n\n".join(p for p in parts if p) + "\n"
