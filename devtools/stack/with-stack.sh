#!/usr/bin/env bash
# Run a command with the local stack up. Starts the stack only if it is not already answering,
# and then stops exactly what it started, whatever the command's outcome.
set -uo pipefail
cd "$(dirname "$0")/../.."
stack=(.venv/bin/python -m devtools stack)
started=0
if ! "${stack[@]}" status >/dev/null 2>&1; then
  "${stack[@]}" up || exit $?
  started=1
fi
"$@"
rc=$?
if [ "$started" = 1 ]; then
  "${stack[@]}" down || rc=${rc:-1}
fi
exit "$rc"
