"""The values every stack module reports: a component's health and the stack's own error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Every "something is missing" message ends with this: the installer is the one fix.
INSTALL_HINT = "run devtools/stack/install.sh"
# Every stack process listens on loopback only: the stack is for one developer's machine.
LOOPBACK = "127.0.0.1"
# Where a stack operation reports what it does (click.echo, or a test's list.append).
Echo = Callable[[str], None]


class StackError(RuntimeError):
    """A stack operation failed; the message says what to do about it (it is shown as is)."""


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component's address and whether it answered a real request just now."""

    name: str
    address: str
    ok: bool
    detail: str
