//! The translator on every legacy key, every documented scenario (snapshotted with insta) and
//! a corpus of malformed ConfigMaps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;

use super::*;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ok(pairs: &[(&str, &str)]) -> Translation {
    translate(&data(pairs), &TranslateOptions::default())
        .unwrap_or_else(|e| panic!("translation failed:\n{e}"))
}

fn err(pairs: &[(&str, &str)]) -> String {
    translate(&data(pairs), &TranslateOptions::default())
        .expect_err("translation should fail")
        .to_string()
}

fn example(name: &str) -> ConfigMap {
    let path = format!(
        "{}/examples/legacy/{name}/configmap.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn snapshot(name: &str, token_mode: Option<TokenMode>) {
    let t = translate_configmap(
        &example(name),
        &TranslateOptions {
            token_mode,
            label_as_translated: false,
        },
    )
    .unwrap_or_else(|e| panic!("{name}:\n{e}"));
    insta::assert_snapshot!(name, render_yaml(&t).unwrap());
}

#[test]
fn scenario_personal_edition() {
    snapshot("personal-edition", None);
}

#[test]
fn scenario_enterprise_domains() {
    snapshot("enterprise-domains", None);
}

#[test]
fn scenario_cross_region() {
    snapshot("cross-region", None);
}

#[test]
fn scenario_enterprise_and_personal() {
    snapshot("enterprise-and-personal", None);
}

#[test]
fn scenario_cross_account_worker_role() {
    snapshot("cross-account-worker-role", Some(TokenMode::WorkerRole));
}

#[test]
fn scenario_cross_account_rrsa() {
    snapshot("cross-account-rrsa", None);
}

#[test]
fn scenario_cross_account_access_key() {
    snapshot("cross-account-access-key", None);
}

#[test]
fn scenario_add_on_defaults() {
    snapshot("add-on-defaults", None);
}

#[test]
fn scenario_webhook_all_service_accounts() {
    snapshot("webhook-all-service-accounts", None);
}

#[test]
fn scenario_terraform_json() {
    snapshot("terraform-json", None);
}

#[test]
fn personal_edition_binding() {
    let t = ok(&[
        (
            "acr-registry-info",
            "- instanceId: \"\"\n  regionId: cn-hangzhou\n",
        ),
        ("watch-namespace", "default"),
    ]);
    assert_eq!(t.bindings.len(), 1);
    let b = &t.bindings[0];
    assert_eq!(
        b.metadata.name.as_deref(),
        Some("legacy-personal-cn-hangzhou")
    );
    assert_eq!(b.spec.registry.instance_id, None);
    assert_eq!(b.spec.registry.region.as_deref(), Some("cn-hangzhou"));
    assert_eq!(
        b.spec.policy_ref.as_ref().map(|p| p.name.as_str()),
        Some("legacy-managed-role")
    );
    assert_eq!(t.policies.len(), 1);
    assert!(t.policies[0].spec.source.managed_role.is_some());
}

#[test]
fn enterprise_with_domains_and_lists() {
    let t = ok(&[
        (
            "acr-registry-info",
            "- instanceId: cri-abc\n  regionId: cn-hangzhou\n  domains: a.example.com, b.example.com\n",
        ),
        ("watch-namespace", "prod, dev"),
        ("service-account", "default,deployer"),
    ]);
    let b = &t.bindings[0];
    assert_eq!(b.metadata.name.as_deref(), Some("legacy-cri-abc"));
    assert_eq!(
        b.spec.registry.domains,
        Some(vec!["a.example.com".to_owned(), "b.example.com".to_owned()])
    );
    assert_eq!(
        b.spec.namespaces.names,
        Some(vec!["prod".to_owned(), "dev".to_owned()])
    );
    assert_eq!(
        b.spec
            .service_accounts
            .as_ref()
            .and_then(|s| s.names.clone()),
        Some(vec!["default".to_owned(), "deployer".to_owned()])
    );
}

#[test]
fn cross_account_assume_role_with_expire_duration() {
    let t = translate(
        &data(&[
            (
                "acr-registry-info",
                "- instanceId: cri-abc\n  assumeRoleARN: acs:ram::1234567890123456:role/Acr_Puller\n  expireDuration: \"7200\"\n",
            ),
            ("expiring-threshold", "1h"),
        ]),
        &TranslateOptions {
            token_mode: Some(TokenMode::WorkerRole),
            label_as_translated: false,
        },
    )
    .unwrap();
    let p = &t.policies[0];
    assert!(p.spec.source.worker_role.is_some());
    let a = p.spec.assume_role.as_ref().unwrap();
    assert_eq!(a.role_arn, "acs:ram::1234567890123456:role/Acr_Puller");
    assert_eq!(a.duration.as_deref(), Some("2h"));
    assert_eq!(p.spec.renew_before.as_deref(), Some("1h"));
    let name = p.metadata.name.as_deref().unwrap();
    assert!(
        name.starts_with("legacy-worker-role-to-acr-puller-"),
        "{name}"
    );
    assert!(crate::api::validation::is_dns_subdomain(name));
    // No token-mode warning when the mode is given.
    assert!(t.warnings.iter().all(|w| w.key != "tokenMode"));
}

#[test]
fn rrsa_source_when_enabled() {
    let info = "- instanceId: cri-abc\n  rrsaRoleARN: acs:ram::1:role/helper\n  rrsaOIDCProviderRoleARN: acs:ram::1:oidc-provider/ack-rrsa-c1\n";
    let t = ok(&[("acr-registry-info", info), ("rrsa", "enable: true\n")]);
    let rrsa = t.policies[0].spec.source.rrsa.as_ref().unwrap();
    assert_eq!(rrsa.role_arn, "acs:ram::1:role/helper");
    assert_eq!(
        rrsa.oidc_provider_arn,
        "acs:ram::1:oidc-provider/ack-rrsa-c1"
    );
    // RRSA entries need no token mode, so no assumption is announced.
    assert!(t.warnings.iter().all(|w| w.key != "tokenMode"));

    let off = ok(&[("acr-registry-info", info)]);
    assert!(off.policies[0].spec.source.managed_role.is_some());
    assert!(
        off.warnings
            .iter()
            .any(|w| w.message.contains("ignored because the rrsa key"))
    );
}

#[test]
fn access_key_moves_to_a_secret_and_is_never_rendered() {
    let t = ok(&[(
        "acr-registry-info",
        "- instanceId: \"\"\n  customAccessKey: LTAI-ID\n  customAccessKeySecret: TOP-SECRET\n",
    )]);
    let secret_ref = &t.policies[0]
        .spec
        .source
        .access_key
        .as_ref()
        .unwrap()
        .secret_ref;
    assert_eq!(secret_ref.namespace, "kube-system");
    assert_eq!(t.access_keys.len(), 1);
    assert_eq!(t.access_keys[0].name, secret_ref.name);
    assert_eq!(t.access_keys[0].access_key_secret.expose(), "TOP-SECRET");
    let rendered = render_yaml(&t).unwrap();
    assert!(!rendered.contains("TOP-SECRET") && !rendered.contains("LTAI-ID"));
    assert!(!format!("{t:?}").contains("TOP-SECRET"));
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains(&secret_ref.name))
    );
}

#[test]
fn webhook_enable_sets_inject_on_create() {
    let t = ok(&[("webhook-configuration", "enable: true\n")]);
    assert_eq!(t.bindings[0].spec.inject_on_create, Some(true));
    let t = ok(&[("webhook-configuration", "enable: false\n")]);
    assert_eq!(t.bindings[0].spec.inject_on_create, None);
}

#[test]
fn obsolete_and_informational_keys_warn() {
    let t = ok(&[
        ("notify-email", "a@example.com"),
        ("acr-api-version", "2018-12-01"),
    ]);
    let keys: Vec<&str> = t.warnings.iter().map(|w| w.key.as_str()).collect();
    assert!(keys.contains(&"notify-email"));
    assert!(keys.contains(&"acr-api-version"));
}

#[test]
fn empty_configmap_means_personal_edition_in_default_namespace() {
    let t = ok(&[]);
    assert_eq!(
        t.bindings[0].metadata.name.as_deref(),
        Some("legacy-personal")
    );
    assert_eq!(
        t.bindings[0].spec.namespaces.names,
        Some(vec!["default".to_owned()])
    );
    assert_eq!(t.bindings[0].spec.service_accounts, None);
    let keys: Vec<&str> = t.warnings.iter().map(|w| w.key.as_str()).collect();
    assert_eq!(keys, ["watch-namespace", "acr-registry-info", "tokenMode"]);
}

#[test]
fn shared_credentials_share_one_policy() {
    let t = ok(&[(
        "acr-registry-info",
        "- instanceId: cri-a\n  regionId: cn-beijing\n- instanceId: cri-b\n  regionId: cn-hangzhou\n- instanceId: \"\"\n",
    )]);
    assert_eq!(t.policies.len(), 1);
    assert_eq!(t.bindings.len(), 3);
    let names: Vec<&str> = t
        .bindings
        .iter()
        .filter_map(|b| b.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["legacy-cri-a", "legacy-cri-b", "legacy-personal"]);
}

#[test]
fn names_are_deterministic_and_independent_of_entry_order() {
    let a = "- instanceId: cri-a\n  assumeRoleARN: acs:ram::1:role/x\n- instanceId: cri-b\n  assumeRoleARN: acs:ram::2:role/y\n";
    let b = "- instanceId: cri-b\n  assumeRoleARN: acs:ram::2:role/y\n- instanceId: cri-a\n  assumeRoleARN: acs:ram::1:role/x\n";
    let ta = ok(&[("acr-registry-info", a)]);
    let tb = ok(&[("acr-registry-info", b)]);
    assert_eq!(render_yaml(&ta).unwrap(), render_yaml(&tb).unwrap());
    assert_eq!(
        render_yaml(&ta).unwrap(),
        render_yaml(&ok(&[("acr-registry-info", a)])).unwrap()
    );
    // Changing the threshold keeps the names.
    let tc = ok(&[("acr-registry-info", a), ("expiring-threshold", "20m")]);
    let names = |t: &Translation| -> Vec<Option<String>> {
        t.policies.iter().map(|p| p.metadata.name.clone()).collect()
    };
    assert_eq!(names(&ta), names(&tc));
    assert_eq!(ta.policies.len(), 2);
}

#[test]
fn a_repeated_registry_gets_a_numbered_second_binding() {
    let t = ok(&[(
        "acr-registry-info",
        "- instanceId: cri-a\n  domains: a.example.com\n- instanceId: cri-a\n  domains: b.example.com\n",
    )]);
    let names: Vec<&str> = t
        .bindings
        .iter()
        .filter_map(|b| b.metadata.name.as_deref())
        .collect();
    assert_eq!(names, ["legacy-cri-a", "legacy-cri-a-2"]);
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains("legacy-cri-a-2"))
    );
}

#[test]
fn threshold_must_fit_each_lifetime() {
    // 2h fits a 3h assumed session...
    ok(&[
        (
            "acr-registry-info",
            "- instanceId: cri-a\n  assumeRoleARN: acs:ram::1:role/x\n  expireDuration: 10800\n",
        ),
        ("expiring-threshold", "2h"),
    ]);
    // ...but not the 1h tokens of a second, plain entry.
    let e = err(&[
        (
            "acr-registry-info",
            "- instanceId: cri-a\n  assumeRoleARN: acs:ram::1:role/x\n  expireDuration: 10800\n- instanceId: cri-b\n",
        ),
        ("expiring-threshold", "2h"),
    ]);
    assert!(e.contains("entry [1]"), "{e}");
}

#[test]
fn expire_duration_without_assume_role_is_ignored_with_a_warning() {
    let t = ok(&[(
        "acr-registry-info",
        "- instanceId: cri-a\n  expireDuration: 7200\n",
    )]);
    assert!(t.policies[0].spec.assume_role.is_none());
    assert!(
        t.warnings
            .iter()
            .any(|w| w.message.contains("ignored without assumeRoleARN"))
    );
}

#[test]
fn controller_translation_is_labelled() {
    let t = translate(
        &data(&[]),
        &TranslateOptions {
            token_mode: Some(TokenMode::Auto),
            label_as_translated: true,
        },
    )
    .unwrap();
    for labels in t
        .policies
        .iter()
        .map(|p| &p.metadata.labels)
        .chain(t.bindings.iter().map(|b| &b.metadata.labels))
    {
        assert_eq!(
            labels
                .as_ref()
                .and_then(|l| l.get(TRANSLATED_LABEL))
                .map(String::as_str),
            Some(TRANSLATED_LABEL_VALUE)
        );
    }
}

#[test]
fn other_configmap_names_are_flagged() {
    let mut cm = example("personal-edition");
    cm.metadata.name = Some("acr-config".into());
    let t = translate_configmap(&cm, &TranslateOptions::default()).unwrap();
    assert_eq!(t.warnings[0].key, "metadata");
}

#[test]
fn every_translation_passes_the_api_validation() {
    for name in [
        "personal-edition",
        "enterprise-domains",
        "cross-region",
        "enterprise-and-personal",
        "cross-account-worker-role",
        "cross-account-rrsa",
        "cross-account-access-key",
        "add-on-defaults",
        "webhook-all-service-accounts",
        "terraform-json",
    ] {
        let t = translate_configmap(&example(name), &TranslateOptions::default()).unwrap();
        for p in &t.policies {
            crate::api::validate_policy(&p.spec).unwrap();
        }
        for b in &t.bindings {
            crate::api::validate_binding(&b.spec).unwrap();
        }
    }
}

#[derive(serde::Deserialize)]
struct Malformed {
    case: String,
    data: BTreeMap<String, String>,
    expect: Vec<String>,
}

#[test]
fn malformed_configmaps_get_clear_errors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/legacy_malformed.yaml"
    );
    let cases: Vec<Malformed> =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for c in cases {
        match translate(&c.data, &TranslateOptions::default()) {
            Ok(_) => failures.push(format!("{}: translated without error", c.case)),
            Err(e) => {
                let text = e.to_string();
                for needle in &c.expect {
                    if !text.contains(needle.as_str()) {
                        failures.push(format!("{}: {needle:?} not in:\n{text}", c.case));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
