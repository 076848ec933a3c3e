"""API Priority and Fairness on the local control plane (Kubernetes 1.20, which serves
flowcontrol.apiserver.k8s.io/v1beta1): a release with `apiPriority.enabled` installs its
FlowSchema and PriorityLevelConfiguration in the version the cluster serves, the API server
accepts them; where API Priority and Fairness runs (`ACC_APF=true scripts/cluster.sh up`; the
local control plane runs without it by default) the FlowSchema finds its level and a request of
the controller's ServiceAccount is counted in it (`apiserver_flowcontrol_dispatched_requests_total`).
"""

import re
import secrets

import helm_python as helm
import pytest

import cluster
from chartlib import CHART
from cluster import get_json, kubectl, wait_for

RUN = "apf" + secrets.token_hex(3)
# Contains the chart name, so the full name (of the ServiceAccount, the FlowSchema) is the release name.
RELEASE = f"acr-credential-controller-{RUN}"
NS = f"{RUN}-system"
SA_USER = f"system:serviceaccount:{NS}:{RELEASE}"

# Only what this test needs: no CRDs (another release may own them), no webhook, no legacy
# translation.
VALUES = {
    "crds": {"install": False},
    "webhook": {"enabled": False},
    "legacyConfigMap": {"enabled": False},
    "metrics": {"service": {"enabled": False}},
    "apiPriority": {"enabled": True, "concurrencyShares": 7,
                    "queuing": {"queues": 2, "handSize": 1, "queueLengthLimit": 30}},
}


@pytest.fixture(scope="module")
def release():
    served = kubectl("api-versions").stdout.split()
    flowcontrol = [v for v in served if v.startswith("flowcontrol.apiserver.k8s.io/")]
    kubectl("create", "namespace", NS)
    kubectl("label", "namespace", NS, "acrcredentials.io/test=true")
    cfg = helm.Config(kubeconfig_path=cluster.kubeconfig(), namespace=NS)
    try:
        cfg.install(CHART, RELEASE, VALUES, namespace=NS, timeout=120)
        yield flowcontrol
    finally:
        try:
            cfg.uninstall(RELEASE, ignore_not_found=True)
        except helm.HelmError:
            pass
        kubectl("delete", "namespace", NS, "--wait=false", check=False)


def apf_runs():
    """Whether the API server runs API Priority and Fairness: its configuration controller
    writes a status on every FlowSchema, the built-in ones too."""
    return bool(get_json("flowschemas", "catch-all").get("status", {}).get("conditions"))


def dispatched(flow_schema):
    """Requests the API server dispatched through `flow_schema`, from its /metrics."""
    total = 0
    for line in kubectl("get", "--raw", "/metrics").stdout.splitlines():
        if not line.startswith("apiserver_flowcontrol_dispatched_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("flowSchema", labels.get("flow_schema")) == flow_schema:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_the_objects_are_installed_in_the_version_the_cluster_serves(release):
    newest = max(release, key=lambda v: ["v1beta1", "v1beta2", "v1beta3", "v1"].index(v.split("/")[1]))
    pl = get_json("prioritylevelconfigurations", RELEASE)
    fs = get_json("flowschemas", RELEASE)
    assert fs["apiVersion"] == pl["apiVersion"] == newest
    assert pl["spec"]["type"] == "Limited"
    limited = pl["spec"]["limited"]
    shares = limited.get("nominalConcurrencyShares", limited.get("assuredConcurrencyShares"))
    assert shares == 7
    assert limited["limitResponse"]["queuing"] == {"queues": 2, "handSize": 1, "queueLengthLimit": 30}
    assert fs["spec"]["priorityLevelConfiguration"]["name"] == RELEASE
    assert fs["spec"]["rules"][0]["subjects"] == [
        {"kind": "ServiceAccount", "serviceAccount": {"namespace": NS, "name": RELEASE}}]


def test_the_controllers_requests_go_through_its_level(release):
    if not apf_runs():
        pytest.skip("the API server runs without API Priority and Fairness "
                    "(start the control plane with ACC_APF=true to check the classification)")
    # The FlowSchema found its level: the API server says it is not dangling.
    conds = wait_for("the FlowSchema's status",
                     lambda: get_json("flowschemas", RELEASE).get("status", {}).get("conditions"),
                     timeout=30)
    assert [c["status"] for c in conds if c["type"] == "Dangling"] == ["False"], conds

    def ask(user, times):
        # Impersonation comes before API Priority and Fairness classifies the request; the
        # answer (a refusal: the user may not list ConfigMaps) does not matter.
        for _ in range(times):
            kubectl("get", "--raw", f"/api/v1/namespaces/{NS}/configmaps", f"--as={user}", check=False)

    before = dispatched(RELEASE)
    ask(SA_USER, 5)
    wait_for("five requests of the controller's ServiceAccount in its FlowSchema",
             lambda: dispatched(RELEASE) - before >= 5, timeout=30)
    # Another ServiceAccount of the same namespace stays with the built-in schemas.
    before = dispatched(RELEASE)
    others = dispatched("service-accounts")
    ask(f"system:serviceaccount:{NS}:someone-else", 5)
    wait_for("the other ServiceAccount's requests in service-accounts",
             lambda: dispatched("service-accounts") - others >= 5, timeout=30)
    assert dispatched(RELEASE) == before
