use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;

use super::*;
use crate::cloud::clock::ManualClock;
use crate::cloud::credentials::{SourceConfig, access_key::SecretRef};
use crate::cloud::error::CloudDetail;
use crate::cloud::registry::Registry;
use crate::sensitive::Sensitive;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

struct Fake {
    clock: Arc<ManualClock>,
    calls: AtomicUsize,
    fail: Mutex<bool>,
    lifetime: SignedDuration,
    /// What the last `retain` kept: the credential chains still in use.
    retained: Mutex<Option<Vec<ProviderConfig>>>,
    /// How far the clock moves during a call (the cloud client's inline retries).
    call_time: Mutex<SignedDuration>,
}

impl TokenFetcher for Fake {
    fn token<'a>(
        &'a self,
        _: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<RegistryToken, CloudError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.clock.advance(*self.call_time.lock().unwrap());
            if *self.fail.lock().unwrap() {
                return Err(CloudError::ServerError {
                    detail: CloudDetail {
                        api: "cr:GetAuthorizationToken",
                        status: 503,
                        code: "ServiceUnavailable".into(),
                        message: "down".into(),
                        request_id: Some("RID-1".into()),
                    },
                });
            }
            Ok(RegistryToken {
                username: "cr_temp_user".into(),
                password: Sensitive::new(format!("pw-{n}")),
                expires_at: self.clock.now().checked_add(self.lifetime).unwrap(),
                request_id: None,
            })
        })
    }
    fn domains<'a>(
        &'a self,
        _: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<Vec<String>, CloudError>> {
        Box::pin(async { Ok(vec!["r-registry.cn-hangzhou.cr.aliyuncs.com".to_owned()]) })
    }
    fn retain(&self, live: &[&ProviderConfig]) {
        *self.retained.lock().unwrap() = Some(live.iter().map(|c| (*c).clone()).collect());
    }
}

fn request() -> TokenRequest {
    TokenRequest {
        registry: Registry::Enterprise {
            region: "cn-hangzhou".into(),
            instance_id: "cri-abc".into(),
        },
        provider: ProviderConfig {
            source: SourceConfig::AccessKey(SecretRef {
                namespace: "kube-system".into(),
                name: "ak".into(),
                access_key_id_key: "AccessKeyId".into(),
                access_key_secret_key: "AccessKeySecret".into(),
            }),
            assume_role: None,
        },
        discover_domains: false,
        renew_before: Duration::from_secs(15 * 60),
    }
}

fn setup() -> (Arc<ManualClock>, Arc<Fake>, TokenManager) {
    let clock = ManualClock::new(t("2024-01-01T00:00:00Z"));
    let fake = Arc::new(Fake {
        clock: clock.clone(),
        calls: AtomicUsize::new(0),
        fail: Mutex::new(false),
        lifetime: SignedDuration::from_hours(1),
        retained: Mutex::new(None),
        call_time: Mutex::new(SignedDuration::ZERO),
    });
    let manager = TokenManager::new(fake.clone(), clock.clone()).without_jitter();
    (clock, fake, manager)
}

#[test]
fn renewal_time_is_renew_before_ahead_with_bounded_jitter() {
    let issued = t("2024-01-01T00:00:00Z");
    let exp = t("2024-01-01T01:00:00Z");
    let fifteen = Duration::from_secs(900);
    assert_eq!(
        renew_at(issued, exp, fifteen, 0.0),
        t("2024-01-01T00:45:00Z")
    );
    assert_eq!(
        renew_at(issued, exp, fifteen, 1.0),
        t("2024-01-01T00:44:30Z")
    );
    // renewBefore at or above the lifetime: halfway.
    assert_eq!(
        renew_at(issued, exp, Duration::from_secs(3600), 0.5),
        t("2024-01-01T00:30:00Z")
    );
    // Small renewBefore: jitter at most a tenth of it.
    assert_eq!(
        renew_at(issued, exp, Duration::from_secs(60), 1.0),
        t("2024-01-01T00:58:54Z")
    );
}

#[test]
fn retry_delay_doubles_and_stays_well_below_time_left() {
    assert_eq!(retry_delay(1, None), Duration::from_secs(5));
    assert_eq!(retry_delay(2, None), Duration::from_secs(10));
    assert_eq!(retry_delay(10, None), MAX_RETRY);
    assert_eq!(
        retry_delay(10, Some(Duration::from_secs(120))),
        Duration::from_secs(30)
    );
    assert_eq!(
        retry_delay(10, Some(Duration::from_secs(2))),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn concurrent_demands_share_one_cloud_call() {
    let (_clock, fake, manager) = setup();
    let manager = Arc::new(manager);
    let req = request();
    let outcomes = futures::future::join_all((0..10).map(|_| {
        let m = manager.clone();
        let r = req.clone();
        async move { m.get(&r).await }
    }))
    .await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    assert!(
        outcomes
            .iter()
            .all(|o| o.token.as_ref().unwrap().password.expose() == "pw-0")
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| o.activity == Activity::Issued)
            .count(),
        1
    );
}

#[tokio::test]
async fn renews_when_due_and_not_before() {
    let (clock, fake, manager) = setup();
    let req = request();
    let first = manager.get(&req).await;
    assert_eq!(first.next_check, t("2024-01-01T00:45:00Z"));
    clock.advance(SignedDuration::from_mins(44));
    assert_eq!(manager.get(&req).await.activity, Activity::None);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    clock.advance(SignedDuration::from_mins(1));
    let renewed = manager.get(&req).await;
    assert_eq!(renewed.activity, Activity::Renewed);
    assert_eq!(renewed.token.unwrap().password.expose(), "pw-1");
}

#[tokio::test]
async fn failures_back_off_serve_the_last_token_and_recover() {
    let (clock, fake, manager) = setup();
    let req = request();
    manager.get(&req).await;
    *fake.fail.lock().unwrap() = true;
    clock.advance(SignedDuration::from_mins(45));
    let failed = manager.get(&req).await;
    assert_eq!(failed.activity, Activity::Failed);
    assert_eq!(failed.token.as_ref().unwrap().password.expose(), "pw-0");
    let failure = failed.failure.unwrap();
    assert!(
        failure.message.contains("ServiceUnavailable"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("RID-1"), "{}", failure.message);
    assert_eq!(failed.next_check, t("2024-01-01T00:45:05Z"));
    // Before the retry is due: no call.
    clock.advance(SignedDuration::from_secs(2));
    assert_eq!(manager.get(&req).await.activity, Activity::None);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    clock.advance(SignedDuration::from_secs(3));
    assert_eq!(manager.get(&req).await.failures, 2);
    *fake.fail.lock().unwrap() = false;
    clock.advance(SignedDuration::from_secs(10));
    let recovered = manager.get(&req).await;
    assert_eq!(recovered.activity, Activity::Recovered);
    assert!(recovered.failure.is_none());
    assert_eq!(recovered.token.unwrap().password.expose(), "pw-3");
}

#[tokio::test]
async fn the_backoff_counts_from_the_failure_not_from_the_start_of_the_call() {
    let (clock, fake, manager) = setup();
    let req = request();
    *fake.fail.lock().unwrap() = true;
    // The call (with the client's inline retries) takes 4 s of the 5 s first backoff.
    *fake.call_time.lock().unwrap() = SignedDuration::from_secs(4);
    let failed = manager.get(&req).await;
    assert_eq!(failed.activity, Activity::Failed);
    assert_eq!(failed.next_check, t("2024-01-01T00:00:09Z"));
    *fake.call_time.lock().unwrap() = SignedDuration::ZERO;
    clock.advance(SignedDuration::from_secs(1));
    assert_eq!(manager.get(&req).await.activity, Activity::None);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn once_the_token_expired_the_backoff_starts_again_from_the_base() {
    let (clock, fake, manager) = setup();
    let req = request();
    manager.get(&req).await;
    *fake.fail.lock().unwrap() = true;
    // Failing renewals until the 1 h token expires: the retries come ever faster (a quarter of
    // what is left), so the failures pile up.
    clock.advance(SignedDuration::from_mins(45));
    let mut last = manager.get(&req).await;
    while clock.now() < t("2024-01-01T01:00:00Z") {
        clock.set(last.next_check);
        last = manager.get(&req).await;
    }
    assert!(last.failures > 8, "{}", last.failures);
    // The attempt at expiry was the first without a valid token: 5 s, then 10 s, then 20 s
    // apart, not the 300 s cap the earlier failures would give.
    let mut steps = Vec::new();
    while steps.len() < 3 {
        let step = last.next_check.duration_since(clock.now()).as_secs();
        if step > 0 {
            steps.push(step);
        }
        clock.set(last.next_check);
        last = manager.get(&req).await;
    }
    assert_eq!(steps, vec![5, 10, 20]);
}

#[tokio::test]
async fn expired_token_is_reported_as_such() {
    let (clock, fake, manager) = setup();
    let req = request();
    manager.get(&req).await;
    *fake.fail.lock().unwrap() = true;
    clock.advance(SignedDuration::from_mins(61));
    let out = manager.get(&req).await;
    assert!(!out.token.unwrap().valid_at(clock.now()));
    assert!(out.failure.is_some());
}

#[tokio::test]
async fn domains_are_discovered_once() {
    let (_clock, _fake, manager) = setup();
    let mut req = request();
    req.discover_domains = true;
    let out = manager.get(&req).await;
    assert_eq!(
        out.token.unwrap().domains,
        ["r-registry.cn-hangzhou.cr.aliyuncs.com"]
    );
}

#[test]
fn the_chain_key_names_the_chain_without_secrets() {
    let mut req = request();
    assert_eq!(
        req.key().chain,
        "accessKey:kube-system/ak:AccessKeyId:AccessKeySecret"
    );
    req.provider.assume_role = Some(crate::cloud::credentials::AssumeRoleConfig {
        role_arn: "acs:ram::1:role/r".into(),
        session_name: "s".into(),
        external_id: None,
        duration: Duration::from_secs(3600),
    });
    assert_eq!(
        req.key().chain,
        "accessKey:kube-system/ak:AccessKeyId:AccessKeySecret+assumeRole:acs:ram::1:role/r:s::3600s"
    );
}

#[tokio::test]
async fn an_adopted_token_is_served_until_renewal_is_due() {
    let (clock, fake, manager) = setup();
    let req = request();
    let token = RegistryToken {
        username: "cr_temp_user".into(),
        password: Sensitive::new("from-secret".into()),
        expires_at: t("2024-01-01T00:30:00Z"),
        request_id: None,
    };
    assert!(
        manager
            .adopt(&req, token.clone(), t("2023-12-31T23:30:00Z"), None)
            .await
    );
    assert!(
        !manager
            .adopt(&req, token, t("2023-12-31T23:30:00Z"), None)
            .await,
        "only when empty"
    );
    let out = manager.get(&req).await;
    assert_eq!(out.activity, Activity::None);
    assert_eq!(out.token.unwrap().password.expose(), "from-secret");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    clock.advance(SignedDuration::from_mins(15));
    assert_eq!(manager.get(&req).await.activity, Activity::Renewed);
}

#[tokio::test]
async fn an_adopted_token_living_longer_than_any_token_can_is_refused() {
    let (_clock, fake, manager) = setup();
    let req = request();
    let forged = RegistryToken {
        username: "cr_temp_user".into(),
        password: Sensitive::new("forged".into()),
        expires_at: t("2100-01-01T00:00:00Z"),
        request_id: None,
    };
    assert!(
        !manager
            .adopt(&req, forged, t("2023-12-31T23:30:00Z"), None)
            .await,
        "a token valid until 2100 was adopted"
    );
    // Issued "in the future": not a token this controller obtained.
    let early = RegistryToken {
        username: "cr_temp_user".into(),
        password: Sensitive::new("early".into()),
        expires_at: t("2024-01-01T00:30:00Z"),
        request_id: None,
    };
    assert!(
        !manager
            .adopt(&req, early, t("2024-01-01T00:10:00Z"), None)
            .await,
        "a token issued after now was adopted"
    );
    // Nothing adopted: the cloud is asked.
    let out = manager.get(&req).await;
    assert_eq!(out.activity, Activity::Issued);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_no_live_binding_uses_is_forgotten_with_its_credentials() {
    let (_clock, fake, manager) = setup();
    let first = request();
    let mut second = request();
    second.registry = Registry::Personal {
        region: "cn-beijing".into(),
    };
    if let SourceConfig::AccessKey(r) = &mut second.provider.source {
        r.name = "other-ak".into();
    }
    manager.get(&first).await;
    manager.get(&second).await;
    assert_eq!(manager.len(), 2);

    // The last binding using `second` is gone: only `first` stays, token and credentials.
    manager.retain(std::slice::from_ref(&first));
    assert_eq!(manager.len(), 1);
    assert!(manager.holds(&first.key()).await);
    assert_eq!(
        fake.retained.lock().unwrap().clone(),
        Some(vec![first.provider.clone()])
    );
    // Asking again for the forgotten one costs a new cloud call (nothing stale is served).
    let calls = fake.calls.load(Ordering::SeqCst);
    manager.get(&second).await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), calls + 1);

    // No binding at all: nothing is held.
    manager.retain(&[]);
    assert!(manager.is_empty());
}

#[test]
fn one_chain_key_tells_every_credential_chain_apart() {
    use crate::cloud::credentials::AssumeRoleConfig;
    let rrsa = |file: &str, session: &str| ProviderConfig {
        source: SourceConfig::Rrsa {
            role_arn: "acs:ram::1:role/r".into(),
            oidc_provider_arn: "acs:ram::1:oidc-provider/p".into(),
            token_file: file.into(),
            session_name: session.into(),
        },
        assume_role: None,
    };
    let base = rrsa("/t", "s");
    assert_eq!(chain_key(&base), chain_key(&rrsa("/t", "s")));
    assert_ne!(chain_key(&base), chain_key(&rrsa("/other", "s")));
    assert_ne!(chain_key(&base), chain_key(&rrsa("/t", "other")));
    let hop = |session: &str| ProviderConfig {
        assume_role: Some(AssumeRoleConfig {
            role_arn: "acs:ram::2:role/x".into(),
            session_name: session.into(),
            external_id: None,
            duration: std::time::Duration::from_secs(3600),
        }),
        ..rrsa("/t", "s")
    };
    assert_ne!(chain_key(&hop("a")), chain_key(&hop("b")));
    assert_ne!(chain_key(&hop("a")), chain_key(&base));
}

#[tokio::test]
async fn a_rotation_obtains_a_fresh_token_once_per_request_and_key() {
    let (_clock, fake, manager) = setup();
    let manager = Arc::new(manager);
    let req = request();
    let first = manager.get(&req).await;
    assert_eq!(first.token.unwrap().password.expose(), "pw-0");
    // Renewal is not due, yet a rotation asks the cloud; concurrent callers with the same
    // request (the bindings of one policy sharing the token) share that one call.
    let ids = vec!["policy/p/2026-01-01T00:00:00Z".to_owned()];
    let outcomes = futures::future::join_all((0..5).map(|_| {
        let (m, r, ids) = (manager.clone(), req.clone(), ids.clone());
        async move { m.rotate(&r, &ids).await }
    }))
    .await;
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    for (o, answered) in &outcomes {
        assert!(answered);
        assert_eq!(o.token.as_ref().unwrap().password.expose(), "pw-1");
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|(o, _)| o.activity == Activity::Renewed)
            .count(),
        1
    );
    // The same request again: answered, no call. A plain get serves the new token.
    let (again, answered) = manager.rotate(&req, &ids).await;
    assert!(answered);
    assert_eq!(again.activity, Activity::None);
    assert_eq!(
        manager.get(&req).await.token.unwrap().password.expose(),
        "pw-1"
    );
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    // A request it does not answer yet (with one it does): a new call.
    let more = vec![ids[0].clone(), "binding/uid/x".to_owned()];
    let (o, answered) = manager.rotate(&req, &more).await;
    assert!(answered);
    assert_eq!(o.token.unwrap().password.expose(), "pw-2");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_rotation_answers_nothing_and_waits_for_its_retry() {
    let (clock, fake, manager) = setup();
    let req = request();
    manager.get(&req).await;
    *fake.fail.lock().unwrap() = true;
    let ids = vec!["binding/uid/a".to_owned()];
    let (o, answered) = manager.rotate(&req, &ids).await;
    assert!(!answered);
    assert_eq!(o.activity, Activity::Failed);
    // The last good token still serves.
    assert_eq!(o.token.unwrap().password.expose(), "pw-0");
    // Before the retry is due: no call, still not answered.
    let (o, answered) = manager.rotate(&req, &ids).await;
    assert!(!answered);
    assert_eq!(o.activity, Activity::None);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
    *fake.fail.lock().unwrap() = false;
    clock.advance(SignedDuration::from_secs(10));
    let (o, answered) = manager.rotate(&req, &ids).await;
    assert!(answered);
    assert_eq!(o.activity, Activity::Recovered);
    assert_eq!(o.token.unwrap().password.expose(), "pw-2");
}
