"""The `coursecast` command: one entry point for every service and tool."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from services.api import cli as api_cli
from services.client import cli as client_cli
from services.conductor import cli as conductor_cli
from services.core.membership import Worker, is_member_here
from services.core.settings import get_settings
from services.core.storage import prepare_bucket
from services.core.topics import ensure_topics
from services.encoder import cli as encoder_cli
from services.notifier import cli as notifier_cli
from services.projector import cli as projector_cli
from services.watchdog import cli as watchdog_cli

app = typer.Typer(
    help="CourseCast: publish lecture videos as adaptive HLS, tracked event by event.", no_args_is_help=True
)
app.command("projector")(projector_cli.projector)
app.command("encoder")(encoder_cli.encoder)
app.command("watchdog")(watchdog_cli.watchdog)
app.command("conductor")(conductor_cli.conductor)
app.command("notifier")(notifier_cli.notifier)
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
webhooks_app = typer.Typer(help="Webhook deliveries (the notifier's record).", no_args_is_help=True)
webhooks_app.command("deliveries")(notifier_cli.deliveries)
app.add_typer(webhooks_app, name="webhooks")
app.command("publish")(client_cli.publish)
app.command("courses")(client_cli.courses)
app.command("reencode")(api_cli.reencode)
console = Console()


@app.command()
def topics() -> None:
    """Create the project's Kafka topics if any is missing."""
    created = ensure_topics(get_settings())
    console.print(f"created: {', '.join(created)}" if created else "all topics exist")


@app.command()
def init() -> None:
    """Prepare a deployment once (idempotent): the topics, and the bucket with its policy (anyone may
    read published hls/, everything else stays private). Run by docker-compose.yml's init service."""
    settings = get_settings()
    created = ensure_topics(settings)
    console.print(f"topics created: {', '.join(created)}" if created else "all topics exist")
    bucket_created = prepare_bucket(settings)
    console.print(
        f"bucket {settings.s3_bucket}: {'created' if bucket_created else 'exists'}; hls/ readable by anyone"
    )


@app.command()
def healthcheck(worker: Worker) -> None:
    """Exit 0 when a WORKER process of this host is a member of its consumer group, else 1
    (the container healthcheck of the encoder, projector and watchdog)."""
    if not is_member_here(get_settings(), worker):
        console.print(f"no {worker} of this host is a member of its consumer group")
        raise typer.Exit(1)


dlq_app = typer.Typer(help="Dead letters (the .dlq topics).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


class DeadLetters(StrEnum):
    """Which dead-letter topic: the commands' or the job events'."""

    COMMANDS = "commands"
    EVENTS = "events"


@dlq_app.command("replay")
def dlq_replay(
    which: Annotated[DeadLetters, typer.Argument(help="the commands' or the events' dead letters")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report only: produce and commit nothing")
    ] = False,
    group: Annotated[str, typer.Option(help="consumer group remembering how far replays got")] = "",
) -> None:
    """Re-produce dead letters that now pass validation to their source topic, with their original key;
    ones that still fail are skipped and listed. Run after the fix is deployed."""
    from services.core import dlq

    settings = get_settings()
    topic = settings.commands_dlq_topic if which is DeadLetters.COMMANDS else settings.events_dlq_topic

    def report(where: str, skipped: dlq.Skipped | None) -> None:
        if skipped is None:
            console.print(f"{'would replay' if dry_run else 'replayed'} {where}")
        else:
            console.print(f"[yellow]skipped[/yellow] {where}: {skipped.reason}")

    result = dlq.replay(settings, topic, group=group or dlq.DEFAULT_GROUP, dry_run=dry_run, on_record=report)
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {result.replayed} dead letter(s) of {topic}; {len(result.skipped)} skipped")


if __name__ == "__main__":
    app()
