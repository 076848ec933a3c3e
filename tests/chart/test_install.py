"""The chart on the local control plane, with real Helm v4: install, the controller running as
the chart's ServiceAccount from the image's root filesystem, the RBAC matrix checked against
the real authorizer, upgrade and uninstall.

The controller runs as the API server sees an installed pod: the arguments and environment of
the installed Deployment, the ServiceAccount's token and the cluster CA under
/var/run/secrets/kubernetes.io/serviceaccount/, KUBERNETES_SERVICE_HOST/PORT, under chroot as
user 65532 in the root filesystem `scripts/image.sh rootfs` stages. Only the cloud endpoint is
added (the fake cloud). There is no kubelet, so Helm is not asked to wait for pods.
"""

import base64
import json
import os
import secrets
import socket
import urllib.parse

import helm_python as helm
import pytest

import cluster
from chartlib import CHART
from cluster import apply, get_json, kubectl, wait_for

RUN = "chart" + secrets.token_hex(3)
RELEASE = "acr-credential-controller"
NS = f"{RUN}-system"
OPS = f"{RUN}-ops"
TARGETS = [f"{RUN}-a", f"{RUN}-b", f"{RUN}-c"]
SELECT = {"acrcredentials.io/chart-test": RUN}
SA_USER = f"system:serviceaccount:{NS}:{RELEASE}"
CRDS = ["acrcredentialpolicies.acrcredentials.io", "acrregistrybindings.acrcredentials.io"]
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


VALUES = {
    "objectSelector": f"acrcredentials.io/chart-test={RUN}",
    # The chroot shares the host's network: a free port for /readyz, /livez and /metrics.
    "probes": {"port": _free_port()},
    # The webhook's HTTPS port too; the API server cannot reach it (no kubelet, so no endpoints
    # behind the Service): failurePolicy Ignore lets every ServiceAccount create through.
    "webhook": {"port": _free_port()},
    "accessKeySecrets": [{"namespace": OPS, "name": "alibaba-access-key"}],
    "resyncSeconds": 30,
    "logFormat": "text",
}


def helm_config():
    return helm.Config(kubeconfig_path=cluster.kubeconfig(), namespace=NS)


def adopt_crds():
    """CRDs applied earlier (by `kubectl apply -f crds/` or the Rust tests) are adopted the way
    Helm documents it, so the release can own them."""
    for name in CRDS:
        if kubectl("get", "crd", name, check=False).returncode == 0:
            kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
            kubectl("annotate", "--overwrite", "crd", name, f"meta.helm.sh/release-name={RELEASE}",
                    f"meta.helm.sh/release-namespace={NS}")


def objects():
    labels = {"acrcredentials.io/test": "true"}
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}}
            for n in [OPS]]
    docs += [{"apiVersion": "v1", "kind": "Namespace",
              "metadata": {"name": n, "labels": {**labels, "chart-test-pull": RUN}}} for n in TARGETS]
    for name in ("alibaba-access-key", "other-access-key"):
        docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": OPS},
                     "stringData": {"AccessKeyId": "LTAIchartTestUser",
                                    "AccessKeySecret": "chart-test-user-secret"}})
    for policy, secret in (("listed", "alibaba-access-key"), ("unlisted", "other-access-key")):
        docs.append({"apiVersion": "acrcredentials.io/v1alpha1", "kind": "AcrCredentialPolicy",
                     "metadata": {"name": f"{RUN}-{policy}", "labels": SELECT},
                     "spec": {"source": {"accessKey": {"secretRef": {"namespace": OPS, "name": secret}}}}})
    for binding, policy, selector in (("ok", "listed", {"matchLabels": {"chart-test-pull": RUN}}),
                                      ("denied", "unlisted", {"names": [TARGETS[0]]})):
        namespaces = ({"selector": selector} if "matchLabels" in selector else selector)
        docs.append({"apiVersion": "acrcredentials.io/v1alpha1", "kind": "AcrRegistryBinding",
                     "metadata": {"name": f"{RUN}-{binding}", "labels": SELECT},
                     "spec": {"registry": {"instanceId": "cri-charttest00001", "region": "cn-hangzhou"},
                              "policyRef": {"name": f"{RUN}-{policy}"},
                              "namespaces": namespaces,
                              "serviceAccounts": {"names": ["default"]}}})
    return docs


def condition(obj, type_):
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return c
    return None


def sa_token():
    """The token the 1.20 token controller wrote for the chart's ServiceAccount."""
    def find():
        sa = get_json("serviceaccount", RELEASE, "-n", NS)
        names = [s["name"] for s in sa.get("secrets", [])]
        return names and get_json("secret", names[0], "-n", NS)
    secret = wait_for("the ServiceAccount's token Secret", find)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def container_spec():
    d = get_json("deployment", RELEASE, "-n", NS)
    (c,) = d["spec"]["template"]["spec"]["containers"]
    return d, c


class Controller:
    """The installed Deployment's container, run from the image's root filesystem."""

    def __init__(self, tmp_path, cloud_url, token_data):
        self.rootfs = cluster.stage_rootfs(tmp_path / "image")
        sa_dir = self.rootfs / "var/run/secrets/kubernetes.io/serviceaccount"
        sa_dir.mkdir(parents=True)
        for key in ("token", "ca.crt", "namespace"):
            (sa_dir / key).write_bytes(token_data[key])
        self.cloud_url = cloud_url
        self.log_path = tmp_path / "controller.log"
        self.proc = None

    def start(self):
        _, c = container_spec()
        env = {}
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[e["name"]] = f"{RELEASE}-chroot"
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                env[e["name"]] = NS
            else:
                raise AssertionError(f"the test does not know how to provide env {e}")
        url = urllib.parse.urlparse(cluster.server())
        env["KUBERNETES_SERVICE_HOST"] = url.hostname
        env["KUBERNETES_SERVICE_PORT"] = str(url.port)
        self.args = c["args"]
        self.proc, self.log = cluster.chroot_run(self.rootfs, c["args"] + [f"--cloud-endpoint={self.cloud_url}"],
                                                 env, self.log_path)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.log.close()
            self.proc = None

    def log_text(self):
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chart-install")
    kubectl("create", "namespace", NS)
    kubectl("label", "namespace", NS, "acrcredentials.io/test=true")
    adopt_crds()
    cfg = helm_config()
    cloud = cluster.FakeCloud(cluster.REPO / "tests/chart/scenario.yaml", tmp)
    state = {"cfg": cfg, "installed": False, "controller": None}
    try:
        # Namespaces and the AccessKey Secrets first (the chart grants on them), then the
        # release (with the CRDs), then the policies and bindings.
        docs = objects()
        for doc in docs:
            if not doc["apiVersion"].startswith("acrcredentials.io/"):
                apply(doc)
        state["installed"] = True  # a failed install leaves a release to uninstall, too
        cfg.install(CHART, RELEASE, VALUES, namespace=NS, timeout=120)
        for doc in docs:
            if doc["apiVersion"].startswith("acrcredentials.io/"):
                apply(doc)
        state["token"] = sa_token()
        controller = Controller(tmp, cloud.url, state["token"])
        state["controller"] = controller
        controller.start()
        yield state
    finally:
        if state["controller"] is not None:
            state["controller"].stop()
            print("\n--- controller log (tail) ---\n" + "\n".join(state["controller"].log_text().splitlines()[-30:]))
        cloud.stop()
        for kind in ("acrregistrybindings", "acrcredentialpolicies"):
            for name in kubectl("get", kind, "-l", f"acrcredentials.io/chart-test={RUN}", "-o", "name",
                                check=False).stdout.split():
                kubectl("patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
                kubectl("delete", name, "--wait=false", check=False)
        if state["installed"]:
            try:
                cfg.uninstall(RELEASE, ignore_not_found=True)
            except helm.HelmError:
                pass
        for ns in [NS, OPS, *TARGETS]:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_controller_as_the_charts_service_account_reconciles_bindings_to_ready(release):
    def ready():
        b = get_json("acrregistrybinding", f"{RUN}-ok")
        c = condition(b, "Ready")
        return c and c["status"] == "True" and b
    wait_for("binding Ready=True", ready, timeout=90)
    for ns in TARGETS:
        secret = get_json("secret", "acr-credentials", "-n", ns, "--show-managed-fields")
        assert secret["type"] == "kubernetes.io/dockerconfigjson"
        auths = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
        assert auths, f"{ns}: no registry in the pull Secret"
        # Created by server-side apply: the controller's Apply entry in managedFields.
        managers = {(m["manager"], m["operation"]) for m in secret["metadata"]["managedFields"]}
        assert ("acr-credential-controller", "Apply") in managers, managers
        sa = get_json("serviceaccount", "default", "-n", ns)
        assert {"name": "acr-credentials"} in sa.get("imagePullSecrets", [])
    # Its Events about the cluster-scoped binding landed in namespace default (core v1 on 1.20).
    events = wait_for("an Event about the binding", lambda: get_json(
        "events", "-n", "default", "--field-selector", f"involvedObject.name={RUN}-ok")["items"])
    assert {e["source"]["component"] for e in events} == {"acr-credential-controller"}
    # Nothing the controller did was refused by RBAC.
    log = release["controller"].log_text()
    assert "forbidden" not in log.lower(), log
    assert "could not publish Event" not in log, log
    # As the chart's ServiceAccount it minted the webhook certificate into its named Secret
    # and published the CA in the chart's MutatingWebhookConfiguration.
    def published():
        mwc = get_json("mutatingwebhookconfiguration", RELEASE)
        bundle = mwc["webhooks"][0]["clientConfig"].get("caBundle")
        return bundle and mwc
    mwc = wait_for("the webhook caBundle", published, timeout=60)
    tls = get_json("secret", f"{RELEASE}-webhook-tls", "-n", NS)
    assert tls["type"] == "Opaque"
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == tls["data"]["ca-bundle.crt"]
    assert "BEGIN CERTIFICATE" in base64.b64decode(tls["data"]["tls.crt"]).decode()
    # It ran in-cluster style: no kubeconfig anywhere in its environment or root filesystem.
    assert not (release["controller"].rootfs / "root/.kube").exists()


def test_a_policy_naming_an_unlisted_access_key_secret_says_which_value_to_set(release):
    def denied():
        b = get_json("acrregistrybinding", f"{RUN}-denied")
        c = condition(b, "Ready")
        return c and c["status"] == "False" and "accessKeySecrets" in json.dumps(b["status"]) and b
    binding = wait_for("binding Ready=False naming accessKeySecrets", denied, timeout=90)
    text = json.dumps(binding["status"])
    assert f"{OPS}/other-access-key" in text
    assert "chart-test-user-secret" not in text
    assert kubectl("get", "secret", "acr-credentials", "-n", TARGETS[0], check=False).returncode == 0


def can_i(verb, resource, namespace=None, name=None, subresource=None):
    args = ["auth", "can-i", verb, resource if name is None else f"{resource}/{name}", f"--as={SA_USER}"]
    if namespace:
        args += ["-n", namespace]
    else:
        args += ["--all-namespaces"] if resource in ("secrets", "serviceaccounts", "configmaps") else []
    if subresource:
        args += [f"--subresource={subresource}"]
    r = kubectl(*args, check=False)
    assert r.stdout.strip() in ("yes", "no"), r.stderr
    return r.stdout.strip() == "yes"


def test_rbac_matrix_against_the_real_authorizer(release):
    token = release["token"]["token"].decode()
    ns = TARGETS[1]

    def real(*args, stdin=None):
        r = kubectl(*args, token=token, check=False, input=stdin)
        if r.returncode == 0:
            return True
        assert "forbidden" in r.stderr.lower(), f"kubectl {args}: {r.stderr}"
        return False

    def secret(name, type_="kubernetes.io/dockerconfigjson"):
        return json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": OPS},
                           "type": type_, "data": {".dockerconfigjson": base64.b64encode(b'{"auths":{}}').decode()}})

    rows = [
        # (what, expected, actual)
        ("get the configured Secret (any namespace)", True, can_i("get", "secrets", ns, "acr-credentials")),
        ("update the configured Secret", True, can_i("update", "secrets", ns, "acr-credentials")),
        ("patch the configured Secret", True, can_i("patch", "secrets", ns, "acr-credentials")),
        ("delete the configured Secret", True, can_i("delete", "secrets", ns, "acr-credentials")),
        ("get the configured Secret [token]", True,
         real("get", "secret", "acr-credentials", "-n", ns)),
        ("list Secrets with the name field selector [token]", True,
         real("get", "secrets", "-A", "--field-selector", "metadata.name=acr-credentials")),
        ("watch Secrets with the name field selector [token]", True,
         real("get", "--raw", "/api/v1/secrets?fieldSelector=metadata.name%3Dacr-credentials&watch=true&timeoutSeconds=1")),
        ("watch Secrets without the field selector [token]", False,
         real("get", "--raw", "/api/v1/secrets?watch=true&timeoutSeconds=1")),
        ("create the configured Secret by server-side apply [token]", True,
         real("apply", "--server-side", "--field-manager=rbac-check", "-f", "-", stdin=secret("acr-credentials"))),
        ("patch ServiceAccounts", True, can_i("patch", "serviceaccounts", ns)),
        ("read the AccessKey Secret named in values", True, can_i("get", "secrets", OPS, "alibaba-access-key")),
        ("read the AccessKey Secret named in values [token]", True,
         real("get", "secret", "alibaba-access-key", "-n", OPS)),
        ("read the legacy ConfigMap", True, can_i("get", "configmaps", "kube-system", "acr-configuration")),
        ("create Events in default", True, can_i("create", "events", "default")),
        ("create events.k8s.io Events in default", True, can_i("create", "events.events.k8s.io", "default")),
        ("patch binding status", True, can_i("patch", "acrregistrybindings.acrcredentials.io", None, None, "status")),
        ("create the Lease in the release namespace", True, can_i("create", "leases.coordination.k8s.io", NS)),
        ("update the named Lease in the release namespace", True,
         can_i("update", "leases.coordination.k8s.io", NS, "acr-credential-controller")),
        ("get the named Lease in the release namespace", True,
         can_i("get", "leases.coordination.k8s.io", NS, "acr-credential-controller")),
        ("create bindings and policies (legacy translation on)", True,
         can_i("create", "acrregistrybindings.acrcredentials.io") and can_i("create", "acrcredentialpolicies.acrcredentials.io")),
        ("patch events.k8s.io Events in default", True, can_i("patch", "events.events.k8s.io", "default")),
        ("patch core Events in default (repeats counted)", True, can_i("patch", "events", "default")),
        ("get the webhook certificate Secret", True, can_i("get", "secrets", NS, f"{RELEASE}-webhook-tls")),
        ("update the webhook certificate Secret", True, can_i("update", "secrets", NS, f"{RELEASE}-webhook-tls")),
        ("update the chart's MutatingWebhookConfiguration", True,
         can_i("update", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None, RELEASE)),
        # Denied.
        ("get a Secret with another name", False, can_i("get", "secrets", ns, "other")),
        ("get a Secret with another name [token]", False, real("get", "secret", "other-access-key", "-n", OPS)),
        ("create a Secret with another name by server-side apply [token]", False,
         real("apply", "--server-side", "--field-manager=rbac-check", "-f", "-", stdin=secret("not-ours"))),
        ("create the configured Secret by plain POST [token]", False,
         real("create", "-f", "-", stdin=secret("acr-credentials").replace(OPS, NS))),
        ("list Secrets without the field selector", False, can_i("list", "secrets")),
        ("list Secrets without the field selector [token]", False, real("get", "secrets", "-A")),
        ("read ConfigMaps outside the legacy one", False, can_i("get", "configmaps", "kube-system", "other")),
        ("list ConfigMaps in kube-system [token]", False, real("get", "configmaps", "-n", "kube-system")),
        ("create Namespaces", False, can_i("create", "namespaces")),
        ("patch Namespaces [token]", False,
         real("label", "namespace", ns, "touched=yes")),
        ("delete Namespaces", False, can_i("delete", "namespaces")),
        ("patch the named Lease (it is replaced, never patched)", False,
         can_i("patch", "leases.coordination.k8s.io", NS, "acr-credential-controller")),
        ("delete the named Lease", False, can_i("delete", "leases.coordination.k8s.io", NS, "acr-credential-controller")),
        ("delete a Secret with another name", False, can_i("delete", "secrets", ns, "other")),
        ("update a Secret with another name", False, can_i("update", "secrets", ns, "other")),
        ("update ServiceAccounts (only patch)", False, can_i("update", "serviceaccounts", ns, "default")),
        ("create ServiceAccount tokens", False, can_i("create", "serviceaccounts", ns, "default", "token")),
        ("update other Leases in the release namespace", False,
         can_i("update", "leases.coordination.k8s.io", NS, "other")),
        ("create Leases in kube-system", False, can_i("create", "leases.coordination.k8s.io", "kube-system")),
        ("create Events in other namespaces", False, can_i("create", "events", ns)),
        ("delete ServiceAccounts", False, can_i("delete", "serviceaccounts", ns)),
        ("get a webhook-certificate-named Secret elsewhere", False,
         can_i("get", "secrets", ns, f"{RELEASE}-webhook-tls")),
        ("delete the webhook certificate Secret", False, can_i("delete", "secrets", NS, f"{RELEASE}-webhook-tls")),
        ("update other MutatingWebhookConfigurations", False,
         can_i("update", "mutatingwebhookconfigurations.admissionregistration.k8s.io", None, "other")),
        ("create MutatingWebhookConfigurations", False,
         can_i("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io")),
        ("update ValidatingWebhookConfigurations", False,
         can_i("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None, RELEASE)),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nRBAC matrix for {SA_USER} ([token] = a real request with its token, else kubectl auth can-i)")
    for what, expected, actual in rows:
        print(f"  {what:<{width}}  {'allowed' if actual else 'denied ':<7}  {'ok' if actual == expected else 'WRONG'}")
    wrong = [r for r in rows if r[1] != r[2]]
    assert not wrong, f"RBAC differs from the design: {wrong}"
    kubectl("delete", "secret", "acr-credentials", "-n", OPS, check=False)


def test_upgrade_with_changed_values_rolls_out(release):
    before, _ = container_spec()
    release["cfg"].upgrade(CHART, RELEASE, {**VALUES, "logLevel": "debug", "resyncSeconds": 60},
                           namespace=NS, timeout=120)
    after, c = container_spec()
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    assert "--resync-seconds=60" in c["args"]
    assert {"name": "RUST_LOG", "value": "debug"} in c["env"]

    # kube-controller-manager rolls it out: a new ReplicaSet with the new template.
    def new_replica_set():
        rs = get_json("replicasets", "-n", NS)["items"]
        return [r for r in rs if "--resync-seconds=60" in r["spec"]["template"]["spec"]["containers"][0]["args"]]
    wait_for("a ReplicaSet of the new template", new_replica_set)
    # The controller restarted with the new arguments keeps the bindings Ready.
    release["controller"].stop()
    release["controller"].start()
    assert "--resync-seconds=60" in release["controller"].args
    wait_for("binding still Ready after the restart",
             lambda: (condition(get_json("acrregistrybinding", f"{RUN}-ok"), "Ready") or {}).get("status") == "True")


def test_uninstall_keeps_the_crds_and_the_bindings(release):
    release["controller"].stop()
    release["cfg"].uninstall(RELEASE, timeout=120)
    release["installed"] = False
    for name in CRDS:
        crd = get_json("crd", name)
        assert crd["metadata"].get("deletionTimestamp") is None
    assert get_json("acrregistrybinding", f"{RUN}-ok")["metadata"]["name"] == f"{RUN}-ok"
    assert get_json("acrcredentialpolicy", f"{RUN}-listed")
    for kind in ("deployment", "serviceaccount", "role"):
        assert kubectl("get", kind, RELEASE, "-n", NS, check=False).returncode != 0
    assert kubectl("get", "clusterrole", RELEASE, check=False).returncode != 0
    # The pull Secrets the controller wrote stay until bindings are deleted.
    assert kubectl("get", "secret", "acr-credentials", "-n", TARGETS[0], check=False).returncode == 0


def test_the_image_runs_help_as_65532(tmp_path):
    rootfs = cluster.stage_rootfs(tmp_path)
    proc, log = cluster.chroot_run(rootfs, ["--help"], {}, tmp_path / "help.log")
    assert proc.wait(timeout=30) == 0
    log.close()
    out = (tmp_path / "help.log").read_text()
    assert "Usage: acr-credential-controller" in out
    r = os.system(f"chroot --userspec=65532:65532 {rootfs} /usr/local/bin/acr-credential-controller crd --no-cel >/dev/null")
    assert r == 0
