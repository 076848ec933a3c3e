//! The Helm chart stays true to the code: its CRD templates are what `crd --helm` generates
//! from the Rust types, and the ValidatingAdmissionPolicy it renders (rendered by real Helm)
//! lets the controller write only its own dockerconfigjson Secret (and its webhook certificate
//! Secret), checked with the crate's CEL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use acr_credential_controller::cli::crd::{REGENERATE_CHART_CRDS, chart_templates};
use kube::core::cel::{AdmissionRequest, VapEvaluator, VapExpression};
use serde::Deserialize;
use serde_json::{Value, json};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn chart_crd_templates_match_the_types() {
    let dir = root().join("charts/acr-credential-controller/templates/crds");
    let mut expected = BTreeSet::new();
    for (name, generated) in chart_templates().unwrap() {
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            committed == generated,
            "charts/acr-credential-controller/templates/crds/{name} differs from what the Rust types generate; regenerate it with `{REGENERATE_CHART_CRDS}` and commit the result"
        );
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, expected,
        "the chart's templates/crds holds files the types do not generate; remove them and run `{REGENERATE_CHART_CRDS}`"
    );
}

/// The chart rendered by real Helm (tests/chart/chartlib.py) for Kubernetes 1.30.
fn render_1_30(values: Value) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(root().join("tests/chart/chartlib.py"))
        .args(["render", "--kube-version", "v1.30.0", "--api-versions-1-30"])
        .arg("--values")
        .arg(values.to_string())
        .output()
        .expect("python3 runs (scripts/setup.sh installs tests/requirements.txt)");
    assert!(
        out.status.success(),
        "rendering the chart failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| {
            serde_yaml::from_value::<Value>(serde_yaml::Value::deserialize(d).unwrap()).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn expressions(list: &Value) -> Vec<VapExpression> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| VapExpression {
            expression: e["expression"].as_str().unwrap().to_owned(),
            message: e["message"].as_str().map(str::to_owned),
            message_expression: None,
        })
        .collect()
}

/// Whether the policy denies `user` writing `secret`: (matched, every validation passed).
fn admit(policy: &Value, user: &str, operation: &str, secret: Value) -> (bool, bool) {
    let evaluator = VapEvaluator::builder()
        .object(secret.clone())
        .request(AdmissionRequest {
            operation: operation.into(),
            username: user.into(),
            name: secret["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .into(),
            namespace: secret["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .into(),
            ..Default::default()
        })
        .build();
    let results = |list: &Value| -> Vec<bool> {
        evaluator
            .evaluate(&expressions(list))
            .into_iter()
            // An expression that fails to compile or evaluate does not pass; the cases where
            // everything must pass below show that each one compiles and evaluates.
            .map(|r| r.passed)
            .collect()
    };
    let matched = results(&policy["spec"]["matchConditions"])
        .into_iter()
        .all(|b| b);
    let passed = results(&policy["spec"]["validations"])
        .into_iter()
        .all(|b| b);
    (matched, passed)
}

fn secret(name: &str, type_: Option<&str>) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"}});
    if let Some(t) = type_ {
        s["type"] = json!(t);
    }
    s
}

#[test]
fn the_admission_policy_lets_the_controller_write_only_its_pull_secret() {
    let docs = render_1_30(json!({"secretName": "pull-creds"}));
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicy")
        .expect("the chart renders a ValidatingAdmissionPolicy on 1.30");
    let ops = &policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"];
    assert_eq!(ops, &json!(["CREATE", "UPDATE"]));
    let controller = "system:serviceaccount:acr-system:acr-acr-credential-controller";
    let dockercfg = Some("kubernetes.io/dockerconfigjson");

    for op in ["CREATE", "UPDATE"] {
        // The controller's own Secret passes.
        assert_eq!(
            admit(policy, controller, op, secret("pull-creds", dockercfg)),
            (true, true)
        );
        // Another type under the same name (a ServiceAccount token to steal), or no type: denied.
        for t in [
            Some("kubernetes.io/service-account-token"),
            Some("Opaque"),
            None,
        ] {
            assert_eq!(
                admit(policy, controller, op, secret("pull-creds", t)),
                (true, false),
                "{op} type {t:?}"
            );
        }
        // Another name: denied.
        assert_eq!(
            admit(policy, controller, op, secret("other", dockercfg)),
            (true, false)
        );
        // The webhook's certificate Secret: Opaque, its name, the release namespace only.
        let mut tls = secret("acr-acr-credential-controller-webhook-tls", Some("Opaque"));
        tls["metadata"]["namespace"] = json!("acr-system");
        assert_eq!(admit(policy, controller, op, tls.clone()), (true, true));
        let mut token = tls.clone();
        token["type"] = json!("kubernetes.io/service-account-token");
        assert_eq!(admit(policy, controller, op, token), (true, false));
        let mut elsewhere = tls;
        elsewhere["metadata"]["namespace"] = json!("shop");
        assert_eq!(admit(policy, controller, op, elsewhere), (true, false));
    }
    // Anyone else is not matched at all: the policy never gets in their way.
    for user in [
        "system:serviceaccount:acr-system:someone-else",
        "kubernetes-admin",
    ] {
        let (matched, _) = admit(
            policy,
            user,
            "CREATE",
            secret("other", Some("kubernetes.io/service-account-token")),
        );
        assert!(!matched, "{user}");
    }
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding")
        .unwrap();
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
}

#[test]
fn the_webhook_timeout_default_is_the_one_the_legacy_translation_compares_with() {
    let docs = render_1_30(json!({}));
    let config = docs
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .expect("the chart renders the webhook by default");
    assert_eq!(
        config["webhooks"][0]["timeoutSeconds"],
        json!(acr_credential_controller::webhook::DEFAULT_TIMEOUT_SECONDS)
    );
    assert_eq!(config["webhooks"][0]["failurePolicy"], "Ignore");
}
