#!/usr/bin/env bash
# shellcheck disable=SC2154 # BIN_* variables are set by build_bins (benches/common/scripts.sh)
# `make bench-peers`: the same fleet under course-operator and under Argo Rollouts' controller
# (built from the Go module proxy at ARGO_ROLLOUTS_VERSION, hack/versions.env), one side after
# the other on the same cluster, alternating which goes first (benches/peers.rs). Results go to
# benchmarks/peers.json and into BENCHMARKS.md between the peers markers.
#
#   hack/bench-peers.sh                 N=100 per side, 2 runs
#   PEERS_N, PEERS_RUNS, PEERS_REPLICAS  see benches/peers.rs
#   KCM_RAISED=0                        kube-controller-manager at its default client limits
#                                       (only for a cluster this script starts)
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/course-operator/cargo-target}
LOG_PREFIX=peers
# shellcheck source=benches/common/scripts.sh
source "$REPO_ROOT/benches/common/scripts.sh"

command_line="$(bench_env_prefix PEERS_)$(bench_env_prefix KCM_)hack/bench-peers.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/course-operator-peers.XXXXXX")
export PEERS_LOG_DIR=$work/logs

"$HACK_DIR/build.sh" argo-rollouts
argo_dir=$("$HACK_DIR/build.sh" --dir argo-rollouts)
export ARGO_ROLLOUTS_BIN=$argo_dir/bin/rollouts-controller ARGO_ROLLOUTS_CRDS=$argo_dir/crds.yaml
export KCM_RAISED=${KCM_RAISED:-0}
# Writes are counted from the audit log: a cluster started here records every kind both sides
# write; a running one must have been started the same way.
export AUDIT_POLICY=peers
use_cluster bench-peers
if ! grep -q 'audit-policy-peers.yaml' "$REPO_ROOT/.cluster/kwokctl.yaml" 2>/dev/null; then
  log "the running cluster was not started with AUDIT_POLICY=peers: its audit log lacks the writes this bench counts"
  log "stop it (hack/cluster.sh down) and run again, or start it with AUDIT_POLICY=peers hack/cluster.sh up"
  exit 1
fi
# Room for N × replicas pods and the canaries' surge: one large kwok node per zone.
add_capacity_nodes
build_bins peers

rc=0
OPERATOR_BIN=$BIN_course_operator PEERS_OUT_JSON=benchmarks/peers.json PEERS_OUT_MD=$work/peers.md \
  "$BIN_peers" 2> >(tee "$work/peers.log" >&2) || rc=$?
{
  echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) with \`$command_line\` (Argo Rollouts ${ARGO_ROLLOUTS_VERSION:-$(sed -n 's/^ARGO_ROLLOUTS_VERSION=//p' hack/versions.env)})$( ((rc)) && echo " — **exit $rc**")."
  echo
  machine_table
  echo
  [[ -f $work/peers.md ]] && cat "$work/peers.md"
} >"$work/section.md"
splice_section BENCHMARKS.md peers "$work/section.md"
log "results: benchmarks/peers.json, BENCHMARKS.md (section peers); logs in $work"
exit "$rc"
