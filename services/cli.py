"""The `coursecast` command: one entry point for every service and tool."""

from __future__ import annotations

import typer
from rich.console import Console

from services.api import cli as api_cli
from services.core.settings import get_settings
from services.core.topics import ensure_topics
from services.encoder import cli as encoder_cli
from services.projector import cli as projector_cli
from services.watchdog import cli as watchdog_cli

app = typer.Typer(
    help="CourseCast: publish lecture videos as adaptive HLS, tracked event by event.", no_args_is_help=True
)
app.command("projector")(projector_cli.projector)
app.command("encoder")(encoder_cli.encoder)
app.command("watchdog")(watchdog_cli.watchdog)
app.command("replay")(projector_cli.replay)
app.command("jobs")(projector_cli.jobs)
app.command("job")(projector_cli.job)
events_app = typer.Typer(help="The job-event history.", no_args_is_help=True)
events_app.command("export")(projector_cli.export)
app.add_typer(events_app, name="events")
staging_app = typer.Typer(help="Staged uploads in object storage.", no_args_is_help=True)
staging_app.command("sweep")(encoder_cli.staging_sweep)
app.add_typer(staging_app, name="staging")
app.command("api")(api_cli.api)
app.add_typer(api_cli.users_app, name="users")
app.add_typer(api_cli.tokens_app, name="tokens")
app.command("reencode")(api_cli.reencode)
console = Console()


@app.command()
def topics() -> None:
    """Create the project's Kafka topics if any is missing."""
    created = ensure_topics(get_settings())
    console.print(f"created: {', '.join(created)}" if created else "all topics exist")


if __name__ == "__main__":
    app()
