#!/usr/bin/env bash
# The image pull chain for end-to-end pull tests and the sandbox: a private registry with token
# auth and a container runtime of its own, on loopback, all state in one scratch folder.
#
#   scripts/pull-chain.sh images
#       build the test images once into the cache (no-op when cached) and print the cache folder
#   scripts/pull-chain.sh up DIR --realm URL --service NAME --cert FILE [--port PORT] [--owner PID]
#       start Debian's docker-registry (distribution 2.8) on 127.0.0.1:PORT (free port when not
#       given) with `auth: token` (realm URL, service NAME, issuer acr-fake-cloud, root
#       certificate FILE), holding the private image `acr-e2e/app:v1`, and a containerd 1.6
#       (CRI, runc, restrict_oom_score_adj, its own socket, a test-only CNI stub, the pause image
#       imported). Writes DIR/env (REGISTRY, APP_IMAGE, PAUSE_IMAGE, CONTAINERD_SOCKET).
#       With --owner, a watchdog runs `down DIR` as soon as process PID is gone (a test binary
#       that panicked or was killed).
#   scripts/pull-chain.sh down DIR
#       stop what `up` started (by PID: registry, containerd, its shims and containers), remove
#       its mounts, cgroups and network namespaces, and DIR
#
# The images are built without internet: `buildah from scratch` with Debian's static busybox,
# vfs storage in a scratch folder. The registry's storage with the app image pushed, and the pause
# image archive, are cached under ${XDG_CACHE_HOME:-~/.cache}/acr-credential-controller/
# pull-images-r<recipe>/ (override: ACC_CACHE_DIR), so later runs only copy them.
set -euo pipefail

IMAGES_REVISION=1 # bump when the image recipe changes, so cached images are rebuilt
CACHE=${ACC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller}
IMAGES=$CACHE/pull-images-r$IMAGES_REVISION
APP_REPO=acr-e2e/app
APP_TAG=v1
PAUSE_IMAGE=localhost/acr-e2e/pause:v1
ISSUER=acr-fake-cloud
READY_TIMEOUT=${ACC_READY_TIMEOUT:-30}

say() { printf '[pull-chain] %s\n' "$*" >&2; }
die() { printf '[pull-chain] error: %s\n' "$*" >&2; exit 1; }

need() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] || die "missing tools: ${missing[*]} (run scripts/setup.sh)"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until `curl URL` answers with HTTP status $2.
wait_http() {
  local url=$1 want=$2 pid=$3 what=$4 deadline=$((SECONDS + READY_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)" = "$want" ] && return 0
    sleep 0.1
  done
  say "$what did not answer $want at $url within ${READY_TIMEOUT}s"
  return 1
}

# registry_config FILE PORT STORAGE [REALM SERVICE CERT]
registry_config() {
  local file=$1 port=$2 storage=$3
  cat >"$file" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $storage}
  maintenance: {uploadpurging: {enabled: false}}
http: {addr: "127.0.0.1:$port"}
EOF
  if [ $# -gt 3 ]; then
    cat >>"$file" <<EOF
auth:
  token: {realm: "$4", service: "$5", issuer: "$ISSUER", rootcertbundle: "$6"}
EOF
  fi
}

# --- images --------------------------------------------------------------------------------------

build_images() {
  if [ -f "$IMAGES/done" ]; then
    printf '%s\n' "$IMAGES"
    return
  fi
  need buildah docker-registry curl python3
  [ -x /bin/busybox ] && file_is_static /bin/busybox || die "/bin/busybox is not static (apt-get install busybox-static)"
  mkdir -p "$CACHE"
  exec 7>"$CACHE/pull-images.lock"
  flock -w 600 7 || die "another image build holds $CACHE/pull-images.lock"
  if [ -f "$IMAGES/done" ]; then
    printf '%s\n' "$IMAGES"
    return
  fi
  local work; work=$(mktemp -d "$CACHE/pull-images.XXXXXX")
  SEED_PID=""
  # shellcheck disable=SC2064
  trap "[ -z \"\${SEED_PID:-}\" ] || kill \$SEED_PID 2>/dev/null; rm -rf '$work'" EXIT
  say "building the test images (once; cached in $IMAGES)"
  local b=(buildah --storage-driver vfs --root "$work/root" --runroot "$work/run")
  local ctr
  for image in app pause; do
    ctr=$("${b[@]}" from --name "acr-e2e-$image" scratch)
    "${b[@]}" copy "$ctr" /bin/busybox /bin/busybox >/dev/null
    if [ $image = app ]; then
      "${b[@]}" config --cmd '["/bin/busybox", "echo", "hello from a private image"]' "$ctr"
    else
      "${b[@]}" config --cmd '["/bin/busybox", "sleep", "2147483647"]' "$ctr"
    fi
    "${b[@]}" commit -q "$ctr" "localhost/acr-e2e/$image:v1" >/dev/null
  done
  "${b[@]}" push -q "$PAUSE_IMAGE" "docker-archive:$work/pause.tar:$PAUSE_IMAGE"
  # The registry's storage with the app image, pushed once through a registry without auth.
  local port; port=$(free_port)
  registry_config "$work/seed.yml" "$port" "$work/registry"
  docker-registry serve "$work/seed.yml" >"$work/seed.log" 2>&1 &
  SEED_PID=$!
  wait_http "http://127.0.0.1:$port/v2/" 200 "$SEED_PID" "the seeding registry" ||
    { cat "$work/seed.log" >&2; die "the seeding registry did not start"; }
  "${b[@]}" push -q --tls-verify=false "localhost/acr-e2e/app:v1" \
    "docker://127.0.0.1:$port/$APP_REPO:$APP_TAG"
  kill "$SEED_PID"
  wait "$SEED_PID" 2>/dev/null || true
  SEED_PID=""
  rm -rf "$IMAGES.tmp"
  mkdir -p "$IMAGES.tmp"
  mv "$work/registry" "$IMAGES.tmp/registry"
  mv "$work/pause.tar" "$IMAGES.tmp/pause.tar"
  touch "$IMAGES.tmp/done"
  rm -rf "$IMAGES"
  mv "$IMAGES.tmp" "$IMAGES"
  printf '%s\n' "$IMAGES"
}

file_is_static() {
  # A static executable has no program interpreter (named near the start of a dynamic one).
  ! head -c 1024 "$1" | grep -aq 'ld-linux'
}

# --- up ------------------------------------------------------------------------------------------

containerd_config() {
  local dir=$1
  cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/cni/bin"
    conf_dir = "$dir/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$dir/certs.d"
EOF
}

# A CNI plugin that gives every sandbox a made-up address and does nothing else: pods get
# NetworkReady without touching the host's network.
cni_stub() {
  local dir=$1
  mkdir -p "$dir/cni/bin" "$dir/cni/conf"
  cat >"$dir/cni/bin/acr-e2e-stub" <<'EOF'
#!/bin/sh
case "$CNI_COMMAND" in
  ADD) printf '{"cniVersion":"0.4.0","interfaces":[{"name":"eth0"}],"ips":[{"version":"4","address":"10.254.0.2/24","interface":0}]}\n' ;;
  VERSION) printf '{"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0"]}\n' ;;
  *) : ;;
esac
EOF
  chmod +x "$dir/cni/bin/acr-e2e-stub"
  # containerd also sets up every sandbox's loopback interface through a plugin of this name.
  cp "$dir/cni/bin/acr-e2e-stub" "$dir/cni/bin/loopback"
  printf '{"cniVersion":"0.4.0","name":"acr-e2e","type":"acr-e2e-stub"}\n' >"$dir/cni/conf/10-acr-e2e.conf"
}

up() {
  local dir=${1:-}
  [ -n "$dir" ] || die "usage: up DIR --realm URL --service NAME --cert FILE [--port PORT] [--owner PID]"
  shift
  local realm="" service="" cert="" port="" owner=""
  while [ $# -gt 0 ]; do
    case $1 in
      --realm) realm=$2; shift 2 ;;
      --service) service=$2; shift 2 ;;
      --cert) cert=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --owner) owner=$2; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
  [ -n "$realm" ] && [ -n "$service" ] && [ -f "$cert" ] || die "up needs --realm, --service and --cert FILE"
  need docker-registry containerd containerd-shim-runc-v2 runc ctr curl python3
  local images; images=$(build_images)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # The socket path must fit in a sockaddr_un (108 bytes).
  [ ${#dir} -lt 80 ] || die "DIR is too long for a socket path: $dir"
  # On any failure from here, undo what was started.
  trap 'down "$dir" || true' ERR

  [ -n "$port" ] || port=$(free_port)
  cp -a "$images/registry" "$dir/registry-data"
  cp "$cert" "$dir/realm.pem"
  registry_config "$dir/registry.yml" "$port" "$dir/registry-data" "$realm" "$service" "$dir/realm.pem"
  setsid docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/registry.pid"
  wait_http "http://127.0.0.1:$port/v2/" 401 "$(cat "$dir/registry.pid")" "the registry" ||
    { cat "$dir/registry.log" >&2; die "the registry did not start"; }

  containerd_config "$dir"
  cni_stub "$dir"
  [ -d /sys/fs/cgroup/memory/k8s.io ] || touch "$dir/cgroup-parent-ours"
  # The CRI plugin creates /run/netns, machine-wide; remove it at down when it was not there.
  [ -d /run/netns ] || touch "$dir/run-netns-ours"
  mkdir -p "$dir/certs.d/127.0.0.1:$port"
  printf 'server = "http://127.0.0.1:%s"\n[host."http://127.0.0.1:%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$port" "$port" >"$dir/certs.d/127.0.0.1:$port/hosts.toml"
  setsid containerd --config "$dir/containerd.toml" >"$dir/containerd.log" 2>&1 </dev/null &
  echo $! >"$dir/containerd.pid"
  local deadline=$((SECONDS + READY_TIMEOUT))
  until ctr --address "$dir/containerd.sock" version >/dev/null 2>&1; do
    kill -0 "$(cat "$dir/containerd.pid")" 2>/dev/null ||
      { tail -20 "$dir/containerd.log" >&2; die "containerd exited"; }
    [ $SECONDS -lt $deadline ] || { tail -20 "$dir/containerd.log" >&2; die "containerd did not start"; }
    sleep 0.1
  done
  ctr --address "$dir/containerd.sock" -n k8s.io images import --no-unpack "$images/pause.tar" >/dev/null
  trap - ERR

  cat >"$dir/env" <<EOF
REGISTRY=127.0.0.1:$port
APP_IMAGE=127.0.0.1:$port/$APP_REPO:$APP_TAG
PAUSE_IMAGE=$PAUSE_IMAGE
CONTAINERD_SOCKET=$dir/containerd.sock
EOF
  if [ -n "$owner" ]; then
    # The watchdog: tears down when the owner is gone, however it ended.
    setsid bash "${BASH_SOURCE[0]}" watch "$dir" "$owner" >/dev/null 2>&1 </dev/null &
    echo $! >"$dir/watchdog.pid"
  fi
  say "registry 127.0.0.1:$port, containerd $dir/containerd.sock"
}

watch() {
  local dir=$1 owner=$2
  while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 0.5; done
  [ -d "$dir" ] && down "$dir" --from-watchdog
  return 0
}

# --- down ----------------------------------------------------------------------------------------

# Kills the process whose PID FILE holds, if it still runs, and waits for it (up to 10 s).
stop_pid_file() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  local dir=${1:-}
  [ -n "$dir" ] || die "usage: down DIR"
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  [ "${2:-}" = --from-watchdog ] || stop_pid_file "$dir/watchdog.pid"
  # A kubelet on this chain's runtime goes first (kubelet.sh restores the sysctls it changed).
  [ ! -d "$dir/kubelet" ] || bash "$(dirname "${BASH_SOURCE[0]}")/kubelet.sh" down "$dir"
  local tasks=$dir/containerd/state/io.containerd.runtime.v2.task
  # Containers first (their init PIDs), then their shims, then containerd and the registry.
  local ids=() f
  if [ -d "$tasks" ]; then
    for f in "$tasks"/*/*/init.pid; do [ -f "$f" ] && stop_pid_file "$f"; done
    for f in "$tasks"/*/*/shim.pid; do [ -f "$f" ] && stop_pid_file "$f"; done
  fi
  # Shims whose pid file was not found above (seen with a kubelet's pod sandboxes): by the
  # socket they were started for, one PID at a time.
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $dir/containerd.sock "; then
      echo "${p#/proc/}" >"$dir/stray-shim.pid"
      stop_pid_file "$dir/stray-shim.pid"
    fi
  done
  # Every sandbox and container this containerd ran, to find their cgroups.
  if [ -d "$dir/containerd/root/io.containerd.grpc.v1.cri" ]; then
    for f in "$dir"/containerd/root/io.containerd.grpc.v1.cri/{sandboxes,containers}/*; do
      [ -d "$f" ] && ids+=("$(basename "$f")")
    done
  fi
  stop_pid_file "$dir/containerd.pid"
  stop_pid_file "$dir/registry.pid"
  # Mounts under DIR (container rootfs, sandbox /dev/shm), deepest first.
  local m
  awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Network namespaces the CRI plugin created for this containerd's sandboxes.
  if [ -d "$dir/containerd/root" ]; then
    local ns
    for ns in $(grep -rahoE '/var/run/netns/cni-[0-9a-f-]+|/run/netns/cni-[0-9a-f-]+' \
      "$dir/containerd/root/io.containerd.metadata.v1.bolt" 2>/dev/null | sort -u); do
      umount "$ns" 2>/dev/null || true
      rm -f "$ns"
    done
  fi
  # Their cgroups (cgroupfs driver, no kubelet QoS parent: <hierarchy>/k8s.io/<id>), and the
  # k8s.io parents when this chain created them and they are empty.
  local id
  for id in "${ids[@]}"; do
    find /sys/fs/cgroup -depth -type d -name "$id" -exec rmdir {} \; 2>/dev/null || true
  done
  if [ -f "$dir/cgroup-parent-ours" ]; then
    find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name k8s.io -exec rmdir {} \; 2>/dev/null || true
  fi
  if [ -f "$dir/run-netns-ours" ]; then rmdir /run/netns 2>/dev/null || true; fi
  rm -rf "$dir"
}

case ${1:-} in
  images) build_images ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  watch) shift; watch "$@" ;;
  *) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
