//! The Helm chart stays true to the code: its CRD templates are what `crd --helm` generates
//! from the Rust types, and the ValidatingAdmissionPolicy it renders (rendered by real Helm)
//! lets the controller write only its own dockerconfigjson Secret (and its webhook certificate
//! Secret), and change on ServiceAccounts only its pull Secret's entries and its annotation,
//! checked with the crate's CEL.
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
        .find(|d| {
            d["kind"] == "ValidatingAdmissionPolicy"
                && d["metadata"]["name"] == "acr-acr-credential-controller-secrets"
        })
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
        .find(|d| {
            d["kind"] == "ValidatingAdmissionPolicyBinding"
                && d["spec"]["policyName"] == policy["metadata"]["name"]
        })
        .unwrap();
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
}

/// Whether the policy denies `user` changing `old` into `new` (an UPDATE): (matched, every
/// validation passed), evaluated by kube's CEL (the interpreter and Kubernetes functions
/// `VapEvaluator` uses) with `object` and `oldObject` bound as the API server binds them.
/// `VapEvaluator` itself escapes every object key (`a.b/c` becomes `a__dot__b__slash__c`),
/// which the API server does only for declared field names, never for map keys such as
/// annotations and labels: the policy names annotation keys, so here the objects are bound as
/// they are. No field name of a ServiceAccount needs escaping, so nothing else differs.
fn admit_update(policy: &Value, user: &str, old: &Value, new: &Value) -> (bool, bool) {
    use kube::core::cel::KubeCelExt;
    use kube::core::cel::cel::{Context, Program, Value as Cel};
    let mut ctx = Context::default();
    ctx.register_all();
    ctx.add_variable("object", new.clone()).unwrap();
    ctx.add_variable("oldObject", old.clone()).unwrap();
    let request = json!({"operation": "UPDATE", "name": new["metadata"]["name"],
        "namespace": new["metadata"]["namespace"], "userInfo": {"username": user, "groups": []}});
    ctx.add_variable("request", request).unwrap();
    let all_pass = |list: &Value| {
        list.as_array().unwrap().iter().all(|e| {
            let expression = e["expression"].as_str().unwrap();
            let program = Program::compile(expression)
                .unwrap_or_else(|err| panic!("{expression} does not compile: {err}"));
            // An expression that fails to evaluate does not pass (the policy fails closed); the
            // allowed cases below show that each one evaluates.
            matches!(program.execute(&ctx), Ok(Cel::Bool(true)))
        })
    };
    (
        all_pass(&policy["spec"]["matchConditions"]),
        all_pass(&policy["spec"]["validations"]),
    )
}

/// A ServiceAccount whose annotation decides a cloud identity, with a user's pull Secret.
fn service_account() -> Value {
    json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {
            "name": "builder", "namespace": "shop", "resourceVersion": "7",
            "labels": {"app": "builder"},
            "annotations": {
                "pod-identity.alibabacloud.com/role-name": "builder-role",
                "team": "a",
            },
        },
        "secrets": [{"name": "builder-token-x1"}],
        "imagePullSecrets": [{"name": "user-pull"}],
        "automountServiceAccountToken": false,
    })
}

/// `sa` after the JSON patch the reconciler sends to bind (`want`) or unbind `secret`.
fn patched_by_the_controller(sa: &Value, secret: &str, want: bool) -> Value {
    use acr_credential_controller::model::cached_service_account::CachedServiceAccount;
    use acr_credential_controller::model::service_accounts;
    // The reconciler plans from the watch cache's compact copy.
    let typed: CachedServiceAccount = serde_json::from_value(sa.clone()).unwrap();
    let patch = service_accounts::plan(&typed, secret, want).expect("a patch to send");
    let mut after = sa.clone();
    json_patch::patch(&mut after, &patch).unwrap();
    after
}

#[test]
fn the_admission_policy_lets_the_controller_change_only_its_entries_on_service_accounts() {
    let docs = render_1_30(json!({"secretName": "pull-creds"}));
    let policy = docs
        .iter()
        .find(|d| {
            d["kind"] == "ValidatingAdmissionPolicy"
                && d["metadata"]["name"] == "acr-acr-credential-controller-serviceaccounts"
        })
        .expect("the chart renders the ServiceAccount policy on 1.30");
    let rule = &policy["spec"]["matchConstraints"]["resourceRules"][0];
    assert_eq!(rule["resources"], json!(["serviceaccounts"]));
    assert_eq!(rule["operations"], json!(["UPDATE"]));
    assert_eq!(policy["spec"]["failurePolicy"], "Fail");
    let binding = docs
        .iter()
        .find(|d| {
            d["kind"] == "ValidatingAdmissionPolicyBinding"
                && d["spec"]["policyName"] == policy["metadata"]["name"]
        })
        .expect("its binding");
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    let controller = "system:serviceaccount:acr-system:acr-acr-credential-controller";
    let check = |old: &Value, new: &Value| admit_update(policy, controller, old, new);

    // Allowed: the exact patches the reconciler sends, adding and removing its entry and its
    // annotation, on a ServiceAccount with annotations and on a bare one (where the patch adds
    // the whole annotation map and the imagePullSecrets list).
    let sa = service_account();
    let bound = patched_by_the_controller(&sa, "pull-creds", true);
    assert_eq!(
        bound["metadata"]["annotations"]["acrcredentials.io/added-image-pull-secrets"],
        "pull-creds"
    );
    assert_eq!(check(&sa, &bound), (true, true), "bind");
    let unbound = patched_by_the_controller(&bound, "pull-creds", false);
    assert_eq!(check(&bound, &unbound), (true, true), "unbind");
    let bare = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": "shop", "resourceVersion": "3"}});
    let bare_bound = patched_by_the_controller(&bare, "pull-creds", true);
    assert_eq!(check(&bare, &bare_bound), (true, true), "bind a bare one");
    let bare_unbound = patched_by_the_controller(&bare_bound, "pull-creds", false);
    assert_eq!(
        check(&bare_bound, &bare_unbound),
        (true, true),
        "unbind a bare one"
    );
    // A write that changes nothing the policy guards (e.g. a no-op update) passes too.
    assert_eq!(check(&sa, &sa), (true, true));

    // Denied: everything else a stolen controller token could want to change.
    type Change = Box<dyn Fn(&mut Value)>;
    let denied: Vec<(&str, Change)> = vec![
        (
            "rewrite the RRSA role-name annotation",
            Box::new(|v| {
                v["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"] =
                    json!("admin-role")
            }),
        ),
        (
            "add a role-arn annotation",
            Box::new(|v| {
                v["metadata"]["annotations"]["acrcredentials.io/role-arn"] =
                    json!("acs:ram::1:role/admin")
            }),
        ),
        (
            "remove another annotation",
            Box::new(|v| {
                v["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove("team");
            }),
        ),
        (
            "remove every annotation",
            Box::new(|v| {
                v["metadata"].as_object_mut().unwrap().remove("annotations");
            }),
        ),
        (
            "change a label",
            Box::new(|v| v["metadata"]["labels"]["app"] = json!("other")),
        ),
        (
            "add a label",
            Box::new(|v| v["metadata"]["labels"]["privileged"] = json!("true")),
        ),
        (
            "remove the labels",
            Box::new(|v| {
                v["metadata"].as_object_mut().unwrap().remove("labels");
            }),
        ),
        (
            "change secrets",
            Box::new(|v| v["secrets"] = json!([{"name": "cluster-admin-token"}])),
        ),
        (
            "remove secrets",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("secrets");
            }),
        ),
        (
            "turn automountServiceAccountToken on",
            Box::new(|v| v["automountServiceAccountToken"] = json!(true)),
        ),
        (
            "unset automountServiceAccountToken",
            Box::new(|v| {
                v.as_object_mut()
                    .unwrap()
                    .remove("automountServiceAccountToken");
            }),
        ),
        (
            "add a pull Secret of another name",
            Box::new(|v| {
                v["imagePullSecrets"] = json!([{"name": "user-pull"}, {"name": "stolen"}])
            }),
        ),
        (
            "remove the user's pull Secret",
            Box::new(|v| v["imagePullSecrets"] = json!([{"name": "pull-creds"}])),
        ),
        (
            "add a finalizer",
            Box::new(|v| v["metadata"]["finalizers"] = json!(["example.com/hold"])),
        ),
        (
            "add an owner reference",
            Box::new(|v| {
                v["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
                    "name": "x", "uid": "1"}])
            }),
        ),
    ];
    for (what, change) in &denied {
        // From the plain ServiceAccount, and together with a legitimate bind.
        for (old, base) in [(&sa, sa.clone()), (&sa, bound.clone())] {
            let mut new = base;
            change(&mut new);
            assert_eq!(check(old, &new), (true, false), "{what}");
        }
    }
    // Anyone else is not matched: the policy never gets in their way.
    let mut rewritten = sa.clone();
    rewritten["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"] =
        json!("other-role");
    for user in [
        "system:serviceaccount:acr-system:someone-else",
        "kubernetes-admin",
    ] {
        let (matched, _) = admit_update(policy, user, &sa, &rewritten);
        assert!(!matched, "{user}");
    }
}

#[test]
fn the_service_account_policy_is_optional_and_only_where_the_api_is() {
    let named = |docs: &[Value], name: &str| {
        docs.iter()
            .filter(|d| d["metadata"]["name"] == name)
            .count()
    };
    let policy = "acr-acr-credential-controller-serviceaccounts";
    assert_eq!(
        named(&render_1_30(json!({})), policy),
        2,
        "policy and binding"
    );
    let off = render_1_30(json!({"serviceAccountPolicy": {"enabled": false}}));
    assert_eq!(named(&off, policy), 0);
    // The Secret policy is independent of it.
    assert_eq!(named(&off, "acr-acr-credential-controller-secrets"), 2);
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
