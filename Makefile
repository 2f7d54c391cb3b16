# course-operator: two commands on a fresh machine, `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Build caches live outside the repo, keyed by version, so a warm machine re-runs fast.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/course-operator/cargo-target
LOCAL_KUBECONFIG := $(CURDIR)/.cluster/kubeconfig
OPERATOR := $(CARGO_TARGET_DIR)/debug/course-operator
CARGO_TEST_THREADS ?= 8

.PHONY: help deps build crd lint unit e2e test cluster cluster-down images demo demo-down bench bench-peers chaos

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

deps: ## Install what a fresh machine lacks (rustfmt/clippy, Debian packages, Redis, mongosh + MockupDB, cluster binaries, helm)
	rustup component add rustfmt clippy >/dev/null
	hack/install-deps.sh
	hack/install-redis.sh
	hack/install-mongosh.sh
	hack/build.sh

build: ## Build the operator (debug)
	cargo build --workspace --bins

crd: build ## Regenerate crds/ from the Rust types, the chart's copy and manifests/install.yaml
	$(OPERATOR) crd > crds/courseservices.microcourses.io.yaml
	hack/gen-install.sh --write

lint: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

unit: ## Unit, property, snapshot, packaging, real-Redis, real-mongosh and course-app (real Redis, Sentinel, FerretDB) tests (no cluster)
	cargo test --lib --bins --test offline --test packaging --test data_redis --test data_mongo --test data_mongo_scripts
	cargo test -p course-app

e2e: build ## E2E tier against the cluster in KUBECONFIG (default: the local one)
	KUBECONFIG=$${KUBECONFIG:-$(LOCAL_KUBECONFIG)} cargo test --features e2e --test e2e -- --test-threads=$(CARGO_TEST_THREADS)

test: deps lint unit ## Everything CI runs: lint, unit, local cluster up, e2e, cluster down
	hack/with-cluster.sh $(MAKE) e2e KUBECONFIG=$(LOCAL_KUBECONFIG)

cluster: ## Build (first time) and start the local 3-zone control plane
	hack/cluster.sh up

images: build ## Build the local images and import them into every real node; prints their references
	hack/images.sh import

cluster-down: ## Stop the local control plane and delete its state
	hack/cluster.sh down

demo: deps build ## Local cluster + CRD + operator + a sample CourseService, then its status
	hack/demo.sh

demo-down: ## Stop the demo operator and the local cluster
	hack/demo.sh down
	hack/cluster.sh down

bench: deps ## Benchmarks (fleet convergence vs a raw writer, API economy, memory, latency, rollout overhead) → BENCHMARKS.md
	hack/bench.sh

bench-peers: deps ## Side by side with Argo Rollouts (built from the Go module proxy) on the same cluster → BENCHMARKS.md
	hack/bench-peers.sh

chaos: deps ## Chaos: fuzzed specs, SIGKILLs during rollouts, leader failover; exits non-zero when an invariant breaks
	hack/chaos.sh
