#!/usr/bin/env bash
# A real, local Kubernetes control plane for tests, benchmarks and the sandbox:
# etcd + kube-apiserver + kube-controller-manager (Kubernetes 1.20.2) on loopback.
#
#   scripts/cluster.sh build    build the binaries once into the cache (no-op when cached)
#   scripts/cluster.sh up       start a control plane (builds first if needed; no-op when running)
#   scripts/cluster.sh down     stop the processes this script started and remove their data
#   scripts/cluster.sh status   say whether it runs; exit 0 when it does, 3 when it does not
#   scripts/cluster.sh env      print `export KUBECONFIG=...` for the running control plane
#   scripts/cluster.sh stop COMPONENT    stop one component (etcd, kube-apiserver, kube-controller-manager)
#   scripts/cluster.sh start COMPONENT   start it again with the same flags and data; waits until it serves
#
# stop/start are for fault tests: the stopped component's data stays, `status` says not running
# meanwhile, and `down` still stops everything.
#
# The binaries are built from Debian's Kubernetes source package with Debian's Go 1.15 and cached
# under ${XDG_CACHE_HOME:-~/.cache}/acr-credential-controller/k8s-<version>-r<recipe>/ (override: ACC_CACHE_DIR).
# Each `up` uses free loopback ports and a fresh temporary directory; the admin kubeconfig is
# written to .cluster/kubeconfig in the repository (override the folder: ACC_CLUSTER_DIR).
# API Priority and Fairness is off (the API server's max-inflight limits apply);
# ACC_APF=true at `up` turns it on, as on a default 1.20 cluster.
set -euo pipefail

K8S_VERSION=1.20.2
K8S_DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
BUILD_REVISION=2 # bump when the build recipe changes, so cached binaries are rebuilt
ETCD_MIN_VERSION=3.4
READY_TIMEOUT=${ACC_READY_TIMEOUT:-90}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${ACC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller}
BIN=$CACHE/k8s-$K8S_VERSION-r$BUILD_REVISION/bin
STATE=${ACC_CLUSTER_DIR:-$REPO/.cluster}

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

need() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (Debian: apt-get install ${missing[*]})"
}

have_binaries() {
  [ -x "$BIN/etcd" ] && [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ]
}

# --- build ---------------------------------------------------------------------------------------

# The Debian archive this machine's apt already uses (we never hard-code a mirror).
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
  [ -n "$uri" ] || die "no Debian archive found in /etc/apt/sources.list(.d); cannot fetch the Kubernetes source"
  printf '%s\n' "${uri%/}"
}

cmd_build() {
  if have_binaries; then return 0; fi
  need apt-get dpkg dpkg-deb tar flock awk
  mkdir -p "$CACHE"
  exec 8>"$CACHE/build.lock"
  if ! flock -n 8; then
    say "another build is running; waiting for it (lock $CACHE/build.lock)"
    flock -w 1800 8 || die "the other build did not finish within 30 minutes (lock $CACHE/build.lock)"
  fi
  if have_binaries; then return 0; fi

  local work; work=$(mktemp -d "$CACHE/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  local started=$SECONDS
  say "building Kubernetes $K8S_VERSION control plane binaries (one time, several minutes) in $work"

  local mirror keyring arch
  mirror=$(debian_mirror)
  arch=$(dpkg --print-architecture)
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || die "missing $keyring (Debian: apt-get install debian-archive-keyring)"

  # A private apt configuration: only downloads, never installs, never touches the machine's apt state.
  mkdir -p "$work/apt/lists/partial" "$work/apt/archives/partial" "$work/debs" "$work/root"
  cat >"$work/apt/sources.list" <<EOF
deb [signed-by=$keyring] $mirror bookworm main
deb-src [signed-by=$keyring] $mirror bookworm main
deb [signed-by=$keyring] $mirror bullseye main
EOF
  local apt=(apt-get -q -o "Dir::Etc::sourcelist=$work/apt/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache::archives=$work/apt/archives"
    -o "APT::Architecture=$arch" -o Debug::NoLocking=1)
  say "reading package lists"
  "${apt[@]}" update >"$work/apt-update.log" 2>&1 || { tail -20 "$work/apt-update.log" >&2; die "apt-get update failed"; }

  say "downloading etcd-server, golang-1.15-go, golang-1.15-src and the kubernetes source package"
  (cd "$work/debs" && "${apt[@]}" download etcd-server golang-1.15-go golang-1.15-src) >"$work/download.log" 2>&1 ||
    { tail -20 "$work/download.log" >&2; die "downloading the etcd and Go packages failed"; }
  (cd "$work" && "${apt[@]}" source --download-only "kubernetes=$K8S_DEB_VERSION") >>"$work/download.log" 2>&1 ||
    { tail -20 "$work/download.log" >&2; die "downloading the kubernetes $K8S_DEB_VERSION source package failed (is its deb-src still on the archive?)"; }

  for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
  local etcd_bin="$work/root/usr/bin/etcd"
  [ -x "$etcd_bin" ] || die "etcd-server package did not contain /usr/bin/etcd"
  local etcd_version; etcd_version=$("$etcd_bin" --version | awk '/etcd Version/ { print $3 }')
  case "$etcd_version" in "$ETCD_MIN_VERSION".*) ;; *) die "etcd $etcd_version found, need $ETCD_MIN_VERSION.x" ;; esac

  local goroot="$work/root/usr/lib/go-1.15"
  [ -x "$goroot/bin/go" ] || die "golang-1.15-go did not unpack a Go toolchain at $goroot"
  export GOROOT=$goroot PATH="$goroot/bin:$PATH" GOCACHE="$work/gocache" GOPATH="$work/gopath"
  export CGO_ENABLED=0 GOFLAGS=-mod=vendor GOTOOLCHAIN=local

  say "unpacking the Kubernetes source"
  local orig; orig=$(ls "$work"/kubernetes_*.orig.tar.* 2>/dev/null | head -1)
  [ -n "$orig" ] || die "the kubernetes orig tarball was not downloaded"
  tar -xf "$orig" -C "$work"
  local src; src=$(find "$work" -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
  [ -d "$src/cmd/kube-apiserver" ] || die "unexpected source layout in $orig"

  say "generating pkg/generated/openapi (missing from the source tarball)"
  (cd "$src" && go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen) >"$work/go.log" 2>&1 ||
    { tail -30 "$work/go.log" >&2; die "building openapi-gen failed"; }
  mkdir -p "$GOPATH/src/k8s.io"
  ln -s "$src" "$GOPATH/src/k8s.io/kubernetes"
  local pkgs
  pkgs=$(cd "$src" && grep -R --include='*.go' -l '^// +k8s:openapi-gen=' pkg cmd plugin vendor/k8s.io 2>/dev/null |
    xargs -n1 dirname | sort -u | grep -v -e '^vendor/k8s.io/code-generator' -e '^vendor/k8s.io/sample-apiserver' |
    sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
  [ -n "$pkgs" ] || die "found no openapi-gen input packages"
  (cd "$GOPATH/src/k8s.io/kubernetes" && GO111MODULE=off GOFLAGS= "$work/openapi-gen" -i "$pkgs" \
    -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
    -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/openapi-report.txt") >>"$work/go.log" 2>&1 ||
    { tail -30 "$work/go.log" >&2; die "openapi-gen failed"; }
  [ -f "$src/pkg/generated/openapi/zz_generated.openapi.go" ] || die "openapi-gen produced no output"

  local minor; minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  # Both version packages: the API server's /version is served from client-go's.
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  mkdir -p "$work/out"
  for component in kube-apiserver kube-controller-manager; do
    say "compiling $component"
    (cd "$src" && go build -ldflags "$ldflags" -o "$work/out/$component" "./cmd/$component") >>"$work/go.log" 2>&1 ||
      { tail -30 "$work/go.log" >&2; die "compiling $component failed"; }
  done
  cp "$etcd_bin" "$work/out/etcd"

  mkdir -p "$(dirname "$BIN")"
  rm -rf "$BIN.tmp" && mv "$work/out" "$BIN.tmp" && rm -rf "$BIN" && mv "$BIN.tmp" "$BIN"
  printf 'kubernetes %s (debian source %s)\netcd %s\nbuilt %s\n' "$K8S_VERSION" "$K8S_DEB_VERSION" \
    "$etcd_version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$BIN/../VERSION"
  say "built in $((SECONDS - started)) s; cached in $BIN ($(du -sh "$BIN" | cut -f1))"
}

# --- up / down / status --------------------------------------------------------------------------

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_in_use() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

pick_port() { # pick_port ENV_NAME
  local wanted=${!1:-}
  if [ -n "$wanted" ]; then
    port_in_use "$wanted" && die "port $wanted (from $1) is already in use on 127.0.0.1; choose another or unset $1"
    printf '%s\n' "$wanted"
  else
    free_port
  fi
}

# pid_is_ours PID RUNDIR: the process is alive and was started by us for this run directory.
pid_is_ours() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

running() {
  [ -f "$STATE/run" ] || return 1
  local rundir pid; rundir=$(cat "$STATE/run")
  for name in etcd kube-apiserver kube-controller-manager; do
    pid=$(cat "$rundir/$name.pid" 2>/dev/null || true)
    pid_is_ours "$pid" "$rundir" || return 1
  done
}

wait_for() { # wait_for SECONDS DESCRIPTION PID LOG COMMAND...
  local deadline=$((SECONDS + $1)) what=$2 pid=$3 log=$4; shift 4
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -25 "$log" >&2
      return_fail "$what exited during start-up (log above, full log: $log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -25 "$log" >&2
      return_fail "$what was not ready within ${READY_TIMEOUT}s (log above, full log: $log)"
    fi
    sleep 0.5
  done
}

return_fail() { say "error: $1"; stop_rundir "$RUNDIR"; exit 1; }

start_bg() { # start_bg NAME LOG ARGS...
  local name=$1 log=$2; shift 2
  # The lock descriptors (8, 9) must not leak into the daemons, or they would hold the lock forever.
  setsid nohup "$@" >>"$log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$RUNDIR/$name.pid"
  # The command line, for `start COMPONENT` after a `stop COMPONENT`.
  printf '%q ' "$@" >"$RUNDIR/$name.cmd"
}

# Serialises up/down of this state folder; waits at most 5 minutes (a build may be under way).
lock_state() {
  exec 9>"$STATE/lock"
  flock -w 300 9 || die "another cluster.sh has held $STATE/lock for 5 minutes; is one stuck? (fuser $STATE/lock)"
}

cmd_up() {
  need python3 openssl curl ss setsid flock
  mkdir -p "$STATE"
  lock_state
  if running; then
    say "already running ($(cat "$STATE/run")); kubeconfig: $STATE/kubeconfig"
    return 0
  fi
  [ ! -f "$STATE/run" ] || stop_rundir "$(cat "$STATE/run")"
  cmd_build

  RUNDIR=$(mktemp -d "${TMPDIR:-/tmp}/acr-cluster.XXXXXX")
  local started=$SECONDS
  local etcd_port peer_port api_port
  etcd_port=$(pick_port ACC_ETCD_PORT)
  peer_port=$(pick_port ACC_ETCD_PEER_PORT)
  api_port=$(pick_port ACC_APISERVER_PORT)

  # Certificates: a CA for serving and ServiceAccount root CA, a serving cert for 127.0.0.1,
  # and a key pair for signing ServiceAccount tokens.
  local pki=$RUNDIR/pki; mkdir -p "$pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=acr-local-ca"
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 30 -extfile san.ext
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$RUNDIR/pki.log" 2>&1 || { cat "$RUNDIR/pki.log" >&2; return_fail "creating certificates with openssl failed"; }

  local token; token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
  printf '%s,admin,admin,"system:masters"\n' "$token" >"$RUNDIR/tokens.csv"
  chmod 600 "$RUNDIR/tokens.csv"
  local server="https://127.0.0.1:$api_port"
  cat >"$RUNDIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: acr-local
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: acr-local
  context: {cluster: acr-local, user: admin}
current-context: acr-local
EOF
  chmod 600 "$RUNDIR/kubeconfig"

  # An audit log of writes (not reads, not Lease renewals), so tests can tell who wrote what by
  # user agent: the leader-election tests prove that a standby writes nothing.
  cat >"$RUNDIR/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
EOF

  say "starting etcd on 127.0.0.1:$etcd_port"
  start_bg etcd "$RUNDIR/etcd.log" "$BIN/etcd" --name acr-local --data-dir "$RUNDIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "acr-local=http://127.0.0.1:$peer_port" --unsafe-no-fsync
  wait_for "$READY_TIMEOUT" etcd "$(cat "$RUNDIR/etcd.pid")" "$RUNDIR/etcd.log" \
    curl -fsS "http://127.0.0.1:$etcd_port/health"

  say "starting kube-apiserver on $server"
  start_bg kube-apiserver "$RUNDIR/kube-apiserver.log" "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" --cert-dir "$RUNDIR/apiserver-certs" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt" \
    --secure-port "$api_port" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --service-cluster-ip-range 10.0.0.0/24 --authorization-mode RBAC --token-auth-file "$RUNDIR/tokens.csv" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --api-audiences https://kubernetes.default.svc,sts.aliyuncs.com \
    --allow-privileged=true --enable-priority-and-fairness="${ACC_APF:-false}" --profiling=false \
    --audit-policy-file "$RUNDIR/audit-policy.yaml" --audit-log-path "$RUNDIR/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1
  wait_for "$READY_TIMEOUT" kube-apiserver "$(cat "$RUNDIR/kube-apiserver.pid")" "$RUNDIR/kube-apiserver.log" \
    curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" "$server/readyz"

  say "starting kube-controller-manager"
  # Controllers: namespaces get their default ServiceAccount (and its token Secret), deletion
  # and garbage collection complete, and a Deployment's template change rolls out to a new
  # ReplicaSet (the chart's upgrade test); no ReplicaSet controller, so no Pods.
  start_bg kube-controller-manager "$RUNDIR/kube-controller-manager.log" "$BIN/kube-controller-manager" \
    --kubeconfig "$RUNDIR/kubeconfig" --authentication-kubeconfig "$RUNDIR/kubeconfig" \
    --authorization-kubeconfig "$RUNDIR/kubeconfig" --leader-elect=false \
    --controllers namespace,garbagecollector,serviceaccount,serviceaccount-token,deployment \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --use-service-account-credentials=false --bind-address 127.0.0.1 --secure-port 0 --port 0 \
    --concurrent-gc-syncs 5 --concurrent-namespace-syncs 5 \
    --kube-api-qps 100 --kube-api-burst 200
  # Ready once it has given the default namespace its ServiceAccount.
  wait_for "$READY_TIMEOUT" kube-controller-manager "$(cat "$RUNDIR/kube-controller-manager.pid")" \
    "$RUNDIR/kube-controller-manager.log" \
    curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" "$server/api/v1/namespaces/default/serviceaccounts/default"

  cp "$RUNDIR/kubeconfig" "$STATE/kubeconfig.tmp" && mv "$STATE/kubeconfig.tmp" "$STATE/kubeconfig"
  printf '%s\n' "$RUNDIR" >"$STATE/run"
  say "ready in $((SECONDS - started)) s: $server (data: $RUNDIR)"
  say "kubeconfig: $STATE/kubeconfig   (export KUBECONFIG=$STATE/kubeconfig)"
}

stop_rundir() {
  local rundir=$1 pid
  [ -n "$rundir" ] || return 0
  for name in kube-controller-manager kube-apiserver etcd; do
    pid=$(cat "$rundir/$name.pid" 2>/dev/null || true)
    if pid_is_ours "$pid" "$rundir"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  case "$rundir" in */acr-cluster.*) rm -rf "$rundir" ;; esac
}

cmd_down() {
  mkdir -p "$STATE"
  lock_state
  if [ -f "$STATE/run" ]; then
    stop_rundir "$(cat "$STATE/run")"
    say "stopped"
  else
    say "not running"
  fi
  rm -f "$STATE/run" "$STATE/kubeconfig"
}

cmd_status() {
  if running; then
    local server; server=$(awk '/server:/ { print $2; exit }' "$STATE/kubeconfig")
    say "running: $server (data: $(cat "$STATE/run")); kubeconfig: $STATE/kubeconfig"
    return 0
  fi
  if have_binaries; then say "not running (binaries cached in $BIN)"; else say "not running (binaries not built yet)"; fi
  return 3
}

component_rundir() { # component_rundir NAME: checks NAME, prints the run directory
  case $1 in etcd | kube-apiserver | kube-controller-manager) ;; *) die "unknown component '$1' (etcd, kube-apiserver, kube-controller-manager)" ;; esac
  [ -f "$STATE/run" ] || die "not running: start it with scripts/cluster.sh up"
  cat "$STATE/run"
}

cmd_stop_component() {
  local name=$1 rundir pid
  rundir=$(component_rundir "$name")
  pid=$(cat "$rundir/$name.pid" 2>/dev/null || true)
  pid_is_ours "$pid" "$rundir" || { say "$name is not running"; return 0; }
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  say "stopped $name (data kept in $rundir)"
}

cmd_start_component() {
  local name=$1 pid
  RUNDIR=$(component_rundir "$name")
  pid=$(cat "$RUNDIR/$name.pid" 2>/dev/null || true)
  if pid_is_ours "$pid" "$RUNDIR"; then say "$name already runs"; return 0; fi
  [ -f "$RUNDIR/$name.cmd" ] || die "no recorded command line for $name in $RUNDIR (started by an older cluster.sh?)"
  local -a argv probe
  eval "argv=($(cat "$RUNDIR/$name.cmd"))"
  start_bg "$name" "$RUNDIR/$name.log" "${argv[@]}"
  case $name in
    etcd)
      local url
      url=$(awk '{ for (i = 1; i < NF; i++) if ($i == "--advertise-client-urls") print $(i + 1) }' "$RUNDIR/etcd.cmd")
      probe=(curl -fsS "$url/health") ;;
    kube-apiserver)
      local server token
      server=$(awk '/server:/ { print $2; exit }' "$RUNDIR/kubeconfig")
      token=$(cut -d, -f1 "$RUNDIR/tokens.csv")
      probe=(curl -fsS --cacert "$RUNDIR/pki/ca.crt" -H "Authorization: Bearer $token" "$server/readyz") ;;
    *) probe=(kill -0 "$(cat "$RUNDIR/$name.pid")") ;;
  esac
  # Unlike `up`, a failed start leaves the other components running: the caller decides.
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "${probe[@]}" >/dev/null 2>&1; do
    kill -0 "$(cat "$RUNDIR/$name.pid")" 2>/dev/null || { tail -25 "$RUNDIR/$name.log" >&2; die "$name exited during start-up"; }
    [ $SECONDS -lt $deadline ] || { tail -25 "$RUNDIR/$name.log" >&2; die "$name was not ready within ${READY_TIMEOUT}s"; }
    sleep 0.2
  done
  say "started $name"
}

case "${1:-}" in
  build) cmd_build ;;
  stop) cmd_stop_component "${2:-}" ;;
  start) cmd_start_component "${2:-}" ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) running || die "not running: start it with scripts/cluster.sh up"; echo "export KUBECONFIG=$STATE/kubeconfig" ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
