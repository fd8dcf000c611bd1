"""The notifier's commands: deliver webhooks until SIGTERM, and show operators what was delivered."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import psycopg
import typer
from psycopg import sql
from rich.console import Console
from rich.table import Table

from services.core import logs
from services.core.lifecycle import stop_on_signals
from services.core.settings import get_settings

console = Console()
STATE_STYLE = {"pending": "yellow", "delivered": "green", "given_up": "red"}


class DeliveryState(StrEnum):
    """A row's state in webhook_deliveries."""

    PENDING = "pending"
    DELIVERED = "delivered"
    GIVEN_UP = "given_up"


def notifier() -> None:
    """Run a notifier process: POST signed course.completed / failed / canceled webhooks, at least once."""
    from services.notifier import metrics
    from services.notifier.consumer import run_notifier

    logs.configure()
    # httpx logs every request's full URL at INFO; an endpoint's URL may carry its receiver's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    metrics.serve(settings)
    run_notifier(settings, stop_on_signals())


def deliveries(
    state: Annotated[DeliveryState | None, typer.Option(help="only deliveries in this state")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
) -> None:
    """Webhook deliveries, latest attempt first: state, attempts, last HTTP status and error."""
    settings = get_settings()
    query = sql.SQL(
        "SELECT event_id, job_id, owner, notification_type, state, attempts, last_status, last_error,"
        " first_attempt_at, last_attempt_at FROM {}.webhook_deliveries"
        " WHERE (%s::text IS NULL OR state = %s)"
        " ORDER BY last_attempt_at DESC NULLS FIRST, first_attempt_at DESC LIMIT %s"
    ).format(sql.Identifier(settings.database_schema))
    value = state.value if state is not None else None
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(query, (value, value, limit)).fetchall()
    table = Table("event", "job", "owner", "type", "state", "tries", "status", "last error", "first", "last")
    for event_id, job_id, owner, kind, row_state, attempts, status, error, first, last in rows:
        style = STATE_STYLE.get(row_state, "white")
        table.add_row(
            str(event_id), str(job_id), owner, kind, f"[{style}]{row_state}[/{style}]", str(attempts),
            "" if status is None else str(status), error or "", f"{first:%Y-%m-%d %H:%M:%S}",
            "" if last is None else f"{last:%H:%M:%S}",
        )  # fmt: skip
    console.print(table)
