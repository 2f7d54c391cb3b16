#!/usr/bin/env bash
# The cost of the Deployment hop (issue "benchmarks side by side with Argo Rollouts"): N
# one-replica zone workloads on the kwok nodes, written once as Deployments (the operator's
# per-zone workloads today: kube-controller-manager turns each into a ReplicaSet, then pods)
# and once as ReplicaSets directly (what Argo Rollouts writes). No operator runs.
#
#   hack/bench-hop.sh [N] [ROUNDS]     default N=300 (100 CourseServices x 3 zones), 2 rounds
#   HOP_REPLICAS=3 hack/bench-hop.sh 100   the shape Argo Rollouts writes: one object of 3 pods
#                                          per service, no zone pinning
#
# Clock: from the start of one `kubectl apply --server-side` of all N objects to a 1 s poll
# seeing N Ready pods; the order of the two kinds alternates between rounds. Against the
# cluster in KUBECONFIG (default: the local one). kube-controller-manager's client limits are
# whatever that cluster runs with (hack/cluster.sh: defaults, or KCM_RAISED=1).
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
N=${1:-300}
ROUNDS=${2:-2}
export KUBECONFIG=${KUBECONFIG:-$REPO_ROOT/.cluster/kubeconfig}
KUBECTL=${KUBECTL:-$REPO_ROOT/.cluster/bin/kubectl}
ZONES=(zone-a zone-b zone-c)
REPLICAS=${HOP_REPLICAS:-1}
PODS=$((N * REPLICAS))

manifest() {
  local kind=$1 ns=$2 i
  for ((i = 0; i < N; i++)); do
    cat <<YAML
---
apiVersion: apps/v1
kind: $kind
metadata: {name: w$i, namespace: $ns}
spec:
  replicas: $REPLICAS
  selector: {matchLabels: {w: "w$i"}}
  template:
    metadata: {labels: {w: "w$i"}}
    spec:
      nodeSelector: {type: kwok$( ((REPLICAS == 1)) && echo ", topology.kubernetes.io/zone: ${ZONES[i % 3]}")}
      tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]
      containers: [{name: app, image: registry.example.com/hop:1}]
YAML
  done
}

ready_pods() {
  "$KUBECTL" get pods -n "$1" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c True || true
}

run() {
  local kind=$1 ns file start elapsed
  ns=hop-$(tr 'A-Z' 'a-z' <<<"$kind")-$RANDOM
  file=$(mktemp)
  manifest "$kind" "$ns" >"$file"
  "$KUBECTL" create namespace "$ns" >/dev/null
  start=$(date +%s.%N)
  "$KUBECTL" apply --server-side -f "$file" >/dev/null
  until (($(ready_pods "$ns") >= PODS)); do
    sleep 1
    elapsed=$(echo "$(date +%s.%N) - $start" | bc)
    if (($(echo "$elapsed > 600" | bc))); then echo "$kind: not all Ready after 600 s" >&2; exit 1; fi
  done
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  printf '%-11s N=%d x %d replicas  all %d pods Ready after %.1f s\n' "$kind" "$N" "$REPLICAS" "$PODS" "$elapsed"
  "$KUBECTL" delete namespace "$ns" --wait=true >/dev/null
  rm -f "$file"
}

for ((round = 0; round < ROUNDS; round++)); do
  if ((round % 2 == 0)); then run Deployment; run ReplicaSet; else run ReplicaSet; run Deployment; fi
done
