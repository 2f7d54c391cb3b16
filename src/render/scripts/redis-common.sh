# Shared by redis-start.sh, sentinel-start.sh and redis-prestop.sh (sourced, not run): where
# this pod stands in the cache cluster, and how to learn which Redis is master.
#
# Everything about the topology comes from the environment, so the same scripts run in the
# StatefulSet (stable DNS names, fixed ports) and in the data-tier test (127.0.0.1, free ports):
#   MASTER_NAME    Sentinel master name; the application asks the Sentinels for it
#   ORDINAL        this pod's StatefulSet ordinal
#   MY_HOST        this pod's stable host name, announced to peers and clients
#   REDIS_NODES    every pod's Redis as host:port, in ordinal order, space separated
#   SENTINELS      every pod's Sentinel as host:port, in ordinal order, space separated
#   REDIS_PORT, SENTINEL_PORT      ports this pod listens on (6379, 26379)
#   CONFIG_DIR     the rendered redis.conf and sentinel.conf (default: this script's directory)
#   RUN_DIR        writable directory for the effective config files
#   DISCOVERY_TIMEOUT_SECONDS      give up (exit 1, the kubelet restarts us) after this long

: "${MASTER_NAME:?MASTER_NAME is required}"
: "${ORDINAL:?ORDINAL is required}"
: "${MY_HOST:?MY_HOST is required}"
: "${REDIS_NODES:?REDIS_NODES is required}"
: "${SENTINELS:?SENTINELS is required}"
REDIS_PORT=${REDIS_PORT:-6379}
SENTINEL_PORT=${SENTINEL_PORT:-26379}
RUN_DIR=${RUN_DIR:-/run/redis}
DISCOVERY_TIMEOUT_SECONDS=${DISCOVERY_TIMEOUT_SECONDS:-90}
# How long a restarted master waits for a failover before it takes its old role back.
SELF_CLAIM_WAIT_SECONDS=${SELF_CLAIM_WAIT_SECONDS:-60}
# A peer that takes longer than this to answer counts as unreachable, not as "knows nothing".
CLI_TIMEOUT_SECONDS=${CLI_TIMEOUT_SECONDS:-3}

log() {
  printf '%s %s[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${LOG_TAG:-redis}" "$ORDINAL" "$*" >&2
}

# nth INDEX LIST: the INDEX-th (from 0) word of LIST.
nth() {
  nth_i=0
  for nth_word in $2; do
    if [ "$nth_i" -eq "$1" ]; then
      printf '%s\n' "$nth_word"
      return 0
    fi
    nth_i=$((nth_i + 1))
  done
  return 1
}

# cli HOST:PORT ARGS...: one redis-cli command, bounded in time, raw output.
cli() {
  cli_address=$1
  shift
  timeout "$CLI_TIMEOUT_SECONDS" redis-cli --raw -h "${cli_address%:*}" -p "${cli_address##*:}" "$@"
}

# Asks every OTHER pod's Sentinel which Redis is master (our own Sentinel starts with us and
# knows no more than we do). Sets
#   OPINIONS  one host:port per answering Sentinel that knows a master
#   SILENT    Sentinels that may exist but did not answer (timeout, DNS failure, partition)
# A Sentinel whose host does not exist (no DNS record: the pod is not created yet) or refuses
# the connection (the pod runs but its Sentinel is not listening yet) has no opinion.
ask_sentinels() {
  OPINIONS=""
  SILENT=0
  as_i=0
  for as_sentinel in $SENTINELS; do
    if [ "$as_i" -ne "$ORDINAL" ]; then
      if as_out=$(cli "$as_sentinel" SENTINEL get-master-addr-by-name "$MASTER_NAME" 2>&1); then
        as_host=$(printf '%s\n' "$as_out" | sed -n 1p)
        as_port=$(printf '%s\n' "$as_out" | sed -n 2p)
        case $as_port in
          '') [ -z "$as_host" ] || { SILENT=$((SILENT + 1)); log "$as_sentinel answered $as_host"; } ;;
          *[!0-9]*) SILENT=$((SILENT + 1)); log "$as_sentinel answered $as_out" ;;
          *) OPINIONS="$OPINIONS$as_host:$as_port
" ;;
        esac
      else
        case $as_out in
          *"Connection refused"* | *"Name or service not known"* | *"No address associated with hostname"*) ;;
          *) SILENT=$((SILENT + 1)); log "$as_sentinel did not answer: ${as_out:-timeout}" ;;
        esac
      fi
    fi
    as_i=$((as_i + 1))
  done
}

# The master most Sentinels name; a tie goes to the smallest name, so every pod picks the same.
majority_opinion() {
  printf '%s' "$OPINIONS" | sed '/^$/d' | sort | uniq -c | sort -k1,1nr -k2,2 | sed -n '1s/^ *[0-9]* *//p'
}

# discover_master reachable|any: prints host:port of the master to follow.
#   - If any other Sentinel knows a master, that is the master (the majority's, if they differ).
#     With "reachable", it must also answer PING: Sentinels still naming a dead master are
#     mid-failover, and following it would leave us replicating nothing. When they name US,
#     our redis-server died and is starting again with an empty dataset (nothing is
#     persisted): taking the role back would make every replica resynchronise from nothing,
#     so we wait up to SELF_CLAIM_WAIT_SECONDS for them to promote a replica that kept the
#     data, and claim the role only when none did (no replica left, no quorum) or we are alone.
#   - Only when every other Sentinel is known to have no opinion is there no master anywhere:
#     then pod 0 is master by convention, so every pod reaches the same answer. While some
#     Sentinel exists but is silent we wait instead of guessing: guessing here is how a second
#     master (split brain) is born.
discover_master() {
  dm_now=$(date +%s)
  dm_deadline=$((dm_now + DISCOVERY_TIMEOUT_SECONDS))
  dm_claim_after=$((dm_now + SELF_CLAIM_WAIT_SECONDS))
  dm_peers=-1
  for dm_node in $REDIS_NODES; do dm_peers=$((dm_peers + 1)); done
  while :; do
    ask_sentinels
    if [ -n "$OPINIONS" ]; then
      dm_master=$(majority_opinion)
      if [ "$1" = reachable ] && [ "$dm_master" = "$MY_HOST:$REDIS_PORT" ]; then
        if [ "$dm_peers" -eq 0 ]; then
          log "Sentinels name this pod, the only one, as master"
          printf '%s\n' "$dm_master"
          return 0
        elif [ "$(date +%s)" -ge "$dm_claim_after" ]; then
          log "Sentinels name this pod as master and promoted no replica in ${SELF_CLAIM_WAIT_SECONDS}s; taking the role back"
          printf '%s\n' "$dm_master"
          return 0
        fi
        log "Sentinels name this pod as master, but its Redis restarted empty; waiting for them to promote a replica"
      elif [ "$1" != reachable ] || [ "$(cli "$dm_master" PING 2>/dev/null)" = PONG ]; then
        log "Sentinels name $dm_master as master"
        printf '%s\n' "$dm_master"
        return 0
      else
        log "Sentinels name $dm_master as master but it does not answer; waiting for a failover"
      fi
    elif [ "$SILENT" -eq 0 ]; then
      dm_master=$(nth 0 "$REDIS_NODES")
      log "no Sentinel knows a master: following pod 0 ($dm_master)"
      printf '%s\n' "$dm_master"
      return 0
    else
      log "$SILENT Sentinel(s) did not answer; not guessing a master while they may know one"
    fi
    if [ "$(date +%s)" -ge "$dm_deadline" ]; then
      log "no master found within ${DISCOVERY_TIMEOUT_SECONDS}s"
      return 1
    fi
    sleep 1
  done
}
