use super::*;
use crate::api::conditions::find_condition;
use crate::sensitive::Sensitive;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn token() -> HeldToken {
    HeldToken {
        username: "cr_temp_user".into(),
        password: Sensitive::new("secret-password".into()),
        issued_at: t("2024-01-01T00:00:00Z"),
        expires_at: t("2024-01-01T01:00:00Z"),
        renew_at: t("2024-01-01T00:45:00Z"),
        domains: vec!["a.example.com".into()],
    }
}

fn healthy() -> BindingObservation {
    BindingObservation {
        generation: Some(2),
        registry: "cri-abc".into(),
        token: Some(token()),
        domains: vec!["a.example.com".into()],
        namespaces_selected: 2,
        namespaces_synced: 2,
        service_accounts_selected: 2,
        service_accounts_bound: 2,
        ..Default::default()
    }
}

#[test]
fn healthy_binding_is_ready_with_times_and_counts() {
    let s = binding_status(None, &healthy(), t("2024-01-01T00:00:01.5Z"));
    let ready = find_condition(&s.conditions, types::READY).unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.last_transition_time, Time(t("2024-01-01T00:00:01Z")));
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(
        s.token.as_ref().unwrap().renew_at,
        Some(Time(t("2024-01-01T00:45:00Z")))
    );
    assert_eq!(
        s.namespaces.as_ref().unwrap().summary.as_deref(),
        Some("2/2")
    );
    for c in &s.conditions {
        assert_eq!(c.status, "True", "{c:?}");
    }
    // Same observation later: identical status (nothing to write).
    let again = binding_status(Some(&s), &healthy(), t("2024-01-01T00:10:00Z"));
    assert_eq!(again, s);
}

#[test]
fn renewal_failure_is_degraded_but_ready_and_keeps_transition_time() {
    let s = binding_status(None, &healthy(), t("2024-01-01T00:00:00Z"));
    let mut obs = healthy();
    obs.token_failure = Some(TokenFailure {
        at: t("2024-01-01T00:46:00Z"),
        reason: "CloudServerError",
        message:
            "cr:GetAuthorizationToken failed: ServiceUnavailable (HTTP 503): down [RequestId R1]"
                .into(),
    });
    let d = binding_status(Some(&s), &obs, t("2024-01-01T00:46:00Z"));
    let ready = find_condition(&d.conditions, types::READY).unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.reason, reasons::RENEWAL_FAILING);
    assert!(ready.message.contains("Degraded") && ready.message.contains("R1"));
    assert_eq!(ready.last_transition_time, Time(t("2024-01-01T00:00:00Z")));
    assert!(!ready.message.contains("secret-password"));
    assert_eq!(d.last_failure.as_ref().unwrap().reason, "CloudServerError");
    // After expiry: not ready.
    let e = binding_status(Some(&d), &obs, t("2024-01-01T01:00:01Z"));
    let ready = find_condition(&e.conditions, types::READY).unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reasons::TOKEN_EXPIRED);
}

#[test]
fn blocker_sets_ready_false_with_the_message() {
    let obs = BindingObservation {
        generation: Some(1),
        registry: "personal".into(),
        blocker: Some(Blocker {
            reason: reasons::INVALID_SPEC,
            message: "invalid spec: spec.namespaces: namespaces must set exactly one of names, all or selector".into(),
        }),
        ..Default::default()
    };
    let s = binding_status(None, &obs, t("2024-01-01T00:00:00Z"));
    let ready = find_condition(&s.conditions, types::READY).unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, reasons::INVALID_SPEC);
    assert!(ready.message.contains("exactly one of"));
    let stalled = find_condition(&s.conditions, types::STALLED).unwrap();
    assert_eq!(stalled.status, "True");
    assert_eq!(stalled.reason, reasons::INVALID_SPEC);
    assert!(find_condition(&s.conditions, types::RECONCILING).is_none());
    // Fixed: Stalled goes.
    let fixed = binding_status(Some(&s), &healthy(), t("2024-01-01T00:00:05Z"));
    assert!(find_condition(&fixed.conditions, types::STALLED).is_none());
}

#[test]
fn zero_selected_namespaces_is_ready_with_a_message() {
    let mut obs = healthy();
    obs.namespaces_selected = 0;
    obs.namespaces_synced = 0;
    obs.service_accounts_selected = 0;
    obs.service_accounts_bound = 0;
    let s = binding_status(None, &obs, t("2024-01-01T00:00:00Z"));
    let ready = find_condition(&s.conditions, types::READY).unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    assert_eq!(ready.reason, reasons::NO_NAMESPACES_SELECTED);
    assert!(ready.message.contains("matches no namespace"));
    assert!(find_condition(&s.conditions, types::STALLED).is_none());
}

#[test]
fn forbidden_namespace_and_unknown_instance_are_stalled() {
    let mut obs = healthy();
    obs.namespaces_synced = 1;
    obs.namespace_failures = vec![NamespaceFailure {
        name: "b".into(),
        reason: reasons::NAMESPACE_NOT_ALLOWED.into(),
        message: "selected, but policy p does not allow it".into(),
    }];
    let s = binding_status(None, &obs, t("2024-01-01T00:00:00Z"));
    let stalled = find_condition(&s.conditions, types::STALLED).unwrap();
    assert_eq!(stalled.reason, reasons::NAMESPACE_NOT_ALLOWED);
    assert!(stalled.message.contains("b: selected"));

    let mut obs = healthy();
    obs.token = None;
    obs.token_failure = Some(TokenFailure {
        at: t("2024-01-01T00:00:00Z"),
        reason: "NotFound",
        message: "cr:GetAuthorizationToken failed: INSTANCE_NOT_EXIST (HTTP 404) [RequestId R2]"
            .into(),
    });
    let s = binding_status(None, &obs, t("2024-01-01T00:00:00Z"));
    let stalled = find_condition(&s.conditions, types::STALLED).unwrap();
    assert_eq!(stalled.reason, reasons::NOT_FOUND);
    // A transient cloud failure is not terminal.
    obs.token_failure.as_mut().unwrap().reason = "CloudServerError";
    let s = binding_status(Some(&s), &obs, t("2024-01-01T00:00:10Z"));
    assert!(find_condition(&s.conditions, types::STALLED).is_none());
}

#[test]
fn new_generation_is_reconciling_until_the_pass_finishes() {
    let ready = binding_status(None, &healthy(), t("2024-01-01T00:00:00Z"));
    assert!(reconciling_status(Some(&ready), Some(2), t("2024-01-01T00:00:01Z")).is_none());
    let r = reconciling_status(Some(&ready), Some(3), t("2024-01-01T00:00:01Z")).unwrap();
    assert_eq!(r.observed_generation, Some(3));
    let c = find_condition(&r.conditions, types::RECONCILING).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "Progressing")
    );
    // The old Ready stays until the pass decides.
    assert_eq!(
        find_condition(&r.conditions, types::READY).unwrap().status,
        "True"
    );
    // A brand-new binding: Ready Unknown.
    let first = reconciling_status(None, Some(1), t("2024-01-01T00:00:01Z")).unwrap();
    assert_eq!(
        find_condition(&first.conditions, types::READY)
            .unwrap()
            .status,
        "Unknown"
    );
    // The pass ends: Reconciling goes.
    let mut obs = healthy();
    obs.generation = Some(3);
    let done = binding_status(Some(&r), &obs, t("2024-01-01T00:00:02Z"));
    assert!(find_condition(&done.conditions, types::RECONCILING).is_none());
    // Waiting for a token that is on its way keeps it.
    obs.token = None;
    let waiting = binding_status(Some(&r), &obs, t("2024-01-01T00:00:02Z"));
    assert!(find_condition(&waiting.conditions, types::RECONCILING).is_some());
}

#[test]
fn unsynced_namespaces_are_reported() {
    let mut obs = healthy();
    obs.namespaces_synced = 1;
    obs.namespace_failures = vec![NamespaceFailure {
        name: "b".into(),
        reason: reasons::SECRET_OWNED_BY_OTHERS.into(),
        message: "not ours".into(),
    }];
    let s = binding_status(None, &obs, t("2024-01-01T00:00:00Z"));
    let synced = find_condition(&s.conditions, types::SECRETS_SYNCED).unwrap();
    assert_eq!(synced.status, "False");
    assert_eq!(synced.reason, reasons::SECRET_OWNED_BY_OTHERS);
    assert_eq!(s.namespaces.as_ref().unwrap().failed.len(), 1);
}
