#!/usr/bin/env bash
# A kubelet for the end-to-end pull tests, from the same Debian Kubernetes source as the control
# plane (scripts/cluster.sh).
#
#   scripts/kubelet.sh build    build the kubelet once into its own cache (no-op when cached)
#   scripts/kubelet.sh path     print the cached kubelet's path (exit 3 when not built)
#   scripts/kubelet.sh up CHAIN_DIR KUBECONFIG [NODE_NAME]
#       run the kubelet as node NODE_NAME (default acr-e2e-node) of the cluster KUBECONFIG names,
#       on the containerd of a chain `scripts/pull-chain.sh up CHAIN_DIR` started; loopback only,
#       state in CHAIN_DIR/kubelet. It records the machine-wide sysctls a kubelet changes at start
#       (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops) in CHAIN_DIR/kubelet/sysctls.
#       With ACC_KUBELET_PROVIDER_CONFIG (a kubelet CredentialProviderConfig file) and
#       ACC_KUBELET_PROVIDER_BIN_DIR (the folder holding the providers it names) set, the kubelet
#       runs image credential providers (1.20: feature gate KubeletCredentialProviders, API
#       credentialprovider.kubelet.k8s.io/v1alpha1).
#   scripts/kubelet.sh down CHAIN_DIR
#       stop that kubelet by PID and restore the recorded sysctls (run it before pull-chain down)
#
# Cached under ${XDG_CACHE_HOME:-~/.cache}/acr-credential-controller/kubelet-<version>-r<recipe>/
# (override the parent: ACC_CACHE_DIR), apart from the control plane's binaries so that building
# it never invalidates them.
set -euo pipefail

K8S_VERSION=1.20.2
K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
BUILD_REVISION=1 # bump when the build recipe changes, so the cached kubelet is rebuilt

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ACC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller}
BIN=$CACHE/kubelet-$K8S_VERSION-r$BUILD_REVISION/bin

say() { printf '[kubelet] %s\n' "$*" >&2; }
die() { printf '[kubelet] error: %s\n' "$*" >&2; exit 1; }

debian_mirror() {
  local uri=""
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' \
      /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }' \
      /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || die "no Debian archive found in /etc/apt/sources.list(.d)"
  printf '%s\n' "${uri%/}"
}

cmd_build() {
  [ -x "$BIN/kubelet" ] && return 0
  mkdir -p "$CACHE"
  exec 8>"$CACHE/kubelet-build.lock"
  flock -w 1800 8 || die "another kubelet build holds $CACHE/kubelet-build.lock"
  [ -x "$BIN/kubelet" ] && return 0
  local work; work=$(mktemp -d "$CACHE/kubelet-build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  local started=$SECONDS
  say "building kubelet $K8S_VERSION (one time) in $work"
  local mirror arch keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mirror=$(debian_mirror)
  arch=$(dpkg --print-architecture)
  mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/debs" "$work/root"
  cat >"$work/apt/sources.list" <<EOF
deb [signed-by=$keyring] $mirror bookworm main
deb-src [signed-by=$keyring] $mirror bookworm main
deb [signed-by=$keyring] $mirror bullseye main
EOF
  local apt=(apt-get -q -o "Dir::Etc::sourcelist=$work/apt/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache::archives=$work/apt/archives"
    -o "APT::Architecture=$arch" -o Debug::NoLocking=1)
  "${apt[@]}" update >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; die "apt-get update failed"; }
  (cd "$work/debs" && "${apt[@]}" download golang-1.15-go golang-1.15-src) >>"$work/apt.log" 2>&1 ||
    { tail -20 "$work/apt.log" >&2; die "downloading Go 1.15 failed"; }
  (cd "$work" && "${apt[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION") >>"$work/apt.log" 2>&1 ||
    { tail -20 "$work/apt.log" >&2; die "downloading the kubernetes source failed"; }
  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  local goroot="$work/root/usr/lib/go-1.15"
  export GOROOT=$goroot PATH="$goroot/bin:$PATH" GOCACHE="$work/gocache" GOPATH="$work/gopath"
  export CGO_ENABLED=0 GOFLAGS=-mod=vendor GOTOOLCHAIN=local
  local orig; orig=$(ls "$work"/kubernetes_*.orig.tar.* | head -1)
  tar -xf "$orig" -C "$work"
  local src; src=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
  [ -d "$src/cmd/kubelet" ] || die "no cmd/kubelet in $orig"
  local minor ldflags="-s -w" pkg
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  say "compiling kubelet (CGO_ENABLED=0)"
  mkdir -p "$work/out"
  (cd "$src" && go build -ldflags "$ldflags" -o "$work/out/kubelet" ./cmd/kubelet) >"$work/go.log" 2>&1 ||
    { tail -30 "$work/go.log" >&2; die "compiling the kubelet failed"; }
  mkdir -p "$(dirname "$BIN")"
  rm -rf "$BIN.tmp" && mv "$work/out" "$BIN.tmp" && rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
  say "built in $((SECONDS - started)) s; cached in $BIN"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

cmd_up() {
  local chain=${1:-} kubeconfig=${2:-} node=${3:-acr-e2e-node}
  [ -f "$chain/env" ] && [ -f "$kubeconfig" ] || die "usage: up CHAIN_DIR KUBECONFIG [NODE_NAME]"
  [ -x "$BIN/kubelet" ] || die "no kubelet built: scripts/kubelet.sh build"
  chain=$(cd "$chain" && pwd)
  local dir=$chain/kubelet sock=$chain/containerd.sock
  mkdir -p "$dir"
  if [ ! -f "$dir/sysctls" ]; then
    local key
    for key in "${SYSCTLS[@]}"; do printf '%s=%s\n' "$key" "$(sysctl -n "$key")"; done >"$dir/sysctls"
  fi
  # shellcheck disable=SC1091
  . "$chain/env"
  local providers=()
  if [ -n "${ACC_KUBELET_PROVIDER_CONFIG:-}" ]; then
    [ -f "$ACC_KUBELET_PROVIDER_CONFIG" ] && [ -d "${ACC_KUBELET_PROVIDER_BIN_DIR:-}" ] ||
      die "ACC_KUBELET_PROVIDER_CONFIG needs an existing file and ACC_KUBELET_PROVIDER_BIN_DIR a folder"
    providers=(--feature-gates KubeletCredentialProviders=true
      --image-credential-provider-config "$ACC_KUBELET_PROVIDER_CONFIG"
      --image-credential-provider-bin-dir "$ACC_KUBELET_PROVIDER_BIN_DIR")
  fi
  setsid "$BIN/kubelet" --kubeconfig "$kubeconfig" --hostname-override "$node" \
    --container-runtime remote --container-runtime-endpoint "unix://$sock" --image-service-endpoint "unix://$sock" \
    --root-dir "$dir/root" --cert-dir "$dir/pki" --volume-plugin-dir "$dir/volume-plugins" \
    --node-ip 127.0.0.1 --address 127.0.0.1 --port "$(free_port)" --read-only-port 0 \
    --healthz-bind-address 127.0.0.1 --healthz-port "$(free_port)" \
    --cgroup-driver cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= --fail-swap-on=false \
    --oom-score-adj 0 --make-iptables-util-chains=false --eviction-hard= \
    --image-gc-high-threshold 100 --image-gc-low-threshold 99 --pod-infra-container-image "$PAUSE_IMAGE" \
    "${providers[@]}" \
    >"$dir/kubelet.log" 2>&1 </dev/null &
  echo $! >"$dir/kubelet.pid"
  local deadline=$((SECONDS + 60))
  until kubectl --kubeconfig "$kubeconfig" get node "$node" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; do
    kill -0 "$(cat "$dir/kubelet.pid")" 2>/dev/null || { tail -20 "$dir/kubelet.log" >&2; cmd_down "$chain"; die "the kubelet exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$dir/kubelet.log" >&2; cmd_down "$chain"; die "node $node not Ready within 60 s"; }
    sleep 0.5
  done
  say "node $node Ready (kubelet pid $(cat "$dir/kubelet.pid"), log $dir/kubelet.log)"
}

cmd_down() {
  local dir=${1:-}/kubelet pid
  [ -d "$dir" ] || return 0
  if [ -f "$dir/kubelet.pid" ]; then
    pid=$(cat "$dir/kubelet.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/kubelet.pid"
  fi
  if [ -f "$dir/sysctls" ]; then
    local line
    while read -r line; do sysctl -q -w "$line" >/dev/null || say "could not restore $line"; done <"$dir/sysctls"
    rm -f "$dir/sysctls"
  fi
}

case "${1:-}" in
  build) cmd_build ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  path) [ -x "$BIN/kubelet" ] || exit 3; printf '%s\n' "$BIN/kubelet" ;;
  *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
