#!/usr/bin/env bash
# The whole test suite: unit tests, snapshots, CRD drift, and integration tests against a real
# kube-apiserver + etcd + kube-controller-manager started on loopback (and the fake cloud).
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test smoke`). It tests the whole
# workspace (the controller and the fake cloud in crates/acr-fake-cloud) unless they name a
# package with -p/--package.
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

scope=(--workspace)
for arg in "$@"; do
  case $arg in -p | -p* | --package | --package=*) scope=() ;; esac
done
cargo test "${scope[@]}" "$@"
