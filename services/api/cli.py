"""Commands of the api: serve it, create users (printing their token once), revoke tokens."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import psycopg
import typer
from psycopg import sql
from rich.console import Console

from services.api.auth import (
    Role,
    UnknownUserError,
    UserExistsError,
    create_user,
    issue_token,
    revoke_token,
    revoke_user_tokens,
)
from services.core.settings import get_settings

console = Console()
users_app = typer.Typer(help="API users and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


def api(
    host: Annotated[
        str | None, typer.Option(help="address to listen on (default COURSECAST_API_HOST)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port (default COURSECAST_API_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve the HTTP API with uvicorn (OpenAPI docs at /docs)."""
    import uvicorn

    from services.core import logs

    settings = get_settings()
    logs.configure(settings.log_level)
    uvicorn.run(
        "services.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_config=None,
        access_log=False,
        # No "server: uvicorn" header: clients learn nothing of what runs behind the api.
        server_header=False,
    )


def _connect() -> psycopg.Connection[tuple[object, ...]]:
    from services.api.db import migrate_api

    settings = get_settings()
    migrate_api(settings.database_url, settings.database_schema)
    conn = psycopg.connect(settings.database_url, autocommit=True)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(settings.database_schema)))
    return conn


@users_app.command("create")
def users_create(
    name: str,
    role: Annotated[Role, typer.Option(help="instructor sees own jobs; admin sees all")] = Role.INSTRUCTOR,
) -> None:
    """Create a user and print their API token (shown this once, stored only as a hash)."""
    with _connect() as conn:
        try:
            _, token = create_user(conn, name, role)
        except UserExistsError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
    print(token)


@tokens_app.command("create")
def tokens_create(name: str) -> None:
    """Print a new additional token for an existing user."""
    with _connect() as conn:
        try:
            print(issue_token(conn, name))
        except UnknownUserError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None


@tokens_app.command("revoke")
def tokens_revoke(
    name: Annotated[str | None, typer.Argument(help="revoke every token of this user")] = None,
    token: Annotated[str | None, typer.Option(help="revoke this one token instead")] = None,
) -> None:
    """Revoke tokens; the next request with them gets 401."""
    if (name is None) == (token is None):
        raise typer.BadParameter("give a user NAME or --token, not both")
    with _connect() as conn:
        if token is not None:
            ok = revoke_token(conn, token)
            console.print("revoked" if ok else "[yellow]no live token matched[/yellow]")
            return
        assert name is not None
        try:
            count = revoke_user_tokens(conn, name)
        except UnknownUserError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"revoked {count} token(s) of {name}")


def reencode(course_id: Annotated[UUID, typer.Argument(help="the published course (its id)")]) -> None:
    """Re-encode a published course from its retained sources (e.g. with a new ladder): a new job of
    the same course; once it completes, the catalogue plays its objects. Prints the new job's id."""
    from services.api.reencode import ReencodeError
    from services.api.reencode import reencode as queue_reencode

    try:
        job_id = queue_reencode(get_settings(), course_id)
    except ReencodeError as exc:
        console.print(f"[red]cannot re-encode:[/red] {exc}")
        raise typer.Exit(1) from None
    print(job_id)
