# shellcheck shell=bash
# Shell helpers shared by hack/bench.sh, hack/chaos.sh and hack/mem-probe.sh (sourced, not run).

log() { printf '[%s] %s\n' "${LOG_PREFIX:-bench}" "$*" >&2; }

# The BENCH_*/CHAOS_* variables set in the environment, as a prefix for the exact command line.
bench_env_prefix() {
  local prefix=$1 var out=""
  while IFS= read -r var; do
    out+="$var=${!var} "
  done < <(compgen -e | grep "^$prefix" | grep -v '_OUT_\|_LOG_DIR' | sort)
  printf '%s' "$out"
}

# Uses the cluster in KUBECONFIG when it names another cluster; else the local control plane,
# started here when it is not running (and then stopped when the script exits, whatever
# happened). Sets CLUSTER_STARTED_HERE=0/1.
use_cluster() {
  local local_kc=$REPO_ROOT/.cluster/kubeconfig
  CLUSTER_STARTED_HERE=0
  if [[ -n ${KUBECONFIG:-} && $KUBECONFIG != "$local_kc" ]]; then
    log "using the cluster in KUBECONFIG=$KUBECONFIG"
    return
  fi
  if "$REPO_ROOT/hack/cluster.sh" status >/dev/null 2>&1; then
    log "reusing the running local cluster (shared: others may be using it)"
  else
    log "starting the local cluster (stopped again when $1 ends)"
    CLUSTER_STARTED_HERE=1
    trap '"$REPO_ROOT/hack/cluster.sh" down' EXIT
    "$REPO_ROOT/hack/cluster.sh" up >&2
  fi
  export KUBECONFIG=$local_kc
}

# One release build of the operator and the named bench targets (one profile, one feature
# set, so they share every dependency); sets BIN_course_operator and BIN_<target>.
build_bins() {
  local args=(--release --bin course-operator) t line name exe
  for t in "$@"; do args+=(--bench "$t"); done
  log "cargo build ${args[*]}"
  while IFS= read -r line; do
    exe=$(sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' <<<"$line")
    [[ -n $exe ]] || continue
    name=$(sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*/\1/p' <<<"$line")
    name=${name//-/_}
    printf -v "BIN_$name" '%s' "$exe"
  done < <(nice cargo build "${args[@]}" --message-format=json-render-diagnostics)
  [[ -n ${BIN_course_operator:-} ]] || { log "no operator binary built"; exit 1; }
  for t in "$@"; do
    local var="BIN_$t"
    [[ -n ${!var:-} ]] || { log "no binary for bench target $t"; exit 1; }
  done
}

# The client limits the running kube-controller-manager was started with (its defaults: 20 QPS,
# burst 30, 5 concurrent Deployment and ReplicaSet syncs).
kcm_limits_in_use() {
  local pid args
  pid=$(cat "$REPO_ROOT/.cluster/kwok/clusters/course-operator/pids/kube-controller-manager.pid" 2>/dev/null || true)
  args=$([[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  local raised
  raised=$(grep -oE -- '--(kube-api-qps|kube-api-burst|concurrent-deployment-syncs|concurrent-replicaset-syncs)=[0-9]+' <<<"$args" | tr '\n' ' ')
  echo "${raised:-defaults (20 QPS, burst 30, 5 syncs)}"
}

# The machine, as a Markdown table.
machine_table() {
  local cpu mem k8s
  cpu=$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -n1)
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  k8s=$("$REPO_ROOT/.cluster/bin/kubectl" version -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | tail -n1 || true)
  echo "| machine | |"
  echo "|---|---|"
  echo "| nproc | $(nproc) (${cpu:-unknown CPU}) |"
  echo "| memory | $mem |"
  echo "| kernel | $(uname -r) |"
  echo "| rustc | $(rustc --version 2>/dev/null) |"
  echo "| Kubernetes (apiserver) | ${k8s:-?} (local control plane, kwok nodes) |"
  echo "| load average before | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| cluster | $([[ ${CLUSTER_STARTED_HERE:-0} == 1 ]] && echo "started by this run" || echo "shared with other users (noisy)") |"
  echo "| kube-controller-manager client limits | $(kcm_limits_in_use) |"
}

# Replaces the text between <!-- NAME:begin --> and <!-- NAME:end --> in FILE with the
# contents of CONTENT (appends the markers when missing).
splice_section() {
  local file=$1 name=$2 content=$3 begin end
  begin="<!-- $name:begin -->"
  end="<!-- $name:end -->"
  [[ -f $file ]] || touch "$file"
  if ! grep -qF "$begin" "$file"; then
    printf '\n%s\n%s\n' "$begin" "$end" >>"$file"
  fi
  awk -v b="$begin" -v e="$end" -v f="$content" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }' "$file" >"$file.tmp"
  mv "$file.tmp" "$file"
}

# Room for the fleets: the six kwok nodes of hack/manifests/nodes.yaml hold 660 pods and 96 GiB
# of memory requests, but the full fleet runs up to 3 app replicas per CourseService (3,000
# pods at N=1000; the fleet gives itself half of the free pod slots) and the cache+database
# round's 100 MongoDB members alone request 100 GiB (250m CPU and 1 GiB each). Every run adds
# one large kwok node per zone (BENCH_CAPACITY_PODS pods each, default 2000; 0 adds none) and
# deletes them when it ends.
capacity_nodes() {
  local zone pods=${BENCH_CAPACITY_PODS:-2000}
  for zone in a b c; do
    printf -- '---\napiVersion: v1\nkind: Node\nmetadata:\n  name: kwok-bench-zone-%s\n' "$zone"
    printf '  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}\n'
    printf '  labels: {kubernetes.io/hostname: kwok-bench-zone-%s, kubernetes.io/os: linux, type: kwok, topology.kubernetes.io/zone: zone-%s}\n' "$zone" "$zone"
    printf 'spec:\n  taints:\n  - {key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}\n'
    printf 'status:\n  allocatable: {cpu: "2000", memory: 8Ti, pods: "%s"}\n  capacity: {cpu: "2000", memory: 8Ti, pods: "%s"}\n' "$pods" "$pods"
  done
}

# Room for the fleets (BENCH_CAPACITY_PODS, 0 for none): the capacity nodes, applied now and
# deleted when the run ends, before a cluster use_cluster started is stopped.
add_capacity_nodes() {
  [[ ${BENCH_CAPACITY_PODS:-2000} != 0 ]] || return 0
  local kubectl=$REPO_ROOT/.cluster/bin/kubectl
  capacity_nodes | "$kubectl" apply -f - >&2
  # runs before the cluster is stopped (use_cluster's trap), or alone on a shared cluster
  trap 'capacity_nodes | "$REPO_ROOT/.cluster/bin/kubectl" delete --ignore-not-found -f - >&2 || true; ((CLUSTER_STARTED_HERE)) && "$REPO_ROOT/hack/cluster.sh" down' EXIT
  "$kubectl" wait --for=condition=Ready --timeout=60s node/kwok-bench-zone-a node/kwok-bench-zone-b node/kwok-bench-zone-c >&2
}
