#!/bin/sh
# shellcheck source-path=SCRIPTDIR
# preStop hook of the Redis container: when this pod is master and has replicas, ask the
# Sentinels to fail over and wait until they name another master, so clients move before the
# process stops instead of waiting out down-after-milliseconds. See redis-common.sh. Extra
# environment: PRESTOP_WAIT_SECONDS (keep below terminationGracePeriodSeconds).
set -u
LOG_TAG=redis-prestop
CONFIG_DIR=${CONFIG_DIR:-$(dirname "$0")}
# shellcheck source=redis-common.sh
. "$CONFIG_DIR/redis-common.sh"
PRESTOP_WAIT_SECONDS=${PRESTOP_WAIT_SECONDS:-20}
me="$MY_HOST:$REDIS_PORT"

role=$(cli "127.0.0.1:$REDIS_PORT" ROLE 2>/dev/null | sed -n 1p)
[ "$role" = master ] || exit 0
replicas=$(cli "127.0.0.1:$REDIS_PORT" INFO replication 2>/dev/null | sed -n 's/^connected_slaves:\([0-9]*\).*/\1/p')
if [ "${replicas:-0}" -eq 0 ]; then
  log "master without replicas: nothing to fail over to"
  exit 0
fi

# Ask the other pods' Sentinels first: ours is being stopped together with this pod.
ordered=""
i=0
for s in $SENTINELS; do
  if [ "$i" -ne "$ORDINAL" ]; then ordered="$ordered $s"; fi
  i=$((i + 1))
done
ordered="$ordered $(nth "$ORDINAL" "$SENTINELS")"

asked=""
for s in $ordered; do
  if [ "$(cli "$s" SENTINEL FAILOVER "$MASTER_NAME" 2>/dev/null)" = OK ]; then
    asked=$s
    break
  fi
done
if [ -z "$asked" ]; then
  log "no Sentinel accepted a failover; stopping anyway"
  exit 0
fi

log "asked $asked to fail over; waiting up to ${PRESTOP_WAIT_SECONDS}s"
deadline=$(($(date +%s) + PRESTOP_WAIT_SECONDS))
while [ "$(date +%s)" -lt "$deadline" ]; do
  named=$(cli "$asked" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | paste -sd: -)
  if [ -n "$named" ] && [ "$named" != "$me" ]; then
    log "Sentinels name $named as master"
    exit 0
  fi
  sleep 0.2
done
log "Sentinels still name us as master; stopping anyway"
exit 0
