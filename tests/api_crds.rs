//! The generated CRDs on a real API server: installed idempotently, every example accepted as
//! written (nothing pruned), invalid objects refused with a message naming the field, printer
//! columns in `kubectl get`, field docs in `kubectl explain`.
//!
//! The local control plane is Kubernetes 1.20, which predates CEL validation rules in CRDs
//! (1.25): kubectl refuses `x-kubernetes-validations` there and the server drops them. So on
//! servers before 1.25 the CRDs are installed with the CEL rules stripped
//! (`crd::crds_without_cel()`, `acr-credential-controller crd --no-cel`), objects that only a
//! CEL rule refuses are accepted by the server, and the controller's code validation is what
//! refuses them (asserted below). `tests/api_agreement.rs` proves the CEL rules and the code
//! agree. On a newer cluster (`USE_EXISTING_CLUSTER=true`) the CRDs keep their CEL rules and the
//! CEL cases must be refused by the server too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_corpus;
mod support;

use std::time::Duration;

use acr_credential_controller::api::{
    AcrCredentialPolicy, AcrRegistryBinding, crd, validate_binding, validate_policy,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};
use support::{TestEnv, install_crds, kubectl, server_has_cel, unique_name, wait_until};

const WAIT: Duration = Duration::from_secs(60);

fn api_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "acrcredentials.io",
        "v1alpha1",
        kind,
    ))
}

fn dynamic_api(client: &Client, kind: &str) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &api_resource(kind))
}

/// Creates `object` under a unique name (tracked for cleanup); returns the server's copy or
/// the API error.
async fn create(env: &TestEnv, object: &Value, slug: &str) -> Result<DynamicObject, kube::Error> {
    let mut object = object.clone();
    let name = unique_name(slug);
    object["metadata"] = json!({"name": name});
    let kind = object["kind"].as_str().unwrap().to_owned();
    let dynamic: DynamicObject = serde_json::from_value(object).unwrap();
    let result = dynamic_api(&env.client(), &kind)
        .create(&PostParams::default(), &dynamic)
        .await;
    if result.is_ok() {
        env.track(api_resource(&kind), None, &name);
    }
    result
}

fn example_objects() -> Vec<(String, Value)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["examples/policies", "examples/bindings"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    for e in std::fs::read_dir(root.join("examples/legacy")).unwrap() {
        files.push(e.unwrap().path().join("translated.yaml"));
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                let file = f.strip_prefix(root).unwrap().display().to_string();
                out.push((file, serde_json::to_value(v).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn crd_install_is_idempotent() {
    let env = TestEnv::new("crd-install").await;
    let client = env.client();
    install_crds(&client).await;
    // Applying again, as a second test process would, changes nothing.
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let before = api
        .get("acrregistrybindings.acrcredentials.io")
        .await
        .unwrap();
    let cel = server_has_cel(&client).await;
    let crds = if cel {
        crd::crds()
    } else {
        crd::crds_without_cel()
    };
    for c in &crds {
        api.patch(
            c.metadata.name.as_deref().unwrap(),
            &PatchParams::apply(support::FIELD_MANAGER).force(),
            &Patch::Apply(c),
        )
        .await
        .unwrap();
    }
    let after = api
        .get("acrregistrybindings.acrcredentials.io")
        .await
        .unwrap();
    assert_eq!(before.metadata.generation, after.metadata.generation);
    assert_eq!(after.spec.scope, "Cluster");
}

#[tokio::test]
async fn every_example_is_accepted_as_written() {
    let env = TestEnv::new("crd-examples").await;
    install_crds(&env.client()).await;
    let examples = example_objects();
    assert!(examples.len() >= 20);
    for (file, object) in examples {
        let created = create(&env, &object, "example")
            .await
            .unwrap_or_else(|e| panic!("{file}: {} refused: {e}", object["metadata"]["name"]));
        // Nothing was pruned: every field the example sets is declared in the schema.
        assert_eq!(
            created.data["spec"], object["spec"],
            "{file}: the server changed the spec (pruned an undeclared field?)"
        );
    }
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_message_naming_the_field() {
    let env = TestEnv::new("crd-invalid").await;
    let cel = install_crds(&env.client()).await;
    let mut refused = 0;
    for case in api_corpus::load() {
        let result = create(&env, &case.object(), &case.case).await;
        let server_should_refuse =
            !case.valid && (case.rejected_by == Some(api_corpus::Layer::Schema) || cel);
        match result {
            Err(kube::Error::Api(status)) if server_should_refuse => {
                assert_eq!(status.code, 422, "{}: {status:?}", case.case);
                for path in &case.paths {
                    // 1.20 reports an item's pattern at the list (`domains`, not `domains[0]`)
                    // and a missing required field by its name.
                    let list = path.split('[').next().unwrap();
                    let leaf = list.rsplit('.').next().unwrap();
                    assert!(
                        [path.as_str(), list, leaf]
                            .iter()
                            .any(|p| status.message.contains(p)),
                        "{}: the server's message does not name {path}: {}",
                        case.case,
                        status.message
                    );
                }
                println!("{}: {}", case.case, status.message);
                refused += 1;
            }
            Err(e) => panic!("{}: unexpected refusal: {e}", case.case),
            Ok(_) if server_should_refuse => {
                panic!("{}: the server accepted an invalid object", case.case)
            }
            Ok(created) => {
                // Accepted: valid, or refused only by a CEL rule this server lacks. Then the
                // controller's code validation must refuse it.
                if !case.valid {
                    let spec_rejected = match case.kind.as_str() {
                        "binding" => serde_json::from_value::<AcrRegistryBinding>(
                            serde_json::to_value(&created).unwrap(),
                        )
                        .map(|b| validate_binding(&b.spec).is_err())
                        .unwrap_or(true),
                        _ => serde_json::from_value::<AcrCredentialPolicy>(
                            serde_json::to_value(&created).unwrap(),
                        )
                        .map(|p| validate_policy(&p.spec).is_err())
                        .unwrap_or(true),
                    };
                    assert!(
                        spec_rejected,
                        "{}: neither server nor code refuses it",
                        case.case
                    );
                }
            }
        }
    }
    assert!(refused >= 15, "only {refused} objects refused");
}

fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let env = TestEnv::new("crd-columns").await;
    let client = env.client();
    install_crds(&client).await;
    let binding = create(
        &env,
        &json!({"apiVersion": "acrcredentials.io/v1alpha1", "kind": "AcrRegistryBinding",
                "spec": {"registry": {"instanceId": "cri-columns1"}, "namespaces": {"all": true}}}),
        "columns",
    )
    .await
    .unwrap();
    let policy = create(
        &env,
        &json!({"apiVersion": "acrcredentials.io/v1alpha1", "kind": "AcrCredentialPolicy",
                "spec": {"source": {"workerRole": {}},
                         "assumeRole": {"roleArn": "acs:ram::1234567890123456:role/columns"}}}),
        "columns",
    )
    .await
    .unwrap();
    let (bname, pname) = (
        binding.metadata.name.clone().unwrap(),
        policy.metadata.name.clone().unwrap(),
    );

    // The status a reconciler would write.
    let condition = json!({"type": "Ready", "status": "True", "reason": "Reconciled",
        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    dynamic_api(&client, "AcrRegistryBinding")
        .patch_status(
            &bname,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "conditions": [condition], "registry": "cri-columns1",
                "namespaces": {"selected": 12, "synced": 11, "summary": "11/12"},
                "token": {"expiresAt": "2030-01-01T01:00:00Z", "renewAt": "2030-01-01T00:45:00Z"}}})),
        )
        .await
        .unwrap();
    dynamic_api(&client, "AcrCredentialPolicy")
        .patch_status(
            &pname,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [condition], "source": "workerRole"}})),
        )
        .await
        .unwrap();

    let arb = kubectl_ok(&["get", "arb", &bname]);
    println!("{arb}");
    let header: Vec<&str> = arb.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "REGISTRY",
            "NAMESPACES",
            "EXPIRES",
            "RENEWS",
            "AGE"
        ]
    );
    let row = arb.lines().nth(1).unwrap();
    for cell in [
        bname.as_str(),
        "True",
        "cri-columns1",
        "11/12",
        "2030-01-01T01:00:00Z",
        "2030-01-01T00:45:00Z",
    ] {
        assert!(row.contains(cell), "{cell} missing in {row:?}");
    }

    let acp = kubectl_ok(&["get", "acp", &pname]);
    println!("{acp}");
    let header: Vec<&str> = acp.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "SOURCE", "ASSUME-ROLE", "AGE"]);
    let row = acp.lines().nth(1).unwrap();
    assert!(row.contains("workerRole") && row.contains("acs:ram::1234567890123456:role/columns"));

    // The `acr` category lists both kinds.
    let all = kubectl_ok(&["get", "acr"]);
    assert!(all.contains(&bname) && all.contains(&pname), "{all}");
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_docs() {
    let env = TestEnv::new("crd-explain").await;
    install_crds(&env.client()).await;
    // The API server publishes CRD schemas to its OpenAPI document shortly after they are
    // established; wait for it.
    for (resource, phrases) in [
        (
            "arb.spec.namespaces",
            &[
                "Set exactly one of names, all or selector",
                "names <[]string>",
                "all <boolean>",
            ][..],
        ),
        (
            "arb.spec.registry.instanceId",
            &["Leave it out for a Personal Edition registry", "<string>"][..],
        ),
        (
            "acp.spec.renewBefore",
            &["How long before a registry token expires"][..],
        ),
        (
            "acp.spec.source.rrsa",
            &["RAM Roles for Service Accounts", "roleArn <string>"][..],
        ),
    ] {
        let text = wait_until(WAIT, &format!("kubectl explain {resource}"), || async {
            let out = kubectl(&["explain", resource]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // kubectl re-wraps descriptions and aligns with tabs: compare words only.
            let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if out.status.success() && phrases.iter().all(|p| words.contains(p)) {
                Ok(text)
            } else {
                Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
            }
        })
        .await;
        println!("{text}");
    }
}

#[tokio::test]
async fn migrate_reads_the_configmap_from_the_cluster() {
    let env = TestEnv::new("migrate-cluster").await;
    let ns = env.namespace().to_owned();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/legacy/cross-region/configmap.yaml"
    );
    let mut cm: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cm["metadata"] = json!({"name": "acr-configuration"});
    env.apply(&serde_yaml::to_string(&cm).unwrap()).await;

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"));
    if let Some(kubeconfig) = &support::cluster().kubeconfig {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    let reference = format!("{ns}/acr-configuration");
    let out = cmd
        .args([
            "migrate",
            "--from-cluster",
            "--legacy-configmap",
            &reference,
            "--legacy-token-mode",
            "auto",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let from_file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/legacy/cross-region/translated.yaml"
    ))
    .unwrap();
    // The same manifests as from the file; the header differs by one warning: this is not
    // kube-system/acr-configuration.
    let manifests = |text: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(manifests(&stdout), manifests(&from_file));
    assert!(
        stderr.contains("the legacy helper only reads kube-system/acr-configuration"),
        "{stderr}"
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"))
        .envs(
            support::cluster()
                .kubeconfig
                .as_ref()
                .map(|k| ("KUBECONFIG", k)),
        )
        .args([
            "migrate",
            "--from-cluster",
            "--legacy-configmap",
            &format!("{ns}/nope"),
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains(&format!("cannot read ConfigMap {ns}/nope"))
    );
}
