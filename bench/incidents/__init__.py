"""The seed's two production incidents, side by side: a Celery + Redis replica of the design CourseCast
replaced (which breaks) and CourseCast itself (which must not). Entry point: `python -m bench incidents`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.report import Section


def main(argv: list[str]) -> Section:
    """Run the incidents bench (imported lazily: the replica needs the optional [incidents] extra)."""
    from bench.incidents.run import main as run_main

    return run_main(argv)
