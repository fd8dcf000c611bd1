"""`python -m devtools.stack up|down|status`: the stack commands without the coursecast CLI."""

from devtools.stack.cli import stack_app

stack_app(prog_name="python -m devtools.stack")
