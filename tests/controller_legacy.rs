//! Live translation of the legacy ConfigMap (`run --legacy-configmap`) on the local control
//! plane with the fake cloud: every example under `examples/legacy/` yields exactly what
//! `migrate` prints and reconciles; edits converge; a bad edit changes nothing; deleting the
//! ConfigMap prunes; objects taken over by `kubectl apply` of the `migrate` output are left alone.
//!
//! The ConfigMaps live in the test's namespace (translated objects are labelled
//! `<namespace>.acr-configuration`), and the controller handles only objects with that label.
//! Translated names are deterministic and cluster-wide, so the tests here run one at a time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;
mod controller_common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use acr_credential_controller::api::{AcrCredentialPolicy, AcrRegistryBinding};
use acr_credential_controller::cli::migrate::{self, MigrateArgs, TokenModeArg};
use acr_credential_controller::cloud::endpoints::{Endpoints, Network};
use acr_credential_controller::cloud::http::HttpConfig;
use acr_credential_controller::cloud::{CloudConfig, SignatureStyle};
use acr_credential_controller::legacy::{self, TRANSLATED_LABEL, TokenMode, TranslateOptions};
use acr_credential_controller::runtime::{self, ControllerConfig};
use acr_credential_controller::translator::LegacyConfigMap;
use acr_fake_cloud::{FakeCloud, Scenario};
use controller_common::{Harness, INSTANCE, OTHER_INSTANCE, Running, SECRET_NAME};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::Value;

/// One test at a time: translated names are cluster-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CM: &str = "acr-configuration";
/// The nodes' account in the generated fake clouds.
const NODE_ACCOUNT: &str = "9999999999999999";

/// The controller translating `<namespace>/acr-configuration` (again every `resync`), handling
/// only what that translation labels.
fn legacy_config(
    namespace: &str,
    token_mode: Option<TokenMode>,
    resync: Duration,
) -> ControllerConfig {
    let legacy = LegacyConfigMap {
        namespace: namespace.to_owned(),
        name: CM.to_owned(),
        token_mode,
        resync,
    };
    ControllerConfig {
        object_selector: Some(format!("{TRANSLATED_LABEL}={}", legacy.label_value())),
        resync: Duration::from_secs(60),
        legacy_configmap: Some(legacy),
        ..ControllerConfig::default()
    }
}

/// Starts the controller (with the translator) against `fake`.
fn start(client: Client, config: ControllerConfig, fake: &FakeCloud) -> Running {
    let cloud = CloudConfig {
        endpoints: Endpoints::new("cn-hangzhou", Network::Public)
            .with_all_overridden(fake.base_url()),
        http: HttpConfig {
            max_attempts: 1,
            ..HttpConfig::default()
        },
        signature: SignatureStyle::V2,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        runtime::run(client, config, cloud, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running::new(tx, handle)
}

/// The translated objects of one ConfigMap in the cluster: kind/name → object JSON.
async fn translated(client: &Client, label: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let lp = ListParams::default().labels(&format!("{TRANSLATED_LABEL}={label}"));
    for (kind, ar) in [
        (
            "AcrCredentialPolicy",
            ApiResource::erase::<AcrCredentialPolicy>(&()),
        ),
        (
            "AcrRegistryBinding",
            ApiResource::erase::<AcrRegistryBinding>(&()),
        ),
    ] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        for o in api.list(&lp).await.unwrap() {
            out.insert(
                format!("{kind}/{}", o.name_any()),
                serde_json::to_value(&o).unwrap(),
            );
        }
    }
    out
}

/// What `migrate` prints for a ConfigMap file: kind/name → object JSON.
async fn migrate_output(path: &str, token_mode: Option<TokenModeArg>) -> BTreeMap<String, Value> {
    let args = MigrateArgs {
        file: Some(path.to_owned()),
        from_cluster: false,
        legacy_configmap: format!("kube-system/{CM}"),
        legacy_token_mode: token_mode,
        check: false,
        kube: acr_credential_controller::cli::args::KubeArgs {
            kubeconfig: None,
            context: None,
        },
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = migrate::run(&args, &mut out, &mut err).await.unwrap();
    assert_eq!(
        code,
        std::process::ExitCode::SUCCESS,
        "{}",
        String::from_utf8_lossy(&err)
    );
    docs(&String::from_utf8(out).unwrap())
}

fn docs(yaml: &str) -> BTreeMap<String, Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| {
            let key = format!(
                "{}/{}",
                v["kind"].as_str().unwrap(),
                v["metadata"]["name"].as_str().unwrap()
            );
            (key, v)
        })
        .collect()
}

/// Waits until the translated objects are exactly `expected` (names, specs, and no label but
/// the translation's), and returns them.
async fn wait_translated(
    client: &Client,
    label: &str,
    expected: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    support::wait_until(
        Duration::from_secs(60),
        "the translated objects",
        || async {
            let live = translated(client, label).await;
            let names: BTreeSet<&String> = live.keys().collect();
            let want: BTreeSet<&String> = expected.keys().collect();
            if names != want {
                return Err(format!("objects {names:?}, want {want:?}"));
            }
            for (k, e) in expected {
                let o = &live[k];
                if o["spec"] != e["spec"] {
                    return Err(format!("{k}: spec {} != {}", o["spec"], e["spec"]));
                }
                let labels = o["metadata"]["labels"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                let want_labels: serde_json::Map<String, Value> =
                    [(TRANSLATED_LABEL.to_owned(), Value::from(label))]
                        .into_iter()
                        .collect();
                if labels != want_labels {
                    return Err(format!("{k}: labels {labels:?}"));
                }
            }
            Ok(live)
        },
    )
    .await
}

/// Ready condition of a binding, or a description of what is there.
async fn binding_ready(client: &Client, name: &str) -> Result<(), String> {
    let b = Api::<AcrRegistryBinding>::all(client.clone())
        .get(name)
        .await
        .map_err(|e| e.to_string())?;
    let status = b.status.ok_or("no status")?;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .ok_or("no Ready")?;
    if ready.status == "True" && status.observed_generation == b.metadata.generation {
        Ok(())
    } else {
        Err(format!("{}: {}", ready.reason, ready.message))
    }
}

async fn wait_all_ready(client: &Client, bindings: &[String]) {
    for name in bindings {
        support::wait_until(
            Duration::from_secs(60),
            &format!("binding {name} Ready"),
            || binding_ready(client, name),
        )
        .await;
    }
}

/// A ConfigMap manifest file's text, moved into `namespace`.
fn configmap_in(path: &std::path::Path, namespace: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut cm: ConfigMap = serde_yaml::from_str(&text).unwrap();
    cm.metadata.namespace = Some(namespace.to_owned());
    let mut v = serde_json::to_value(&cm).unwrap();
    v["apiVersion"] = "v1".into();
    v["kind"] = "ConfigMap".into();
    serde_yaml::to_string(&v).unwrap()
}

fn arn_account_and_name(arn: &str) -> (String, String) {
    // acs:ram::<account>:role/<name>
    let rest = arn.trim_start_matches("acs:ram::");
    let (account, role) = rest.split_once(':').unwrap();
    (
        account.to_owned(),
        role.trim_start_matches("role/").to_owned(),
    )
}

/// Roles to create and Enterprise instances (id, region) to hold, per account.
type Accounts = BTreeMap<String, (BTreeSet<String>, BTreeSet<(String, String)>)>;

/// What the fake cloud's RRSA identity provider signs tokens for.
const RRSA_ISSUER: &str = "https://oidc-ack.cn-hangzhou.aliyuncs.com/legacy-test";
const RRSA_SUBJECT: &str = "system:serviceaccount:kube-system:acr-credential-controller";

/// An RRSA source role: its account, its name and the OIDC provider it trusts.
struct RrsaRole {
    account: String,
    role: String,
    provider: String,
}

/// A fake cloud that can serve what a translation needs: the nodes' worker role, the inline
/// AccessKey pairs, the RRSA roles with their identity provider, the assumed roles and every
/// Enterprise instance, in the accounts the translation implies.
fn scenario_for(cm: &ConfigMap, expected: &BTreeMap<String, Value>) -> Scenario {
    let t = legacy::translate_configmap(
        cm,
        &TranslateOptions {
            token_mode: Some(TokenMode::WorkerRole),
            label_as_translated: false,
        },
    )
    .unwrap();
    // account -> (roles, instances (id, region))
    let mut accounts: Accounts = BTreeMap::new();
    accounts.entry(NODE_ACCOUNT.into()).or_default();
    let mut rrsa_roles = Vec::new();
    let mut policy_account: BTreeMap<String, String> = BTreeMap::new();
    for (k, p) in expected {
        if let Some(name) = k.strip_prefix("AcrCredentialPolicy/") {
            if let Some(rrsa) = p["spec"]["source"]["rrsa"].as_object() {
                let (account, role) = arn_account_and_name(rrsa["roleArn"].as_str().unwrap());
                let provider = rrsa["oidcProviderArn"].as_str().unwrap();
                let provider = provider.rsplit_once('/').unwrap().1.to_owned();
                accounts.entry(account.clone()).or_default();
                rrsa_roles.push(RrsaRole {
                    account,
                    role,
                    provider,
                });
            }
            let account = match p["spec"]["assumeRole"]["roleArn"].as_str() {
                Some(arn) => {
                    let (account, role) = arn_account_and_name(arn);
                    accounts.entry(account.clone()).or_default().0.insert(role);
                    account
                }
                None => NODE_ACCOUNT.to_owned(),
            };
            policy_account.insert(name.to_owned(), account);
        }
    }
    for (k, b) in expected {
        if k.starts_with("AcrRegistryBinding/") {
            let policy = b["spec"]["policyRef"]["name"].as_str().unwrap();
            let account = policy_account[policy].clone();
            if let Some(id) = b["spec"]["registry"]["instanceId"].as_str() {
                let region = b["spec"]["registry"]["region"]
                    .as_str()
                    .unwrap_or("cn-hangzhou");
                accounts
                    .entry(account)
                    .or_default()
                    .1
                    .insert((id.to_owned(), region.to_owned()));
            }
        }
    }
    // Assumed roles trust the nodes' account and every RRSA role's account.
    let callers: Vec<String> = std::iter::once(NODE_ACCOUNT.to_owned())
        .chain(rrsa_roles.iter().map(|r| r.account.clone()))
        .map(|a| format!("\"acs:ram::{a}:root\""))
        .collect();
    let callers = callers.join(", ");
    let key = cloud_common::fixture("rrsa-test-key.pub.pem");
    let mut yaml = "region: cn-hangzhou\naccounts:\n".to_owned();
    for (account, (roles, instances)) in &accounts {
        yaml.push_str(&format!("  - id: \"{account}\"\n"));
        if account == NODE_ACCOUNT {
            yaml.push_str("    accessKeys:\n");
            for key in &t.access_keys {
                yaml.push_str(&format!(
                    "      - {{id: \"{}\", secret: \"{}\", user: legacy}}\n",
                    key.access_key_id.expose(),
                    key.access_key_secret.expose()
                ));
            }
            yaml.push_str(
                "    users:\n      - {name: legacy, permissions: [\"cr:*\", \"sts:AssumeRole\"]}\n",
            );
        }
        yaml.push_str("    roles:\n");
        yaml.push_str("      - {name: node-role, permissions: [\"cr:*\", \"sts:AssumeRole\"]}\n");
        for role in roles {
            yaml.push_str(&format!(
                "      - {{name: {role}, maxSessionDuration: 43200, permissions: [\"cr:*\"], trust: {{principals: [{callers}]}}}}\n"
            ));
        }
        let own_rrsa: Vec<&RrsaRole> = rrsa_roles
            .iter()
            .filter(|r| &r.account == account)
            .collect();
        for r in &own_rrsa {
            yaml.push_str(&format!(
                "      - {{name: {}, permissions: [\"cr:*\", \"sts:AssumeRole\"], trust: {{oidc: [{{provider: {}, subjects: [\"{RRSA_SUBJECT}\"]}}]}}}}\n",
                r.role, r.provider
            ));
        }
        if !own_rrsa.is_empty() {
            yaml.push_str("    oidcProviders:\n");
            for r in &own_rrsa {
                yaml.push_str(&format!(
                    "      - {{name: {}, issuer: \"{RRSA_ISSUER}\", clientIds: [sts.aliyuncs.com], publicKeyFiles: [\"{key}\"]}}\n",
                    r.provider
                ));
            }
        }
        yaml.push_str("    instances:\n");
        for (id, region) in instances {
            let name = id.trim_start_matches("cri-");
            yaml.push_str(&format!(
                "      - {{id: {id}, name: {name}, region: {region}}}\n"
            ));
        }
    }
    yaml.push_str(&format!(
        "metadata: {{account: \"{NODE_ACCOUNT}\", roleName: node-role}}\n"
    ));
    Scenario::from_str_resolved(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The projected ServiceAccount token an RRSA pod would have: signed by the fake's identity
/// provider key, for the controller's ServiceAccount.
fn rrsa_token_file() -> std::path::PathBuf {
    let token = cloud_common::oidc_token(RRSA_SUBJECT, "sts.aliyuncs.com", RRSA_ISSUER, 3600);
    cloud_common::temp_file("token", &token)
}

async fn wait_gone(client: &Client, label: &str) {
    support::wait_until(
        Duration::from_secs(60),
        "the translated objects to be pruned",
        || async {
            let live = translated(client, label).await;
            if live.is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", live.keys().collect::<Vec<_>>()))
            }
        },
    )
    .await;
}

fn track_translated(env: &support::TestEnv, objects: &BTreeMap<String, Value>) {
    for k in objects.keys() {
        match k.split_once('/') {
            Some(("AcrCredentialPolicy", name)) => {
                env.track_cluster_object::<AcrCredentialPolicy>(name)
            }
            Some(("AcrRegistryBinding", name)) => {
                env.track_cluster_object::<AcrRegistryBinding>(name)
            }
            _ => {}
        }
    }
}

/// Every legacy example, applied as the live ConfigMap: the translation applies exactly the
/// objects `migrate --legacy-token-mode worker-role` prints, they reconcile to Ready against a fake
/// cloud holding what the example refers to, and deleting the ConfigMap prunes them.
#[tokio::test]
async fn every_example_translates_live_exactly_like_migrate() {
    let _serial = SERIAL.lock().await;
    let env = support::TestEnv::new("legacy-examples").await;
    let ns = env.namespace().to_owned();
    let client = env.client();
    support::install_crds(&client).await;
    let config = legacy_config(&ns, Some(TokenMode::WorkerRole), Duration::from_secs(60));
    let label = config.legacy_configmap.as_ref().unwrap().label_value();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    let dir = support::repo_root().join("examples/legacy");
    let mut examples: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    examples.sort();
    assert!(examples.len() >= 10, "{examples:?}");
    // Every credential source the legacy keys can express is among them, RRSA included.
    assert!(examples.iter().any(|e| e.ends_with("cross-account-rrsa")));
    for example in &examples {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let cm_path = example.join("configmap.yaml");
        let expected =
            migrate_output(cm_path.to_str().unwrap(), Some(TokenModeArg::WorkerRole)).await;
        assert!(!expected.is_empty(), "{name}");
        track_translated(&env, &expected);
        let cm: ConfigMap =
            serde_yaml::from_str(&std::fs::read_to_string(&cm_path).unwrap()).unwrap();
        let fake = FakeCloud::start(scenario_for(&cm, &expected))
            .await
            .unwrap();
        // RRSA policies read the projected token where the controller is told it is.
        let mut config = config.clone();
        config.token_files.rrsa = rrsa_token_file();
        let running = start(client.clone(), config, &fake);

        env.apply(&configmap_in(&cm_path, &ns)).await;
        let live = wait_translated(&client, &label, &expected).await;
        let bindings: Vec<String> = live
            .keys()
            .filter_map(|k| k.strip_prefix("AcrRegistryBinding/").map(str::to_owned))
            .collect();
        wait_all_ready(&client, &bindings).await;
        // The AccessKey Secret the translation created for inline pairs.
        let access_keys = legacy::translate_configmap(&cm, &TranslateOptions::default())
            .unwrap()
            .access_keys;
        for key in &access_keys {
            env.track(
                ApiResource::erase::<Secret>(&()),
                Some(&key.namespace),
                &key.name,
            );
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &key.namespace);
            let s = secrets.get(&key.name).await.unwrap();
            assert_eq!(s.labels().get(TRANSLATED_LABEL), Some(&label));
            assert_eq!(
                s.data.as_ref().unwrap()["AccessKeySecret"].0,
                key.access_key_secret.expose().as_bytes()
            );
        }

        cms.delete(CM, &DeleteParams::default()).await.unwrap();
        wait_gone(&client, &label).await;
        // No policy reads them any more: the translation deletes its AccessKey Secrets too.
        for key in &access_keys {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &key.namespace);
            support::wait_until(
                Duration::from_secs(30),
                "the AccessKey Secret pruned",
                || async {
                    match secrets.get_opt(&key.name).await.unwrap() {
                        None => Ok(()),
                        Some(_) => Err(format!("{}/{} still there", key.namespace, key.name)),
                    }
                },
            )
            .await;
        }
        running.stop().await;
    }
}

async fn events(client: &Client, ns: &str, reason: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(CM) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

fn configmap(ns: &str, namespaces: &str, instances: &[&str]) -> String {
    let mut info = String::new();
    for i in instances {
        info.push_str(&format!(
            "    - instanceId: {i}\n      regionId: cn-hangzhou\n      customAccessKey: LTAIctrl\n      customAccessKeySecret: ctrlsecret\n"
        ));
    }
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {CM}, namespace: {ns}}}\ndata:\n  service-account: default\n  watch-namespace: \"{namespaces}\"\n  acr-registry-info: |\n{info}"
    )
}

/// A snapshot of what must not move: translated objects (whole) and the pull Secrets.
async fn snapshot(client: &Client, label: &str, namespaces: &[&str]) -> Vec<Value> {
    let mut out: Vec<Value> = translated(client, label).await.into_values().collect();
    for ns in namespaces {
        let s = Api::<Secret>::namespaced(client.clone(), ns)
            .get(SECRET_NAME)
            .await
            .unwrap();
        out.push(serde_json::to_value(&s).unwrap());
    }
    out
}

/// Add a registry, change namespaces, remove a registry: the objects follow, and reconcile.
/// A ConfigMap edited into invalid YAML: a Warning Event with key and line, and nothing moves.
/// Then the `migrate` output is applied with kubectl (the handover to Git): later edits and the
/// ConfigMap's deletion leave those objects alone, while an object still owned by the
/// translation is pruned.
#[tokio::test]
async fn edits_converge_bad_edits_change_nothing_and_handover_is_safe() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new("legacy-edits", 3600, "15m").await;
    let ns1 = h.env.namespace().to_owned();
    let ns2 = h.env.extra_namespace("legacy-edits-b").await;
    let client = h.client();
    // Translating every 2 s: repeated passes must neither change anything nor repeat Events.
    let config = legacy_config(&ns1, None, Duration::from_secs(2));
    let label = config.legacy_configmap.as_ref().unwrap().label_value();
    let running = start(client.clone(), config, &h.fake);

    // One registry into ns1.
    h.env.apply(&configmap(&ns1, &ns1, &[INSTANCE])).await;
    let cm: ConfigMap = Api::namespaced(client.clone(), &ns1).get(CM).await.unwrap();
    let t = legacy::translate_configmap(&cm, &TranslateOptions::default()).unwrap();
    let (policy, first) = (t.policies[0].name_any(), t.bindings[0].name_any());
    for key in &t.access_keys {
        h.env.track(
            ApiResource::erase::<Secret>(&()),
            Some(&key.namespace),
            &key.name,
        );
    }
    h.env.track_cluster_object::<AcrCredentialPolicy>(&policy);
    h.env.track_cluster_object::<AcrRegistryBinding>(&first);
    support::wait_until(Duration::from_secs(60), "first binding", || {
        binding_ready(&client, &first)
    })
    .await;
    // The inline AccessKey warning, once for this ConfigMap version despite several passes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let warnings: Vec<String> = events(&client, &ns1, "TranslationWarning")
        .await
        .into_iter()
        .map(|e| e.message.unwrap_or_default())
        .collect();
    let distinct: BTreeSet<&String> = warnings.iter().collect();
    assert_eq!(distinct.len(), warnings.len(), "{warnings:?}");
    let notes: Vec<&String> = warnings
        .iter()
        .filter(|n| n.contains("customAccessKey"))
        .collect();
    assert_eq!(notes.len(), 1, "{warnings:?}");
    let note = notes[0];
    assert!(
        note.contains("live translation writes that Secret"),
        "{note}"
    );
    assert!(!note.contains("ctrlsecret"), "{note}");

    // Add a registry and a namespace.
    let both = format!("{ns1},{ns2}");
    h.env
        .apply(&configmap(&ns1, &both, &[INSTANCE, OTHER_INSTANCE]))
        .await;
    let live = support::wait_until(Duration::from_secs(60), "two bindings", || async {
        let live = translated(&client, &label).await;
        let n = live
            .keys()
            .filter(|k| k.starts_with("AcrRegistryBinding/"))
            .count();
        let names_ok = live.values().all(|v| {
            !v["spec"]["namespaces"].is_object()
                || v["spec"]["namespaces"]["names"] == serde_json::json!([ns1, ns2])
        });
        if n == 2 && names_ok {
            Ok(live)
        } else {
            Err(format!("{:?}", live.keys()))
        }
    })
    .await;
    let second = live
        .keys()
        .filter_map(|k| k.strip_prefix("AcrRegistryBinding/"))
        .find(|n| *n != first)
        .unwrap()
        .to_owned();
    h.env.track_cluster_object::<AcrRegistryBinding>(&second);
    wait_all_ready(&client, &[first.clone(), second.clone()]).await;
    controller_common::wait_secret(
        &h.secrets(&ns2),
        "pull Secret in the added namespace",
        |s| controller_common::auths(s).len() >= 2,
    )
    .await;

    // A bad edit: the registry list is no longer YAML. First let the status settle.
    let mut before = snapshot(&client, &label, &[&ns1, &ns2]).await;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = snapshot(&client, &label, &[&ns1, &ns2]).await;
        if again == before {
            break;
        }
        before = again;
    }
    let broken = configmap(&ns1, &both, &[INSTANCE, OTHER_INSTANCE]).replace(
        "      regionId: cn-hangzhou\n      customAccessKey",
        "      regionId: [cn-hangzhou\n      customAccessKey",
    );
    h.env.apply(&broken).await;
    let event = support::wait_until(Duration::from_secs(30), "an InvalidYaml Event", || async {
        events(&client, &ns1, "InvalidYaml")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains("acr-registry-info (line ") && message.contains("stay as they are"),
        "{message}"
    );
    assert!(!message.contains("ctrlsecret"), "{message}");
    // Give the translator and the controller time to do something wrong.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(snapshot(&client, &label, &[&ns1, &ns2]).await, before);

    // Remove a registry (and repair the YAML): the second binding is pruned.
    h.env.apply(&configmap(&ns1, &both, &[INSTANCE])).await;
    support::wait_until(
        Duration::from_secs(60),
        "the removed registry's binding pruned",
        || async {
            let live = translated(&client, &label).await;
            if live.contains_key(&format!("AcrRegistryBinding/{second}")) {
                Err("still there".to_owned())
            } else {
                Ok(())
            }
        },
    )
    .await;
    wait_all_ready(&client, std::slice::from_ref(&first)).await;

    // Handover: the user applies the migrate output with kubectl.
    let cm: ConfigMap = Api::namespaced(client.clone(), &ns1).get(CM).await.unwrap();
    let git = legacy::render_yaml(
        &legacy::translate_configmap(&cm, &TranslateOptions::default()).unwrap(),
    )
    .unwrap();
    let file = std::env::temp_dir().join(format!("{}-migrate.yaml", h.id));
    std::fs::write(&file, &git).unwrap();
    let out = support::kubectl(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&file);
    let handed_over = translated(&client, &label).await;
    assert_eq!(handed_over.len(), 2, "{:?}", handed_over.keys());

    // The ConfigMap changes namespaces and gains a registry again: the taken-over objects keep
    // their spec, the new binding is the translation's.
    h.env
        .apply(&configmap(&ns1, &ns2, &[INSTANCE, OTHER_INSTANCE]))
        .await;
    support::wait_until(Duration::from_secs(30), "TakenOver Events", || async {
        let n = events(&client, &ns1, "TakenOver").await.len();
        if n >= 2 {
            Ok(())
        } else {
            Err(format!("{n} Events"))
        }
    })
    .await;
    support::wait_until(Duration::from_secs(60), "the new binding", || {
        binding_ready(&client, &second)
    })
    .await;
    let specs = |m: &BTreeMap<String, Value>| -> BTreeMap<String, Value> {
        m.iter()
            .map(|(k, v)| (k.clone(), v["spec"].clone()))
            .collect()
    };
    let now = translated(&client, &label).await;
    for (k, spec) in specs(&handed_over) {
        assert_eq!(now[&k]["spec"], spec, "{k} changed after the handover");
    }

    // Deleting the ConfigMap prunes only what the translation still owns.
    Api::<ConfigMap>::namespaced(client.clone(), &ns1)
        .delete(CM, &DeleteParams::default())
        .await
        .unwrap();
    support::wait_until(
        Duration::from_secs(60),
        "the translation-owned binding pruned",
        || async {
            let live = translated(&client, &label).await;
            if live.contains_key(&format!("AcrRegistryBinding/{second}")) {
                Err("still there".to_owned())
            } else {
                Ok(live)
            }
        },
    )
    .await;
    let after = translated(&client, &label).await;
    assert_eq!(specs(&after), specs(&handed_over));
    wait_all_ready(&client, std::slice::from_ref(&first)).await;

    // Clean up while the controller runs (bindings carry its finalizer).
    Api::<AcrRegistryBinding>::all(client.clone())
        .delete(&first, &DeleteParams::default())
        .await
        .unwrap();
    Api::<AcrCredentialPolicy>::all(client.clone())
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
    support::wait_until(Duration::from_secs(60), "cleanup", || async {
        let left = translated(&client, &label).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", left.keys()))
        }
    })
    .await;
    running.stop().await;
}

/// An object of a translated name that the translation did not create is left alone, and a
/// Warning Event on the ConfigMap says so; the rest of the translation is applied.
#[tokio::test]
async fn a_name_clash_leaves_the_other_object_alone() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new("legacy-clash", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let client = h.client();
    let config = legacy_config(&ns, None, Duration::from_secs(60));
    let label = config.legacy_configmap.as_ref().unwrap().label_value();
    let manifest = configmap(&ns, &ns, &[INSTANCE, OTHER_INSTANCE]);
    let cm: ConfigMap = serde_yaml::from_str(&manifest).unwrap();
    let t = legacy::translate_configmap(&cm, &TranslateOptions::default()).unwrap();
    let (clash, other) = (t.bindings[0].name_any(), t.bindings[1].name_any());
    let policy = t.policies[0].name_any();
    h.env.track_cluster_object::<AcrCredentialPolicy>(&policy);
    h.env.track_cluster_object::<AcrRegistryBinding>(&other);
    for key in &t.access_keys {
        h.env.track(
            ApiResource::erase::<Secret>(&()),
            Some(&key.namespace),
            &key.name,
        );
    }
    // Someone else's binding of the same name (not handled by this test's controller).
    h.binding(
        &clash,
        &format!(
            "  registry: {{instanceId: {INSTANCE}, region: cn-hangzhou}}\n  policyRef: {{name: {}}}\n  namespaces: {{names: [{ns}]}}\n",
            h.policy
        ),
    )
    .await;
    let bindings = h.bindings();
    let theirs = bindings.get(&clash).await.unwrap();
    let running = start(client.clone(), config, &h.fake);
    h.env.apply(&manifest).await;

    let event = support::wait_until(Duration::from_secs(30), "a NameClash Event", || async {
        events(&client, &ns, "NameClash").await.into_iter().next()
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(
        event
            .message
            .as_deref()
            .unwrap_or_default()
            .contains(&clash),
        "{event:?}"
    );
    wait_all_ready(&client, std::slice::from_ref(&other)).await;
    let after = bindings.get(&clash).await.unwrap();
    assert_eq!(after.spec, theirs.spec);
    assert_eq!(after.metadata.labels, theirs.metadata.labels);
    assert_eq!(
        translated(&client, &label)
            .await
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            format!("AcrCredentialPolicy/{policy}"),
            format!("AcrRegistryBinding/{other}")
        ]
    );

    // Deleting the ConfigMap prunes the translation's objects, not the other binding.
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .delete(CM, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, &label).await;
    assert_eq!(bindings.get(&clash).await.unwrap().spec, theirs.spec);
    running.stop().await;
}

/// A ConfigMap in `ns` whose registries are `entries`: (instance, inline AccessKey pair).
fn configmap_with(ns: &str, entries: &[(&str, Option<(&str, &str)>)]) -> String {
    let mut info = String::new();
    for (instance, key) in entries {
        info.push_str(&format!(
            "    - instanceId: {instance}\n      regionId: cn-hangzhou\n"
        ));
        if let Some((id, secret)) = key {
            info.push_str(&format!(
                "      customAccessKey: {id}\n      customAccessKeySecret: {secret}\n"
            ));
        }
    }
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {CM}, namespace: {ns}}}\ndata:\n  service-account: default\n  watch-namespace: \"{ns}\"\n  acr-registry-info: |\n{info}"
    )
}

/// The AccessKey Secret the translation wrote is deleted once the ConfigMap no longer names its
/// pair and no policy reads it, with a Normal Event on the ConfigMap; a Secret of the name the
/// translation would write, which it did not write (no translation label), stays through edits
/// and the ConfigMap's deletion.
#[tokio::test]
async fn access_key_secrets_nothing_reads_are_deleted_and_foreign_ones_stay() {
    let _serial = SERIAL.lock().await;
    let h = Harness::new("legacy-keys", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let client = h.client();
    let config = legacy_config(&ns, None, Duration::from_secs(2));
    let label = config.legacy_configmap.as_ref().unwrap().label_value();
    // Key IDs of this test only: the Secrets' names derive from them, in kube-system.
    let (ours_id, theirs_id) = (format!("LTAIours{}", h.id), format!("LTAItheirs{}", h.id));
    let (ours_secret, theirs_secret) = ("oursvalue0123", "theirsvalue0123");
    let both = configmap_with(
        &ns,
        &[
            (INSTANCE, Some((&ours_id, ours_secret))),
            (OTHER_INSTANCE, Some((&theirs_id, theirs_secret))),
        ],
    );
    let cm: ConfigMap = serde_yaml::from_str(&both).unwrap();
    let t = legacy::translate_configmap(&cm, &TranslateOptions::default()).unwrap();
    let secret_of = |id: &str| {
        t.access_keys
            .iter()
            .find(|k| k.access_key_id.expose() == id)
            .unwrap()
            .clone()
    };
    let (ours, theirs) = (secret_of(&ours_id), secret_of(&theirs_id));
    assert_eq!(ours.namespace, theirs.namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ours.namespace);
    for key in [&ours, &theirs] {
        h.env.track(
            ApiResource::erase::<Secret>(&()),
            Some(&key.namespace),
            &key.name,
        );
    }
    for p in &t.policies {
        h.env
            .track_cluster_object::<AcrCredentialPolicy>(&p.name_any());
    }
    for b in &t.bindings {
        h.env
            .track_cluster_object::<AcrRegistryBinding>(&b.name_any());
    }
    // Someone else's Secret of the name the second pair's would have.
    h.env
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {}, namespace: {}}}\nstringData: {{AccessKeyId: their-id, AccessKeySecret: their-secret}}\n",
            theirs.name, theirs.namespace
        ))
        .await;
    let foreign = secrets.get(&theirs.name).await.unwrap();

    let running = start(client.clone(), config, &h.fake);
    h.env.apply(&both).await;
    let written = support::wait_until(
        Duration::from_secs(60),
        "the AccessKey Secret written",
        || async { secrets.get_opt(&ours.name).await.unwrap().ok_or("not yet") },
    )
    .await;
    assert_eq!(written.labels().get(TRANSLATED_LABEL), Some(&label));
    support::wait_until(Duration::from_secs(60), "both policies", || async {
        let n = translated(&client, &label)
            .await
            .keys()
            .filter(|k| k.starts_with("AcrCredentialPolicy/"))
            .count();
        if n == 2 { Ok(()) } else { Err(format!("{n}")) }
    })
    .await;
    let unchanged = |s: &Secret| {
        s.metadata.uid == foreign.metadata.uid
            && s.metadata.resource_version == foreign.metadata.resource_version
            && s.labels().get(TRANSLATED_LABEL).is_none()
    };
    assert!(unchanged(&secrets.get(&theirs.name).await.unwrap()));

    // Both pairs dropped from the ConfigMap: the policies that read them are pruned, then our
    // Secret; theirs stays.
    h.env.apply(&configmap_with(&ns, &[(INSTANCE, None)])).await;
    support::wait_until(
        Duration::from_secs(60),
        "the unused AccessKey Secret deleted",
        || async {
            match secrets.get_opt(&ours.name).await.unwrap() {
                None => Ok(()),
                Some(_) => Err("still there"),
            }
        },
    )
    .await;
    let event = support::wait_until(
        Duration::from_secs(30),
        "an AccessKeySecretDeleted Event",
        || async {
            events(&client, &ns, "AccessKeySecretDeleted")
                .await
                .into_iter()
                .next()
                .ok_or("none yet")
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains(&format!("{}/{}", ours.namespace, ours.name)),
        "{message}"
    );
    assert!(
        !message.contains(ours_secret) && !message.contains(&ours_id),
        "{message}"
    );
    let all_deleted = events(&client, &ns, "AccessKeySecretDeleted").await;
    assert_eq!(all_deleted.len(), 1, "{all_deleted:?}");
    // Some passes later, theirs is still as it was.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(unchanged(&secrets.get(&theirs.name).await.unwrap()));

    // The ConfigMap deleted: everything translated goes, theirs stays.
    Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .delete(CM, &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&client, &label).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(unchanged(&secrets.get(&theirs.name).await.unwrap()));
    running.stop().await;
}
