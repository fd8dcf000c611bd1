"""The values every stack module reports: a component's health and the stack's own error."""

from __future__ import annotations

from dataclasses import dataclass

# Every "something is missing" message ends with this: the installer is the one fix.
INSTALL_HINT = "run stack/install.sh"


class StackError(RuntimeError):
    """A stack operation failed; the message says what to do about it (it is shown as is)."""


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component's address and whether it answered a real request just now."""

    name: str
    address: str
    ok: bool
    detail: str
