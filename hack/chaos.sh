#!/usr/bin/env bash
# shellcheck disable=SC2154 # BIN_* variables are set by build_bins (benches/common/scripts.sh)
# `make chaos`: benches/chaos/ against the local control plane, with the release operator
# binary. Exits non-zero when any invariant breaks. Results: benchmarks/chaos.json and
# BENCHMARKS.md (section chaos).
#
# Zone loss and the kube-apiserver restart change the cluster itself (nodes deleted, the
# control plane restarted), so they run only when this script started the cluster (it is then
# stopped again at the end); on a running, shared cluster they are skipped with a notice.
#
#   hack/chaos.sh                      quick: 10k fuzzed specs, 10 SIGKILLs, failover
#   CHAOS_FULL=1 hack/chaos.sh         100 SIGKILLs
#   hack/chaos.sh fuzz kills           only these scenarios
#   CHAOS_SEED, CHAOS_KILLS, CHAOS_FUZZ_CASES, CHAOS_DRY_RUN_SAMPLE, CHAOS_RESTART_DEADLINE
#   CHAOS_ALLOW_SKIPPED=1              a scenario that cannot run here does not fail the run
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/course-operator/cargo-target}
LOG_PREFIX=chaos
# shellcheck source=benches/common/scripts.sh
source "$REPO_ROOT/benches/common/scripts.sh"

command_line="$(bench_env_prefix CHAOS_)hack/chaos.sh${*:+ $*}"
work=$(mktemp -d "${TMPDIR:-/tmp}/course-operator-chaos.XXXXXX")
export CHAOS_LOG_DIR=$work/logs

use_cluster chaos
if [[ $CLUSTER_STARTED_HERE == 1 ]]; then
  export CHAOS_OWN_CLUSTER=1
else
  export CHAOS_OWN_CLUSTER=0
  log "NOTICE: the cluster was already running (shared): zone loss and the apiserver restart cannot run here; a skipped scenario fails the run unless CHAOS_ALLOW_SKIPPED=1 or the scenarios to run are named"
fi
build_bins chaos

rc=0
OPERATOR_BIN=$BIN_course_operator CHAOS_OUT_JSON=benchmarks/chaos.json CHAOS_OUT_MD=$work/chaos.md \
  "$BIN_chaos" "$@" 2> >(tee "$work/chaos.log" >&2) || rc=$?

{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) with \`$command_line\`: **$( ((rc)) && echo "exit $rc, invariants broken" || echo "every invariant held")**."
  echo
  machine_table
  echo
  [[ -f $work/chaos.md ]] && cat "$work/chaos.md"
} >"$work/section.md"
splice_section BENCHMARKS.md chaos "$work/section.md"
log "results: benchmarks/chaos.json, BENCHMARKS.md (section chaos); operator logs in $CHAOS_LOG_DIR"
if ((rc)); then
  log "invariants broken (exit $rc); logs kept in $work"
  exit "$rc"
fi
rm -rf "$work"
