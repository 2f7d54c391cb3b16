#!/bin/sh
# shellcheck source-path=SCRIPTDIR
# Starts this pod's Redis: as replica of the master the Sentinels agree on, or as master when
# it is that master (or the cluster is new and this is pod 0). See redis-common.sh.
set -eu
LOG_TAG=redis-start
CONFIG_DIR=${CONFIG_DIR:-$(dirname "$0")}
# shellcheck source=redis-common.sh
. "$CONFIG_DIR/redis-common.sh"
DATA_DIR=${DATA_DIR:-/data}

master=$(discover_master reachable)

# Sentinel runs CONFIG REWRITE after it reconfigures us, so the effective file must be writable.
mkdir -p "$RUN_DIR"
conf="$RUN_DIR/redis.conf"
{
  cat "$CONFIG_DIR/redis.conf"
  printf '\n# Set by redis-start.sh for this pod.\n'
  printf 'port %s\n' "$REDIS_PORT"
  if [ -n "${BIND_ADDRESSES:-}" ]; then printf 'bind %s\n' "$BIND_ADDRESSES"; fi
  printf 'dir %s\n' "$DATA_DIR"
  # Peers and clients learn our stable name, not the pod IP that changes on every restart.
  printf 'replica-announce-ip %s\n' "$MY_HOST"
  printf 'replica-announce-port %s\n' "$REDIS_PORT"
  if [ "$master" != "$MY_HOST:$REDIS_PORT" ]; then
    printf 'replicaof %s %s\n' "${master%:*}" "${master##*:}"
  fi
} >"$conf.tmp"
mv "$conf.tmp" "$conf"

if [ "$master" = "$MY_HOST:$REDIS_PORT" ]; then log "starting as master"; else log "starting as replica of $master"; fi
exec redis-server "$conf"
