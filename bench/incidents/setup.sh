#!/usr/bin/env bash
# Install what the incidents bench's Celery + Redis replica needs, and nothing that is already there:
#
#   - Debian's redis-server, apt-installed only when missing (one `apt-get update` at most); the bench
#     starts its own server on a free loopback port, so a system one the package may start is stopped;
#   - the [incidents] extra of pyproject.toml (celery, redis client) into the project's .venv, only
#     when celery cannot be imported there.
#
# Run by `python -m bench incidents` when something is missing; never by `make test`, whose default
# run excludes the `incidents` marker. Safe to run again: with everything present it exits at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"

say() { printf 'incidents setup: %s\n' "$*"; }
die() { printf 'incidents setup: error: %s\n' "$*" >&2; exit 1; }

if command -v redis-server >/dev/null 2>&1; then
    say "redis-server present ($(redis-server --version | cut -d' ' -f3))"
else
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "need root to apt-get install redis-server"
        SUDO=(sudo)
    fi
    say "apt-get install redis-server"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server
    # The package's own service (6379) is not ours to run: the bench starts a private server.
    if command -v service >/dev/null 2>&1; then
        "${SUDO[@]}" service redis-server stop >/dev/null 2>&1 || true
    fi
fi

if "$PYTHON" -c 'import celery, redis' 2>/dev/null; then
    say "celery $("$PYTHON" -c 'import celery; print(celery.__version__)') present"
else
    say "pip install the [incidents] extra"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check -e "$ROOT[incidents]"
fi
