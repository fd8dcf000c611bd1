"""The `python -m devtools stack up|down|status` commands (also `python -m devtools.stack ...`)."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from devtools.stack import manager
from devtools.stack.kafka import SUPPORTED_BROKERS
from devtools.stack.model import ComponentStatus, StackError
from services.core.settings import get_settings

stack_app = typer.Typer(
    help="The local stack on 127.0.0.1: Kafka (KRaft), Postgres, S3 (moto), and ffmpeg checks.",
    no_args_is_help=True,
)
console = Console()


def _echo(message: str) -> None:
    # Messages quote logs and paths: print them literally, never as rich markup.
    console.print(message, markup=False, highlight=False)


def _fail(exc: StackError) -> typer.Exit:
    console.print(Text("error: ", style="bold red") + Text(str(exc)))
    return typer.Exit(1)


def _show(rows: list[ComponentStatus]) -> bool:
    table = Table(title="CourseCast local stack")
    table.add_column("component")
    table.add_column("address")
    table.add_column("state")
    table.add_column("detail")
    for row in rows:
        state = Text("up", style="green") if row.ok else Text("down", style="bold red")
        table.add_row(Text(row.name), Text(row.address), state, Text(row.detail))
    console.print(table)
    return all(row.ok for row in rows)


@stack_app.command()
def up(
    brokers: Annotated[
        int, typer.Option("--brokers", help="Kafka brokers: 1, or 3 (RF 3, min ISR 2) for fault tests.")
    ] = 1,
) -> None:
    """Start Kafka, Postgres and S3 (those not already running), then create topics, database, bucket."""
    if brokers not in SUPPORTED_BROKERS:
        raise typer.BadParameter(f"must be one of {SUPPORTED_BROKERS}", param_hint="--brokers")
    began = time.monotonic()
    try:
        rows = manager.up(get_settings(), brokers=brokers, echo=_echo)
    except StackError as exc:
        raise _fail(exc) from None
    healthy = _show(rows)
    _echo(f"up in {time.monotonic() - began:.1f} s")
    if not healthy:
        raise typer.Exit(1)


@stack_app.command()
def down() -> None:
    """Stop what `up` started (only processes recorded in its pid files); data stays for next time."""
    try:
        manager.down(get_settings(), echo=_echo)
    except StackError as exc:
        raise _fail(exc) from None
    _echo("stack down")


@stack_app.command()
def status() -> None:
    """Show each component, its address and whether it answers; exit 1 if any is down."""
    if not _show(manager.status(get_settings())):
        raise typer.Exit(1)
