#!/usr/bin/env bash
# Memory probe: N CourseServices in namespace memprobe on the local cluster, the operator
# binary BIN started on the converged fleet, VmHWM/VmRSS after 40 s. Extra arguments are
# environment assignments for the operator (e.g. MALLOC_ARENA_MAX=1).
#   hack/mem-probe.sh 1000 ~/.cache/course-operator/cargo-target/release/course-operator
# MEMPROBE_REPLICAS (default 0): app replicas per CourseService, on the kwok nodes (one large
# capacity node per zone is added, as `make bench` does). MEMPROBE_HEAPTRACK=DIR runs the
# operator under heaptrack (Debian `heaptrack`), which writes DIR/heaptrack.course-operator.*.zst
# (or named after BIN); read it with `heaptrack_print -f FILE` (peak heap, and who allocated it).
# MEMPROBE_UPDATE=TAG: then change every CourseService's image to app:TAG at once (one apply),
# wait until every rollout settled (Healthy) on the new revision, and print VmHWM/VmRSS once
# more: the peak of an update burst (a new TAG each time, or nothing changes).
# Run it twice: the first run also creates the fleet and its children. Clean up with
#   kubectl delete ns memprobe; kubectl delete servicecidr memprobe
set -euo pipefail
N=$1 BIN=$2; shift 2
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KUBECONFIG=$REPO_ROOT/.cluster/kubeconfig PATH=$REPO_ROOT/.cluster/bin:$PATH
# shellcheck source=benches/common/scripts.sh
source "$REPO_ROOT/benches/common/scripts.sh"
replicas=${MEMPROBE_REPLICAS:-0}
work=$(mktemp -d "${TMPDIR:-/tmp}/course-operator-mem.XXXXXX")
kubectl apply --server-side --field-manager=course-operator-memprobe \
  -f "$REPO_ROOT/crds/courseservices.microcourses.io.yaml" >/dev/null
"$REPO_ROOT/hack/crd-established.sh" courseservices.microcourses.io
kubectl create ns memprobe >/dev/null 2>&1 || true
# The local cluster's Service range is a /24: more ClusterIPs for a large fleet.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: memprobe}
spec: {cidrs: ["10.1.0.0/20"]}
YAML
if ((replicas > 0)); then
  capacity_nodes | kubectl apply -f - >/dev/null
fi
placement=""
((replicas > 0)) && placement=', nodeSelector: {type: kwok}, tolerations: [{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}]'
for ((i = 0; i < N; i++)); do
  printf -- '---\napiVersion: microcourses.io/v1alpha1\nkind: CourseService\nmetadata: {name: c%04d, namespace: memprobe}\nspec: {image: "registry.example.com/bench/app:1.0.0", replicas: %d, service: {type: ClusterIP}%s}\n' "$i" "$replicas" "$placement"
done >"$work/fleet.yaml"
if (($(kubectl -n memprobe get csvc --no-headers 2>/dev/null | wc -l) < N)); then
  kubectl apply --server-side -f "$work/fleet.yaml" >/dev/null
fi
wrap=()
[[ -n ${MEMPROBE_HEAPTRACK:-} ]] && wrap=(heaptrack)
mkdir -p "${MEMPROBE_HEAPTRACK:-$work}"
(cd "${MEMPROBE_HEAPTRACK:-$work}" && exec env "$@" "${wrap[@]}" "$BIN" run --no-leader-election --namespace memprobe --metrics-addr 127.0.0.1:18081 \
  --resync-seconds 30 --log-level warn) >"$work/operator.log" 2>&1 &
pid=$!
started=$SECONDS
# Converged: every CourseService reports its generation and, with replicas, is Available.
until (($(kubectl -n memprobe get csvc -o jsonpath='{range .items[*]}{.status.observedGeneration}{" "}{.status.conditions[?(@.type=="Available")].status}{"\n"}{end}' |
  if ((replicas > 0)); then grep -c ' True$'; else grep -c '^[0-9]'; fi) >= N)); do
  ((SECONDS - started > 900)) && {
    echo "not converged after 900 s (log: $work/operator.log)" >&2
    break
  }
  sleep 2
done
echo "every CourseService converged after $((SECONDS - started)) s"
sleep 40
if [[ -n ${MEMPROBE_HEAPTRACK:-} ]]; then
  # heaptrack's script is $pid; the operator is its child
  pid=$(pgrep -n -f "^$BIN run --no-leader-election --namespace memprobe" || pgrep -P "$pid" -n)
fi
grep -E "VmHWM|VmRSS" "/proc/$pid/status" | tr -s ' \t\n' ' '
echo
if [[ -n ${MEMPROBE_UPDATE:-} ]]; then
  sed "s|bench/app:1.0.0|bench/app:$MEMPROBE_UPDATE|" "$work/fleet.yaml" >"$work/update.yaml"
  before=$(kubectl -n memprobe get csvc c0000 -o jsonpath='{.status.rollout.stableRevision}')
  started=$SECONDS
  kubectl apply --server-side -f "$work/update.yaml" >/dev/null
  # Updated: every CourseService's rollout settled (Healthy) on a revision other than before.
  until (($(kubectl -n memprobe get csvc -o jsonpath='{range .items[*]}{.status.rollout.stableRevision}{" "}{.status.rollout.phase}{"\n"}{end}' |
    awk -v r="$before" '$1 != r && $2 == "Healthy"' | wc -l) >= N)); do
    ((SECONDS - started > 1800)) && {
      echo "not updated after 1800 s (log: $work/operator.log); VmHWM so far:" >&2
      break
    }
    sleep 2
  done
  ((SECONDS - started > 1800)) || echo "every CourseService updated after $((SECONDS - started)) s"
  sleep 20
  grep -E "VmHWM|VmRSS" "/proc/$pid/status" | tr -s ' \t\n' ' '
  echo
fi
kill "$pid"
wait 2>/dev/null || true # heaptrack writes its file before it exits
