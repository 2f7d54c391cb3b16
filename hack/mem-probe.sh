#!/usr/bin/env bash
# Memory probe: N CourseServices (0 replicas) in namespace memprobe on the local cluster, the
# operator binary BIN started on the converged fleet, VmHWM/VmRSS after 40 s. Extra arguments
# are environment assignments for the operator (e.g. MALLOC_ARENA_MAX=1).
#   hack/mem-probe.sh 1000 ~/.cache/course-operator/cargo-target/release/course-operator
# Run it twice: the first run also creates the fleet's children. Clean up with
#   kubectl delete ns memprobe; kubectl delete servicecidr memprobe
set -euo pipefail
N=$1 BIN=$2; shift 2
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KUBECONFIG=$REPO_ROOT/.cluster/kubeconfig PATH=$REPO_ROOT/.cluster/bin:$PATH
work=$(mktemp -d "${TMPDIR:-/tmp}/course-operator-mem.XXXXXX")
kubectl apply --server-side --field-manager=course-operator-memprobe \
  -f "$REPO_ROOT/crds/courseservices.microcourses.io.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/courseservices.microcourses.io >/dev/null
kubectl create ns memprobe >/dev/null 2>&1 || true
# The local cluster's Service range is a /24: more ClusterIPs for a large fleet.
kubectl apply -f - >/dev/null <<'YAML'
apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata: {name: memprobe}
spec: {cidrs: ["10.1.0.0/20"]}
YAML
if (( $(kubectl -n memprobe get csvc --no-headers 2>/dev/null | wc -l) < N )); then
  for ((i = 0; i < N; i++)); do
    printf -- '---\napiVersion: microcourses.io/v1alpha1\nkind: CourseService\nmetadata: {name: c%04d, namespace: memprobe}\nspec: {image: "registry.example.com/bench/app:1.0.0", replicas: 0, service: {type: ClusterIP}}\n' "$i"
  done >"$work/fleet.yaml"
  kubectl apply --server-side -f "$work/fleet.yaml" >/dev/null
fi
env "$@" "$BIN" run --no-leader-election --namespace memprobe --metrics-addr 127.0.0.1:18081 \
  --resync-seconds 30 --log-level warn >"$work/operator.log" 2>&1 &
pid=$!
started=$SECONDS
until (( $(kubectl -n memprobe get csvc -o jsonpath='{range .items[*]}{.status.observedGeneration}{"\n"}{end}' | grep -c .) >= N )); do
  (( SECONDS - started > 600 )) && { echo "not converged after 600 s (log: $work/operator.log)" >&2; break; }
  sleep 2
done
echo "every CourseService has a status after $((SECONDS - started)) s"
sleep 40
grep -E "VmHWM|VmRSS" "/proc/$pid/status" | tr -s ' \t\n' ' '; echo
kill "$pid"; wait "$pid" 2>/dev/null || true
