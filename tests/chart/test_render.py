"""The chart renders, lints and validates its values as documented, with real Helm v4.

No cluster needed: templates are rendered offline for Kubernetes 1.20 and 1.30.
"""

import json
import re

import helm_python as helm
import pytest
import yaml

import chartlib
from chartlib import CHART, find, objects, one


def test_lint_strict_passes_for_kube_1_20_and_1_30():
    for version in ("v1.20.2", "v1.30.0"):
        report = helm.lint(CHART, strict=True, kube_version=version, namespace="acr-system")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"helm lint --strict for {version}: {problems}"


def test_a_misspelled_value_is_refused_with_its_name():
    chart = helm.Chart.load(CHART)
    for bad, name in [({"secretNmae": "x"}, "secretNmae"),
                      ({"crds": {"instal": False}}, "instal"),
                      ({"credentials": {"rrsa": {"enable": True}}}, "enable")]:
        with pytest.raises(helm.HelmError) as e:
            chart.validate_schema(bad)
        assert name in str(e.value), str(e.value)
        # And an install-time render refuses it too.
        with pytest.raises(helm.HelmError) as e:
            chartlib.render(bad)
        assert name in str(e.value)
    with pytest.raises(helm.HelmError) as e:
        chart.validate_schema({"network": "intranet"})
    assert "network" in str(e.value)


def test_defaults_render_a_hardened_deployment():
    docs = objects(name="acr-credential-controller")
    d = one(docs, "Deployment", "acr-credential-controller")
    pod = d["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["serviceAccountName"] == "acr-credential-controller"
    (c,) = pod["containers"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    assert c["args"] == ["run", "--secret-name=acr-credentials", "--region=cn-hangzhou",
                         "--network=public", "--resync-seconds=300",
                         "--write-budget=20", "--write-burst=30", "--log-format=json",
                         "--legacy-configmap=kube-system/acr-configuration",
                         "--leader-elect", "--lease-name=acr-credential-controller",
                         "--lease-duration-seconds=15", "--renew-deadline-seconds=10",
                         "--retry-period-seconds=2", "--probe-address=0.0.0.0:8080",
                         "--webhook-address=0.0.0.0:9443",
                         "--webhook-certificate-secret-name=acr-credential-controller-webhook-tls",
                         "--webhook-configuration-name=acr-credential-controller",
                         "--webhook-dns-names=acr-credential-controller-webhook.acr-system.svc,"
                         "acr-credential-controller-webhook.acr-system.svc.cluster.local",
                         "--webhook-cert-validity-seconds=31536000",
                         "--webhook-cert-renew-before-seconds=2592000"]
    assert {e["name"] for e in c["env"]} == {"RUST_LOG", "POD_NAME", "POD_NAMESPACE"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http-metrics"}
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "https-webhook", "containerPort": 9443, "protocol": "TCP"}]
    svc = one(docs, "Service", "acr-credential-controller-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert not find(docs, "ServiceMonitor") and not find(docs, "PrometheusRule")
    assert "volumes" not in pod and "volumeMounts" not in c
    for key in ("priorityClassName", "tolerations", "affinity", "topologySpreadConstraints",
                "imagePullSecrets"):
        assert key not in pod
    assert not find(docs, "PodDisruptionBudget")
    assert not find(docs, "ValidatingAdmissionPolicy")
    assert c["image"] == "acr-credential-controller:" + helm.Chart.load(CHART).metadata["appVersion"]


def test_crds_follow_the_kube_version_and_the_flags():
    def crds(values=None, **kw):
        return find(objects(values, **kw), "CustomResourceDefinition")

    old, new = crds(), crds(kube_version="v1.30.0")
    assert sorted(c["metadata"]["name"] for c in old) == [
        "acrcredentialpolicies.acrcredentials.io", "acrregistrybindings.acrcredentials.io"]
    assert "x-kubernetes-validations" not in json.dumps(old)
    assert "x-kubernetes-validations" in json.dumps(new)
    assert "x-kubernetes-validations" in json.dumps(crds(kube_version="v1.25.0"))
    for c in old + new:
        assert c["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert c["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    for c in crds({"crds": {"keep": False}}):
        assert "annotations" not in c["metadata"]
    assert crds({"crds": {"install": False}}) == []


def rules(role):
    return [(tuple(r.get("apiGroups", [])), tuple(r["resources"]), tuple(r.get("resourceNames", [])),
             tuple(r["verbs"])) for r in role["rules"]]


def test_rbac_pins_secrets_to_the_configured_name():
    docs = objects({"secretName": "pull-creds"}, name="acr-credential-controller")
    cr = one(docs, "ClusterRole", "acr-credential-controller")
    # Exactly what the controller calls (the install test runs it with these rules).
    assert rules(cr) == [
        (("",), ("secrets",), ("pull-creds",), ("get", "list", "watch", "create", "update", "patch", "delete")),
        (("",), ("serviceaccounts",), (), ("get", "list", "watch", "patch")),
        (("",), ("namespaces",), (), ("get", "list", "watch")),
        (("acrcredentials.io",), ("acrregistrybindings", "acrcredentialpolicies"), (),
         ("get", "list", "watch", "patch", "create", "delete")),
        (("acrcredentials.io",), ("acrregistrybindings/status", "acrcredentialpolicies/status"), (), ("patch",)),
        (("admissionregistration.k8s.io",), ("mutatingwebhookconfigurations",),
         ("acr-credential-controller",), ("get", "update")),
    ]
    # Events: the recorder creates events.k8s.io Events and patches their series; the core
    # Event (Kubernetes before 1.22) likewise, its count; the legacy ConfigMap's Events only created.
    events = one(docs, "Role", "acr-credential-controller-events", "default")
    assert rules(events) == [(("",), ("events",), (), ("create", "patch")),
                             (("events.k8s.io",), ("events",), (), ("create", "patch"))]
    legacy = one(docs, "Role", "acr-credential-controller-events", "kube-system")
    assert rules(legacy)[0] == (("events.k8s.io",), ("events",), (), ("create",))
    # No rule anywhere grants Secrets without a name, nor anything with a wildcard.
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        for groups, resources, names, verbs in rules(role):
            assert "*" not in groups + resources + verbs
            if "secrets" in resources or "configmaps" in resources:
                assert names, f"{role['metadata']['name']}: {resources} without resourceNames"
    lease = one(docs, "Role", "acr-credential-controller-lease")
    assert lease["metadata"]["namespace"] == "acr-system"
    # The Lease is read and replaced with its resourceVersion: never patched.
    assert rules(lease) == [(("coordination.k8s.io",), ("leases",), ("acr-credential-controller",),
                             ("get", "update")),
                            (("coordination.k8s.io",), ("leases",), (), ("create",))]
    for b in find(docs, "RoleBinding") + find(docs, "ClusterRoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "acr-credential-controller",
                                  "namespace": "acr-system"}]


def test_access_key_secrets_get_one_role_per_namespace():
    values = {"accessKeySecrets": [{"namespace": "ops", "name": "ak-b"},
                                   {"namespace": "ops", "name": "ak-a"},
                                   {"namespace": "team", "name": "ak"}]}
    docs = objects(values, name="acr-credential-controller")
    ops = one(docs, "Role", "acr-credential-controller-access-keys", "ops")
    assert rules(ops) == [(("",), ("secrets",), ("ak-a", "ak-b"), ("get",))]
    team = one(docs, "Role", "acr-credential-controller-access-keys", "team")
    assert rules(team) == [(("",), ("secrets",), ("ak",), ("get",))]
    assert len(find(docs, "RoleBinding", "acr-credential-controller-access-keys")) == 2
    assert "ops/ak-a" in chartlib.notes(values)
    assert not find(objects(name="acr-credential-controller"), "Role", "acr-credential-controller-access-keys")


def test_legacy_configmap_toggle():
    on = objects(name="acr-credential-controller")
    ks = one(on, "Role", "acr-credential-controller-events", "kube-system")
    assert (("",), ("configmaps",), ("acr-configuration",), ("get", "list", "watch")) in rules(ks)
    cr = one(on, "ClusterRole", "acr-credential-controller")
    assert ("create" in rules(cr)[3][3]) and ("delete" in rules(cr)[3][3])
    off = objects({"legacyConfigMap": {"enabled": False}}, name="acr-credential-controller")
    assert not find(off, "Role", "acr-credential-controller-events", "kube-system")
    cr = one(off, "ClusterRole", "acr-credential-controller")
    assert rules(cr)[3][3] == ("get", "list", "watch", "patch")
    assert "configmaps" not in json.dumps(off)
    # Events about the cluster-scoped objects: namespace default, whatever the toggle.
    assert one(off, "Role", "acr-credential-controller-events", "default")


def test_credential_sources_mount_what_they_need():
    docs = objects({"credentials": {"managedRole": {"enabled": True},
                                    "rrsa": {"enabled": True, "expirationSeconds": 7200},
                                    "workerRole": {"metadataEndpoint": "http://100.100.100.200"}}})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"addon-token": "/var/addon",
                      "rrsa-token": "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens"}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["addon-token"]["secret"] == {"secretName": "addon.aliyuncsmanagedacrrole.token",
                                             "items": [{"key": "addon.token.config", "path": "token-config"}]}
    (src,) = vols["rrsa-token"]["projected"]["sources"]
    assert src["serviceAccountToken"] == {"audience": "sts.aliyuncs.com", "expirationSeconds": 7200,
                                          "path": "token"}
    assert "--metadata-endpoint=http://100.100.100.200" in c["args"]
    note = chartlib.notes({"credentials": {"rrsa": {"enabled": True}}})
    assert "system:serviceaccount:acr-system:acr-acr-credential-controller" in note


def test_renamed_secret_values_and_their_deprecated_spellings():
    """Each Secret has its own value; the old `secretName` spellings are still honoured, and win."""
    def token_secret(managed):
        docs = objects({"credentials": {"managedRole": {"enabled": True, **managed}}})
        vols = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
        return vols["addon-token"]["secret"]["secretName"]
    assert token_secret({"tokenSecretName": "tok-new"}) == "tok-new"
    assert token_secret({"secretName": "tok-old"}) == "tok-old"
    assert token_secret({"secretName": "tok-old", "tokenSecretName": "tok-new"}) == "tok-old"
    assert 'Secret "tok-new" is mounted' in chartlib.notes(
        {"credentials": {"managedRole": {"enabled": True, "tokenSecretName": "tok-new"}}})

    kw = dict(kube_version="v1.30.0", api_versions=chartlib.API_VERSIONS_1_30)

    def certificate_secret(webhook):
        docs = objects({"webhook": webhook}, name="acr-credential-controller", **kw)
        (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        (arg,) = [a for a in c["args"] if a.startswith("--webhook-certificate-secret-name=")]
        (role,) = [r for r in find(docs, "Role", namespace="acr-system")
                   if r["metadata"]["name"] == "acr-credential-controller-webhook-tls"]
        vap = one(docs, "ValidatingAdmissionPolicy", "acr-credential-controller-secrets")
        name = arg.split("=", 1)[1]
        assert role["rules"][0]["resourceNames"] == [name]
        assert f"object.metadata.name == '{name}'" in vap["spec"]["validations"][0]["expression"]
        return name
    assert certificate_secret({}) == "acr-credential-controller-webhook-tls"
    assert certificate_secret({"certificateSecretName": "cert-new"}) == "cert-new"
    assert certificate_secret({"secretName": "cert-old"}) == "cert-old"
    assert certificate_secret({"secretName": "cert-old", "certificateSecretName": "cert-new"}) == "cert-old"


def test_the_mount_paths_are_the_controllers_defaults():
    """The chart mounts tokens where the binary looks when a policy names no path."""
    src = (chartlib.REPO / "src/cloud/credentials/mod.rs").read_text()
    managed = re.search(r'DEFAULT_MANAGED_TOKEN_FILE: &str = "([^"]+)"', src).group(1)
    rrsa = re.search(r'DEFAULT_RRSA_TOKEN_FILE: &str = "([^"]+)"', src).group(1)
    assert managed == "/var/addon/token-config"
    assert rrsa == "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"


def test_scheduling_and_pod_toggles():
    values = {
        "replicaCount": 2, "priorityClassName": "system-cluster-critical",
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "nodeSelector": {"pool": "system"}, "podLabels": {"team": "infra"},
        "podAnnotations": {"a": "b"}, "imagePullSecrets": [{"name": "reg"}],
        "image": {"repository": "example.test/acr", "tag": "1.2.3", "pullPolicy": "Always"},
        "logLevel": "debug", "logFormat": "text", "objectSelector": "shard=a",
        "extraArgs": ["--signature=v3"], "extraEnv": [{"name": "X", "value": "y"}],
        "region": "cn-shanghai", "network": "vpc", "resyncSeconds": 60,
        "serviceAccount": {"name": "acc", "annotations": {"x": "y"}},
    }
    docs = objects(values)
    d = one(docs, "Deployment")
    pod = d["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert d["spec"]["replicas"] == 2
    for key in ("priorityClassName", "tolerations", "affinity", "topologySpreadConstraints",
                "imagePullSecrets"):
        assert pod[key] == values[key], key
    # Maps merge with the defaults (set a key to null to drop it).
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "system"}
    assert d["spec"]["template"]["metadata"]["labels"]["team"] == "infra"
    assert d["spec"]["template"]["metadata"]["annotations"] == {"a": "b"}
    assert c["image"] == "example.test/acr:1.2.3" and c["imagePullPolicy"] == "Always"
    assert c["args"] == ["run", "--secret-name=acr-credentials", "--region=cn-shanghai",
                         "--network=vpc", "--resync-seconds=60",
                         "--write-budget=20", "--write-burst=30", "--log-format=text",
                         "--object-selector=shard=a",
                         "--legacy-configmap=kube-system/acr-configuration",
                         "--leader-elect", "--lease-name=acr-credential-controller",
                         "--lease-duration-seconds=15", "--renew-deadline-seconds=10",
                         "--retry-period-seconds=2", "--probe-address=0.0.0.0:8080",
                         "--webhook-address=0.0.0.0:9443",
                         "--webhook-certificate-secret-name=acr-acr-credential-controller-webhook-tls",
                         "--webhook-configuration-name=acr-acr-credential-controller",
                         "--webhook-dns-names=acr-acr-credential-controller-webhook.acr-system.svc,"
                         "acr-acr-credential-controller-webhook.acr-system.svc.cluster.local",
                         "--webhook-cert-validity-seconds=31536000",
                         "--webhook-cert-renew-before-seconds=2592000",
                         "--signature=v3"]
    assert {"name": "RUST_LOG", "value": "debug"} in c["env"] and {"name": "X", "value": "y"} in c["env"]
    assert pod["serviceAccountName"] == "acc"
    assert one(docs, "ServiceAccount", "acc")["metadata"]["annotations"] == {"x": "y"}
    digest = "sha256:" + "a" * 64
    c = one(objects({"image": {"digest": digest}}), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == f"acr-credential-controller@{digest}"


def test_write_budget_values_reach_the_flags_and_nonsense_is_refused():
    def args(values):
        return one(objects(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    a = args({"writeBudget": {"writesPerSecond": 7.5, "burst": 3}})
    assert "--write-budget=7.5" in a and "--write-burst=3" in a
    assert "--write-budget=0" in args({"writeBudget": {"writesPerSecond": 0}}), "0: unlimited"
    chart = helm.Chart.load(CHART)
    for bad, name in [({"writeBudget": {"writesPerSecond": -1}}, "writesPerSecond"),
                      ({"writeBudget": {"burst": 0}}, "burst"),
                      ({"writeBudget": {"qps": 5}}, "qps")]:
        with pytest.raises(helm.HelmError) as e:
            chart.validate_schema(bad)
        assert name in str(e.value), str(e.value)


def test_existing_service_account():
    docs = objects({"serviceAccount": {"create": False, "name": "mine"}})
    assert not find(docs, "ServiceAccount")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    with pytest.raises(helm.HelmError, match="serviceAccount.name is required"):
        chartlib.render({"serviceAccount": {"create": False}})


def test_pod_disruption_budget_follows_the_api():
    old = one(objects({"podDisruptionBudget": {"enabled": True}}), "PodDisruptionBudget")
    assert old["apiVersion"] == "policy/v1beta1" and old["spec"]["maxUnavailable"] == 1
    new = one(objects({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}},
                      kube_version="v1.30.0", api_versions=chartlib.API_VERSIONS_1_30),
              "PodDisruptionBudget")
    assert new["apiVersion"] == "policy/v1" and new["spec"] == {
        "minAvailable": 1, "selector": {"matchLabels": {
            "app.kubernetes.io/name": "acr-credential-controller", "app.kubernetes.io/instance": "acr"}}}


def test_admission_policy_only_where_the_api_exists():
    kw = dict(kube_version="v1.30.0", api_versions=chartlib.API_VERSIONS_1_30)
    docs = objects({"secretName": "pull"}, name="acr-credential-controller", **kw)
    vap = one(docs, "ValidatingAdmissionPolicy", "acr-credential-controller-secrets")
    assert vap["spec"]["matchConditions"][0]["expression"] == (
        "request.userInfo.username == 'system:serviceaccount:acr-system:acr-credential-controller'")
    assert vap["spec"]["validations"][0]["expression"] == (
        "object.metadata.name == 'pull' || (request.namespace == 'acr-system'"
        " && object.metadata.name == 'acr-credential-controller-webhook-tls')")
    off = objects({"secretName": "pull", "webhook": {"enabled": False}}, name="acr-credential-controller", **kw)
    assert one(off, "ValidatingAdmissionPolicy", "acr-credential-controller-secrets")["spec"]["validations"][0][
        "expression"] == "object.metadata.name == 'pull'"
    binding = one(docs, "ValidatingAdmissionPolicyBinding", "acr-credential-controller-secrets")
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}
    # The ServiceAccount policy (its CEL is checked in tests/chart_templates.rs) beside it.
    sa = one(docs, "ValidatingAdmissionPolicy", "acr-credential-controller-serviceaccounts")
    assert sa["spec"]["matchConditions"] == vap["spec"]["matchConditions"]
    assert one(docs, "ValidatingAdmissionPolicyBinding", "acr-credential-controller-serviceaccounts")["spec"] == {
        "policyName": sa["metadata"]["name"], "validationActions": ["Deny"]}
    only_secrets = objects({"serviceAccountPolicy": {"enabled": False}}, name="acr-credential-controller", **kw)
    assert [p["metadata"]["name"] for p in find(only_secrets, "ValidatingAdmissionPolicy")] == [
        "acr-credential-controller-secrets"]
    only_sa = objects({"admissionPolicy": {"enabled": False}}, name="acr-credential-controller", **kw)
    assert [p["metadata"]["name"] for p in find(only_sa, "ValidatingAdmissionPolicy")] == [
        "acr-credential-controller-serviceaccounts"]
    assert not find(objects({"admissionPolicy": {"enabled": False}, "serviceAccountPolicy": {"enabled": False}},
                            **kw), "ValidatingAdmissionPolicy")
    # No API, no policy: Kubernetes before 1.30 (the version alone is not enough).
    for version in ("v1.20.2", "v1.29.0", "v1.30.0"):
        assert not find(objects(kube_version=version), "ValidatingAdmissionPolicy")
        assert not find(objects(kube_version=version), "ValidatingAdmissionPolicyBinding")


def test_notes_say_what_to_apply_and_how_to_check():
    note = chartlib.notes(name="acr-credential-controller")
    assert "rollout status deployment/acr-credential-controller" in note
    assert "kubectl get acrcredentialpolicies,acrregistrybindings" in note
    assert "accessKeySecrets" in note
    assert "acr-configuration" in note


def test_every_value_is_documented_in_the_schema_and_values_file():
    chart = helm.Chart.load(CHART)
    schema = chart.schema
    values = chart.values
    # Every default passes the schema, and every default key is a schema property.
    chart.validate_schema(values)
    assert set(values) <= set(schema["properties"])
    text = (CHART / "values.yaml").read_text()
    assert yaml.safe_load(text) == values


def test_leader_election_and_replicas():
    # Two replicas without a leader would both write: the render refuses it.
    with pytest.raises(helm.HelmError) as e:
        chartlib.render({"replicaCount": 2, "leaderElection": {"enabled": False}})
    assert "leaderElection.enabled" in str(e.value)
    c = one(objects({"leaderElection": {"enabled": False}}), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in c["args"] if a.startswith("--lease") or a == "--leader-elect"]
    c = one(objects({"leaderElection": {"leaseName": "acr-lease", "leaseDurationSeconds": 30}}),
            "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--lease-name=acr-lease" in c["args"] and "--lease-duration-seconds=30" in c["args"]
    with pytest.raises(helm.HelmError) as e:
        helm.Chart.load(CHART).validate_schema({"leaderElection": {"leaseDuration": 30}})
    assert "leaseDuration" in str(e.value)


def test_metrics_service_monitor_and_alerts():
    docs = objects({"metrics": {"service": {"enabled": False}}})
    assert [svc["metadata"]["name"] for svc in find(docs, "Service")] == ["acr-acr-credential-controller-webhook"]
    docs = objects({"probes": {"port": 9402},
                    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                                "prometheusRule": {"enabled": True}}})
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [{"port": "http-metrics", "path": "/metrics", "interval": "30s"}]
    assert one(docs, "Service", "acr-acr-credential-controller-metrics")["spec"]["ports"][0]["port"] == 9402
    rule = one(docs, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    with open(CHART.parent.parent / "deploy" / "prometheus" / "alerts.yaml") as f:
        shipped = yaml.safe_load(f)
    assert rule["spec"] == shipped, "the chart's alerts are the ones tests/operate_alerts.rs checks"
    assert len(alerts) == 3



def test_grafana_dashboard_configmap_for_the_sidecar():
    dashboard = "acr-acr-credential-controller-dashboard"
    assert not find(objects(), "ConfigMap", dashboard)
    shipped = (CHART.parent.parent / "deploy" / "grafana" / "acr-credential-controller.json").read_text()
    assert (CHART / "files" / "grafana-dashboard.json").read_text() == shipped, \
        "the chart's dashboard is a copy of the one tests/operate_dashboard.rs checks"
    cm = one(objects({"grafana": {"dashboards": {"enabled": True}}}), "ConfigMap", dashboard)
    assert cm["metadata"]["namespace"] == "acr-system"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/name"] == "acr-credential-controller"
    assert "annotations" not in cm["metadata"]
    (key,) = cm["data"]
    assert key == "acr-credential-controller.json"
    assert json.loads(cm["data"][key]) == json.loads(shipped)

    cm = one(objects({"grafana": {"dashboards": {
        "enabled": True, "namespace": "monitoring", "label": "grafana.example.com/dashboard",
        "labelValue": "true", "annotations": {"grafana_folder": "Platform"}}}}), "ConfigMap", dashboard)
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana.example.com/dashboard"] == "true"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Platform"}

    chart = helm.Chart.load(CHART)
    for bad, name in [({"dashboard": {"enabled": True}}, "dashboard"),
                      ({"dashboards": {"labelValue": 1}}, "labelValue"),
                      ({"dashboards": {"labelValue": "not a label value"}}, "labelValue"),
                      ({"dashboards": {"label": "bad key!"}}, "label"),
                      ({"dashboards": {"namespace": "Monitoring"}}, "namespace")]:
        with pytest.raises(helm.HelmError) as e:
            chart.validate_schema({"grafana": bad})
        assert name in str(e.value), str(e.value)

def test_webhook_configuration_without_ca_bundle_and_its_rbac():
    docs = objects(name="acr-credential-controller")
    mwc = one(docs, "MutatingWebhookConfiguration", "acr-credential-controller")
    assert "annotations" not in mwc["metadata"]
    (hook,) = mwc["webhooks"]
    # No caBundle: the controller publishes its CA, so a GitOps diff never sees one rendered.
    assert hook["clientConfig"] == {"service": {"name": "acr-credential-controller-webhook",
                                                "namespace": "acr-system",
                                                "path": "/mutate-serviceaccounts", "port": 443}}
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["serviceaccounts"], "scope": "Namespaced"}]
    assert (hook["failurePolicy"], hook["sideEffects"], hook["matchPolicy"]) == ("Ignore", "None", "Equivalent")
    assert hook["timeoutSeconds"] == 5 and hook["admissionReviewVersions"] == ["v1"]
    assert hook["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["kube-system", "kube-node-lease", "acr-system"]}]}
    assert hook["objectSelector"] == {"matchExpressions": [{
        "key": "acrcredentials.io/inject-on-create", "operator": "NotIn", "values": ["false"]}]}
    svc = one(docs, "Service", "acr-credential-controller-webhook")
    assert svc["spec"]["ports"] == [{"name": "https-webhook", "port": 443, "targetPort": "https-webhook",
                                     "protocol": "TCP"}]
    tls = one(docs, "Role", "acr-credential-controller-webhook-tls", "acr-system")
    assert rules(tls) == [(("",), ("secrets",), ("acr-credential-controller-webhook-tls",),
                           ("get", "create", "update", "patch"))]
    # Values: failure policy and timeout, a bad failure policy or timeout is refused.
    hook = one(objects({"webhook": {"failurePolicy": "Fail", "timeoutSeconds": 10,
                                    "allowFailWithoutCertManager": True}}),
               "MutatingWebhookConfiguration")["webhooks"][0]
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Fail", 10)
    for bad in ({"failurePolicy": "Sometimes"}, {"timeoutSeconds": 31}, {"timeoutSeconds": 0}):
        with pytest.raises(helm.HelmError):
            chartlib.render({"webhook": bad})


def test_webhook_off_renders_nothing_of_it():
    docs = objects({"webhook": {"enabled": False}}, name="acr-credential-controller")
    assert not find(docs, "MutatingWebhookConfiguration")
    assert not find(docs, "Role", "acr-credential-controller-webhook-tls")
    assert [s["metadata"]["name"] for s in find(docs, "Service")] == ["acr-credential-controller-metrics"]
    c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in c["args"] if a.startswith("--webhook")]
    assert [p["name"] for p in c["ports"]] == ["http-metrics"]
    cr = one(docs, "ClusterRole")
    assert not [r for r in rules(cr) if "mutatingwebhookconfigurations" in r[1]]


def test_webhook_with_cert_manager_is_opt_in():
    docs = objects({"webhook": {"certManager": {"enabled": True}}}, name="acr-credential-controller")
    mwc = one(docs, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": "acr-system/acr-credential-controller-webhook"}
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]
    cert = one(docs, "Certificate", "acr-credential-controller-webhook")
    assert cert["spec"]["dnsNames"] == ["acr-credential-controller-webhook.acr-system.svc",
                                        "acr-credential-controller-webhook.acr-system.svc.cluster.local"]
    assert cert["spec"]["issuerRef"]["name"] == "acr-credential-controller-webhook-selfsigned"
    one(docs, "Issuer", "acr-credential-controller-webhook-selfsigned")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--webhook-cert-dir=/var/run/webhook-tls" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--webhook-certificate-secret-name")]
    assert {"name": "webhook-tls", "mountPath": "/var/run/webhook-tls", "readOnly": True} in c["volumeMounts"]
    assert {"name": "webhook-tls", "secret": {"secretName": "acr-credential-controller-webhook-cert-manager"}} \
        in pod["volumes"]
    # cert-manager owns the certificate: the controller gets no Secret or webhook write rights.
    assert not find(docs, "Role", "acr-credential-controller-webhook-tls")
    assert not [r for r in rules(one(docs, "ClusterRole")) if "mutatingwebhookconfigurations" in r[1]]
    own = one(objects({"webhook": {"certManager": {"enabled": True, "issuerRef": {"name": "corp-ca",
                                                                                 "kind": "ClusterIssuer"}}}}),
              "Certificate")
    assert own["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_failure_policy_fail_needs_cert_manager_or_an_acknowledgment():
    # No caBundle is rendered and the controller publishes its CA only once it runs: Fail would
    # refuse every ServiceAccount create (new namespaces' default ones too) until then.
    with pytest.raises(helm.HelmError) as e:
        chartlib.render({"webhook": {"failurePolicy": "Fail"}})
    message = str(e.value)
    assert "webhook.failurePolicy=Fail needs webhook.certManager.enabled=true" in message
    assert "webhook.allowFailWithoutCertManager=true" in message
    assert "caBundle" in message and "default ServiceAccount of every new namespace" in message
    # With cert-manager injecting the CA, or with the acknowledgment, it renders.
    for webhook in ({"failurePolicy": "Fail", "certManager": {"enabled": True}},
                    {"failurePolicy": "Fail", "allowFailWithoutCertManager": True}):
        hook = one(objects({"webhook": webhook}), "MutatingWebhookConfiguration")["webhooks"][0]
        assert hook["failurePolicy"] == "Fail"
    # Ignore (the default) and a disabled webhook need neither.
    assert one(objects(), "MutatingWebhookConfiguration")["webhooks"][0]["failurePolicy"] == "Ignore"
    assert not find(objects({"webhook": {"enabled": False, "failurePolicy": "Fail"}}),
                    "MutatingWebhookConfiguration")


def test_networkpolicy_is_off_by_default():
    assert not find(objects(), "NetworkPolicy")


def test_networkpolicy_admits_the_api_server_to_the_webhook_and_prometheus_to_metrics():
    values = {"networkPolicy": {
        "enabled": True,
        "apiServer": {"ipBlocks": ["10.0.0.0/24", "192.168.3.4/32"],
                      "namespaceSelector": {"kubernetes.io/metadata.name": "kube-system"}},
        "prometheus": {"namespaceSelector": {"kubernetes.io/metadata.name": "monitoring"},
                       "podSelector": {"app.kubernetes.io/name": "prometheus"}}},
        "webhook": {"port": 10250}, "probes": {"port": 9402}}
    docs = objects(values)
    np = one(docs, "NetworkPolicy", "acr-acr-credential-controller")
    assert np["metadata"]["namespace"] == "acr-system"
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = np["spec"]["podSelector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels.items()
    assert np["spec"]["policyTypes"] == ["Ingress"]
    assert np["spec"]["ingress"] == [
        {"ports": [{"port": 10250, "protocol": "TCP"}],
         "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}},
                  {"ipBlock": {"cidr": "192.168.3.4/32"}},
                  {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]},
        # One peer: Prometheus pods in the monitoring namespaces (both selectors must match).
        {"ports": [{"port": 9402, "protocol": "TCP"}],
         "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]},
    ]
    # The ports are the container's.
    c = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in c["ports"]} == {10250, 9402}
    for version in ("v1.20.2", "v1.30.0"):
        report = helm.lint(CHART, values, strict=True, kube_version=version, namespace="acr-system")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"helm lint --strict for {version}: {problems}"


def test_networkpolicy_without_prometheus_closes_the_metrics_port():
    docs = objects({"networkPolicy": {"enabled": True, "apiServer": {"ipBlocks": ["10.0.0.0/24"]}}})
    (rule,) = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert rule == {"ports": [{"port": 9443, "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}
    # A pod selector alone: Prometheus pods of the release namespace.
    docs = objects({"networkPolicy": {"enabled": True, "apiServer": {"ipBlocks": ["10.0.0.0/24"]},
                                      "prometheus": {"podSelector": {"app": "prometheus"}}}})
    metrics = one(docs, "NetworkPolicy")["spec"]["ingress"][1]
    assert metrics["from"] == [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]


def test_networkpolicy_refuses_a_webhook_the_api_server_cannot_reach():
    with pytest.raises(helm.HelmError) as e:
        chartlib.render({"networkPolicy": {"enabled": True}})
    assert "networkPolicy.apiServer" in str(e.value)
    # Without the webhook there is nothing for the API server to reach.
    docs = objects({"webhook": {"enabled": False},
                    "networkPolicy": {"enabled": True,
                                      "prometheus": {"namespaceSelector": {"team": "obs"}}}})
    (rule,) = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "obs"}}}]


def test_networkpolicy_values_are_checked_by_the_schema():
    chart = helm.Chart.load(CHART)
    for bad, name in [({"networkPolicy": {"apiServer": {"ipBlock": ["10.0.0.0/8"]}}}, "ipBlock"),
                      ({"networkPolicy": {"apiServer": {"ipBlocks": ["10.0.0.0"]}}}, "ipBlocks"),
                      ({"networkPolicy": {"prometheus": {"podSelector": {"app": 1}}}}, "podSelector")]:
        with pytest.raises(helm.HelmError) as e:
            chart.validate_schema(bad)
        assert name in str(e.value), str(e.value)


FLOWCONTROL = "flowcontrol.apiserver.k8s.io"


def flowcontrol_api(version):
    return [f"{FLOWCONTROL}/{version}/{kind}" for kind in ("FlowSchema", "PriorityLevelConfiguration")]


def test_api_priority_is_off_by_default():
    for kw in ({}, dict(kube_version="v1.30.0", api_versions=chartlib.API_VERSIONS_1_30 + flowcontrol_api("v1"))):
        docs = objects(**kw)
        assert not find(docs, "FlowSchema") and not find(docs, "PriorityLevelConfiguration")


def test_api_priority_matches_the_controllers_service_account_in_the_version_served():
    on = {"apiPriority": {"enabled": True}}
    # The cluster's API list decides; without one (helm template), its version does.
    cases = [("v1.30.0", chartlib.API_VERSIONS_1_30 + flowcontrol_api("v1") + flowcontrol_api("v1beta3"), "v1"),
             ("v1.27.3", flowcontrol_api("v1beta3") + flowcontrol_api("v1beta2"), "v1beta3"),
             ("v1.30.0", flowcontrol_api("v1beta3"), "v1beta3"),
             ("v1.24.0", None, "v1beta2"),
             ("v1.20.2", None, "v1beta1"),
             ("v1.22.0", flowcontrol_api("v1beta1"), "v1beta1")]
    for kube, apis, version in cases:
        docs = objects(on, name="acr-credential-controller", kube_version=kube, api_versions=apis)
        fs = one(docs, "FlowSchema", "acr-credential-controller")
        pl = one(docs, "PriorityLevelConfiguration", "acr-credential-controller")
        assert fs["apiVersion"] == pl["apiVersion"] == f"{FLOWCONTROL}/{version}", (kube, apis)
        assert fs["spec"]["priorityLevelConfiguration"] == {"name": "acr-credential-controller"}
        assert fs["spec"]["matchingPrecedence"] == 850
        (rule,) = fs["spec"]["rules"]
        assert rule["subjects"] == [{"kind": "ServiceAccount", "serviceAccount": {
            "namespace": "acr-system", "name": "acr-credential-controller"}}]
        assert rule["resourceRules"] == [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                          "clusterScope": True, "namespaces": ["*"]}]
        limited = pl["spec"]["limited"]
        assert pl["spec"]["type"] == "Limited"
        assert limited["limitResponse"] == {"type": "Queue", "queuing": {
            "queues": 1, "handSize": 1, "queueLengthLimit": 100}}
        if version in ("v1", "v1beta3"):
            # No borrowing limit by default: the field is left out (no limit).
            assert limited == {"nominalConcurrencyShares": 10, "lendablePercent": 0,
                               "limitResponse": limited["limitResponse"]}
        else:
            assert limited == {"assuredConcurrencyShares": 10, "limitResponse": limited["limitResponse"]}


def test_api_priority_values_reach_the_objects():
    values = {"apiPriority": {"enabled": True, "matchingPrecedence": 700, "concurrencyShares": 4,
                              "lendablePercent": 25, "borrowingLimitPercent": 0,
                              "queuing": {"queues": 8, "handSize": 2, "queueLengthLimit": 20}},
              "serviceAccount": {"create": False, "name": "mine"}}
    docs = objects(values, kube_version="v1.30.0", api_versions=flowcontrol_api("v1"))
    fs, pl = one(docs, "FlowSchema"), one(docs, "PriorityLevelConfiguration")
    assert fs["spec"]["matchingPrecedence"] == 700
    assert fs["spec"]["rules"][0]["subjects"][0]["serviceAccount"] == {"namespace": "acr-system", "name": "mine"}
    assert pl["spec"]["limited"] == {"nominalConcurrencyShares": 4, "lendablePercent": 25,
                                     "borrowingLimitPercent": 0, "limitResponse": {
                                         "type": "Queue", "queuing": {"queues": 8, "handSize": 2,
                                                                      "queueLengthLimit": 20}}}
    # Before v1beta3 there is no lending: the values that need it are not rendered.
    old = one(objects(values), "PriorityLevelConfiguration")["spec"]["limited"]
    assert old["assuredConcurrencyShares"] == 4 and "lendablePercent" not in old


def test_api_priority_refuses_what_the_api_server_would():
    chart = helm.Chart.load(CHART)
    # A precedence of 9000 or more loses to the built-in `service-accounts` FlowSchema.
    for bad, name in [({"apiPriority": {"matchingPrecedence": 9000}}, "matchingPrecedence"),
                      ({"apiPriority": {"concurrencyShares": 0}}, "concurrencyShares"),
                      ({"apiPriority": {"lendablePercent": 101}}, "lendablePercent"),
                      ({"apiPriority": {"exempt": True}}, "exempt")]:
        with pytest.raises(helm.HelmError) as e:
            chart.validate_schema(bad)
        assert name in str(e.value), str(e.value)
    with pytest.raises(helm.HelmError, match="handSize must not exceed"):
        chartlib.render({"apiPriority": {"enabled": True, "queuing": {"queues": 2, "handSize": 3}}})
    with pytest.raises(helm.HelmError, match="no flowcontrol"):
        chartlib.render({"apiPriority": {"enabled": True}}, kube_version="v1.19.0")
