#!/usr/bin/env bash
# The benchmark (separate from the test suite): fan-out, writes, cloud calls, new-namespace
# latency and memory, each against its floor, on a fresh local control plane of its own.
# Arguments go to the benchmark, e.g. `scripts/bench.sh --namespaces 200 --unrelated-secrets 2000`.
# The table is printed and saved under bench/results/.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller/target}
say() { printf '[bench] %s\n' "$*" >&2; }

bash scripts/setup.sh
say "building release binaries"
cargo build --release --bin acr-credential-controller
cargo bench --no-run --bench fanout

# A control plane of its own, so the API server's counters and etcd hold only this run.
export ACC_CLUSTER_DIR=$REPO/.cluster-bench
bash scripts/cluster.sh down >/dev/null 2>&1 || true
bash scripts/cluster.sh up
trap 'bash scripts/cluster.sh down' EXIT
export KUBECONFIG=$ACC_CLUSTER_DIR/kubeconfig
cargo run --quiet --release --bin acr-credential-controller -- crd --no-cel | kubectl apply -f - >/dev/null

export ACC_BENCH_CONTROLLER=$CARGO_TARGET_DIR/release/acr-credential-controller
cargo bench --bench fanout -- "$@"
