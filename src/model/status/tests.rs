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
    // The old generation's Ready=True goes: Unknown at the new generation until the pass
    // decides; the other conditions keep the generation they describe.
    let ready_c = find_condition(&r.conditions, types::READY).unwrap();
    assert_eq!(
        (
            ready_c.status.as_str(),
            ready_c.reason.as_str(),
            ready_c.observed_generation
        ),
        ("Unknown", "Progressing", Some(3))
    );
    assert_eq!(
        find_condition(&r.conditions, types::TOKEN_ISSUED)
            .unwrap()
            .observed_generation,
        Some(2)
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
    // Every condition carries the generation it describes.
    assert!(
        done.conditions
            .iter()
            .all(|c| c.observed_generation == Some(3))
    );
    assert_eq!(
        find_condition(&done.conditions, types::READY)
            .unwrap()
            .status,
        "True"
    );
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

fn failure(reason: &'static str, message: &str) -> TokenFailure {
    TokenFailure {
        at: t("2024-01-01T00:20:00Z"),
        reason,
        message: message.into(),
    }
}

fn ns_failure(name: &str, reason: &str) -> NamespaceFailure {
    NamespaceFailure {
        name: name.into(),
        reason: reason.into(),
        message: "went wrong".into(),
    }
}

#[test]
fn token_issued_says_valid_degraded_expired_failed_or_waiting() {
    let at = t("2024-01-01T00:30:00Z");
    let late = t("2024-01-01T02:00:00Z");
    let mut obs = healthy();
    let v = token_issued(&obs, at);
    assert_eq!((v.ok, v.reason), (true, reasons::TOKEN_ISSUED));
    assert_eq!(
        v.message,
        "token valid until 2024-01-01T01:00:00Z, renewal at 2024-01-01T00:45:00Z"
    );
    obs.token_failure = Some(failure("Throttled", "slow down"));
    let v = token_issued(&obs, at);
    assert_eq!((v.ok, v.reason), (true, reasons::RENEWAL_FAILING));
    assert!(v.message.starts_with("Degraded: "), "{v:?}");
    let v = token_issued(&obs, late);
    assert_eq!((v.ok, v.reason), (false, reasons::TOKEN_EXPIRED));
    assert!(v.message.ends_with(": slow down"), "{v:?}");
    obs.token = None;
    let v = token_issued(&obs, at);
    assert_eq!(
        v,
        Verdict::new(false, reasons::TOKEN_REQUEST_FAILED, "slow down".into())
    );
    obs.token_failure = None;
    assert_eq!(token_issued(&obs, at).reason, reasons::PROGRESSING);
}

#[test]
fn secrets_synced_counts_and_names_the_first_failure_reason() {
    let mut obs = healthy();
    let v = secrets_synced(&obs);
    assert_eq!((v.ok, v.reason), (true, reasons::SECRETS_SYNCED));
    assert_eq!(v.message, "2/2 namespaces hold the current pull Secret");
    obs.namespaces_synced = 1;
    let v = secrets_synced(&obs);
    assert_eq!((v.ok, v.reason), (false, reasons::PROGRESSING));
    obs.namespace_failures = vec![ns_failure("b", "Forbidden")];
    let v = secrets_synced(&obs);
    assert_eq!((v.ok, v.reason), (false, reasons::SECRET_SYNC_FAILED));
    assert_eq!(v.message, "1/2 namespaces synced; b: went wrong");
    obs.namespace_failures = (0..5)
        .map(|i| ns_failure(&format!("n{i}"), reasons::SECRET_OWNED_BY_OTHERS))
        .collect();
    let v = secrets_synced(&obs);
    assert_eq!(v.reason, reasons::SECRET_OWNED_BY_OTHERS);
    assert!(v.message.ends_with("(and 2 more)"), "{v:?}");
    // Nothing selected: fine, unless what was selected is forbidden.
    obs.namespaces_selected = 0;
    obs.namespaces_synced = 0;
    obs.namespace_failures = vec![ns_failure("c", reasons::NAMESPACE_NOT_ALLOWED)];
    let v = secrets_synced(&obs);
    assert_eq!((v.ok, v.reason), (false, reasons::NAMESPACE_NOT_ALLOWED));
    assert!(v.message.starts_with("no usable namespace: c: "));
    obs.namespace_failures.clear();
    let v = secrets_synced(&obs);
    assert_eq!((v.ok, v.reason), (true, reasons::NO_NAMESPACES_SELECTED));
}

#[test]
fn service_accounts_bound_counts_and_names_the_first_failure() {
    let mut obs = healthy();
    let v = service_accounts_bound(&obs);
    assert_eq!((v.ok, v.reason), (true, reasons::SERVICE_ACCOUNTS_BOUND));
    assert_eq!(v.message, "2/2 ServiceAccounts reference the pull Secret");
    obs.service_accounts_bound = 1;
    let v = service_accounts_bound(&obs);
    assert_eq!((v.ok, v.reason), (false, reasons::PROGRESSING));
    obs.service_account_failures = vec!["a/default: conflict".into()];
    let v = service_accounts_bound(&obs);
    assert_eq!(
        v,
        Verdict::new(
            false,
            reasons::SERVICE_ACCOUNT_PATCH_FAILED,
            "1/2 ServiceAccounts bound; a/default: conflict".into()
        )
    );
    // A failure is reported even when the counts add up.
    obs.service_accounts_bound = 2;
    assert!(!service_accounts_bound(&obs).ok);
}

#[test]
fn ready_is_explained_by_the_first_condition_that_is_not_true() {
    let obs = healthy();
    let yes = |reason| Verdict::new(true, reason, format!("{reason} message"));
    let no = |reason| Verdict::new(false, reason, format!("{reason} message"));
    let (token, secrets, accounts) = (
        yes(reasons::TOKEN_ISSUED),
        yes(reasons::SECRETS_SYNCED),
        yes(reasons::SERVICE_ACCOUNTS_BOUND),
    );
    let v = ready(&obs, &token, &secrets, &accounts);
    assert_eq!((v.ok, v.reason), (true, reasons::RECONCILED));
    assert_eq!(
        v.message,
        "2/2 namespaces and 2/2 ServiceAccounts hold a token valid until 2024-01-01T01:00:00Z"
    );
    let bad_secrets = no(reasons::SECRET_SYNC_FAILED);
    let bad_accounts = no(reasons::SERVICE_ACCOUNT_PATCH_FAILED);
    assert_eq!(
        ready(&obs, &token, &bad_secrets, &bad_accounts),
        bad_secrets
    );
    assert_eq!(ready(&obs, &token, &secrets, &bad_accounts), bad_accounts);
    let bad_token = no(reasons::TOKEN_EXPIRED);
    assert_eq!(ready(&obs, &bad_token, &bad_secrets, &accounts), bad_token);
    // All True, but worth saying.
    let degraded = yes(reasons::RENEWAL_FAILING);
    assert_eq!(ready(&obs, &degraded, &secrets, &accounts), degraded);
    let mut empty = obs.clone();
    empty.namespaces_selected = 0;
    let none = yes(reasons::NO_NAMESPACES_SELECTED);
    assert_eq!(ready(&empty, &token, &none, &accounts), none);
}

#[test]
fn stalled_only_for_forbidden_namespaces_or_an_unknown_instance_without_a_token() {
    let at = t("2024-01-01T00:30:00Z");
    let mut obs = healthy();
    assert_eq!(stalled(&obs, at), None);
    obs.namespace_failures = vec![
        ns_failure("a", reasons::SECRET_OWNED_BY_OTHERS),
        ns_failure("b", reasons::NAMESPACE_NOT_ALLOWED),
    ];
    assert_eq!(
        stalled(&obs, at),
        Some(Verdict::new(
            true,
            reasons::NAMESPACE_NOT_ALLOWED,
            "b: went wrong".into()
        ))
    );
    obs.namespace_failures.clear();
    obs.token_failure = Some(failure(reasons::NOT_FOUND, "no such instance"));
    // The held token is still valid: not stalled yet.
    assert_eq!(stalled(&obs, at), None);
    obs.token = None;
    assert_eq!(
        stalled(&obs, at).map(|v| v.reason),
        Some(reasons::NOT_FOUND)
    );
}

#[test]
fn reconciling_only_while_progressing_and_not_stalled() {
    let progressing = Verdict::new(false, reasons::PROGRESSING, "no token yet".into());
    assert_eq!(
        reconciling(&progressing, false),
        Some(Verdict::new(
            true,
            reasons::PROGRESSING,
            "no token yet".into()
        ))
    );
    assert_eq!(reconciling(&progressing, true), None);
    let failed = Verdict::new(false, reasons::TOKEN_REQUEST_FAILED, "x".into());
    assert_eq!(reconciling(&failed, false), None);
    let ready = Verdict::new(true, reasons::PROGRESSING, "x".into());
    assert_eq!(reconciling(&ready, false), None);
}

#[test]
fn latest_failure_prefers_the_token_then_namespaces_then_service_accounts() {
    let now = t("2024-01-01T00:30:00Z");
    let mut obs = healthy();
    assert_eq!(latest_failure(&obs, now), None);
    obs.service_account_failures = vec!["a/default: conflict".into()];
    let f = latest_failure(&obs, now).unwrap();
    assert_eq!(f.reason, reasons::SERVICE_ACCOUNT_PATCH_FAILED);
    assert_eq!(f.time, time(now));
    obs.namespace_failures = vec![ns_failure("b", reasons::SECRET_OWNED_BY_OTHERS)];
    let f = latest_failure(&obs, now).unwrap();
    assert_eq!(
        (f.reason.as_str(), f.message.as_str()),
        (reasons::SECRET_OWNED_BY_OTHERS, "b: went wrong")
    );
    obs.token_failure = Some(failure("Throttled", "slow down"));
    let f = latest_failure(&obs, now).unwrap();
    assert_eq!(
        (f.reason.as_str(), f.time),
        ("Throttled", time(t("2024-01-01T00:20:00Z")))
    );
}

#[test]
fn a_repeated_failure_keeps_its_first_time() {
    let obs = BindingObservation {
        token_failure: Some(failure("Throttled", "slow down")),
        ..healthy()
    };
    let first = binding_status(None, &obs, t("2024-01-01T00:30:00Z"));
    let mut later = obs.clone();
    later.token_failure.as_mut().unwrap().at = t("2024-01-01T00:40:00Z");
    let again = binding_status(Some(&first), &later, t("2024-01-01T00:40:00Z"));
    assert_eq!(again.last_failure, first.last_failure);
    later.token_failure.as_mut().unwrap().message = "slower".into();
    let changed = binding_status(Some(&first), &later, t("2024-01-01T00:40:00Z"));
    assert_eq!(
        changed.last_failure.unwrap().time,
        time(t("2024-01-01T00:40:00Z"))
    );
}
