#!/usr/bin/env bash
# Runs one integration test file (or a filter inside it) N times in a row against the local
# control plane and stops at the first failure: the check for intermittent failures.
#   scripts/repeat-test.sh 30 controller_tokens restart_converges
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller/target}
if [ $# -lt 2 ]; then
  echo "usage: $0 COUNT TEST_FILE [FILTER]" >&2
  exit 2
fi
count=$1 file=$2 filter=${3:-}
if ! bash scripts/cluster.sh status >/dev/null 2>&1; then
  bash scripts/cluster.sh up
  trap 'bash scripts/cluster.sh down' EXIT
fi
cargo test --test "$file" --no-run -q
for i in $(seq 1 "$count"); do
  start=$SECONDS
  if ! cargo test -q --test "$file" -- $filter >"/tmp/repeat-test-$file.log" 2>&1; then
    echo "run $i of $count: FAILED (log: /tmp/repeat-test-$file.log)"
    tail -40 "/tmp/repeat-test-$file.log"
    exit 1
  fi
  echo "run $i of $count: passed in $((SECONDS - start)) s"
done
echo "$count passed, 0 failed"
