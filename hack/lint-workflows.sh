#!/usr/bin/env bash
# Lints .github/workflows/*.yaml with actionlint, which also runs `run:` scripts through
# ShellCheck when a shellcheck binary is on PATH.
#
#   hack/lint-workflows.sh            # build actionlint on first use, then lint
#   ACTIONLINT=/path/to/actionlint hack/lint-workflows.sh
#
# actionlint is built from the Go module proxy (`go install`, Go >= 1.26, GOTOOLCHAIN=local so
# Go never downloads a toolchain) into ${COURSE_OPERATOR_CACHE:-~/.cache/course-operator}/
# actionlint-<version>/bin, next to the control-plane binaries hack/build.sh caches.
set -euo pipefail

ACTIONLINT_VERSION=v1.7.12

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${COURSE_OPERATOR_CACHE:-$HOME/.cache/course-operator}
INSTALL_DIR=$CACHE_ROOT/actionlint-$ACTIONLINT_VERSION

log() { echo "lint-workflows: $*" >&2; }

find_go() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then
    echo /usr/local/go/bin/go
  else
    log "Go is needed to build actionlint (https://go.dev/dl/, >= 1.26)"
    exit 1
  fi
}

actionlint_bin() {
  if [[ -n "${ACTIONLINT:-}" ]]; then
    echo "$ACTIONLINT"
    return
  fi
  local bin=$INSTALL_DIR/bin/actionlint
  if [[ ! -x "$bin" ]]; then
    local go
    go=$(find_go)
    log "building actionlint $ACTIONLINT_VERSION into $INSTALL_DIR (first use only)"
    mkdir -p "$INSTALL_DIR/bin"
    GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$INSTALL_DIR/bin" \
      GOFLAGS="-modcacherw -buildvcs=false" \
      GOCACHE="${COURSE_OPERATOR_GOCACHE:-$CACHE_ROOT/go-build}" \
      GOMODCACHE="${COURSE_OPERATOR_GOMODCACHE:-$CACHE_ROOT/go-mod}" \
      nice -n "${BUILD_NICE:-10}" "$go" install -trimpath \
      -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
      "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
  fi
  echo "$bin"
}

main() {
  local bin
  bin=$(actionlint_bin)
  cd "$REPO_ROOT"
  shopt -s nullglob
  local workflows=(.github/workflows/*.yaml .github/workflows/*.yml)
  if ((${#workflows[@]} == 0)); then
    log "no workflows under .github/workflows"
    exit 1
  fi
  local args=(-no-color -pyflakes=)
  if command -v shellcheck >/dev/null 2>&1; then
    args+=(-shellcheck "$(command -v shellcheck)")
  else
    # An explicit empty value: never pick up a shellcheck from elsewhere half-way.
    args+=(-shellcheck=)
  fi
  "$bin" "${args[@]}" "${workflows[@]}"
  log "ok: ${workflows[*]}"
}

main "$@"
