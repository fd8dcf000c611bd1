"""Commands of the projector and of the analysts' tools: run, replay, export, and read jobs in a terminal."""

from __future__ import annotations

import csv
import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

import orjson
import psycopg
import typer
from psycopg import sql
from psycopg.rows import dict_row
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings

console = Console()
Timestamp = Annotated[
    datetime, typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d"])
]


def projector() -> None:
    """Run a projector process: apply job events to Postgres, exactly once, until SIGTERM."""
    from services.projector import metrics
    from services.projector.consumer import run_projector

    settings = get_settings()
    logs.configure(settings.log_level)
    metrics.serve(settings)
    run_projector(settings, stop_on_signals())


def replay(
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="rebuild from offset 0 and compare with the live table")
    ] = False,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="build the table as it stood at this time (UTC)")
    ] = None,
    into: Annotated[
        str | None, typer.Option(help="schema to build into (default replay_<timestamp>)")
    ] = None,
    keep: Annotated[bool, typer.Option(help="keep the rebuilt schema after comparing")] = False,
) -> None:
    """Replay the job-event log into a schema of its own."""
    from services.projector.replay import compare, drop_schema, live_offsets
    from services.projector.replay import replay as run_replay

    settings = get_settings()
    if rebuild == (as_of is not None):
        raise typer.BadParameter("give exactly one of --rebuild or --as-of")
    if as_of is not None and as_of.tzinfo is None:
        raise typer.BadParameter("--as-of needs a time zone, e.g. 2026-06-15T12:00:00+00:00")
    schema = into or f"replay_{datetime.now():%Y%m%d_%H%M%S}"
    # A rebuild stops where the live projector stands, so the two tables describe the same log prefix.
    ends = live_offsets(settings) if rebuild else None
    with Progress(
        TextColumn("[bold]replay[/bold] {task.completed:,}/{task.total:,} events"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("replay", total=0, rate="")
        started = datetime.now()

        def on_progress(done: int, total: int) -> None:
            elapsed = (datetime.now() - started).total_seconds() or 1e-9
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f} events/s")

        result = run_replay(settings, schema, ends, until=as_of, progress=on_progress)
    console.print(
        f"replayed {result.events:,} events into schema [bold]{schema}[/bold] in {result.seconds:.1f} s "
        f"({result.events_per_second:,.0f} events/s; {result.dead} undecodable skipped,"
        f" {result.refused} refused by postgres)"
    )
    if as_of is not None:
        return
    differences = compare(settings.database_url, settings.database_schema, schema)
    if not keep:
        drop_schema(settings.database_url, schema)
    if differences:
        for difference in differences:
            console.print(f"[red]{difference.side}[/red]: {difference.row}")
        console.print(f"[red]{len(differences)} difference(s) between the live table and the rebuild[/red]")
        raise typer.Exit(1)
    console.print("[green]no difference[/green]: the live status table equals the rebuild from the log")


class ExportFormat(StrEnum):
    """Formats of `events export`."""

    JSONL = "jsonl"
    CSV = "csv"


EXPORT_COLUMNS = ("event_id", "job_id", "attempt", "type", "version", "occurred_at", "producer", "data")


def export(
    format: Annotated[ExportFormat, typer.Option("--format")] = ExportFormat.JSONL,
    since: Annotated[datetime | None, typer.Option()] = None,
    until: Annotated[datetime | None, typer.Option()] = None,
    job: Annotated[UUID | None, typer.Option()] = None,
) -> None:
    """Stream the job-event history to stdout, in log order, with rejections marked."""
    settings = get_settings()
    conditions: list[sql.Composable] = [sql.SQL("true")]
    params: list[object] = []
    if since is not None:
        conditions.append(sql.SQL("e.occurred_at >= %s"))
        params.append(since)
    if until is not None:
        conditions.append(sql.SQL("e.occurred_at < %s"))
        params.append(until)
    if job is not None:
        conditions.append(sql.SQL("e.job_id = %s"))
        params.append(job)
    query = sql.SQL(
        "SELECT {cols}, r.rejection, r.reason AS rejection_reason FROM {s}.job_events e"
        " LEFT JOIN {s}.rejected_events r USING (event_id) WHERE {where}"
        " ORDER BY e.occurred_at, e.kafka_partition, e.kafka_offset"
    ).format(
        cols=sql.SQL(", ").join(sql.SQL("e.{}").format(sql.Identifier(c)) for c in EXPORT_COLUMNS),
        s=sql.Identifier(settings.database_schema),
        where=sql.SQL(" AND ").join(conditions),
    )
    writer = csv.writer(sys.stdout) if format is ExportFormat.CSV else None
    if writer is not None:
        writer.writerow([*EXPORT_COLUMNS, "rejection", "rejection_reason"])
    with psycopg.connect(settings.database_url) as conn, conn.cursor("export", row_factory=dict_row) as cur:
        # A named (server-side) cursor streams the history without holding it all in memory.
        cur.execute(query, params)
        for row in cur:
            if writer is not None:
                writer.writerow(
                    [_csv_value(row[c]) for c in (*EXPORT_COLUMNS, "rejection", "rejection_reason")]
                )
            else:
                sys.stdout.write(orjson.dumps(row, default=str, option=orjson.OPT_UTC_Z).decode() + "\n")


def _csv_value(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "canceled": "yellow",
    "processing": "cyan",
    "queued": "white",
}


AsJson = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]


def _print_json(document: Any) -> None:
    options = orjson.OPT_UTC_Z | orjson.OPT_INDENT_2
    sys.stdout.write(orjson.dumps(document, default=str, option=options).decode() + "\n")


def jobs(
    status: Annotated[str | None, typer.Option(help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: AsJson = False,
    tasks: Annotated[
        bool, typer.Option("--tasks", help="also the tasks of courses (docs/fan-out.md)")
    ] = False,
) -> None:
    """The status table of courses, newest first (a course's tasks with --tasks)."""
    settings = get_settings()
    # Courses only by default, as the api lists them: a course of 30 lectures has dozens of tasks.
    query = sql.SQL(
        "SELECT job_id, status, attempt, progress_percent, current_step, course_name, owner, error_type,"
        " created_at, updated_at FROM {}.publish_jobs WHERE (%s::text IS NULL OR status = %s)"
        " AND (%s OR course_job_id IS NULL)"
        " ORDER BY created_at DESC, job_id DESC LIMIT %s"
    ).format(sql.Identifier(settings.database_schema))
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(query, (status, status, tasks, limit)).fetchall()
    if as_json:
        columns = ("job_id", "status", "attempt", "progress_percent", "current_step", "course_name", "owner",
                   "error_type", "created_at", "updated_at")  # fmt: skip
        _print_json({"items": [dict(zip(columns, row, strict=True)) for row in rows]})
        return
    table = Table("job", "status", "attempt", "progress", "course", "owner", "error", "created", "updated")
    for job_id, state, attempt, percent, step, course, owner, error, created, updated in rows:
        style = STATUS_STYLE.get(state, "white")
        progress = f"{percent:.0f}% {step or ''}".strip()
        table.add_row(
            str(job_id), f"[{style}]{state}[/{style}]", str(attempt), progress, course, owner,
            error or "", f"{created:%Y-%m-%d %H:%M:%S}", f"{updated:%H:%M:%S}",
        )  # fmt: skip
    console.print(table)


def job(job_id: UUID, as_json: AsJson = False) -> None:
    """One job: its row, its history in log order, and every rejected event with the reason."""
    settings = get_settings()
    schema = sql.Identifier(settings.database_schema)
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        row = conn.execute(
            sql.SQL("SELECT * FROM {}.publish_jobs WHERE job_id = %s").format(schema), (job_id,)
        ).fetchone()
        events = conn.execute(
            sql.SQL(
                "SELECT e.occurred_at, e.type, e.attempt, e.producer, e.data, r.rejection, r.reason"
                " FROM {s}.job_events e LEFT JOIN {s}.rejected_events r USING (event_id)"
                " WHERE e.job_id = %s ORDER BY e.kafka_offset"
            ).format(s=schema),
            (job_id,),
        ).fetchall()
    if row is None and not events:
        if as_json:
            _print_json({"error": f"no job {job_id}"})
        else:
            console.print(f"[red]no job {job_id}[/red]")
        raise typer.Exit(1)
    if as_json:
        _print_json({"job": row, "events": events})
        return
    if row is not None:
        summary = Table(show_header=False, box=None)
        for key, value in row.items():
            if value is not None:
                summary.add_row(
                    f"[bold]{key}[/bold]", orjson.dumps(value).decode() if key == "outputs" else str(value)
                )
        console.print(summary)
    history = Table("occurred", "event", "attempt", "producer", "detail", "verdict")
    for event in events:
        detail = ", ".join(f"{k}={v}" for k, v in event["data"].items() if k not in {"outputs", "renditions"})
        verdict = (
            f"[red]{event['rejection']}[/red]: {event['reason']}"
            if event["rejection"]
            else "[green]applied[/green]"
        )
        history.add_row(
            f"{event['occurred_at']:%Y-%m-%d %H:%M:%S}", event["type"], str(event["attempt"]),
            event["producer"], detail[:80], verdict,
        )  # fmt: skip
    console.print(history)
