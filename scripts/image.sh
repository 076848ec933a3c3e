#!/usr/bin/env bash
# The container image, built with no base image and no registry.
#   scripts/image.sh [--tag NAME:TAG] [--binary PATH]
#                                           release build (or the given binary), stage the root
#                                           filesystem, build the Containerfile with buildah (vfs
#                                           storage; needs root)
#   scripts/image.sh rootfs --binary PATH --out DIR
#                                           only stage DIR/rootfs from a binary (what the tests
#                                           run under chroot as user 65532)
# The root filesystem holds the binary at /usr/local/bin/acr-credential-controller, the shared
# libraries `ldd` resolves for it (and the dynamic loader), /etc/passwd, /etc/group and
# /etc/nsswitch.conf entries for the user nonroot (65532), and the system CA bundle (the cloud
# client carries its own roots; the Kubernetes client may consult the system store).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

# stage_rootfs BINARY DIR: writes DIR/rootfs (replacing it).
stage_rootfs() {
  local binary=$1 out=$2 root lib
  [ -x "$binary" ] || die "no executable at $binary"
  root=$out/rootfs
  rm -rf "$root"
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  install -m 0755 "$binary" "$root/usr/local/bin/acr-credential-controller"
  # Every library ldd resolves, and the loader (the line with a path but no "=>").
  while read -r lib; do
    [ -n "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$binary" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]+ \(/ {print $1}')
  cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
  cat >"$root/etc/group" <<'GROUP'
root:x:0:
nonroot:x:65532:
GROUP
  cat >"$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS
  mkdir -p "$root/home/nonroot"
  chown 65532:65532 "$root/home/nonroot" 2>/dev/null || true
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  else
    say "warning: /etc/ssl/certs/ca-certificates.crt missing (Debian package ca-certificates); the image has no system CA bundle"
  fi
  say "staged $root ($(du -sh "$root" | cut -f1))"
}

if [ "${1:-}" = rootfs ]; then
  shift
  binary="" out=""
  while [ $# -gt 0 ]; do
    case $1 in
      --binary) binary=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      *) die "unknown argument $1 (usage: scripts/image.sh rootfs --binary PATH --out DIR)" ;;
    esac
  done
  [ -n "$binary" ] && [ -n "$out" ] || die "usage: scripts/image.sh rootfs --binary PATH --out DIR"
  mkdir -p "$out"
  stage_rootfs "$binary" "$out"
  exit 0
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
tag="acr-credential-controller:$version"
binary=""
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --binary) binary=$2; shift 2 ;;
    *) die "unknown argument $1 (usage: scripts/image.sh [--tag NAME:TAG] [--binary PATH] | rootfs --binary PATH --out DIR)" ;;
  esac
done
command -v buildah >/dev/null || die "buildah is missing (Debian package buildah)"
if [ -z "$binary" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/acr-credential-controller/target}
  say "building the release binary"
  (cd "$REPO" && cargo build --release --quiet --bin acr-credential-controller)
  binary=$CARGO_TARGET_DIR/release/acr-credential-controller
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
stage_rootfs "$binary" "$context"
say "building $tag"
buildah --storage-driver vfs bud --quiet --layers=false -f "$REPO/Containerfile" -t "$tag" "$context" >/dev/null
buildah --storage-driver vfs images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$tag"
