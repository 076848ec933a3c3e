#!/usr/bin/env bash
# The whole test suite: unit tests, snapshots, CRD drift, and integration tests against a real
# kube-apiserver + etcd + kube-controller-manager started on loopback (and the fake cloud).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test smoke`), and then the chart
# tests are left out. It tests the whole workspace (the controller and the fake cloud in
# crates/acr-fake-cloud) unless they name a package with -p/--package.
# Then the Helm chart's tests (tests/chart, pytest with real Helm v4) run against the same control
# plane: rendering, lint and schema, and an install with the controller running as the chart's
# ServiceAccount from the image's root filesystem. `scripts/test.sh chart [PYTEST ARGS]` runs
# only them.
#
# USE_EXISTING_CLUSTER=true runs the integration tests against the cluster KUBECONFIG points at
# instead of the local control plane. ACC_KEEP_CLUSTER=true leaves the local control plane running.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller/target}

bash scripts/setup.sh

if [ "${USE_EXISTING_CLUSTER:-}" != true ]; then
  if ! bash scripts/cluster.sh status >/dev/null 2>&1; then
    bash scripts/cluster.sh up
    if [ "${ACC_KEEP_CLUSTER:-}" != true ]; then
      trap 'bash scripts/cluster.sh down' EXIT
    fi
  fi
fi

run_chart_tests() {
  # The chart tests run the debug binaries (the controller from a staged image root filesystem).
  cargo build --quiet --bin acr-credential-controller -p acr-credential-controller
  cargo build --quiet --bin acr-fake-cloud -p acr-fake-cloud
  if [ "${USE_EXISTING_CLUSTER:-}" != true ]; then
    export KUBECONFIG=${ACC_CLUSTER_DIR:-$REPO/.cluster}/kubeconfig
  fi
  python3 -m pytest -q -rP -p no:cacheprovider tests/chart "$@"
}

if [ "${1:-}" = chart ]; then
  shift
  run_chart_tests "$@"
  exit 0
fi

scope=(--workspace)
for arg in "$@"; do
  case $arg in -p | -p* | --package | --package=*) scope=() ;; esac
done
cargo test "${scope[@]}" "$@"
if [ $# -eq 0 ]; then
  run_chart_tests
fi
