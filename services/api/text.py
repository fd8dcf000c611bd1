"""What the api accepts as text: no NUL and no other control character, anywhere.

Every string a client sends ends up in a Kafka message, a jsonb column or a log line; Postgres refuses
U+0000 in text and jsonb, and other control characters corrupt terminals and logs. So the api refuses
them at the door with a 422 naming the field: C0 controls (U+0000–U+001F), DEL and the C1 controls
(U+007F–U+009F). Text that may span lines (a cancel reason) keeps tab, newline and carriage return;
one-line values (names, file names, keys, ETags) keep none.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from services.api.problems import ProblemError
from services.core.messages import control_character


def refuse_control_characters(value: str, field: str, *, multiline: bool = False) -> str:
    """`value` unchanged, or a 422 problem naming `field` and the character."""
    found = control_character(value, multiline=multiline)
    if found is not None:
        raise ProblemError(
            422,
            "control-character",
            f"{field} contains the control character {found}; control characters are not accepted"
            + (" (tab, newline and carriage return are)" if multiline else ""),
            title="Control character in the request",
            field=field,
        )
    return value


def _line(value: str) -> str:
    found = control_character(value)
    if found is not None:
        raise ValueError(f"contains the control character {found}; control characters are not accepted")
    return value


def _text(value: str) -> str:
    found = control_character(value, multiline=True)
    if found is not None:
        raise ValueError(
            f"contains the control character {found}; only tab, newline and carriage return are accepted"
        )
    return value


# Pydantic field types for request bodies: validation errors name the field (422 problem).
Line = Annotated[str, AfterValidator(_line)]
Text = Annotated[str, AfterValidator(_text)]
