"""`python -m bench [NAME ...]`: run the benchmarks (all but the on-request ones by default)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("projector", "encoder", "api")
# Run only when named: `incidents` installs redis-server and the [incidents] extra when they are
# missing; `chunked` (CPU of a chunked against a one-pass encode, groundwork of the fan-out) takes minutes.
ON_REQUEST = ("incidents", "chunked")


def main(argv: list[str]) -> int:
    """Run the named benchmarks in order; a benchmark module exposes main(argv) -> int."""
    known = BENCHMARKS + ON_REQUEST
    names = [a for a in argv if a in known] or list(BENCHMARKS)
    flags = [a for a in argv if a not in known]
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
