"""Rendering and linting the chart with real Helm (v4's Go SDK through helm-python-sdk).

Also a command for the Rust tests: `python3 tests/chart/chartlib.py render --kube-version
v1.30.0 --values '{"secretName": "x"}'` prints the rendered manifests as one YAML stream.
"""

import argparse
import json
import pathlib
import sys

import helm_python as helm
import yaml
from helm_python import _native

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "acr-credential-controller"
RELEASE = "acr"
NAMESPACE = "acr-system"

# API groups/versions a 1.30 cluster serves beyond the built-in defaults Helm assumes.
API_VERSIONS_1_30 = [
    "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
    "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicyBinding",
    "policy/v1/PodDisruptionBudget",
]


def render(values=None, kube_version="v1.20.2", api_versions=None, name=RELEASE,
           namespace=NAMESPACE):
    """Renders the chart offline; returns {template path: manifest text}."""
    chart = helm.Chart.load(CHART)
    opts = {"name": name, "namespace": namespace, "is_install": True,
            "kube_version": kube_version}
    if api_versions is not None:
        opts["api_versions"] = api_versions
    out = _native.call_string("helm_render", chart._raw(),
                              None if values is None else json.dumps(values),
                              json.dumps(opts))
    return json.loads(out)


def objects(values=None, **kw):
    """The rendered Kubernetes objects (NOTES.txt left out)."""
    docs = []
    for path, text in sorted(render(values, **kw).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def notes(values=None, **kw):
    return next(t for p, t in render(values, **kw).items() if p.endswith("NOTES.txt"))


def find(docs, kind, name=None, namespace=None):
    """The objects of one kind (and name/namespace when given)."""
    return [d for d in docs if d["kind"] == kind
            and (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)]


def one(docs, kind, name=None, namespace=None):
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["render"])
    parser.add_argument("--kube-version", default="v1.20.2")
    parser.add_argument("--values", default="{}")
    parser.add_argument("--api-versions-1-30", action="store_true")
    args = parser.parse_args()
    docs = objects(json.loads(args.values), kube_version=args.kube_version,
                   api_versions=API_VERSIONS_1_30 if args.api_versions_1_30 else None)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
