"""`python -m bench [--write PAGE] [NAME ...]`: run the benchmarks (all but the on-request ones by default).

With --write, the page (docs/benchmarks.md for `make bench`) is written from this one run: the
figures each benchmark returned, under the run's facts, with each benchmark's prose (bench/report.py).
"""

from __future__ import annotations

import importlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import report

BENCHMARKS = ("projector", "encoder", "api")
# Run only when named: `incidents` installs redis-server and the [incidents] extra when they are
# missing; `chunked` (CPU of a chunked against a one-pass encode, groundwork of the fan-out) takes minutes;
# `fanout` encodes a 12-minute 720p lecture four times (about 40 min on 2 quiet cores, more under load).
ON_REQUEST = ("incidents", "chunked", "fanout")
# The heading of a benchmark's section when it was not run (a run's Section carries its own).
TITLES = {
    "projector": "Projector",
    "encoder": "Encoder",
    "api": "API",
    "incidents": "Incidents: Celery + Redis replica against CourseCast",
    "chunked": "Chunked encode: CPU against a one-pass encode",
    "fanout": "Fan-out: a course over the encoder group",
}


def split_write(argv: list[str]) -> tuple[Path | None, list[str]]:
    """Take `--write PAGE` (or `--write=PAGE`) out of argv."""
    rest: list[str] = []
    page: Path | None = None
    args = iter(argv)
    for arg in args:
        if arg == "--write":
            page = Path(next(args))
        elif arg.startswith("--write="):
            page = Path(arg.removeprefix("--write="))
        else:
            rest.append(arg)
    return page, rest


def main(argv: list[str]) -> int:
    """Run the named benchmarks in order; a benchmark module exposes main(argv) -> report.Section.

    Exit status 1 when a benchmark missed a target (the page is written all the same).
    """
    page, argv = split_write(argv)
    known = BENCHMARKS + ON_REQUEST
    names = [a for a in argv if a in known] or list(BENCHMARKS)
    flags = [a for a in argv if a not in known]
    started, load_before = datetime.now(UTC), os.getloadavg()
    sections: dict[str, report.Section | None] = dict.fromkeys(known)
    status = 0
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"bench: {name} is not built yet", file=sys.stderr)
            continue
        section: report.Section = module.main(flags)
        sections[name] = section
        status |= 0 if section.met else 1
    if page is not None:
        command = " ".join(["python -m bench", "--write", str(page), *argv])
        facts = report.run_facts(started, load_before, report.stack_versions(), command)
        page.write_text(report.render(facts, sections, TITLES), encoding="utf-8")
        print(f"bench: wrote {page}")
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
