#!/usr/bin/env bash
# The sandbox: a local control plane with the product running on it, to look at and play with.
#   scripts/sandbox.sh        bring it up (idempotent) and show what runs
#   scripts/sandbox.sh down   stop everything it started
#
# It starts the local control plane (scripts/cluster.sh), the fake Alibaba Cloud
# (acr-fake-cloud, scenario scripts/sandbox/scenario.yaml) and the controller on this machine,
# installs the CRDs (without CEL rules: the control plane is Kubernetes 1.20), applies
# scripts/sandbox/objects.yaml and the translation of the legacy ConfigMap
# scripts/sandbox/legacy-configmap.yaml (a cross-account binding), waits until every binding is
# Ready and prints what is there. It also starts a local registry whose token realm is the fake
# cloud, and a container runtime (scripts/pull-chain.sh), and ends by pulling the registry's
# private image with a pull Secret the controller wrote. State (PIDs, logs, the fake's address)
# lives in .sandbox/.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller/target}
STATE=$REPO/.sandbox
BIN=$STATE/bin
say() { printf '[sandbox] %s\n' "$*" >&2; }
die() { printf '[sandbox] error: %s\n' "$*" >&2; exit 1; }

stop_pid() { # stop_pid <name>: stops the process whose PID is in $STATE/<name>.pid
  local file=$STATE/$1.pid pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    say "stopped $1 (pid $pid)"
  fi
  rm -f "$file"
}

running() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

if [ "${1:-}" = down ]; then
  bash scripts/kubelet.sh down "$STATE/pull-chain"
  bash scripts/pull-chain.sh down "$STATE/pull-chain"
  stop_pid controller
  stop_pid fake-cloud
  bash scripts/cluster.sh down
  rm -rf "$STATE"
  exit 0
fi

bash scripts/setup.sh
bash scripts/cluster.sh up
export KUBECONFIG=${ACC_CLUSTER_DIR:-$REPO/.cluster}/kubeconfig
mkdir -p "$STATE"

say "building acr-credential-controller and acr-fake-cloud"
# The fake cloud is its own workspace crate: build both packages' binaries.
cargo build --quiet --workspace --bins
# The target directory may be shared with other checkouts: run private copies.
mkdir -p "$BIN"
if ! running controller; then cp "$CARGO_TARGET_DIR/debug/acr-credential-controller" "$BIN/"; fi
if ! running fake-cloud; then cp "$CARGO_TARGET_DIR/debug/acr-fake-cloud" "$BIN/"; fi

if ! running fake-cloud; then
  rm -f "$STATE/fake-cloud.addr"
  # The sandbox instance's local registry gets a free port, written into the scenario.
  REGISTRY_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  sed "s/SANDBOX_REGISTRY_PORT/$REGISTRY_PORT/" scripts/sandbox/scenario.yaml >"$STATE/scenario.yaml"
  echo "$REGISTRY_PORT" >"$STATE/registry.port"
  nohup "$BIN/acr-fake-cloud" --scenario "$STATE/scenario.yaml" \
    --address-file "$STATE/fake-cloud.addr" >"$STATE/fake-cloud.log" 2>&1 &
  echo $! >"$STATE/fake-cloud.pid"
  for _ in $(seq 1 50); do [ -s "$STATE/fake-cloud.addr" ] && break; sleep 0.1; done
  [ -s "$STATE/fake-cloud.addr" ] || die "the fake cloud did not start; see $STATE/fake-cloud.log"
fi
CLOUD=$(cat "$STATE/fake-cloud.addr")
say "fake Alibaba Cloud at $CLOUD"

if [ ! -f "$STATE/pull-chain/env" ]; then
  say "starting a local registry (token realm: the fake cloud) and a container runtime"
  curl -fsS "${CLOUD%/}/__fake/realm/certificate" >"$STATE/realm.pem"
  bash scripts/pull-chain.sh up "$STATE/pull-chain" --realm "${CLOUD%/}/auth" \
    --service cri-sandbox0000001 --cert "$STATE/realm.pem" --port "$(cat "$STATE/registry.port")"
fi
# shellcheck disable=SC1091
. "$STATE/pull-chain/env"

say "installing the CRDs (CEL rules stripped for Kubernetes 1.20)"
"$BIN/acr-credential-controller" crd --no-cel | kubectl apply --server-side --force-conflicts -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
  crd/acrregistrybindings.acrcredentials.io crd/acrcredentialpolicies.acrcredentials.io >/dev/null

if ! running controller; then
  nohup "$BIN/acr-credential-controller" run --kubeconfig "$KUBECONFIG" \
    --cloud-endpoint "$CLOUD" --region cn-hangzhou --probe-address 127.0.0.1:0 \
    >"$STATE/controller.log" 2>&1 &
  echo $! >"$STATE/controller.pid"
  sleep 1
  running controller || die "the controller did not start; see $STATE/controller.log"
fi
say "controller running (pid $(cat "$STATE/controller.pid"), log $STATE/controller.log)"

say "applying example namespaces, policy and binding (scripts/sandbox/objects.yaml)"
kubectl apply --server-side -f scripts/sandbox/objects.yaml >/dev/null
kubectl get serviceaccount builder -n shop >/dev/null 2>&1 \
  || kubectl create -f scripts/sandbox/service-account.yaml >/dev/null
say "translating the legacy ConfigMap (scripts/sandbox/legacy-configmap.yaml) and applying the result"
"$BIN/acr-credential-controller" migrate --token-mode worker-role -f scripts/sandbox/legacy-configmap.yaml 2>/dev/null \
  | kubectl apply --server-side -f - >/dev/null

say "waiting for every binding to be Ready"
if ! kubectl wait --for=condition=Ready arb --all --timeout=90s >/dev/null; then
  kubectl get arb -o wide >&2 || true
  die "bindings not Ready; see $STATE/controller.log"
fi

echo
echo "\$ kubectl get arb,acp"
kubectl get arb,acp
# The same binary is the kubectl plugin when it runs as `kubectl-acr`.
ln -sf acr-credential-controller "$BIN/kubectl-acr"
export PATH="$BIN:$PATH"
echo
echo "\$ kubectl acr status"
kubectl acr status
echo
echo "\$ kubectl acr explain partner-apps/default"
kubectl acr explain partner-apps/default || true
echo
echo "\$ kubectl get serviceaccount builder -n shop -o jsonpath='{.imagePullSecrets}'"
kubectl get serviceaccount builder -n shop -o jsonpath='{.imagePullSecrets}'
echo
echo
echo "registries in each pull Secret (decoded .dockerconfigjson auths):"
for ns in shop payments partner-apps; do
  printf '  %-13s ' "$ns"
  kubectl get secret acr-credentials -n "$ns" -o jsonpath='{.data.\.dockerconfigjson}' | base64 -d \
    | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["auths"])))'
done
echo
echo "pulling the private image $APP_IMAGE with the pull Secret of namespace shop:"
kubectl get secret acr-credentials -n shop -o jsonpath='{.data.\.dockerconfigjson}' | base64 -d >"$STATE/shop-auth.json"
echo "\$ skopeo copy --authfile <shop's .dockerconfigjson> docker://$APP_IMAGE dir:.sandbox/pulled"
rm -rf "$STATE/pulled"
skopeo copy --src-tls-verify=false --authfile "$STATE/shop-auth.json" "docker://$APP_IMAGE" "dir:$STATE/pulled"
rm -f "$STATE/shop-auth.json"
echo "and without it, the registry refuses:"
echo "\$ skopeo inspect docker://$APP_IMAGE"
echo '{"auths":{}}' >"$STATE/no-auth.json"
skopeo inspect --tls-verify=false --authfile "$STATE/no-auth.json" "docker://$APP_IMAGE" 2>&1 | tail -1 | sed 's/^/  /' || true
echo
if bash scripts/kubelet.sh path >/dev/null 2>&1; then
  if ! kubectl get node acr-e2e-node >/dev/null 2>&1; then
    bash scripts/kubelet.sh up "$STATE/pull-chain" "$KUBECONFIG" acr-e2e-node
  fi
  echo "a Pod of ServiceAccount shop/builder (imagePullSecrets from the controller) on node acr-e2e-node:"
  kubectl delete pod private-app -n shop --ignore-not-found >/dev/null
  printf '%s\n' "apiVersion: v1" "kind: Pod" "metadata: {name: private-app, namespace: shop}" "spec:" \
    "  nodeName: acr-e2e-node" "  serviceAccountName: builder" "  automountServiceAccountToken: false" \
    "  restartPolicy: Never" "  containers: [{name: app, image: \"$APP_IMAGE\", imagePullPolicy: Always}]" |
    kubectl apply -f - >/dev/null
  for _ in $(seq 60); do
    case $(kubectl get pod private-app -n shop -o jsonpath='{.status.phase}') in Succeeded | Failed) break ;; esac
    sleep 0.5
  done
  echo "\$ kubectl get events -n shop --field-selector involvedObject.name=private-app"
  kubectl get events -n shop --field-selector involvedObject.name=private-app --sort-by=.lastTimestamp \
    -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message | grep -v MissingClusterDNS
else
  say "no node: run scripts/kubelet.sh build (once, about 20 minutes), then the sandbox again, to see a Pod pull it"
fi
echo
say "KUBECONFIG=$KUBECONFIG  (export it to use kubectl)"
say "try: kubectl label namespace partner-apps acr-pull=true   # joins the sandbox-enterprise binding"
say "kubectl acr: PATH=$BIN:\$PATH kubectl acr status | explain NAMESPACE[/SERVICEACCOUNT] | renew BINDING"
say "logs: $STATE/controller.log, $STATE/fake-cloud.log"
say "stop everything with: scripts/sandbox.sh down"
