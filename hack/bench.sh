#!/usr/bin/env bash
# shellcheck disable=SC2154 # BIN_* variables are set by build_bins (benches/common/scripts.sh)
# `make bench`: the fleet benchmark (benches/fleet.rs) and the plan/render micro-benchmark
# (benches/render.rs), with the release operator binary, against the cluster in KUBECONFIG
# (default: the local control plane; started here if it is not running, and then stopped again).
# Figures go to benchmarks/results.json (benchmarks/results-full.json with BENCH_FULL=1) and
# into BENCHMARKS.md between the bench markers.
#
#   hack/bench.sh                       quick: N=100, 3 runs, 60 s idle window
#   BENCH_FULL=1 hack/bench.sh          full: N=1000, 1 run, 300 s idle window
#   BENCH_N, BENCH_RUNS, BENCH_IDLE_SECONDS, BENCH_RESYNC_SECONDS, BENCH_CONCURRENCY,
#   BENCH_LATENCY_RATE, BENCH_LATENCY_SAMPLES, BENCH_ROLLOUTS, BENCH_REPLICAS, BENCH_DATA_N, BENCH_NO_DATA=1,
#   BENCH_KEEP_NAMESPACES=1, BENCH_SKIP_RENDER=1, BENCH_CAPACITY_PODS
#   see benches/fleet.rs and BENCHMARKS.md
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/course-operator/cargo-target}
# shellcheck source=benches/common/scripts.sh
source "$REPO_ROOT/benches/common/scripts.sh"

command_line="$(bench_env_prefix BENCH_)hack/bench.sh"
mode=quick
[[ ${BENCH_FULL:-} == 1 ]] && mode=full
work=$(mktemp -d "${TMPDIR:-/tmp}/course-operator-bench.XXXXXX")
export BENCH_LOG_DIR=$work/logs

# A cluster this bench starts gets kube-controller-manager with raised client limits, so the
# figures measure the operator and the API, not kcm's default 20 QPS (KCM_RAISED=0 for the
# defaults most clusters run); the machine table records what the cluster ran with.
export KCM_RAISED=${KCM_RAISED:-1}
use_cluster bench                      # sets KUBECONFIG; stops a cluster it started on exit
build_bins fleet render                # sets BIN_course_operator, BIN_fleet, BIN_render

# Room for the fleets: one large kwok node per zone (benches/common/scripts.sh).
add_capacity_nodes

json=benchmarks/results.json
[[ $mode == full ]] && json=benchmarks/results-full.json
log "fleet benchmark ($mode); operator log files in $BENCH_LOG_DIR"
rc=0
OPERATOR_BIN=$BIN_course_operator BENCH_OUT_JSON=$json BENCH_OUT_MD=$work/fleet.md \
  "$BIN_fleet" 2> >(tee "$work/fleet.log" >&2) || rc=$?

if [[ ${BENCH_SKIP_RENDER:-} != 1 ]]; then
  log "plan/render micro-benchmark"
  "$BIN_render" >"$work/render.md" || rc=$?
  cat "$work/render.md"
fi

{
  echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) with \`$command_line\`$( ((rc)) && echo " — **exit $rc**")."
  echo
  machine_table
  echo
  [[ -f $work/fleet.md ]] && cat "$work/fleet.md"
  if [[ -f $work/render.md && ${BENCH_SKIP_RENDER:-} != 1 ]]; then
    echo
    echo "Pure part of one reconcile (\`benches/render.rs\`, no cluster; allocations counted by a wrapping allocator):"
    echo
    cat "$work/render.md"
  fi
} >"$work/section.md"
splice_section BENCHMARKS.md "bench-$mode" "$work/section.md"
log "results: $json, BENCHMARKS.md (section bench-$mode)"
if ((rc)); then
  log "the benchmark failed (exit $rc); logs kept in $work"
  exit "$rc"
fi
rm -rf "$work"
