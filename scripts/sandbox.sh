#!/usr/bin/env bash
# The sandbox: a local control plane with the product running on it, to look at and play with.
#   scripts/sandbox.sh        bring it up (idempotent) and show what runs
#   scripts/sandbox.sh down   stop everything it started
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller/target}
say() { printf '[sandbox] %s\n' "$*" >&2; }

if [ "${1:-}" = down ]; then
  bash scripts/cluster.sh down
  exit 0
fi

bash scripts/setup.sh
bash scripts/cluster.sh up
export KUBECONFIG=$REPO/.cluster/kubeconfig

kubectl get namespaces
say "the control plane runs: export KUBECONFIG=$KUBECONFIG"
say "not yet in the sandbox: the CRDs, the fake cloud and the controller (see README, Status)"
say "stop it with: scripts/sandbox.sh down"
