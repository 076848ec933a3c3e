"""The local control plane as the chart tests see it: kubectl as admin or with a token, the
controller's binaries, the fake cloud, and the staged image root filesystem."""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import time

from chartlib import REPO


def kubeconfig():
    path = os.environ.get("KUBECONFIG") or str(REPO / ".cluster" / "kubeconfig")
    if not pathlib.Path(path).is_file():
        raise RuntimeError(f"no kubeconfig at {path}: start the control plane (scripts/cluster.sh up) "
                           "or run scripts/test.sh")
    return path


def kubectl(*args, token=None, check=True, input=None):
    """Runs kubectl as the admin, or with `token` (a ServiceAccount's) against the same server."""
    cmd = ["kubectl", "--kubeconfig", kubeconfig()]
    if token is not None:
        cmd = ["kubectl", "--server", server(), "--certificate-authority", ca_file(),
               "--token", token, "--kubeconfig", "/dev/null"]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, input=input, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {r.stderr.strip()}")
    return r


def get_json(*args):
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def apply(doc):
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(doc))


def _config():
    return json.loads(kubectl("config", "view", "--minify", "--raw", "-o", "json").stdout)


def server():
    return _config()["clusters"][0]["cluster"]["server"]


def ca_file():
    cluster = _config()["clusters"][0]["cluster"]
    if "certificate-authority" in cluster:
        return cluster["certificate-authority"]
    path = pathlib.Path(kubeconfig()).with_suffix(".ca.crt")
    path.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return str(path)


def wait_for(what, fn, timeout=60, interval=0.5):
    """Polls `fn` until it returns a truthy value; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except (AssertionError, KeyError, IndexError, json.JSONDecodeError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last}")


def binary(name):
    """A debug binary cargo built (scripts/test.sh builds them before the chart tests)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        pathlib.Path.home() / ".cache" / "acr-credential-controller" / "target")
    path = pathlib.Path(target) / "debug" / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run `cargo build --bin {name}` (scripts/test.sh does)")
    return path


def stage_rootfs(out):
    """The image's root filesystem, staged by scripts/image.sh from the debug binary."""
    subprocess.run(["bash", str(REPO / "scripts" / "image.sh"), "rootfs", "--binary",
                    str(binary("acr-credential-controller")), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    return pathlib.Path(out) / "rootfs"


class FakeCloud:
    """The strict fake Alibaba Cloud (`acr-fake-cloud`) on a free loopback port."""

    def __init__(self, scenario, workdir):
        addr = pathlib.Path(workdir) / "fake-cloud.addr"
        self.log = open(pathlib.Path(workdir) / "fake-cloud.log", "w")
        self.proc = subprocess.Popen([str(binary("acr-fake-cloud")), "--scenario", str(scenario),
                                      "--address-file", str(addr)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = wait_for("the fake cloud's address", lambda: addr.exists() and addr.read_text().strip())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


def chroot_run(rootfs, argv, env, log_path):
    """Starts the image's binary under chroot as user 65532 with exactly `env`."""
    chroot = shutil.which("chroot")
    if chroot is None:
        raise RuntimeError("chroot (coreutils) is missing")
    log = open(log_path, "w")
    proc = subprocess.Popen([chroot, "--userspec=65532:65532", str(rootfs),
                             "/usr/local/bin/acr-credential-controller", *argv],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log
