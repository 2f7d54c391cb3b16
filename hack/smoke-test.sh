#!/usr/bin/env bash
# Checks a running hack/cluster.sh cluster end to end, in a scratch namespace that is deleted
# afterwards: nodes/zones, topology spread, HPA on simulated CPU, StatefulSets with and without
# PVCs, Jobs, PodSecurity admission, RBAC. Takes ~1-2 minutes (mostly waiting for metrics).
#
#   hack/cluster.sh up && hack/smoke-test.sh
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
export KUBECONFIG=$REPO_ROOT/.cluster/kubeconfig
KUBECTL=$REPO_ROOT/.cluster/bin/kubectl
NS=smoke-$$

log() { printf '[smoke] %s\n' "$*" >&2; }
fail() { printf '[smoke] FAIL: %s\n' "$*" >&2; exit 1; }
k() { "$KUBECTL" "$@"; }
passed=0
ok() { passed=$((passed + 1)); log "ok: $*"; }

[[ -x $KUBECTL && -s $KUBECONFIG ]] || fail "no cluster: run hack/cluster.sh up"
cleanup() { k delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

# 1. nodes
ready=$(k get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {.metadata.labels.topology\.kubernetes\.io/zone}{"\n"}{end}')
[[ $(grep -c '^True zone-' <<<"$ready") -eq 6 ]] || fail "expected 6 Ready nodes with zones, got: $ready"
for z in zone-a zone-b zone-c; do
  [[ $(grep -c "^True $z$" <<<"$ready") -eq 2 ]] || fail "expected 2 nodes in $z"
done
ok "6 Ready nodes, 2 per zone"

k create namespace "$NS" >/dev/null

# 2. topology spread + HPA on simulated CPU (60m used of 100m requested -> 60%)
k apply -n "$NS" -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {kwok.x-k8s.io/usage-cpu: 60m}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - {name: app, image: example/web:1, resources: {requests: {cpu: 100m, memory: 64Mi}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 3
  maxReplicas: 3
  metrics:
  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}
EOF
k -n "$NS" rollout status deploy/web --timeout=60s >/dev/null || fail "deployment web not available"
zones=$(k -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sed 's/-[0-9]*$//' | sort | uniq -c | awk '{print $1}' | tr -d '\n')
[[ $zones == 111 ]] || fail "pods not spread 1 per zone: $(k -n "$NS" get pods -l app=web -o wide)"
ok "Deployment: 3 pods Running+Ready, one per zone"

# 3. StatefulSets (with and without PVCs) and a Job
k apply -n "$NS" -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: plain}
spec:
  serviceName: plain
  replicas: 2
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec: {containers: [{name: c, image: example/db:1}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: withpvc}
spec:
  serviceName: withpvc
  replicas: 2
  selector: {matchLabels: {app: withpvc}}
  template:
    metadata: {labels: {app: withpvc}}
    spec: {containers: [{name: c, image: example/db:1, volumeMounts: [{name: data, mountPath: /data}]}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: example/job:1}]
EOF
k -n "$NS" rollout status sts/plain --timeout=60s >/dev/null || fail "StatefulSet plain not ready"
ok "StatefulSet without PVC: 2 pods Ready"
k -n "$NS" rollout status sts/withpvc --timeout=60s >/dev/null || fail "StatefulSet withpvc not ready: $(k -n "$NS" get pvc)"
ok "StatefulSet with volumeClaimTemplates: PVCs Bound, 2 pods Ready"
k -n "$NS" wait --for=condition=Complete job/once --timeout=60s >/dev/null || fail "Job did not complete"
ok "Job completed"

# 4. admission and authorization
if k -n "$NS" label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null 2>&1 \
  && k -n "$NS" run priv --image=example/x:1 --privileged=true >/dev/null 2>&1; then
  fail "PodSecurity restricted did not reject a privileged pod"
fi
ok "PodSecurity admission enforces 'restricted'"
[[ $(k auth can-i list secrets -n "$NS" --as="system:serviceaccount:$NS:default" 2>/dev/null || true) == no ]] \
  || fail "RBAC: the default ServiceAccount may list secrets"
ok "RBAC denies an unprivileged ServiceAccount"

# 5. HPA sees the simulated CPU (metrics-server -> metrics.k8s.io)
start=$SECONDS
while :; do
  cur=$(k -n "$NS" get hpa web -o jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization}' 2>/dev/null || true)
  [[ -n $cur ]] && break
  (( SECONDS - start < 150 )) || fail "HPA has no CPU metric after 150s: $(k -n "$NS" get hpa web)"
  sleep 5
done
(( cur >= 50 && cur <= 70 )) || fail "HPA CPU utilization $cur%, expected ~60%"
ok "HPA reports CPU utilization ${cur}% after $(( SECONDS - start ))s"

echo "smoke: $passed passed, 0 failed"
