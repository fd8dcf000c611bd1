"""`python -m bench [NAME ...]`: run the benchmarks (all by default)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("projector", "encoder", "api")


def main(argv: list[str]) -> int:
    """Run the named benchmarks in order; a benchmark module exposes main(argv) -> int."""
    names = [a for a in argv if a in BENCHMARKS] or list(BENCHMARKS)
    flags = [a for a in argv if a not in BENCHMARKS]
    status = 0
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"bench: {name} is not built yet", file=sys.stderr)
            continue
        status |= module.main(flags)
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
