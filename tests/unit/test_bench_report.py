"""docs/benchmarks.md's writer: a run's figures and the kept prose render into the page (no timing here)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from bench import report
from bench.__main__ import BENCHMARKS, ON_REQUEST, TITLES, split_write
from bench.report import Check, RunFacts, Section, Table

FACTS = RunFacts(
    started_utc=datetime(2026, 11, 29, 18, 0, tzinfo=UTC),
    finished_utc=datetime(2026, 11, 29, 18, 9, tzinfo=UTC),
    cpu_count=2,
    memory_gib=23.5,
    load_before=(3.5, 2.25, 1.0),
    load_after=(4.0, 3.0, 2.0),
    versions=(
        ("kafka", "Kafka 4.4.0, 1-broker mode"),
        ("postgres", "Postgres 15.14"),
        ("ffmpeg", "version 5.1.9"),
    ),
)

PROJECTOR = Section(
    name="projector",
    title="Projector",
    command="python -m bench projector --events 200000",
    tables=(
        Table(("measure", "events/s"), (("raw Kafka consume", "127,492"), ("**projector**", "**24,423**"))),
    ),
    checks=(
        Check("ratio projector ÷ slower raw ceiling", "0.19", "≥ 0.50", met=False),
        Check("absolute throughput", "24,423 events/s", "≥ 20,000", met=True),
    ),
    note="200,000 synthetic events",
)


def prose(name: str) -> str:
    return f"Prose of {name}, kept in the repository."


def page(sections: dict[str, Section | None]) -> str:
    return report.render(FACTS, sections, TITLES, text=prose)


def test_a_measured_section_has_its_command_table_checks_and_then_its_prose() -> None:
    text = page({"projector": PROJECTOR})

    assert "## Projector" in text
    assert "This run: `python -m bench projector --events 200000` — 200,000 synthetic events." in text
    assert (
        "| measure | events/s |\n|---|---|\n| raw Kafka consume | 127,492 |\n| **projector** | **24,423** |"
        in text
    )
    assert "- ratio projector ÷ slower raw ceiling: **0.19** (target ≥ 0.50: **missed**)" in text
    assert "- absolute throughput: **24,423 events/s** (target ≥ 20,000: **met**)" in text
    assert text.index("| **projector** |") < text.index("ratio projector") < text.index("Prose of projector")


def test_the_header_gives_the_runs_facts() -> None:
    text = page({"projector": PROJECTOR})

    assert text.startswith("# Benchmarks\n\nProse of intro")
    assert "2026-11-29 18:00 UTC to 2026-11-29 18:09 UTC" in text
    assert "- machine: 2 cores (`os.cpu_count()`), 23.5 GiB" in text
    assert "3.50 / 2.25 / 1.00 before the run, 4.00 / 3.00 / 2.00 after it" in text
    assert "- kafka: Kafka 4.4.0, 1-broker mode" in text
    assert "- postgres: Postgres 15.14" in text
    assert "- ffmpeg: version 5.1.9" in text


def test_a_benchmark_not_run_says_so_and_keeps_its_prose() -> None:
    text = page({"projector": PROJECTOR, "incidents": None})

    section = text[text.index("## Incidents") :]
    assert "Not run in this run; `python -m bench incidents`." in section
    assert "Prose of incidents" in section
    assert "|" not in section
    assert "target" not in section


def test_sections_keep_the_order_given_and_several_tables_render_each() -> None:
    incidents = Section(
        name="incidents",
        title="Incidents",
        command="python -m bench incidents",
        tables=(Table(("Incident 1", "replica", "CourseCast"), (("final status", "failed", "completed"),)),
                Table(("Incident 2", "replica", "CourseCast"), (("stuck", "yes", "no"),))),
        checks=(Check("CourseCast shows neither incident", "held", "neither incident", met=True),),
    )  # fmt: skip
    text = page({"api": None, "incidents": incidents})

    assert text.index("## API") < text.index("## Incidents")
    assert "| final status | failed | completed |" in text
    assert "| stuck | yes | no |" in text
    assert "(target neither incident: **met**)" in text


def test_a_figure_without_target_and_a_pipe_in_a_cell() -> None:
    chunked = Section(
        name="chunked",
        title="Chunked",
        command="python -m bench chunked",
        tables=(Table(("encode", "CPU"), (("a | b", "1.0 s"),)),),
        checks=(Check("CPU chunked ÷ one pass", "0.833"),),
    )
    text = page({"chunked": chunked})

    assert "| a \\| b | 1.0 s |" in text
    assert "- CPU chunked ÷ one pass: **0.833** (no target)" in text
    assert chunked.met


def test_a_missed_target_makes_the_section_not_met() -> None:
    assert not PROJECTOR.met


def test_every_benchmark_has_a_title_and_its_prose_in_the_repository() -> None:
    for name in (*BENCHMARKS, *ON_REQUEST, "intro"):
        assert report.prose(name), name
    assert set(TITLES) == {*BENCHMARKS, *ON_REQUEST}


def test_write_is_taken_out_of_the_benchmarks_arguments() -> None:
    page_path, rest = split_write(["--write", "docs/benchmarks.md", "projector", "--events", "10"])
    assert str(page_path) == "docs/benchmarks.md"
    assert rest == ["projector", "--events", "10"]
    assert split_write(["--write=x.md"])[0] is not None
    assert split_write(["api"]) == (None, ["api"])


def test_the_header_names_the_command_of_the_run() -> None:
    default = report.render(FACTS, {}, TITLES)
    assert "Generated by `make bench` (`python -m bench --write docs/benchmarks.md`)" in default
    named = replace(FACTS, command="python -m bench --write docs/benchmarks.md projector fanout")
    assert "Generated by `python -m bench --write docs/benchmarks.md projector fanout` from" in (
        report.render(named, {}, TITLES)
    )
