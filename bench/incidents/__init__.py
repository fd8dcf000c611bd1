"""The seed's two production incidents, side by side: a Celery + Redis replica of the design CourseCast
replaced (which breaks) and CourseCast itself (which must not). Entry point: `python -m bench incidents`."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """Run the incidents bench (imported lazily: the replica needs the optional [incidents] extra)."""
    from bench.incidents.run import main as run_main

    return run_main(argv)
