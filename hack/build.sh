#!/usr/bin/env bash
# Build the local control-plane binaries from the Go module proxy.
#
#   hack/build.sh [component...]     components: kubernetes etcd kwok metrics-server helm coredns metallb ferretdb vegeta (default: all)
#   hack/build.sh --list             print "<component> <bin dir>" for every component
#   hack/build.sh --dir COMPONENT    print the cache directory of one component (also argo-rollouts)
#
# Each component lands in ${COURSE_OPERATOR_CACHE:-~/.cache/course-operator}/<component>-<version>/bin.
# A component whose binaries are all present is skipped, so bumping a version in
# hack/versions.env rebuilds exactly that component. Set FORCE=1 to rebuild anyway.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
source "$HACK_DIR/versions.env"

CACHE_ROOT=${COURSE_OPERATOR_CACHE:-$HOME/.cache/course-operator}
ALL_COMPONENTS=(kubernetes etcd kwok metrics-server helm coredns metallb ferretdb vegeta)
# built only when named (make bench-peers), never by make test or make demo
EXTRA_COMPONENTS=(argo-rollouts)

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] ERROR: %s\n' "$*" >&2; exit 1; }

component_version() {
  case $1 in
    kubernetes) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    metallb) echo "$METALLB_VERSION" ;;
    ferretdb) echo "$FERRETDB_VERSION" ;;
    vegeta) echo "$VEGETA_VERSION" ;;
    argo-rollouts) echo "$ARGO_ROLLOUTS_VERSION" ;;
    *) die "unknown component '$1' (known: ${ALL_COMPONENTS[*]} ${EXTRA_COMPONENTS[*]})" ;;
  esac
}

component_bins() {
  case $1 in
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy" ;;
    etcd) echo "etcd etcdctl" ;;
    kwok) echo "kwok kwokctl" ;;
    metrics-server) echo "metrics-server" ;;
    helm) echo "helm" ;;
    coredns) echo "coredns" ;;
    metallb) echo "controller" ;;
    ferretdb) echo "ferretdb" ;;
    vegeta) echo "vegeta" ;;
    argo-rollouts) echo "rollouts-controller" ;;
  esac
}

component_dir() { echo "$CACHE_ROOT/$1-$(component_version "$1")"; }

# data files a component ships next to its binaries (relative to the component dir)
component_files() {
  case $1 in
    kwok) echo "$KWOK_STAGE_FILES" ;;
    metallb) echo "crds.yaml" ;;
    argo-rollouts) echo "crds.yaml" ;;
  esac
}

# kwokctl's default node and pod stages, copied from the kwok module (kustomize/stage/...)
# so hack/cluster.sh can combine them with extra stages (kwokctl drops its defaults as
# soon as the config file contains any Stage).
KWOK_STAGE_SOURCES="node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml"
KWOK_STAGE_FILES=""
for f in $KWOK_STAGE_SOURCES; do KWOK_STAGE_FILES+=" stages/${f##*/}"; done

is_built() {
  local dir b
  dir=$(component_dir "$1")
  for b in $(component_bins "$1"); do
    [[ -x "$dir/bin/$b" ]] || return 1
  done
  for b in $(component_files "$1"); do
    [[ -s "$dir/$b" ]] || return 1
  done
}

if [[ ${1:-} == --list ]]; then
  for c in "${ALL_COMPONENTS[@]}"; do echo "$c $(component_dir "$c")/bin"; done
  exit 0
fi
if [[ ${1:-} == --dir ]]; then
  component_dir "${2:?usage: hack/build.sh --dir COMPONENT}"
  exit 0
fi

# --- Go environment ---------------------------------------------------------
export GOTOOLCHAIN=local           # never download a toolchain
export CGO_ENABLED=0               # static binaries, no C compiler needed
export GOFLAGS="-modcacherw -buildvcs=false"  # module cache stays deletable with rm -rf
export GOCACHE=${COURSE_OPERATOR_GOCACHE:-$CACHE_ROOT/go-build}
export GOMODCACHE=${COURSE_OPERATOR_GOMODCACHE:-$CACHE_ROOT/go-mod}
GO=$(command -v go || true)
[[ -n $GO ]] || GO=/usr/local/go/bin/go
[[ -x $GO ]] || die "go not found (install Go >= 1.26 into /usr/local/go)"
NICE=(nice -n "${BUILD_NICE:-10}")

# run_go <logfile> <what> <go args...>: runs go with -v output going to the log,
# printing a progress line every 30s (elapsed time + packages compiled so far).
run_go() {
  local logf=$1 what=$2; shift 2
  local start=$SECONDS rc=0
  : >"$logf"
  ( while sleep 30; do
      log "  ... still building $what ($(( (SECONDS - start) / 60 ))m$(( (SECONDS - start) % 60 ))s, $(grep -vc '^go: ' "$logf" || true) packages so far)"
    done ) &
  local ticker=$!
  "${NICE[@]}" "$GO" "$@" >>"$logf" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  if (( rc != 0 )); then
    log "  go $1 failed for $what (exit $rc); last lines of $logf:"
    tail -n 40 "$logf" >&2
    return "$rc"
  fi
  log "  $what done in $(( SECONDS - start ))s"
}

# --- components ---------------------------------------------------------------
build_kubernetes() {
  local dir=$1 v=$KUBERNETES_VERSION src
  local staging_v="v0.${v#v1.}"   # v1.37.2 -> v0.37.2 (tags of the k8s.io/<staging> modules)
  src="$dir/src"
  mkdir -p "$src" "$dir/bin"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with
  # ./staging/... paths; replace directives of a dependency are ignored, so the wrapper
  # module maps every such k8s.io/* module to its published tag instead.
  log "  downloading k8s.io/kubernetes@$v (module source, needed for the build anyway)"
  local gomod staging
  gomod=$(cd "$dir" && "$GO" mod download -json "k8s.io/kubernetes@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f $gomod ]] || die "cannot download k8s.io/kubernetes@$v from the Go module proxy"
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) v0\.0\.0$#\1#p' "$gomod" | sort -u)
  [[ -n $staging ]] || die "found no k8s.io/* v0.0.0 requirements in k8s.io/kubernetes@$v go.mod"
  {
    echo "module course-operator.local/kubernetes-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m $staging_v"; done
    echo ")"
  } >"$src/go.mod"
  : >"$src/go.sum"
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local major=${v#v}; major=${major%%.*}
  local minor=${v#v*.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ldflags="-s -w"
  for p in $pkg $cpkg; do
    ldflags+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  log "  go build (one invocation, shared compile) of kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy"
  (cd "$src" && run_go "$dir/build.log" "kubernetes $v" build -mod=mod -v -trimpath \
    -ldflags "$ldflags" -o "$dir/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy)
}

build_etcd() {
  local dir=$1 v=$ETCD_VERSION src
  src="$dir/src"
  mkdir -p "$src/etcd" "$dir/bin"
  # go.etcd.io/etcd/server/v3 has relative replace directives, so `go install ...@v`
  # refuses it; a wrapper module that calls etcdmain.Main is the etcd main.go verbatim.
  cat >"$src/go.mod" <<EOF
module course-operator.local/etcd-build

go 1.26.0

require (
	go.etcd.io/etcd/server/v3 $v
	go.etcd.io/etcd/etcdctl/v3 $v
)
EOF
  : >"$src/go.sum"
  cat >"$src/etcd/main.go" <<'EOF'
// Command etcd is go.etcd.io/etcd/server/v3's main.go, built from a wrapper module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
  (cd "$src" && run_go "$dir/build.log" "etcd $v" build -mod=mod -v -trimpath \
    -ldflags "-s -w" -o "$dir/bin/" ./etcd go.etcd.io/etcd/etcdctl/v3)
  # the etcdctl main package is the module root, so go build names it "v3"
  if [[ -f $dir/bin/v3 ]]; then mv -f "$dir/bin/v3" "$dir/bin/etcdctl"; fi
}

# go install <module>/<pkg>@<version> (the module must have no replace directives)
go_install() {
  local dir=$1 what=$2 ldflags=$3; shift 3
  mkdir -p "$dir/bin"
  (cd "$dir" && GOBIN="$dir/bin" run_go "$dir/build.log" "$what" install -v -trimpath \
    -ldflags "$ldflags" "$@")
}

build_kwok() {
  local v=$KWOK_VERSION
  # consts.KubeVersion is the default --kube-version of kwokctl; keep it on our k8s.
  go_install "$1" "kwok $v" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}" \
    "sigs.k8s.io/kwok/cmd/kwok@$v" "sigs.k8s.io/kwok/cmd/kwokctl@$v"
  local moddir="$GOMODCACHE/sigs.k8s.io/kwok@$v" f
  [[ -d $moddir ]] || "$GO" mod download "sigs.k8s.io/kwok@$v"
  mkdir -p "$1/stages"
  for f in $KWOK_STAGE_SOURCES; do
    cp -f "$moddir/kustomize/stage/$f" "$1/stages/" || die "kwok $v: no kustomize/stage/$f in $moddir"
  done
  chmod u+w "$1"/stages/*
}

build_metrics_server() {
  local v=$METRICS_SERVER_VERSION
  go_install "$1" "metrics-server $v" \
    "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/component-base/version.gitVersion=$v" \
    "sigs.k8s.io/metrics-server/cmd/metrics-server@$v"
}

build_helm() {
  local v=$HELM_VERSION major
  major=${v#v}; major=${major%%.*}
  go_install "$1" "helm $v" \
    "-s -w -X helm.sh/helm/v$major/internal/version.version=$v" \
    "helm.sh/helm/v$major/cmd/helm@$v"
}

build_coredns() {
  local v=$COREDNS_VERSION
  go_install "$1" "coredns $v" "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v" \
    "github.com/coredns/coredns@$v"
}

# MetalLB's controller (the address allocator of LoadBalancer Services) and its CRDs. The
# speaker is not needed: clients on this machine reach a LoadBalancer address through
# kube-proxy's rules, which match it before any routing.
build_metallb() {
  local v=$METALLB_VERSION moddir f
  go_install "$1" "metallb $v" "-s -w" "go.universe.tf/metallb/controller@$v"
  moddir="$GOMODCACHE/go.universe.tf/metallb@$v"
  [[ -d $moddir ]] || "$GO" mod download "go.universe.tf/metallb@$v"
  : >"$1/crds.yaml"
  for f in "$moddir"/config/crd/bases/*.yaml; do
    { echo "---"; cat "$f"; } >>"$1/crds.yaml"
  done
}

# FerretDB embeds build/version/version.txt, which its module archive leaves empty, and panics
# at start without it: build from a writable copy of the module with the version written in.
build_ferretdb() {
  local v=$FERRETDB_VERSION moddir src
  moddir="$GOMODCACHE/github.com/!ferret!d!b/!ferret!d!b@$v"
  [[ -d $moddir ]] || "$GO" mod download "github.com/FerretDB/FerretDB@$v"
  src="$1/src"
  rm -rf "$src"
  mkdir -p "$1/bin"
  cp -r "$moddir" "$src"
  chmod -R u+w "$src"
  echo "$v" >"$src/build/version/version.txt"
  (cd "$src" && run_go "$1/build.log" "ferretdb $v" build -v -trimpath -ldflags "-s -w" -o "$1/bin/ferretdb" ./cmd/ferretdb)
  rm -rf "$src"
}

build_vegeta() {
  go_install "$1" "vegeta $VEGETA_VERSION" "-s -w" "github.com/tsenart/vegeta/v12@$VEGETA_VERSION"
}

# Argo Rollouts' controller, the peer of `make bench-peers`. Its module replaces k8s.io/*
# modules, and replace directives of a dependency are ignored, so (as for Kubernetes) a wrapper
# module requires it and repeats its replace block.
build_argo_rollouts() {
  local dir=$1 v=$ARGO_ROLLOUTS_VERSION src gomod moddir f
  src="$dir/src"
  mkdir -p "$src" "$dir/bin"
  log "  downloading github.com/argoproj/argo-rollouts@$v"
  gomod=$(cd "$dir" && "$GO" mod download -json "github.com/argoproj/argo-rollouts@$v" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [[ -f $gomod ]] || die "cannot download github.com/argoproj/argo-rollouts@$v from the Go module proxy"
  {
    echo "module course-operator.local/argo-rollouts-build"
    echo
    echo "go 1.26.0"
    echo
    echo "require github.com/argoproj/argo-rollouts $v"
    echo
    sed -n '/^replace (/,/^)/p' "$gomod"
    sed -n '/^replace [^(]/p' "$gomod"
  } >"$src/go.mod"
  : >"$src/go.sum"
  (cd "$src" && run_go "$dir/build.log" "argo-rollouts $v" build -mod=mod -v -trimpath -ldflags "-s -w" \
    -o "$dir/bin/rollouts-controller" github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
  moddir="$GOMODCACHE/github.com/argoproj/argo-rollouts@$v"
  : >"$dir/crds.yaml"
  for f in "$moddir"/manifests/crds/*.yaml; do
    [[ ${f##*/} == kustomization.yaml ]] && continue
    { echo "---"; cat "$f"; } >>"$dir/crds.yaml"
  done
  [[ -s $dir/crds.yaml ]] || die "no CRDs found in $moddir/manifests/crds"
}

# --- main -----------------------------------------------------------------------
# one build at a time per cache (concurrent `go build`s of one component would clash)
mkdir -p "$CACHE_ROOT"
exec 8>"$CACHE_ROOT/.build.lock"
if ! flock -n 8; then
  log "waiting for another hack/build.sh (lock $CACHE_ROOT/.build.lock)"
  flock -w 3600 8 || die "timed out waiting for $CACHE_ROOT/.build.lock"
fi
components=("$@")
(( ${#components[@]} )) || components=("${ALL_COMPONENTS[@]}")
total_start=$SECONDS
for c in "${components[@]}"; do
  v=$(component_version "$c")
  dir=$(component_dir "$c")
  if [[ ${FORCE:-0} != 1 ]] && is_built "$c"; then
    log "$c $v: cached in $dir/bin"
    continue
  fi
  log "$c $v: building into $dir/bin (cold builds take minutes; log: $dir/build.log)"
  rm -rf "${dir:?}/bin"
  "build_${c//-/_}" "$dir"
  is_built "$c" || die "$c $v: build finished but binaries are missing in $dir/bin"
done
log "all requested components ready ($(( SECONDS - total_start ))s)"
