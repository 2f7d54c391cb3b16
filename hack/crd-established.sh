#!/usr/bin/env bash
# Waits (up to 60 s) until each named CustomResourceDefinition is Established.
# Usage: [KUBECTL=path] [KUBECONFIG=file] hack/crd-established.sh CRD...
# `kubectl wait --for=condition=Established` fails at once, instead of waiting, when it reads a
# CRD created a moment ago whose status has no conditions yet ("<nil> is of the type <nil>"):
# that aborted a `make demo` right after the cluster came up.
set -euo pipefail
kubectl=${KUBECTL:-kubectl}
for crd in "$@"; do
  for _ in $(seq 120); do
    established=$("$kubectl" get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null || true)
    [[ $established == True ]] && continue 2
    sleep 0.5
  done
  echo "CRD $crd not Established after 60 s" >&2
  exit 1
done
