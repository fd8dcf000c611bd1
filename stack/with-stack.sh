#!/usr/bin/env bash
# Run a command with the local stack up. Starts the stack only if it is not already answering,
# and then stops exactly what it started, whatever the command's outcome.
set -uo pipefail
cd "$(dirname "$0")/.."
coursecast=.venv/bin/coursecast
started=0
if ! "$coursecast" stack status >/dev/null 2>&1; then
  "$coursecast" stack up || exit $?
  started=1
fi
"$@"
rc=$?
if [ "$started" = 1 ]; then
  "$coursecast" stack down || rc=${rc:-1}
fi
exit "$rc"
