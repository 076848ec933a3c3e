//! Every code rule, accepted and rejected. The schema/CEL side of the same rules is covered by
//! `tests/api_agreement.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};

use super::*;
use crate::api::{AcrCredentialPolicySpec, AcrRegistryBindingSpec};

fn binding(spec: Value) -> AcrRegistryBindingSpec {
    serde_json::from_value(spec).expect("test binding deserializes")
}

fn policy(spec: Value) -> AcrCredentialPolicySpec {
    serde_json::from_value(spec).expect("test policy deserializes")
}

/// The paths of all errors, or empty when valid.
fn binding_errors(spec: Value) -> Vec<String> {
    match validate_binding(&binding(spec)) {
        Ok(()) => vec![],
        Err(e) => dedup(e.into_iter().map(|e| e.path).collect()),
    }
}

fn policy_errors(spec: Value) -> Vec<String> {
    match validate_policy(&policy(spec)) {
        Ok(()) => vec![],
        Err(e) => dedup(e.into_iter().map(|e| e.path).collect()),
    }
}

fn dedup(mut paths: Vec<String>) -> Vec<String> {
    paths.dedup();
    paths
}

fn base_binding() -> Value {
    json!({"registry": {"instanceId": "cri-abc123"}, "namespaces": {"names": ["default"]}})
}

fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut cur = &mut base;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        if cur.get(part).is_none() {
            cur[part] = json!({});
        }
        cur = cur.get_mut(part).unwrap();
    }
    if value.is_null() {
        cur.as_object_mut().unwrap().remove(key);
    } else {
        cur[key] = value;
    }
    base
}

#[test]
fn all_patterns_compile() {
    for (format, re) in REGEXES.iter() {
        assert!(re.is_some(), "{format:?} pattern does not compile");
    }
}

#[test]
fn patterns_fit_go_regexp_limits() {
    // The API server compiles patterns with Go's regexp, which refuses repeat counts above
    // 1000 (the `regex` crate would accept them).
    let counts = Regex::new(r"\{(\d+)(?:,(\d*))?\}").unwrap();
    for (format, _) in REGEXES.iter() {
        for c in counts.captures_iter(format.pattern()) {
            for n in [c.get(1), c.get(2)].into_iter().flatten() {
                if let Ok(n) = n.as_str().parse::<u32>() {
                    assert!(n <= 1000, "{format:?}: repeat count {n} > 1000");
                }
            }
        }
    }
}

#[test]
fn minimal_binding_is_valid() {
    assert!(binding_errors(base_binding()).is_empty());
    // Personal Edition: no instance id at all.
    assert!(binding_errors(json!({"registry": {}, "namespaces": {"all": true}})).is_empty());
}

#[test]
fn instance_id_and_region_formats() {
    let ok = with(
        base_binding(),
        "/registry/region",
        json!("cn-shanghai-finance-1"),
    );
    assert!(binding_errors(ok).is_empty());
    for bad in ["abc", "cri-", "CRI-ABC", "cri-abc_1"] {
        let spec = with(base_binding(), "/registry/instanceId", json!(bad));
        assert_eq!(binding_errors(spec), ["spec.registry.instanceId"], "{bad}");
    }
    for bad in ["hangzhou", "cn_hangzhou", "CN-HANGZHOU", "cn-"] {
        let spec = with(base_binding(), "/registry/region", json!(bad));
        assert_eq!(binding_errors(spec), ["spec.registry.region"], "{bad}");
    }
}

#[test]
fn domains_are_a_nonempty_set_of_host_names() {
    let ok = with(
        base_binding(),
        "/registry/domains",
        json!(["a-registry.cn-hangzhou.cr.aliyuncs.com", "b.example.com"]),
    );
    assert!(binding_errors(ok).is_empty());
    let empty = with(base_binding(), "/registry/domains", json!([]));
    assert_eq!(binding_errors(empty), ["spec.registry.domains"]);
    let dup = with(
        base_binding(),
        "/registry/domains",
        json!(["a.com", "a.com"]),
    );
    assert_eq!(binding_errors(dup), ["spec.registry.domains[1]"]);
    let bad = with(
        base_binding(),
        "/registry/domains",
        json!(["https://a.com", "A.com"]),
    );
    assert_eq!(
        binding_errors(bad),
        ["spec.registry.domains[0]", "spec.registry.domains[1]"]
    );
    let many: Vec<String> = (0..33).map(|i| format!("r{i}.example.com")).collect();
    let too_many = with(base_binding(), "/registry/domains", json!(many));
    assert_eq!(binding_errors(too_many), ["spec.registry.domains"]);
}

#[test]
fn policy_ref_name() {
    let ok = with(
        base_binding(),
        "/policyRef",
        json!({"name": "cross-account.b"}),
    );
    assert!(binding_errors(ok).is_empty());
    let bad = with(
        base_binding(),
        "/policyRef",
        json!({"name": "Cross_Account"}),
    );
    assert_eq!(binding_errors(bad), ["spec.policyRef.name"]);
}

#[test]
fn namespaces_need_exactly_one_selection_style() {
    for ok in [
        json!({"names": ["a", "b"]}),
        json!({"all": true}),
        json!({"selector": {"matchLabels": {"acr": "on"}}}),
        json!({"all": true, "exclude": ["kube-system"]}),
        json!({"names": ["a"], "exclude": ["b"]}),
    ] {
        let spec = with(base_binding(), "/namespaces", ok.clone());
        assert!(binding_errors(spec).is_empty(), "{ok}");
    }
    for bad in [
        json!({}),
        json!({"exclude": ["kube-system"]}),
        json!({"names": ["a"], "all": true}),
        json!({"all": true, "selector": {}}),
    ] {
        let spec = with(base_binding(), "/namespaces", bad.clone());
        assert_eq!(binding_errors(spec), ["spec.namespaces"], "{bad}");
    }
}

#[test]
fn namespaces_all_false_is_refused() {
    let spec = with(base_binding(), "/namespaces", json!({"all": false}));
    let errors = validate_binding(&binding(spec)).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, msg::NAMESPACES_ALL_TRUE);
}

#[test]
fn namespace_names_and_exclusions() {
    let bad = with(
        base_binding(),
        "/namespaces",
        json!({"names": ["ok", "Not_OK", "ok"], "exclude": ["x".repeat(64)]}),
    );
    assert_eq!(
        binding_errors(bad),
        [
            "spec.namespaces.exclude[0]",
            "spec.namespaces.names[1]",
            "spec.namespaces.names[2]"
        ]
    );
    let overlap = with(
        base_binding(),
        "/namespaces",
        json!({"names": ["a", "b"], "exclude": ["b"]}),
    );
    let errors = validate_binding(&binding(overlap)).unwrap_err();
    assert_eq!(errors[0].message, msg::NAMESPACES_EXCLUDE_OVERLAP);
    let empty = with(base_binding(), "/namespaces", json!({"names": []}));
    assert_eq!(binding_errors(empty), ["spec.namespaces.names"]);
}

#[test]
fn service_accounts_need_exactly_one_selection_style() {
    for ok in [
        json!({"names": ["default", "builder.ci"]}),
        json!({"all": true}),
        json!({"selector": {"matchLabels": {"pulls": "acr"}}}),
    ] {
        let spec = with(base_binding(), "/serviceAccounts", ok.clone());
        assert!(binding_errors(spec).is_empty(), "{ok}");
    }
    for bad in [
        json!({}),
        json!({"names": ["a"], "all": true}),
        json!({"all": false}),
    ] {
        let spec = with(base_binding(), "/serviceAccounts", bad.clone());
        assert_eq!(binding_errors(spec), ["spec.serviceAccounts"], "{bad}");
    }
    let bad_name = with(base_binding(), "/serviceAccounts", json!({"names": ["*"]}));
    assert_eq!(binding_errors(bad_name), ["spec.serviceAccounts.names[0]"]);
}

#[test]
fn every_binding_problem_is_reported_at_once() {
    let spec = json!({
        "registry": {"instanceId": "nope", "region": "nowhere", "domains": []},
        "policyRef": {"name": "UPPER"},
        "namespaces": {"names": ["a"], "all": true},
        "serviceAccounts": {}
    });
    assert_eq!(binding_errors(spec).len(), 6);
}

fn base_policy() -> Value {
    json!({"source": {"managedRole": {}}})
}

#[test]
fn each_source_alone_is_valid() {
    for source in [
        json!({"managedRole": {}}),
        json!({"workerRole": {}}),
        json!({"rrsa": {"roleArn": "acs:ram::1234567890123456:role/acr-puller",
                        "oidcProviderArn": "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1",
                        "tokenFile": "/var/run/secrets/tokens/rrsa"}}),
        json!({"accessKey": {"secretRef": {"namespace": "kube-system", "name": "acr-ak"}}}),
    ] {
        let spec = json!({ "source": source });
        assert!(policy_errors(spec.clone()).is_empty(), "{spec}");
    }
}

#[test]
fn source_needs_exactly_one() {
    assert_eq!(policy_errors(json!({"source": {}})), ["spec.source"]);
    assert_eq!(
        policy_errors(json!({"source": {"managedRole": {}, "workerRole": {}}})),
        ["spec.source"]
    );
}

#[test]
fn rrsa_arns() {
    let spec = json!({"source": {"rrsa": {
        "roleArn": "acs:ram::123:oidc-provider/x",
        "oidcProviderArn": "acs:ram::123:role/x",
        "tokenFile": "relative/path"}}});
    assert_eq!(
        policy_errors(spec),
        [
            "spec.source.rrsa.oidcProviderArn",
            "spec.source.rrsa.roleArn",
            "spec.source.rrsa.tokenFile"
        ]
    );
}

#[test]
fn access_key_secret_ref() {
    let bad = json!({"source": {"accessKey": {"secretRef": {
        "namespace": "Kube_System", "name": "x", "accessKeyIdKey": "a b"}}}});
    assert_eq!(
        policy_errors(bad),
        [
            "spec.source.accessKey.secretRef.accessKeyIdKey",
            "spec.source.accessKey.secretRef.namespace"
        ]
    );
    // Same key for both halves, explicitly or through the defaults.
    for refs in [
        json!({"accessKeyIdKey": "k", "accessKeySecretKey": "k"}),
        json!({"accessKeyIdKey": "AccessKeySecret"}),
        json!({"accessKeySecretKey": "AccessKeyId"}),
    ] {
        let mut secret_ref = json!({"namespace": "ns", "name": "n"});
        secret_ref
            .as_object_mut()
            .unwrap()
            .extend(refs.as_object().unwrap().clone());
        let spec = json!({"source": {"accessKey": {"secretRef": secret_ref}}});
        assert_eq!(
            policy_errors(spec),
            ["spec.source.accessKey.secretRef"],
            "{refs}"
        );
    }
}

#[test]
fn assume_role_fields() {
    let ok = with(
        base_policy(),
        "/assumeRole",
        json!({"roleArn": "acs:ram::1234567890123456:role/puller", "sessionName": "acr-sync",
               "externalId": "abc-123", "duration": "12h"}),
    );
    assert!(policy_errors(ok).is_empty());
    let bad = with(
        base_policy(),
        "/assumeRole",
        json!({"roleArn": "arn:aws:iam::1:role/x", "sessionName": "x", "externalId": "a"}),
    );
    assert_eq!(
        policy_errors(bad),
        [
            "spec.assumeRole.externalId",
            "spec.assumeRole.roleArn",
            "spec.assumeRole.sessionName"
        ]
    );
}

#[test]
fn assume_role_duration_range() {
    for (d, ok) in [
        ("1h", true),
        ("60m", true),
        ("3600s", true),
        ("12h", true),
        ("6h30m", true),
        ("59m", false),
        ("12h1s", false),
        ("13h", false),
        ("1d", false),
        ("h", false),
    ] {
        let spec = with(
            base_policy(),
            "/assumeRole",
            json!({"roleArn": "acs:ram::1:role/r", "duration": d}),
        );
        let errors = policy_errors(spec);
        assert_eq!(errors.is_empty(), ok, "{d}: {errors:?}");
        if !ok {
            assert_eq!(errors, ["spec.assumeRole.duration"], "{d}");
        }
    }
}

#[test]
fn renew_before_must_be_positive_and_below_lifetime() {
    for (renew, assume, ok) in [
        ("15m", None, true),
        ("59m59s", None, true),
        ("1h", None, false),
        ("0s", None, false),
        ("0m", None, false),
        ("", None, false),
        ("15", None, false),
        ("2h", Some("3h"), true),
        ("3h", Some("3h"), false),
        ("45m", Some(""), true),
    ] {
        let mut spec = with(base_policy(), "/renewBefore", json!(renew));
        if let Some(d) = assume {
            let mut a = json!({"roleArn": "acs:ram::1:role/r"});
            if !d.is_empty() {
                a["duration"] = json!(d);
            }
            spec = with(spec, "/assumeRole", a);
        }
        let errors = policy_errors(spec);
        assert_eq!(errors.is_empty(), ok, "{renew} {assume:?}: {errors:?}");
        if !ok {
            assert!(errors.iter().all(|p| p == "spec.renewBefore"), "{errors:?}");
        }
    }
}

#[test]
fn malformed_assume_duration_does_not_blame_renew_before() {
    let spec = json!({"source": {"workerRole": {}}, "renewBefore": "2h",
                      "assumeRole": {"roleArn": "acs:ram::1:role/r", "duration": "two hours"}});
    assert_eq!(policy_errors(spec), ["spec.assumeRole.duration"]);
}

#[test]
fn field_error_display_names_the_path() {
    let errors = validate_policy(&policy(json!({"source": {}}))).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        format!("spec.source: {}", msg::SOURCE_EXACTLY_ONE)
    );
}

#[test]
fn name_helpers() {
    assert!(is_dns_label("kube-system"));
    assert!(!is_dns_label("a.b"));
    assert!(is_dns_subdomain("a.b"));
    assert!(!is_dns_subdomain(&"a".repeat(254)));
    assert!(is_instance_id("cri-abc"));
    assert!(is_region("cn-hangzhou"));
    assert!(is_role_arn("acs:ram::1:role/r"));
    assert!(is_oidc_provider_arn("acs:ram::1:oidc-provider/p"));
}

/// A binding whose namespaces are picked by one `matchExpressions` entry.
fn selecting(expression: Value) -> Value {
    with(
        base_binding(),
        "/namespaces",
        json!({"selector": {"matchExpressions": [expression]}}),
    )
}

#[test]
fn selector_operators_and_values() {
    for ok in [
        json!({"key": "a", "operator": "In", "values": ["x"]}),
        json!({"key": "a", "operator": "NotIn", "values": ["x", "y"]}),
        json!({"key": "a", "operator": "Exists"}),
        json!({"key": "a", "operator": "DoesNotExist", "values": []}),
    ] {
        assert_eq!(
            binding_errors(selecting(ok.clone())),
            Vec::<String>::new(),
            "{ok}"
        );
    }
    let equals = selecting(json!({"key": "a", "operator": "Equals", "values": ["x"]}));
    let errors = validate_binding(&binding(equals)).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].path,
        "spec.namespaces.selector.matchExpressions[0].operator"
    );
    assert!(errors[0].message.contains("\"Equals\""), "{}", errors[0]);

    for (bad, message) in [
        (
            json!({"key": "a", "operator": "In"}),
            msg::SELECTOR_VALUES_REQUIRED,
        ),
        (
            json!({"key": "a", "operator": "NotIn", "values": []}),
            msg::SELECTOR_VALUES_REQUIRED,
        ),
        (
            json!({"key": "a", "operator": "Exists", "values": ["x"]}),
            msg::SELECTOR_VALUES_FORBIDDEN,
        ),
        (
            json!({"key": "a", "operator": "DoesNotExist", "values": ["x"]}),
            msg::SELECTOR_VALUES_FORBIDDEN,
        ),
    ] {
        let errors = validate_binding(&binding(selecting(bad.clone()))).unwrap_err();
        assert_eq!(errors.len(), 1, "{bad}");
        assert_eq!(
            errors[0].path,
            "spec.namespaces.selector.matchExpressions[0].values"
        );
        assert_eq!(errors[0].message, message, "{bad}");
    }
}

#[test]
fn selector_lists_are_bounded() {
    let values: Vec<String> = (0..=p::SELECTOR_VALUES_MAX_ITEMS)
        .map(|i| format!("v{i}"))
        .collect();
    let long = selecting(json!({"key": "a", "operator": "In", "values": values}));
    assert_eq!(
        binding_errors(long),
        ["spec.namespaces.selector.matchExpressions[0].values"]
    );
    let expressions: Vec<Value> = (0..=p::SELECTOR_EXPRESSIONS_MAX_ITEMS)
        .map(|i| json!({"key": format!("k{i}"), "operator": "Exists"}))
        .collect();
    let many = with(
        base_binding(),
        "/namespaces",
        json!({"selector": {"matchExpressions": expressions}}),
    );
    assert_eq!(
        binding_errors(many),
        ["spec.namespaces.selector.matchExpressions"]
    );
}

#[test]
fn every_selector_is_checked() {
    let bad = json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]});
    let sa = with(
        base_binding(),
        "/serviceAccounts",
        json!({"selector": bad.clone()}),
    );
    assert_eq!(
        binding_errors(sa),
        ["spec.serviceAccounts.selector.matchExpressions[0].operator"]
    );
    let allowed = policy(json!({"source": {"managedRole": {}}, "allowedNamespaces": bad}));
    let errors = validate_policy(&allowed).unwrap_err();
    assert_eq!(
        errors[0].path,
        "spec.allowedNamespaces.matchExpressions[0].operator"
    );
}
