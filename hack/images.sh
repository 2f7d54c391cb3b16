#!/usr/bin/env bash
# Builds the local OCI images without a registry or a container engine and imports them into
# the containerd of every real node (hack/nodes.sh).
#
#   hack/images.sh build [name...]    build the image archives into ${COURSE_OPERATOR_CACHE}/images
#   hack/images.sh import [name...]   build, then import the archives into each running node's containerd
#                                     (names as listed by `list` without localhost/; default: all)
#   hack/images.sh list      print the image references, one per line
#
# Each image is a root filesystem assembled from files of this machine (our binaries and the
# shared libraries `ldd` names for them; Debian packages unpacked with dpkg-deb for Redis),
# turned into an OCI layout with umoci and into a docker archive with skopeo, which
# `ctr images import` loads. Nothing is pulled.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=hack/versions.env
source "$HACK_DIR/versions.env"
CACHE_ROOT=${COURSE_OPERATOR_CACHE:-$HOME/.cache/course-operator}
IMAGES_DIR=$CACHE_ROOT/images
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE_ROOT/cargo-target}
NODES_DIR=$REPO_ROOT/.cluster/nodes

# name[:tag] -> reference localhost/name:tag (tag dev when absent; the kubelets' sandbox image is
# localhost/pause:dev). course-app:dev2 is the same binary with another version string, for
# rollouts that users can tell apart (X-Course-Version).
IMAGES=(pause test-server course-operator redis course-app course-app:dev2 ferretdb)
ref() { if [[ $1 == *:* ]]; then echo "localhost/$1"; else echo "localhost/$1:dev"; fi; }
archive() { echo "$IMAGES_DIR/${1/:/-}.tar"; }
FERRETDB_BIN=$CACHE_ROOT/ferretdb-${FERRETDB_VERSION}/bin/ferretdb

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] ERROR: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null || die "$1 missing: run hack/install-deps.sh"; }

# copy_with_libs <rootfs> <binary> <dest path in rootfs>: the binary and every shared library
# ldd names for it (with the dynamic loader), at their host paths.
copy_with_libs() {
  local rootfs=$1 bin=$2 dest=$3 lib
  install -D -m 0755 "$bin" "$rootfs$dest"
  for lib in $(ldd "$bin" | grep -oE '/[^ ]+' | sort -u); do
    [[ -e $rootfs$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# base_rootfs <rootfs>: directories and the files every image needs.
base_rootfs() {
  local rootfs=$1
  mkdir -p "$rootfs"/{tmp,etc,data}
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nredis:x:999:999:redis:/data:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\nredis:x:999:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
}

# Debian packages for the Redis image: the servers, a shell and the tools its scripts use
# (getent comes with libc-bin).
REDIS_PACKAGES=(redis-server redis-sentinel redis-tools dash coreutils grep sed libc-bin)

rootfs_redis() {
  local rootfs=$1 debs=$IMAGES_DIR/debs pkg deb bin
  mkdir -p "$debs"
  for pkg in "${REDIS_PACKAGES[@]}"; do
    if ! compgen -G "$debs/${pkg}_*.deb" >/dev/null; then
      (cd "$debs" && apt-get download "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed (run apt-get update)"
    fi
  done
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$rootfs"; done
  ln -sf dash "$rootfs/bin/sh"
  # Shared libraries of every binary in the image, from this (same Debian release) machine.
  for bin in "$rootfs"/usr/bin/* "$rootfs"/bin/*; do
    [[ -f $bin && ! -L $bin ]] || continue
    ldd "$bin" >/dev/null 2>&1 || continue
    local lib
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+' | sort -u); do
      [[ -e $rootfs$lib ]] || install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
    done
  done
  # The chart and the rendered StatefulSet use the official image's layout: data in /data.
  mkdir -p "$rootfs/data"
  chown 999:999 "$rootfs/data"
}

# inputs <name>: the files an image is made of (besides this script).
inputs() {
  case $1 in
    pause|test-server|course-operator) echo "$CARGO_TARGET_DIR/debug/$1" ;;
    course-app|course-app:dev2) echo "$CARGO_TARGET_DIR/debug/course-app" ;;
    ferretdb) echo "$FERRETDB_BIN" ;;
    redis) echo "$IMAGES_DIR/debs" ;;
  esac
}

# up_to_date <name>: its archive exists and is newer than this script and every input.
up_to_date() {
  local archive input
  archive=$(archive "$1")
  [[ -s $archive && $archive -nt "${BASH_SOURCE[0]}" ]] || return 1
  for input in $(inputs "$1"); do
    [[ -e $input && $archive -nt $input ]] || return 1
  done
}

# build_image <name>: the archive $IMAGES_DIR/<name>.tar, rebuilt when its inputs changed.
build_image() {
  if [[ ${FORCE:-0} != 1 ]] && up_to_date "$1"; then
    log "  $(ref "$1") up to date"
    return 0
  fi
  local name=$1 work=$IMAGES_DIR/work/${1/:/-} layout bundle archive
  archive=$(archive "$name")
  local entrypoint=() cmd=() user=0 env=()
  layout=$work/oci
  bundle=$work/bundle
  rm -rf "$work"
  mkdir -p "$work"
  umoci init --layout "$layout" >/dev/null
  umoci new --image "$layout:dev" >/dev/null
  umoci unpack --image "$layout:dev" "$bundle" >/dev/null
  local rootfs=$bundle/rootfs
  base_rootfs "$rootfs"
  case $name in
    pause)
      copy_with_libs "$rootfs" "$CARGO_TARGET_DIR/debug/pause" /pause
      entrypoint=(/pause) ;;
    test-server)
      copy_with_libs "$rootfs" "$CARGO_TARGET_DIR/debug/test-server" /test-server
      entrypoint=(/test-server); user=65532 ;;
    course-operator)
      copy_with_libs "$rootfs" "$CARGO_TARGET_DIR/debug/course-operator" /course-operator
      # as the Dockerfile: the chart's args start with the subcommand
      entrypoint=(/course-operator); cmd=(run); user=65532 ;;
    redis)
      rootfs_redis "$rootfs"
      entrypoint=(redis-server); user=999; env=(--config.env PATH=/usr/local/bin:/usr/bin:/bin) ;;
    course-app|course-app:dev2)
      copy_with_libs "$rootfs" "$CARGO_TARGET_DIR/debug/course-app" /course-app
      entrypoint=(/course-app); user=65532; env=(--config.env "COURSE_VERSION=${name#course-app:}")
      [[ $name == *:* ]] || env=(--config.env COURSE_VERSION=dev) ;;
    ferretdb)
      # static Go binary (pure-Go SQLite); data under /state (mount a volume there)
      [[ -x $FERRETDB_BIN ]] || die "$FERRETDB_BIN missing: run hack/build.sh ferretdb"
      install -D -m 0755 "$FERRETDB_BIN" "$rootfs/ferretdb"
      install -d -o 65532 -g 65532 "$rootfs/state"
      entrypoint=(/ferretdb --handler=sqlite --sqlite-url=file:/state/ --state-dir=/state
        --listen-addr=:27017 --debug-addr=:8088 --telemetry=disable)
      user=65532 ;;
    *) die "unknown image $name" ;;
  esac
  # Debug binaries carry their symbols; the images do not need them.
  find "$rootfs" -maxdepth 1 -type f -perm -u+x -exec strip --strip-debug {} + 2>/dev/null || true
  umoci repack --image "$layout:dev" "$bundle" >/dev/null
  local workdir=/data
  [[ $name == ferretdb ]] && workdir=/state
  local args=(--image "$layout:dev" --config.user "$user" --config.workingdir "$workdir")
  local e
  for e in "${entrypoint[@]}"; do args+=(--config.entrypoint "$e"); done
  for e in "${cmd[@]}"; do args+=(--config.cmd "$e"); done
  umoci config "${args[@]}" "${env[@]}" >/dev/null
  rm -f "$archive"
  skopeo copy --quiet "oci:$layout:dev" "docker-archive:$archive:$(ref "$name")" >/dev/null
  rm -rf "$work"
  log "  $(ref "$name") ($(du -h "$archive" | cut -f1))"
}

do_build() {
  need umoci; need skopeo; need dpkg-deb; need apt-get; need strip
  mkdir -p "$IMAGES_DIR"
  log "building the binaries (cargo build --workspace --bins) and FerretDB (hack/build.sh ferretdb)"
  (cd "$REPO_ROOT" && CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo build --quiet --workspace --bins)
  "$HACK_DIR/build.sh" ferretdb
  log "building images into $IMAGES_DIR"
  local name
  for name in "$@"; do build_image "$name"; done
}

do_import() {
  local sock name imported=0 names=("$@")
  for sock in "$NODES_DIR"/*/containerd/containerd.sock; do
    [[ -S $sock ]] || continue
    for name in "${names[@]}"; do
      ctr -a "$sock" -n k8s.io images import --no-unpack=false "$(archive "$name")" >/dev/null \
        || die "import of $name into $sock failed"
    done
    imported=$((imported + 1))
  done
  (( imported > 0 )) || die "no running real node (no containerd socket under $NODES_DIR): run hack/cluster.sh up"
  log "imported ${#names[@]} images into $imported nodes"
}

command=${1:-}
shift || true
selected=("$@")
(( ${#selected[@]} )) || selected=("${IMAGES[@]}")
for name in "${selected[@]}"; do
  [[ " ${IMAGES[*]} " == *" $name "* ]] || die "unknown image $name (known: ${IMAGES[*]})"
done
case $command in
  build) do_build "${selected[@]}" ;;
  import) do_build "${selected[@]}"; do_import "${selected[@]}"; for name in "${selected[@]}"; do ref "$name"; done ;;
  import-only) do_import "${selected[@]}" ;;
  list) for name in "${IMAGES[@]}"; do ref "$name"; done ;;
  *) echo "usage: $0 build|import|import-only|list" >&2; exit 2 ;;
esac
