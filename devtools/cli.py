"""`python -m devtools`: the developer's commands: the local stack, a Kafka round trip and the demo.

They are not part of the production package (the wheel carries `services` only): run them from a
checkout, where the `dev` extra has installed what they need (moto, the stack's tools).
"""

from __future__ import annotations

import typer
from rich.console import Console

from devtools.stack.cli import stack_app
from services.core.settings import get_settings

app = typer.Typer(help="CourseCast's developer tools, run from a checkout.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
console = Console()


@app.command()
def roundtrip() -> None:
    """Send one event through Kafka and read it back through a consumer group."""
    from devtools.roundtrip import roundtrip as run_roundtrip

    result = run_roundtrip(get_settings())
    if result.received != result.sent:
        console.print("[red]the event read back differs from the event sent[/red]")
        raise typer.Exit(1)
    console.print(
        f"[green]round trip ok[/green]: {result.sent.type} job={result.sent.job_id} "
        f"-> {result.delivered.topic}[{result.delivered.partition}]@{result.delivered.offset}, "
        f"committed offset {result.committed_offset}"
    )


@app.command()
def demo() -> None:
    """Publish a sample course through the whole pipeline and show it ending (needs the stack up)."""
    from devtools.demo import run_demo

    raise typer.Exit(run_demo(get_settings()))
