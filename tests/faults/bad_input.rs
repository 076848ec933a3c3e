//! Bad input: the malformed legacy ConfigMaps (`tests/corpus/legacy_malformed.yaml`) fed to
//! the live translator, the invalid objects this API server admits (`tests/corpus/api_objects.yaml`,
//! the cases only CEL would reject) applied for the running controller, and generated inputs
//! (proptest) for the legacy parser, the dockerconfigjson reader and the duration parser. No
//! panic, a clear error for each, and a working binding's Secret untouched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acr_credential_controller::api::duration;
use acr_credential_controller::legacy::{TranslateOptions, translate};
use acr_credential_controller::model::secret::{DOCKER_CONFIG_KEY, domains_in};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde::Deserialize;

use crate::common::{Controller, Row, Start, binding_spec};
use crate::controller_common::{Harness, OWNER_LABEL, SECRET_NAME, wait_secret};
use crate::support;

#[derive(Deserialize)]
struct LegacyCase {
    case: String,
    data: BTreeMap<String, String>,
    expect: Vec<String>,
}

#[derive(Deserialize)]
struct ApiCase {
    case: String,
    kind: String,
    #[serde(rename = "rejectedBy")]
    rejected_by: Option<String>,
    #[serde(default, rename = "decodeFails")]
    decode_fails: bool,
    spec: serde_json::Value,
}

fn corpus<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = support::repo_root().join("tests/corpus").join(file);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Legacy `data` maps: known keys with random or near-valid values, and random keys.
fn legacy_data() -> impl Strategy<Value = BTreeMap<String, String>> {
    let keys = prop_oneof![
        Just("acr-registry-info".to_owned()),
        Just("watch-namespace".to_owned()),
        Just("service-account".to_owned()),
        Just("expiring-threshold".to_owned()),
        Just("acr-api-version".to_owned()),
        "[a-zA-Z-]{1,20}",
    ];
    let values = prop_oneof![
        any::<String>(),
        "(- )?(instanceId|regionId|domains|customAccessKey|assumeRoleARN|expireDuration): [\"a-z0-9,:{}\\[\\] -]{0,30}\n( +[a-zA-Z]+: [a-z0-9-]{0,10}\n){0,3}",
        "[0-9]{0,4}(h|m|s|ms|us|ns)?[0-9]{0,3}(m|s)?",
    ];
    prop::collection::btree_map(keys, values, 0..5)
}

/// Generated inputs: the legacy parser, the dockerconfigjson reader and the duration parser
/// never panic; every legacy rejection says something.
fn generated(cases: u32) -> Result<u32, String> {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&legacy_data(), |data| {
            if let Err(e) = translate(&data, &TranslateOptions::default()) {
                prop_assert!(!e.0.is_empty() && !e.to_string().trim().is_empty());
            }
            Ok(())
        })
        .map_err(|e| format!("legacy parser: {e}"))?;
    let docker = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        "\\{\"auths\": ?(\\{|\\[|null|1|\"x\")(\"[a-z.]{0,10}\": ?(\\{\\}|null|\\[\\]|\"\"),?){0,3}\\}?\\}?"
            .prop_map(String::into_bytes),
    ];
    runner
        .run(&docker, |bytes| {
            let s = Secret {
                data: Some([(DOCKER_CONFIG_KEY.to_owned(), ByteString(bytes))].into()),
                ..Secret::default()
            };
            let _ = domains_in(&s);
            Ok(())
        })
        .map_err(|e| format!("dockerconfigjson reader: {e}"))?;
    let durations = prop_oneof![
        any::<String>(),
        "[0-9]{0,25}[hms]?[0-9]{0,25}[hms]?[0-9]{0,5}[hms]?"
    ];
    runner
        .run(&durations, |s| {
            if let Some(d) = duration::parse(&s) {
                // Accepted strings are of the documented form and mean what they say.
                prop_assert!(s.chars().all(|c| c.is_ascii_digit() || "hms".contains(c)));
                prop_assert!(d.as_secs() > 0 || s.chars().any(|c| c == '0'));
            }
            Ok(())
        })
        .map_err(|e| format!("duration parser: {e}"))?;
    Ok(3 * cases)
}

async fn warning_events(api: &Api<Event>) -> Vec<String> {
    api.list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|e| e.type_.as_deref() == Some("Warning"))
                .map(|e| e.message.unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_touches_nothing() {
    let mut row = Row::new(
        10,
        "bad input",
        "malformed legacy ConfigMaps (live), invalid objects the API server admits, generated inputs",
    );
    // Generated inputs first: they need no cluster.
    let generated = generated(if crate::common::full() { 2000 } else { 300 });
    row.check(generated.is_ok(), || generated.clone().unwrap_err());

    let h = Harness::new("faults-bad-input", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let cm = "acr-configuration";
    let mut controller = Controller::start(
        &h,
        Start {
            extra: vec!["--legacy-configmap".into(), format!("{ns}/{cm}")],
            ..Start::default()
        },
    )
    .await;
    let good = format!("{}-good", h.id);
    h.binding(&good, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    h.wait_ready(&good, "True", Duration::from_secs(60)).await;
    let secrets: Api<Secret> = h.secrets(&ns);
    let before = wait_secret(&secrets, "the working Secret", |_| true).await;

    // 1. Each malformed ConfigMap in turn: a Warning Event saying what is wrong.
    let events: Api<Event> = Api::namespaced(h.client(), &ns);
    let legacy: Vec<LegacyCase> = corpus("legacy_malformed.yaml");
    let mut unclear = Vec::new();
    for case in &legacy {
        let data: String = case
            .data
            .iter()
            .map(|(k, v)| format!("  {k}: {}\n", serde_json::to_string(v).unwrap()))
            .collect();
        h.env
            .apply(&format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {cm}}}\ndata:\n{data}"
            ))
            .await;
        let t0 = Instant::now();
        let mut said = false;
        while t0.elapsed() < Duration::from_secs(15) && !said {
            let warnings = warning_events(&events).await;
            said = case
                .expect
                .iter()
                .all(|x| warnings.iter().any(|w| w.contains(x.as_str())));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !said {
            unclear.push(case.case.clone());
        }
    }
    row.check(unclear.is_empty(), || {
        format!("malformed ConfigMaps without a clear Warning Event: {unclear:?}")
    });

    // 2. Objects this server admits but the controller must refuse: Stalled with a message.
    let cases: Vec<ApiCase> = corpus("api_objects.yaml");
    let invalid: Vec<&ApiCase> = cases
        .iter()
        .filter(|c| c.rejected_by.as_deref() == Some("cel") && !c.decode_fails)
        .collect();
    let mut applied = Vec::new();
    for c in &invalid {
        let kind = if c.kind == "binding" {
            "AcrRegistryBinding"
        } else {
            "AcrCredentialPolicy"
        };
        let name = format!("{}-{}", h.id, c.case);
        let name = name[..name.len().min(63)].trim_end_matches('-');
        let object = serde_json::json!({
            "apiVersion": "acrcredentials.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name, "labels": {OWNER_LABEL: h.id}},
            "spec": c.spec,
        });
        h.env.apply(&serde_yaml::to_string(&object).unwrap()).await;
        applied.push((c.kind.clone(), name.to_owned()));
    }
    let mut silent = Vec::new();
    for (kind, name) in &applied {
        let found =
            support::wait_until(Duration::from_secs(30), "a Stalled condition", || {
                let (bindings, policies) = (h.bindings(), h.policies());
                let (kind, name) = (kind.clone(), name.clone());
                async move {
                    let conditions = if kind == "binding" {
                        bindings
                            .get(&name)
                            .await
                            .ok()
                            .and_then(|b| b.status)
                            .map(|s| s.conditions)
                    } else {
                        policies
                            .get(&name)
                            .await
                            .ok()
                            .and_then(|p| p.status)
                            .map(|s| s.conditions)
                    };
                    Ok::<_, String>(conditions.unwrap_or_default().into_iter().find(|c| {
                        c.type_ == "Stalled" && c.status == "True" && !c.message.is_empty()
                    }))
                }
            });
        match tokio::time::timeout(Duration::from_secs(31), found).await {
            Ok(Some(_)) => {}
            _ => silent.push(name.clone()),
        }
    }
    row.check(silent.is_empty(), || {
        format!("invalid objects without a Stalled condition and message: {silent:?}")
    });

    // 3. Nothing that worked was touched, and the controller never fell over.
    let after = secrets.get(SECRET_NAME).await.unwrap();
    row.check(after.data == before.data, || {
        "the working Secret changed".into()
    });
    let ready = crate::common::ready_of(&h, &good).await;
    row.check(ready.as_ref().is_some_and(|r| r.0 == "True"), || {
        format!("the working binding is no longer Ready: {ready:?}")
    });
    row.check(controller.running(), || {
        format!("the controller exited: {:?}", controller.exit())
    });
    let panics = controller.log_text().matches("panicked").count();
    row.check(panics == 0, || format!("{panics} panics in the log"));
    row.figure = format!(
        "{} malformed ConfigMaps: {} with a clear Warning Event; {} invalid objects: {} Stalled with a message; {} generated inputs: {}; working Secret unchanged: {}; panics: {panics}",
        legacy.len(),
        legacy.len() - unclear.len(),
        applied.len(),
        applied.len() - silent.len(),
        generated.as_ref().map_or(0, |n| *n),
        if generated.is_ok() {
            "no panic"
        } else {
            "FAILED"
        },
        after.data == before.data,
    );
    row.finish();
}
