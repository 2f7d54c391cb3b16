#!/usr/bin/env bash
# `make demo`: the local control plane with its real nodes, the CRD, the operator (installed by
# Helm from the local image; a background process when DEMO_KUBECONFIG points at a cluster of
# yours), FerretDB as the external database and the course app with its Redis
# cache (hack/manifests/demo*.yaml); seeds a few courses, then shows the status and what to
# try. The last two lines of its output are exactly
#   COURSE_URL=http://<LoadBalancer address>
#   COURSE_SERVICE=<namespace>/<name>
# `hack/demo.sh down` stops the operator.
#
# To use a real cluster instead, set DEMO_KUBECONFIG to its kubeconfig: the local control
# plane is then neither started nor needed.
set -euo pipefail
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
STATE_DIR=$REPO_ROOT/.cluster
PID_FILE=$STATE_DIR/operator.pid
LOG_FILE=$STATE_DIR/operator.log
SAMPLE=${DEMO_SAMPLE:-$HACK_DIR/manifests/demo.yaml}
DATABASE=${DEMO_DATABASE:-$HACK_DIR/manifests/demo-database.yaml}
NAMESPACE=${DEMO_NAMESPACE:-demo}
OPERATOR_NAMESPACE=${DEMO_OPERATOR_NAMESPACE:-course-operator-system}
OPERATOR=${CARGO_TARGET_DIR:-$HOME/.cache/course-operator/cargo-target}/debug/course-operator

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

stop_operator() {
  if [[ -f $PID_FILE ]]; then
    pid=$(cat "$PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping the operator (pid $pid)"
      kill -TERM "$pid" || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    rm -f "$PID_FILE"
  fi
}

if [[ ${1:-up} == down ]]; then
  stop_operator
  exit 0
fi

if [[ -n ${DEMO_KUBECONFIG:-} ]]; then
  export KUBECONFIG=$DEMO_KUBECONFIG
  KUBECTL=${KUBECTL:-kubectl}
else
  "$HACK_DIR/cluster.sh" up >/dev/null
  export KUBECONFIG=$STATE_DIR/kubeconfig
  KUBECTL=$STATE_DIR/bin/kubectl
fi
mkdir -p "$STATE_DIR"

log "installing the CourseService CRD"
"$KUBECTL" apply --server-side --field-manager=course-operator-demo -f "$REPO_ROOT/crds/courseservices.microcourses.io.yaml" >/dev/null
KUBECTL=$KUBECTL "$REPO_ROOT/hack/crd-established.sh" courseservices.microcourses.io

"$KUBECTL" create namespace "$NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
stop_operator
if [[ -n ${DEMO_KUBECONFIG:-} ]]; then
  # A cluster of yours: the operator runs here, as a process with your kubeconfig.
  log "starting the operator (log: $LOG_FILE, metrics: http://127.0.0.1:8080/metrics)"
  # Only the demo namespace: a `make test` on the same cluster runs operators of its own in the
  # test namespaces, and a second writer there would fight them.
  nohup "$OPERATOR" run --namespace "$NAMESPACE" --metrics-addr 127.0.0.1:8080 --lease-namespace "$NAMESPACE" \
    --cache-image localhost/redis:dev >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 100); do
    curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
    kill -0 "$(cat "$PID_FILE")" 2>/dev/null || { cat "$LOG_FILE" >&2; echo "the operator exited" >&2; exit 1; }
    sleep 0.2
  done
  OPERATOR_WHERE="as a background process (pid $(cat "$PID_FILE"), log $LOG_FILE)"
else
  # The local cluster: installed by Helm as a platform team would, from the image make images
  # built (two replicas, leader election), watching the demo namespace only.
  log "installing the operator with Helm into $OPERATOR_NAMESPACE (image localhost/course-operator:dev)"
  # a rebuilt image keeps its tag: its digest in a pod annotation rolls the pods when it changed
  image_digest=$(sha256sum "${COURSE_OPERATOR_CACHE:-$HOME/.cache/course-operator}/images/course-operator.tar" | cut -c1-16)
  "$STATE_DIR/bin/helm" upgrade --install course-operator "$REPO_ROOT/charts/course-operator" \
    --namespace "$OPERATOR_NAMESPACE" --create-namespace --skip-crds \
    --set image.repository=localhost/course-operator --set image.tag=dev --set image.pullPolicy=Never \
    --set watchNamespace="$NAMESPACE" --set images.cache=localhost/redis:dev --set-string podAnnotations.microcourses\\.io/image-digest="$image_digest" \
    --wait --timeout 180s >/dev/null
  OPERATOR_WHERE="in namespace $OPERATOR_NAMESPACE, installed by Helm (kubectl logs -n $OPERATOR_NAMESPACE deploy/course-operator)"
fi

log "applying $(basename "$DATABASE") (FerretDB, the course-db Secret) in namespace $NAMESPACE"
"$KUBECTL" apply --server-side --field-manager=course-operator-demo -n "$NAMESPACE" -f "$DATABASE" >/dev/null
"$KUBECTL" rollout status -n "$NAMESPACE" deployment/ferretdb --timeout=180s >/dev/null
log "applying $(basename "$SAMPLE") in namespace $NAMESPACE"
"$KUBECTL" apply --server-side --field-manager=course-operator-demo -n "$NAMESPACE" -f "$SAMPLE" >/dev/null
name=$("$KUBECTL" get -n "$NAMESPACE" -f "$SAMPLE" -o jsonpath='{.metadata.name}')
"$KUBECTL" wait -n "$NAMESPACE" --for=condition=Available --timeout=300s "courseservice/$name" >/dev/null
# Settled, so what follows shows the steady state: every zone's pods Ready, the rollout of the
# first revision done, and the Redis cache up (Available alone needs only 2 of 3 pods).
"$KUBECTL" wait -n "$NAMESPACE" --for=condition=Progressing=False --timeout=300s "courseservice/$name" >/dev/null
cache_members=$("$KUBECTL" get courseservice "$name" -n "$NAMESPACE" -o jsonpath='{.status.cache.desired}')
if [[ -n $cache_members ]]; then
  "$KUBECTL" wait -n "$NAMESPACE" --for=jsonpath='{.status.cache.ready}'="$cache_members" --timeout=300s \
    "courseservice/$name" >/dev/null
fi

address=""
for _ in $(seq 120); do
  address=$("$KUBECTL" get service "$name" -n "$NAMESPACE" -o jsonpath='{.status.loadBalancer.ingress[0].ip}')
  [[ -n $address ]] && curl -fsS -o /dev/null "http://$address/courses" 2>/dev/null && break
  sleep 1
done
[[ -n $address ]] || { echo "the LoadBalancer Service $NAMESPACE/$name got no address" >&2; exit 1; }
url=http://$address
if [[ -n $cache_members ]]; then
  # Each app pod stops skipping the cache once its circuit breaker lets a call through again
  # (at most 15 s after Redis answers): wait for six reads in a row served through the cache.
  through=0
  for _ in $(seq 120); do
    how=$(curl -fsS -D - -o /dev/null "$url/courses" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}')
    if [[ $how == hit || $how == miss ]]; then through=$((through + 1)); else through=0; fi
    ((through >= 6)) && break
    sleep 0.5
  done
  ((through >= 6)) || echo "warning: the app pods still skip the Redis cache (x-cache: $how)" >&2
fi

if [[ $(curl -fsS "$url/courses") == "[]" ]]; then
  log "seeding three courses through $url"
  for course in 'Kubernetes operators in Rust|Reconcile loops, owned objects and status|90' \
                'Redis as a cache|Cache-aside, TTLs and Sentinel failover|45' \
                'MongoDB for services|Documents, replica sets and backups|60'; do
    IFS='|' read -r title description minutes <<<"$course"
    curl -fsS -o /dev/null -X POST "$url/courses" -H 'Content-Type: application/json' \
      -d "{\"title\":\"$title\",\"description\":\"$description\",\"durationMinutes\":$minutes}"
  done
fi

log "kubectl get courseservices -n $NAMESPACE"
"$KUBECTL" get courseservices -n "$NAMESPACE" >&2
log "zones"
"$KUBECTL" get courseservice "$name" -n "$NAMESPACE" -o jsonpath='{range .status.zones[*]}{.name}{"\t"}desired={.desired}{"\t"}ready={.ready}{"\n"}{end}' >&2
log "conditions"
"$KUBECTL" get courseservice "$name" -n "$NAMESPACE" -o jsonpath='{range .status.conditions[*]}{.type}{"\t"}{.status}{"\t"}{.reason}{"\t"}{.message}{"\n"}{end}' >&2
log "children"
"$KUBECTL" get replicasets,statefulsets,services,pdb,hpa -n "$NAMESPACE" -l "app.kubernetes.io/instance=$name" >&2
log "two reads of the course list (x-cache: miss = read from MongoDB, then cached; hit = from Redis)"
for _ in 1 2; do
  curl -fsS -D - -o /dev/null "$url/courses" | grep -iE '^x-(cache|course-version|course-pod):' | tr -d '\r' | paste -sd' ' >&2
done
PLUGIN_DIR=$(dirname "$OPERATOR")
cat >&2 <<MSG

The operator runs $OPERATOR_WHERE. Try:
  curl $url/courses
  curl -i -X POST $url/courses -H 'Content-Type: application/json' -d '{"title":"New","description":"","durationMinutes":30}'
  export KUBECONFIG=$KUBECONFIG PATH=$PLUGIN_DIR:\$PATH     # kubectl course (the plugin)
  $KUBECTL patch courseservice $name -n $NAMESPACE --type merge -p '{"spec":{"image":"localhost/course-app:dev2"}}'
  kubectl-course -n $NAMESPACE status $name --watch       # the canary, step by step
  curl -s -D - -o /dev/null $url/courses | grep -i x-course-version   # dev, then dev2
Stop everything with: make demo-down
MSG
echo "COURSE_URL=$url"
echo "COURSE_SERVICE=$NAMESPACE/$name"
