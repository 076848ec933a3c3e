#!/usr/bin/env bash
# Installs what the sandbox and the test suite need and is missing on this machine:
# Debian packages, the Python packages of the cross-checks, and the local control plane
# binaries (built once, cached outside the repository). Safe to run again: it skips what is there.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf '[setup] %s\n' "$*" >&2; }

# tool -> Debian package
declare -A PACKAGES=(
  [openssl]=openssl [curl]=curl [ss]=iproute2 [flock]=util-linux [setsid]=util-linux
  [python3]=python3 [kubectl]=kubernetes-client [apt-get]=apt [dpkg-deb]=dpkg
  [lua5.1]=lua5.1
  # The end-to-end pull tier (scripts/pull-chain.sh): a registry, a container runtime, the
  # clients, and what builds its images offline.
  [docker-registry]=docker-registry [containerd]=containerd [runc]=runc [skopeo]=skopeo
  [buildah]=buildah
)
missing=()
for tool in "${!PACKAGES[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${PACKAGES[$tool]}")
done
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
# A static busybox is the whole content of the pull tier's images.
{ [ -x /bin/busybox ] && ! head -c 1024 /bin/busybox | grep -aq ld-linux; } || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  say "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    say "error: not root; install them yourself: sudo apt-get install ${missing[*]}"
    exit 1
  fi
  apt-get update -q >/dev/null
  # Packages with a service (docker-registry, containerd) must not start it: it would listen
  # beyond loopback. Without a policy, forbid starts for the install's duration.
  own_policy=false
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=true
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  if [ "$own_policy" = true ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 ||
    say "warning: cargo ${component/rustfmt/fmt} is missing (rustup component add $component); CI needs it"
done

if [ -f "$REPO/tests/requirements.txt" ]; then
  if ! python3 -m pip install -q --disable-pip-version-check -r "$REPO/tests/requirements.txt" \
    >/tmp/acr-setup-pip.log 2>&1; then
    cat /tmp/acr-setup-pip.log >&2
    say "error: pip could not install tests/requirements.txt"
    exit 1
  fi
fi

bash "$REPO/scripts/cluster.sh" build
# The node of the end-to-end pull tests and the sandbox (tests/e2e_kubelet.rs), built once from the
# same source and cached apart from the control plane.
bash "$REPO/scripts/kubelet.sh" build
