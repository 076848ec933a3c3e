//! The `acr-credential-provider` binary driven as the kubelet drives it: a
//! `CredentialProviderRequest` on stdin, the response parsed with the kubelet's field names,
//! against the strict fake cloud (node RAM role via ECS metadata, per-Pod ServiceAccount tokens
//! through `AssumeRoleWithOIDC`, Enterprise and Personal registries, custom domains, outages).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;
mod provider_common;

use std::time::Duration;

use acr_fake_cloud::{FakeCloud, FakeHandle, OutageMode, Scenario};
use cloud_common::{ISSUER, fixture, oidc_token};
use provider_common::{Outcome, go_duration, request, run_plugin, run_plugin_logging};

const ACCOUNT: &str = "1111111111111111";
const PARTNER: &str = "2222222222222222";
const PROVIDER_ARN: &str = "acs:ram::1111111111111111:oidc-provider/ack-rrsa-test";
const TEAM_A: &str = "system:serviceaccount:team-a:puller";
const TEAM_B: &str = "system:serviceaccount:team-b:puller";
const EE_HOST: &str = "myreg-registry.cn-hangzhou.cr.aliyuncs.com";
const EE_VPC_HOST: &str = "myreg-registry-vpc.cn-hangzhou.cr.aliyuncs.com";
const CUSTOM_HOST: &str = "images.example.com";
const TEAM_B_HOST: &str = "teamb-registry.cn-hangzhou.cr.aliyuncs.com";
const PERSONAL_HOST: &str = "registry.cn-hangzhou.aliyuncs.com";
const PARTNER_HOST: &str = "partner-registry.cn-shanghai.cr.aliyuncs.com";
const ROLE_ARN_KEY: &str = "acrcredentials.io/role-arn";
const ROLE_NAME_KEY: &str = "pod-identity.alibabacloud.com/role-name";

fn scenario() -> Scenario {
    let yaml = format!(
        r#"
region: cn-hangzhou
accounts:
  - id: "{ACCOUNT}"
    roles:
      - name: node-role
        permissions: ["cr:GetAuthorizationToken", "sts:AssumeRole"]
      - name: team-a-puller
        permissions: ["cr:GetAuthorizationToken:cri-test1", "cr:GetAuthorizationToken:personal"]
        trust: {{oidc: [{{provider: ack-rrsa-test, subjects: ["{TEAM_A}"]}}]}}
      - name: team-b-puller
        permissions: ["cr:GetAuthorizationToken:cri-teamb"]
        trust: {{oidc: [{{provider: ack-rrsa-test, subjects: ["{TEAM_B}"]}}]}}
    oidcProviders:
      - {{name: ack-rrsa-test, issuer: "{ISSUER}", clientIds: [sts.aliyuncs.com], publicKeyFiles: ["{key}"]}}
    instances:
      - id: cri-test1
        name: myreg
        region: cn-hangzhou
        endpoints:
          - {{type: internet, domains: [{{domain: {EE_HOST}}}, {{domain: {CUSTOM_HOST}, type: USER}}]}}
          - {{type: vpc, domains: [{{domain: {EE_VPC_HOST}}}]}}
      - {{id: cri-teamb, name: teamb, region: cn-hangzhou}}
  - id: "{PARTNER}"
    roles:
      - name: partner-puller
        permissions: ["cr:GetAuthorizationToken:cri-partner"]
        trust: {{principals: ["acs:ram::{ACCOUNT}:root"], externalId: ext-123}}
    instances:
      - {{id: cri-partner, name: partner, region: cn-shanghai}}
metadata: {{account: "{ACCOUNT}", roleName: node-role, hardened: true}}
"#,
        key = fixture("rrsa-test-key.pub.pem")
    );
    Scenario::from_str_resolved(&yaml).unwrap()
}

const REGISTRIES: &str = "registries:
  - {instanceId: cri-test1, instanceName: myreg, domains: [images.example.com]}
  - {instanceId: cri-teamb, instanceName: teamb}
";

fn config(fake: &FakeCloud, source: &str, extra: &str) -> String {
    let base = fake.base_url().as_str().trim_end_matches('/');
    format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialProviderConfig\nregion: cn-hangzhou\n\
         source: {source}\n{REGISTRIES}endpoints: {{sts: '{base}', cr: '{base}', metadata: '{base}'}}\n{extra}"
    )
}

fn node_config(fake: &FakeCloud) -> String {
    config(fake, "{workerRole: {}}", "")
}

fn pod_config(fake: &FakeCloud, extra: &str) -> String {
    config(
        fake,
        &format!("{{rrsa: {{oidcProviderArn: '{PROVIDER_ARN}'}}}}"),
        extra,
    )
}

fn image(host: &str) -> String {
    format!("{host}/team/app:v1")
}

fn token(sub: &str) -> String {
    oidc_token(sub, "sts.aliyuncs.com", ISSUER, 3600)
}

/// Checks a successful answer for `host` and returns (password, cache duration): one auth
/// entry keyed by the host, a registry token the fake issued, cached per registry, and the
/// token still valid at the end of the cache period (by the fake's own clock) but not long
/// after its real expiry.
fn check_credentials(out: &Outcome, handle: &FakeHandle, host: &str) -> (String, Duration) {
    let r = out.response();
    assert_eq!(r.cache_key_type, "Registry");
    let auth = r.auth.as_ref().expect("auth");
    assert_eq!(auth.keys().collect::<Vec<_>>(), [host]);
    let login = &auth[host];
    assert_eq!(login.username, "cr_temp_user");
    assert!(
        handle.registry_token_valid(&login.password),
        "the fake issued this password"
    );
    let cache =
        go_duration(r.cache_duration.as_deref().expect("cacheDuration")).expect("Go duration");
    assert!(cache > Duration::ZERO, "{r:?}");
    // The kubelet may use the cached login until the cache period ends: it must still work then.
    let offset = |d: Duration| jiff::SignedDuration::try_from(d).unwrap();
    handle.set_clock_offset(offset(cache + out.elapsed + Duration::from_secs(1)));
    let valid_at_end = handle.registry_token_valid(&login.password);
    handle.set_clock_offset(offset(cache + Duration::from_secs(20 * 60)));
    let valid_much_later = handle.registry_token_valid(&login.password);
    handle.set_clock_offset(jiff::SignedDuration::ZERO);
    assert!(valid_at_end, "cacheDuration {cache:?} outlives the token");
    assert!(
        !valid_much_later,
        "cacheDuration {cache:?} is not derived from the token's expiry"
    );
    assert!(!out.stderr.contains(&login.password), "password on stderr");
    (login.password.clone(), cache)
}

#[tokio::test]
async fn node_identity_serves_enterprise_custom_and_personal_hosts() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let handle = fake.handle();
    let cfg = node_config(&fake);
    for host in [
        EE_HOST,
        EE_VPC_HOST,
        CUSTOM_HOST,
        PERSONAL_HOST,
        TEAM_B_HOST,
    ] {
        let out = run_plugin(&cfg, &request(&image(host), None, &[])).await;
        let (_, cache) = check_credentials(&out, &handle, host);
        // 1 h tokens, 10 min margin.
        assert!(
            (Duration::from_secs(2990)..=Duration::from_secs(3000)).contains(&cache),
            "{host}: {cache:?}"
        );
    }
    let log = handle.log();
    let tokens: Vec<_> = log
        .iter()
        .filter(|e| e.api.ends_with("GetAuthorizationToken"))
        .collect();
    assert_eq!(tokens.len(), 5, "{log:#?}");
    assert!(tokens.iter().all(|e| e.status == 200
        && e.identity.as_deref() == Some("acs:ram::1111111111111111:role/node-role")));
    assert_eq!(handle.count_ok("cr-personal:GetAuthorizationToken"), 1);
}

#[tokio::test]
async fn node_identity_with_an_assume_role_hop_into_another_account() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let handle = fake.handle();
    let hop = format!(
        "assumeRole: {{roleArn: 'acs:ram::{PARTNER}:role/partner-puller', externalId: ext-123}}\n"
    );
    let cfg = node_config(&fake).replace(
        REGISTRIES,
        "registries: [{instanceId: cri-partner, instanceName: partner, region: cn-shanghai}]\n",
    ) + &hop;
    let out = run_plugin(&cfg, &request(&image(PARTNER_HOST), None, &[])).await;
    check_credentials(&out, &handle, PARTNER_HOST);
    assert_eq!(handle.count_ok("sts:AssumeRole"), 1);
    // Without the external id the partner's trust policy refuses the hop.
    let cfg = cfg.replace(", externalId: ext-123", "");
    let out = run_plugin(&cfg, &request(&image(PARTNER_HOST), None, &[])).await;
    assert!(out.error().contains("NoPermission"), "{}", out.stderr);
}

#[tokio::test]
async fn pod_identity_uses_each_service_accounts_own_role() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let handle = fake.handle();
    let cfg = pod_config(&fake, "");
    let team_a = token(TEAM_A);
    let team_b = token(TEAM_B);
    let a_role = format!("acs:ram::{ACCOUNT}:role/team-a-puller");

    for (host, annotation) in [
        (EE_HOST, (ROLE_ARN_KEY, a_role.as_str())),
        (CUSTOM_HOST, (ROLE_NAME_KEY, "team-a-puller")),
        (PERSONAL_HOST, (ROLE_NAME_KEY, "team-a-puller")),
    ] {
        let out = run_plugin(&cfg, &request(&image(host), Some(&team_a), &[annotation])).await;
        check_credentials(&out, &handle, host);
        assert!(!out.stderr.contains(&team_a), "token on stderr");
    }
    let oidc: Vec<_> = handle
        .log()
        .into_iter()
        .filter(|e| e.api == "sts:AssumeRoleWithOIDC")
        .collect();
    assert_eq!(oidc.len(), 3);
    let team_a_identity = format!("oidc:{TEAM_A}");
    assert!(
        oidc.iter()
            .all(|e| e.status == 200 && e.identity.as_deref() == Some(team_a_identity.as_str())),
        "{oidc:#?}"
    );
    let pulls: Vec<_> = handle
        .log()
        .into_iter()
        .filter(|e| e.api.ends_with("GetAuthorizationToken"))
        .collect();
    assert!(
        pulls
            .iter()
            .all(|e| e.identity.as_deref() == Some(a_role.as_str())),
        "{pulls:#?}"
    );

    // Team B's own role may pull team B's registry (with debug logs: still no secret) ...
    let b = [(ROLE_NAME_KEY, "team-b-puller")];
    let out = run_plugin_logging(
        &cfg,
        &request(&image(TEAM_B_HOST), Some(&team_b), &b),
        Some("debug"),
    )
    .await;
    check_credentials(&out, &handle, TEAM_B_HOST);
    assert!(
        out.stderr.contains("issued registry credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(&team_b), "token in the debug log");
    // The fake's STS security tokens start with CAIS, as the real ones do.
    assert!(
        !out.stderr.contains("CAIS"),
        "security token in the debug log"
    );
    // ... but not team A's,
    let out = run_plugin(&cfg, &request(&image(EE_HOST), Some(&team_b), &b)).await;
    assert!(out.error().contains("NoPrivilege"), "{}", out.stderr);
    // and team B's token cannot assume team A's role.
    let out = run_plugin(
        &cfg,
        &request(
            &image(EE_HOST),
            Some(&team_b),
            &[(ROLE_NAME_KEY, "team-a-puller")],
        ),
    )
    .await;
    let e = out.error();
    assert!(e.contains("NoPermission") && e.contains("trust"), "{e}");
    assert!(!e.contains(&team_b), "token on stderr");
}

#[tokio::test]
async fn pod_identity_cache_follows_a_short_sts_session() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let handle = fake.handle();
    let cfg = pod_config(&fake, "").replace(
        &format!("oidcProviderArn: '{PROVIDER_ARN}'"),
        &format!("oidcProviderArn: '{PROVIDER_ARN}', duration: 15m"),
    );
    let out = run_plugin(
        &cfg,
        &request(
            &image(EE_HOST),
            Some(&token(TEAM_A)),
            &[(ROLE_NAME_KEY, "team-a-puller")],
        ),
    )
    .await;
    // The registry token lives only as long as the 15 min STS session; half of it is the margin.
    let (_, cache) = check_credentials(&out, &handle, EE_HOST);
    assert!(
        (Duration::from_secs(440)..=Duration::from_secs(450)).contains(&cache),
        "{cache:?}"
    );
}

#[tokio::test]
async fn pod_identity_refuses_expired_and_wrong_audience_tokens() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let cfg = pod_config(&fake, "");
    let role = [(ROLE_NAME_KEY, "team-a-puller")];
    let cases = [
        (
            oidc_token(TEAM_A, "sts.aliyuncs.com", ISSUER, -60),
            "AuthenticationFail.OIDCToken.Expired",
        ),
        (
            oidc_token(TEAM_A, "my-registry-audience", ISSUER, 3600),
            "AuthenticationFail.OIDCToken.AudienceNotMatch",
        ),
        (
            oidc_token(TEAM_A, "sts.aliyuncs.com", "https://other.example", 3600),
            "AuthenticationFail.OIDCToken.IssuerNotMatch",
        ),
    ];
    for (token, code) in cases {
        let out = run_plugin(&cfg, &request(&image(EE_HOST), Some(&token), &role)).await;
        let e = out.error();
        assert!(e.contains(code) && e.contains("audience"), "{e}");
        assert!(!e.contains(&token), "token on stderr");
    }
    assert_eq!(fake.handle().count_ok("sts:AssumeRoleWithOIDC"), 0);
    assert_eq!(fake.handle().count("cr:GetAuthorizationToken"), 0);
}

#[tokio::test]
async fn source_mismatches_are_explained() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let t = token(TEAM_A);
    let pod = pod_config(&fake, "");
    let out = run_plugin(&pod, &request(&image(EE_HOST), None, &[])).await;
    assert!(out.error().contains("tokenAttributes"), "{}", out.stderr);
    let out = run_plugin(&pod, &request(&image(EE_HOST), Some(&t), &[])).await;
    let e = out.error();
    assert!(e.contains(ROLE_ARN_KEY) && e.contains(ROLE_NAME_KEY), "{e}");
    let out = run_plugin(
        &pod,
        &request(
            &image(EE_HOST),
            Some(&t),
            &[(ROLE_ARN_KEY, "team-a-puller")],
        ),
    )
    .await;
    assert!(
        out.error().contains("must be a RAM role ARN"),
        "{}",
        out.stderr
    );
    let node = node_config(&fake);
    let out = run_plugin(&node, &request(&image(EE_HOST), Some(&t), &[])).await;
    let e = out.error();
    assert!(e.contains("source.workerRole") && !e.contains(&t), "{e}");
    assert_eq!(
        fake.handle().log().len(),
        0,
        "no cloud call for a refused request"
    );
}

#[tokio::test]
async fn images_the_plugin_must_not_answer_for() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let cfg = node_config(&fake);
    for img in [
        "nginx",
        "library/nginx:1.27",
        "docker.io/library/nginx:1.27",
        "ghcr.io/org/app@sha256:0123",
        "registry.cn-hangzhou.aliyuncs.com.evil.com/team/app",
        "images.example.com.evil.com/team/app",
        "oss-cn-hangzhou.aliyuncs.com/bucket/x",
    ] {
        let r = run_plugin(&cfg, &request(img, None, &[])).await.response();
        assert!(r.auth.is_none(), "{img}: {r:?}");
        assert_eq!(r.cache_duration.as_deref(), Some("0s"), "{img}");
    }
    // Personal Edition can be switched off.
    let off = format!("{cfg}personalEdition: false\n");
    let r = run_plugin(&off, &request(&image(PERSONAL_HOST), None, &[]))
        .await
        .response();
    assert!(r.auth.is_none());
    assert_eq!(
        fake.handle().log().len(),
        0,
        "no cloud call for foreign images"
    );

    // ACR hosts it cannot serve are errors that say what to do.
    let out = run_plugin(
        &cfg,
        &request(
            &image("other-registry.cn-hangzhou.cr.aliyuncs.com"),
            None,
            &[],
        ),
    )
    .await;
    assert!(
        out.error().contains("add it to registries"),
        "{}",
        out.stderr
    );
    let out = run_plugin(
        &cfg,
        &request(
            &image("crpi-abc123.cn-hangzhou.personal.cr.aliyuncs.com"),
            None,
            &[],
        ),
    )
    .await;
    assert!(out.error().contains("imagePullSecret"), "{}", out.stderr);
}

#[tokio::test]
async fn cloud_down_fails_clearly_within_the_time_budget() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let handle = fake.handle();
    let cfg = format!("{}timeout: 2s\n", node_config(&fake));

    handle.outage(Duration::from_secs(120), OutageMode::Hang);
    let out = run_plugin(&cfg, &request(&image(EE_HOST), None, &[])).await;
    let e = out.error();
    assert!(e.contains("within the 2s budget"), "{e}");
    assert!(
        out.elapsed < Duration::from_millis(3500),
        "took {:?}",
        out.elapsed
    );

    handle.clear_faults();
    handle.outage(Duration::from_secs(120), OutageMode::Unavailable);
    let out = run_plugin(&cfg, &request(&image(EE_HOST), None, &[])).await;
    let e = out.error();
    // The metadata service answers in plain text: the status is all there is to report.
    assert!(
        e.contains("ecs:metadata failed") && e.contains("503") && e.contains("workerRole"),
        "{e}"
    );
    assert!(
        out.elapsed < Duration::from_millis(3500),
        "took {:?}",
        out.elapsed
    );

    // Only the registry API down: the error names the step that failed.
    handle.clear_faults();
    handle.fail("cr:GetAuthorizationToken", 503, "ServiceUnavailable", None);
    let out = run_plugin(&cfg, &request(&image(EE_HOST), None, &[])).await;
    let e = out.error();
    assert!(
        e.contains("cr:GetAuthorizationToken") && e.contains("cri-test1"),
        "{e}"
    );
}

#[tokio::test]
async fn malformed_requests_and_configurations() {
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let cfg = node_config(&fake);
    let canary = "CANARY-eyJhbGciOiJSUzI1NiJ9-secret";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "stdin is empty"),
        (b"not json".to_vec(), "not JSON"),
        (format!("{{\"serviceAccountToken\":\"{canary}\"").into_bytes(), "not JSON"),
        (br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v2","kind":"CredentialProviderRequest","image":"a.b/c"}"#.to_vec(), "apiVersion"),
        (br#"{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}"#.to_vec(), "field image is required"),
        (format!(r#"{{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"a.b/c","serviceAccountToken":{{"t":"{canary}"}}}}"#).into_bytes(), "serviceAccountToken must be a string"),
    ];
    for (input, expected) in cases {
        let out = run_plugin(&cfg, &input).await;
        let e = out.error();
        assert!(
            e.contains("malformed CredentialProviderRequest") && e.contains(expected),
            "{e}"
        );
        assert!(!e.contains(canary), "{e}");
    }
    let bad = cfg.replace("instanceId: cri-teamb", "instanceId: teamb");
    let out = run_plugin(&bad, &request(&image(EE_HOST), None, &[])).await;
    assert!(
        out.error()
            .contains("configuration registries[1].instanceId"),
        "{}",
        out.stderr
    );
    let bad = cfg.replace("source: {workerRole: {}}", "source: {workerRoles: {}}");
    let out = run_plugin(&bad, &request(&image(EE_HOST), None, &[])).await;
    assert!(
        out.error().contains("unknown field `workerRoles`"),
        "{}",
        out.stderr
    );
    assert_eq!(fake.handle().log().len(), 0);
}

/// A node whose clock runs 12 minutes behind (within the 15 minutes the cloud accepts), a
/// 60-minute token and the default 10-minute margin: the kubelet is told to cache the login
/// for at most the token's real remaining life, as the cloud counts it (the node's clock
/// alone would say 72 minutes left and a cacheDuration of 62).
#[tokio::test]
async fn cache_duration_follows_the_cloud_clock_not_the_node_clock() {
    use acr_credential_controller::cloud::clock::OffsetClock;
    use acr_credential_controller::provider;
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let cfg = provider::config::parse(&node_config(&fake)).unwrap();
    assert_eq!(cfg.cache_margin, Duration::from_secs(600));
    let behind = OffsetClock(jiff::SignedDuration::from_mins(-12));
    let client = std::sync::Arc::new(
        (*provider::client(&cfg).unwrap())
            .clone()
            .with_clock(std::sync::Arc::new(behind)),
    );
    let req = provider::protocol::parse_request(&request(&image(EE_HOST), None, &[])).unwrap();
    let asked = jiff::Timestamp::now();
    let response = provider::answer(&cfg, &client, &req).await.unwrap();
    let cache = go_duration(&response.cache_duration).unwrap();
    let login = &response.auth.as_ref().unwrap()[EE_HOST];
    assert!(fake.handle().registry_token_valid(&login.password));
    // The fake issues 60-minute tokens by its own (real) clock.
    let real_remaining =
        Duration::from_secs(3600) - asked.duration_until(jiff::Timestamp::now()).unsigned_abs();
    assert!(
        cache <= real_remaining,
        "cacheDuration {cache:?} outlives the token's real remaining life {real_remaining:?}"
    );
    assert!(
        cache >= Duration::from_secs(49 * 60),
        "cacheDuration {cache:?}: the margin is 10 minutes of a 60-minute token"
    );
}

/// The node's worker role (STS credentials from the metadata service) and the registry API
/// unreachable in four ways: the plugin's stderr, which lands in the kubelet's journal, never
/// carries the SecurityToken or the signed request, at any log level.
#[tokio::test]
async fn unreachable_registry_api_keeps_the_signed_request_off_stderr() {
    use cloud_common::unreachable::Unreachable;
    let fake = FakeCloud::start(scenario()).await.unwrap();
    let canary = "CANARYPROVIDERSTDERR";
    fake.handle().set_marker(canary);
    let base = fake.base_url().as_str().trim_end_matches('/').to_owned();
    for endpoint in Unreachable::all().await {
        let cfg = format!(
            "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialProviderConfig\nregion: cn-hangzhou\n\
             source: {{workerRole: {{}}}}\n{REGISTRIES}endpoints: {{sts: '{base}', cr: '{}', metadata: '{base}'}}\n",
            endpoint.url
        );
        for log in [None, Some("debug")] {
            let out = run_plugin_logging(&cfg, &request(&image(EE_HOST), None, &[]), log).await;
            let e = out.error();
            let what = format!("{} (RUST_LOG {log:?})", endpoint.failure.name());
            assert!(e.contains("cr:GetAuthorizationToken"), "{what}: {e}");
            for secret in [canary, "SecurityToken=", "Signature=", "AccessKeyId="] {
                assert!(!e.contains(secret), "{what}: {secret} on stderr: {e}");
            }
        }
    }
    assert!(
        fake.handle().count_ok("ecs:metadata") > 0,
        "the worker role's credentials were never fetched"
    );
}
