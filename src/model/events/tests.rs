use super::*;
use crate::model::token::{HeldToken, TokenFailure};
use crate::sensitive::Sensitive;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn outcome(activity: Activity) -> TokenOutcome {
    TokenOutcome {
        token: Some(HeldToken {
            username: "cr_temp_user".into(),
            password: Sensitive::new("secret-password".into()),
            issued_at: t("2024-01-01T00:00:00Z"),
            expires_at: t("2024-01-01T01:00:00Z"),
            renew_at: t("2024-01-01T00:45:00Z"),
            domains: vec![],
        }),
        failure: None,
        failures: 0,
        activity,
        next_check: t("2024-01-01T00:45:00Z"),
    }
}

#[test]
fn nothing_done_is_no_event() {
    assert_eq!(
        token_event("cri-1", &outcome(Activity::None), t("2024-01-01T00:10:00Z")),
        None
    );
}

#[test]
fn issued_renewed_and_recovered_are_normal_with_the_times() {
    let now = t("2024-01-01T00:10:00Z");
    let times = "valid until 2024-01-01T01:00:00Z, renewal at 2024-01-01T00:45:00Z";
    let cases = [
        (Activity::Issued, "TokenIssued", "IssueToken", "issued"),
        (Activity::Renewed, "TokenRenewed", "RenewToken", "renewed"),
        (
            Activity::Recovered,
            "TokenRecovered",
            "RenewToken",
            "obtained again after failures",
        ),
    ];
    for (activity, reason, action, verb) in cases {
        let e = token_event("cri-1", &outcome(activity), now).unwrap();
        assert_eq!(
            e,
            Note {
                type_: EventType::Normal,
                reason,
                action,
                note: format!("registry token for cri-1 {verb}, {times}"),
            }
        );
    }
}

#[test]
fn a_failure_is_a_warning_that_says_whether_the_token_still_serves() {
    let mut o = outcome(Activity::Failed);
    o.failures = 3;
    o.failure = Some(TokenFailure {
        at: t("2024-01-01T00:50:00Z"),
        reason: "Throttled",
        message: "slow down".into(),
    });
    let e = token_event("cri-1", &o, t("2024-01-01T00:50:00Z")).unwrap();
    assert_eq!(
        (e.type_, e.reason, e.action),
        (EventType::Warning, "Throttled", "RenewToken")
    );
    assert_eq!(
        e.note,
        "Degraded: the current token stays valid until 2024-01-01T01:00:00Z. registry token request for cri-1 failed (3 in a row): slow down"
    );
    let e = token_event("cri-1", &o, t("2024-01-01T02:00:00Z")).unwrap();
    assert_eq!(
        e.note,
        "registry token request for cri-1 failed (3 in a row): slow down"
    );
    o.failure = None;
    let e = token_event("cri-1", &o, t("2024-01-01T02:00:00Z")).unwrap();
    assert_eq!(e.reason, "TokenRequestFailed");
}

#[test]
fn a_rotation_names_the_request_and_the_new_expiry_and_no_secret() {
    let token = outcome(Activity::Renewed).token.unwrap();
    let e = rotated_event(
        "cri-1",
        "acrcredentials.io/rotation-requested-at=2024-01-01T00:09:00Z on the binding",
        &token,
    );
    assert_eq!(
        (e.type_, e.reason, e.action),
        (EventType::Normal, "TokenRotated", "RotateToken")
    );
    assert_eq!(
        e.note,
        "registry token for cri-1 rotated as requested by acrcredentials.io/rotation-requested-at=2024-01-01T00:09:00Z on the binding, valid until 2024-01-01T01:00:00Z, renewal at 2024-01-01T00:45:00Z"
    );
    assert!(!e.note.contains("secret-password"));
}
