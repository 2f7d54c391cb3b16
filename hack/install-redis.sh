#!/usr/bin/env bash
# Install redis-server, redis-sentinel and redis-cli for the data tier (tests/data_redis.rs),
# which runs the rendered Redis/Sentinel configuration and startup scripts on real binaries.
# Idempotent: apt-get runs (after one `apt-get update`) only when a binary is missing.
#
# The Debian packages start system services on 6379/26379 where an init system runs; the
# tests never use those ports, but the services are stopped and disabled anyway so a
# developer's machine does not keep an unused Redis around.
set -euo pipefail

log() { printf '[install-redis] %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) != 0 ]]; then SUDO=(sudo); fi

if command -v redis-server >/dev/null && command -v redis-sentinel >/dev/null && command -v redis-cli >/dev/null; then
  log "present: $(redis-server --version)"
  exit 0
fi

log "installing redis-server redis-sentinel redis-tools"
"${SUDO[@]}" apt-get update -qq
# policy-rc.d exit 101 tells Debian maintainer scripts not to start services; only ours is
# removed afterwards, and only if we created it.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
  "${SUDO[@]}" chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if (( created_policy )); then "${SUDO[@]}" rm -f "$policy"; fi; }
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
  redis-server redis-sentinel redis-tools

if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  "${SUDO[@]}" systemctl disable --now redis-server redis-sentinel >/dev/null 2>&1 || true
fi

log "installed: $(redis-server --version)"
