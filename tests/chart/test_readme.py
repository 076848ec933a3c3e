"""The README's "Install on a cluster" section stays true to the chart and the scripts."""

import re
import shlex

import helm_python as helm
import yaml

import chartlib
import test_install
from chartlib import CHART, REPO, one


def section():
    text = (REPO / "README.md").read_text()
    start = text.index("## Install on a cluster")
    return text[start:text.index("\n## ", start + 1)]


def merge(into, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        elif isinstance(v, list) and isinstance(into.get(k), list):
            for i, item in enumerate(v):
                if i < len(into[k]) and isinstance(item, dict):
                    merge(into[k][i], item)
                elif i >= len(into[k]):
                    into[k].append(item)
        else:
            into[k] = v
    return into


def commands(prefix):
    """Every command of the section starting with `prefix`, continuation lines joined."""
    joined = section().replace("\\\n", " ")
    return [shlex.split(line.split("#")[0]) for line in joined.splitlines()
            if line.strip().startswith(prefix)]


def set_values(args):
    values = {}
    for i, a in enumerate(args):
        if a == "--set":
            merge(values, helm.parse_set_string(args[i + 1]))
    return values


def test_the_helm_command_installs_what_the_verify_step_checks():
    (cmd,) = commands("helm install")
    release, chart = cmd[2], cmd[3]
    assert (REPO / chart).resolve() == CHART.resolve()
    namespace = cmd[cmd.index("--namespace") + 1]
    values = set_values(cmd)
    helm.Chart.load(CHART).validate_schema(values)
    docs = chartlib.objects(values, name=release, namespace=namespace)
    deployment = one(docs, "Deployment")
    (rollout,) = [c for c in commands("kubectl -n") if "rollout" in c]
    assert rollout[2] == namespace and rollout[-1] == f"deployment/{deployment['metadata']['name']}"
    (image,) = commands("scripts/image.sh --tag")
    repository, tag = image[2].rsplit(":", 1)
    assert values["image"]["repository"] == repository
    assert tag == helm.Chart.load(CHART).metadata["appVersion"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image[2]


def test_every_set_example_passes_the_schema_and_grants_what_it_says():
    examples = re.findall(r"`(--set [^`]+)`", section())
    assert examples
    values = {}
    for ex in examples:
        merge(values, set_values(shlex.split(ex)))
    helm.Chart.load(CHART).validate_schema(values)
    docs = chartlib.objects(values)
    (ak,) = values["accessKeySecrets"]
    policy = next(yaml.safe_load_all((REPO / "examples/policies/access-key.yaml").read_text()))
    ref = policy["spec"]["source"]["accessKey"]["secretRef"]
    assert {"namespace": ref["namespace"], "name": ref["name"]} == ak
    (role,) = [r for r in chartlib.find(docs, "Role", namespace=ak["namespace"])
               if r["metadata"]["name"].endswith("-access-keys")]
    assert role["rules"][0]["resourceNames"] == [ak["name"]]


def test_the_values_table_matches_values_yaml():
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = re.findall(r"^\| (`[^|]+) \| ([^|]+) \|", section(), re.M)
    assert len(rows) >= 8
    checked = 0
    for keys, default in rows:
        names = re.findall(r"`([^`]+)`", keys)
        for name in names:
            node = defaults
            for part in name.split("."):
                assert part in node, f"README names value {name}, which values.yaml does not have"
                node = node[part]
        shown = [d.strip() for d in default.split(",")]
        if len(shown) != len(names):
            continue
        for name, value in zip(names, shown):
            if not value.startswith("`"):
                continue  # described in words (e.g. the chart's appVersion)
            node = defaults
            for part in name.split("."):
                node = node[part]
            assert yaml.safe_load(value.strip("`") or '""') == node, \
                f"{name}: README says {value}, values.yaml has {node!r}"
            checked += 1
    assert checked >= 10


def test_the_examples_and_adoption_commands_exist():
    text = section()
    for path in re.findall(r"examples/[\w/.-]+\.yaml", text):
        assert (REPO / path).is_file(), path
    # The adoption the install test performs is the one documented here.
    for needle in ("app.kubernetes.io/managed-by=Helm", "meta.helm.sh/release-name=", "meta.helm.sh/release-namespace="):
        assert needle in text
    assert "accessKeySecrets" in text and "system:serviceaccount:<namespace>:<release>" in text
    assert test_install.RELEASE in text
