#!/bin/sh
# shellcheck source-path=SCRIPTDIR
# Starts this pod's Sentinel monitoring the master the other Sentinels agree on (pod 0 for a
# new cluster). See redis-common.sh. Extra environment:
#   QUORUM                          Sentinels that must agree the master is down
#   DOWN_AFTER_MILLISECONDS         silence before a Sentinel considers the master down
#   FAILOVER_TIMEOUT_MILLISECONDS   bound of one failover attempt
set -eu
LOG_TAG=sentinel-start
CONFIG_DIR=${CONFIG_DIR:-$(dirname "$0")}
# shellcheck source=redis-common.sh
. "$CONFIG_DIR/redis-common.sh"
: "${QUORUM:?QUORUM is required}"
DOWN_AFTER_MILLISECONDS=${DOWN_AFTER_MILLISECONDS:-5000}
FAILOVER_TIMEOUT_MILLISECONDS=${FAILOVER_TIMEOUT_MILLISECONDS:-60000}

# A Sentinel must join even while the master is down: it may be the vote the others need to
# fail over. So the master only has to be named, not reachable.
master=$(discover_master any)
master_host=${master%:*}

# Sentinel refuses to start when a monitored host name does not resolve, and a new pod's DNS
# record can lag its start by a few seconds.
deadline=$(($(date +%s) + DISCOVERY_TIMEOUT_SECONDS))
until getent hosts "$master_host" >/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "$master_host does not resolve"
    exit 1
  fi
  sleep 1
done

# Sentinel rewrites its file as it learns replicas and peers: it must be a writable copy.
mkdir -p "$RUN_DIR"
conf="$RUN_DIR/sentinel.conf"
{
  cat "$CONFIG_DIR/sentinel.conf"
  printf '\n# Set by sentinel-start.sh for this pod.\n'
  printf 'port %s\n' "$SENTINEL_PORT"
  if [ -n "${BIND_ADDRESSES:-}" ]; then printf 'bind %s\n' "$BIND_ADDRESSES"; fi
  printf 'sentinel announce-ip %s\n' "$MY_HOST"
  printf 'sentinel announce-port %s\n' "$SENTINEL_PORT"
  printf 'sentinel monitor %s %s %s %s\n' "$MASTER_NAME" "$master_host" "${master##*:}" "$QUORUM"
  printf 'sentinel down-after-milliseconds %s %s\n' "$MASTER_NAME" "$DOWN_AFTER_MILLISECONDS"
  printf 'sentinel failover-timeout %s %s\n' "$MASTER_NAME" "$FAILOVER_TIMEOUT_MILLISECONDS"
  # One replica resyncs at a time, so the others keep serving reads during a failover.
  printf 'sentinel parallel-syncs %s 1\n' "$MASTER_NAME"
} >"$conf.tmp"
mv "$conf.tmp" "$conf"

log "monitoring $MASTER_NAME at $master (quorum $QUORUM)"
exec redis-sentinel "$conf"
