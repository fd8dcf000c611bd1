"""`python -m services.stack up|down|status`: the stack commands without the coursecast CLI."""

from services.stack.cli import stack_app

stack_app(prog_name="python -m services.stack")
