#!/usr/bin/env bash
# Install what a fresh Debian machine needs for hack/build.sh and hack/cluster.sh. Idempotent:
# apt-get runs (after one `apt-get update`) only when a package is missing.
#
# Needs: Go >= 1.26 (not installed here: Debian's golang is too old and toolchains are never
# downloaded, GOTOOLCHAIN=local), ca-certificates (HTTPS to the Go module proxy), procps and
# iproute2 (ps/ss, used by the docs' checks). kwokctl generates all certificates itself, so
# openssl is not required.
set -euo pipefail

log() { printf '[install-deps] %s\n' "$*" >&2; }

SUDO=()
if [[ $(id -u) != 0 ]]; then SUDO=(sudo); fi

# The real nodes (hack/nodes.sh): containerd + runc + CNI plugins, iptables/conntrack for
# kube-proxy; the local images (hack/images.sh): umoci, skopeo, strip (binutils).
packages=(ca-certificates procps iproute2 containerd runc containernetworking-plugins conntrack iptables
  umoci skopeo binutils)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if (( ${#missing[@]} )); then
  log "installing: ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "system packages present: ${packages[*]}"
fi

GO=$(command -v go || true)
[[ -n $GO ]] || GO=/usr/local/go/bin/go
if [[ ! -x $GO ]]; then
  log "ERROR: Go not found (looked in PATH and /usr/local/go/bin). Go >= 1.26 is required."
  exit 1
fi
gov=$(GOTOOLCHAIN=local "$GO" env GOVERSION)   # e.g. go1.26.8
minor=${gov#go1.}; minor=${minor%%.*}
if [[ ! $gov =~ ^go1\.[0-9]+ ]] || (( minor < 26 )); then
  log "ERROR: $GO is $gov; Go >= 1.26 is required (k8s v1.37 and kwok v0.8 need it)."
  exit 1
fi
log "Go OK: $GO ($gov)"
