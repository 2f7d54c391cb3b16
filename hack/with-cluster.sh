#!/usr/bin/env bash
# Runs a command with the local cluster up. A cluster that was already running is left running;
# one started here is stopped afterwards, whether the command passed or failed.
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if "$HACK_DIR/cluster.sh" status >/dev/null 2>&1; then
  echo "with-cluster: reusing the running local cluster" >&2
else
  trap '"$HACK_DIR/cluster.sh" down' EXIT
  started=$(date +%s)
  "$HACK_DIR/cluster.sh" up >&2
  echo "with-cluster: cluster up in $(( $(date +%s) - started ))s" >&2
fi
"$@"
