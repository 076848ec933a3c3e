//! Canary: one unique string planted as the AccessKeySecret and inside the STS credentials and
//! registry tokens the fake issues; the fake then echoes the request (SecurityToken included)
//! in its error bodies. Then the Container Registry API becomes unreachable in four ways
//! (connection refused, DNS failure, TLS failure, reset mid-response) while STS still answers,
//! so the signed requests that fail carry the canary in their SecurityToken; the same for
//! `acr-credential-provider` with the node's worker role. The string must appear nowhere but
//! the pull Secret: not in the controller's debug logs, Events, any status, `/metrics`, or the
//! provider's stderr.

use std::time::{Duration, Instant};

use acr_fake_cloud::{FakeCloud, Fault, FaultKind, Scenario};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

use crate::common::{Controller, Row, Start, binding_spec, password};
use crate::controller_common::{ACCOUNT, Harness, INSTANCE, ROLE, wait_secret};
use crate::support::{self, TestEnv, install_crds};

#[path = "../cloud_common/unreachable.rs"]
mod unreachable;
use unreachable::{Failure, Unreachable};

const API: &str = "cr:GetAuthorizationToken";

fn scenario(secret: &str) -> Scenario {
    Scenario::from_str_resolved(&format!(
        r#"
region: cn-hangzhou
lifetimes: {{registrySeconds: 40}}
accounts:
  - id: "{ACCOUNT}"
    accessKeys:
      - {{id: LTAIcanary, secret: {secret}, user: ci}}
    users:
      - {{name: ci, permissions: ["sts:AssumeRole"]}}
    roles:
      - name: {ROLE}
        maxSessionDuration: 3600
        permissions: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"]
        trust: {{principals: ["acs:ram::{ACCOUNT}:root"]}}
    instances:
      - {{id: {INSTANCE}, name: ctrl, region: cn-hangzhou}}
metadata: {{account: "{ACCOUNT}", roleName: {ROLE}}}
"#
    ))
    .unwrap()
}

fn echo(code: &str, message: &str) -> Fault {
    Fault {
        api: API.into(),
        caller: None,
        times: Some(2),
        kind: FaultKind::Error {
            status: 400,
            code: code.into(),
            message: Some(message.into()),
        },
    }
}

#[tokio::test]
async fn canary_never_leaves_the_secret() {
    let canary = format!("CANARY{}", support::random_suffix(20).to_uppercase());
    let env = TestEnv::new("faults-canary").await;
    install_crds(&env.client()).await;
    let fake = FakeCloud::start(scenario(&canary)).await.unwrap();
    fake.handle().set_marker(&canary);
    let id = env.namespace().to_owned();
    let h = Harness {
        env,
        fake,
        policy: id.clone(),
        id,
    };
    let ns = h.env.namespace().to_owned();
    h.env
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: alibaba-ak}}\nstringData: {{AccessKeyId: LTAIcanary, AccessKeySecret: {canary}}}\n"
        ))
        .await;
    h.add_policy(
        &h.policy,
        &format!("assumeRole: {{roleArn: \"acs:ram::{ACCOUNT}:role/{ROLE}\", duration: 1h}}\nrenewBefore: 30s"),
    )
    .await;
    let controller = Controller::start(
        &h,
        Start {
            rust_log: "debug",
            ..Start::default()
        },
    )
    .await;
    let name = format!("{}-canary", h.id);
    h.binding(&name, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let secret = wait_secret(&h.secrets(&ns), "the pull Secret", |_| true).await;
    let in_secret = password(&secret).is_some_and(|p| p.contains(&canary));

    // The renewal (about 10 s after issue) meets error bodies that echo the request: first as
    // the real SignatureDoesNotMatch does, then an echo without that wording.
    h.handle().add_fault(echo(
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation. server string to sign is:{request}",
    ));
    h.handle().add_fault(echo(
        "InvalidSecurityToken.Malformed",
        "The security token you provided is invalid: {request}",
    ));
    let handle = h.handle();
    support::wait_until(Duration::from_secs(90), "four echoed errors served", || {
        let handle = handle.clone();
        async move {
            let n = handle
                .log()
                .iter()
                .filter(|e| e.api == API && e.status == 400)
                .count();
            (n >= 4).then_some(()).ok_or(format!("{n} so far"))
        }
    })
    .await;
    // Let the last failure reach the status, Events and logs.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut places: Vec<(String, String)> = vec![
        ("debug log".into(), controller.log_text()),
        ("/metrics".into(), controller.metrics().await),
        ("binding statuses".into(), binding_statuses(&h).await),
    ];
    let echoed_reached_status = places[2].1.contains("SignatureDoesNotMatch")
        || places[2].1.contains("InvalidSecurityToken");
    drop(controller);

    // The registry API unreachable in four ways while STS answers: each controller assumes the
    // role (a SecurityToken holding the canary) and signs requests that never get an answer.
    let mut unreached = Vec::new();
    let mut reset_read_canary = false;
    for endpoint in Unreachable::all().await {
        let (mut found, reached) = network_phase(&h, &name, &endpoint).await;
        places.append(&mut found);
        if !reached {
            unreached.push(endpoint.failure.name());
        }
        if endpoint.failure == Failure::Reset {
            reset_read_canary = endpoint.received().iter().any(|r| r.contains(&canary));
        }
    }
    // The kubelet's credential provider with the node's worker role, the registry API
    // unreachable the same ways: its stderr goes to the kubelet's journal.
    for endpoint in Unreachable::all().await {
        let stderr = provider_stderr(&h, &endpoint.url).await;
        places.push((
            format!("provider stderr ({})", endpoint.failure.name()),
            stderr,
        ));
    }
    let provider_failed_on_cr = places
        .iter()
        .filter(|(p, t)| p.starts_with("provider stderr") && t.contains("cr:GetAuthorizationToken"))
        .count()
        == Failure::ALL.len();

    let policies = h.policies().list(&ListParams::default()).await.unwrap();
    places.push(("binding statuses (end)".into(), binding_statuses(&h).await));
    places.push((
        "policy statuses".into(),
        serde_json::to_string(&policies.items).unwrap(),
    ));
    let events: Api<Event> = Api::all(h.client());
    let core_events: Api<CoreEvent> = Api::all(h.client());
    places.push((
        "Events".into(),
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    ));
    places.push((
        "Events (core/v1)".into(),
        serde_json::to_string(
            &core_events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        )
        .unwrap(),
    ));

    let found: Vec<String> = places
        .iter()
        .map(|(place, text)| format!("{place}: {}", text.matches(&canary).count()))
        .collect();
    let total: usize = places.iter().map(|(_, t)| t.matches(&canary).count()).sum();
    let mut row = Row::new(
        9,
        "canary",
        "one string as AccessKeySecret, inside STS credentials and registry tokens; error bodies echo the request; \
         the registry API refused, unresolvable, failing TLS and reset mid-response, for the controller and the provider",
    );
    row.figure = format!(
        "{total} occurrences ({}); present in the pull Secret: {in_secret}",
        found.join(", ")
    );
    row.check(in_secret, || {
        "the canary is not in the registry token: the scenario planted nothing".into()
    });
    row.check(echoed_reached_status, || {
        "the echoed errors never reached the status: the scenario tested nothing".into()
    });
    row.check(unreached.is_empty(), || {
        format!(
            "these network failures never reached the binding status: {}",
            unreached.join(", ")
        )
    });
    row.check(reset_read_canary, || {
        "the resetting endpoint never read a request carrying the canary: the scenario tested nothing"
            .into()
    });
    row.check(provider_failed_on_cr, || {
        "the provider did not fail on the registry API every time: the scenario tested nothing"
            .into()
    });
    row.check(total == 0, || {
        let lines: Vec<&str> = places
            .iter()
            .flat_map(|(_, t)| t.lines())
            .filter(|l| l.contains(&canary))
            .take(5)
            .map(|l| {
                let at = l.find(&canary).unwrap_or(0).saturating_sub(200);
                l.get(at..(at + 300).min(l.len())).unwrap_or(l)
            })
            .collect();
        format!(
            "the canary leaked: {}\n{}",
            found.join(", "),
            lines.join("\n")
        )
    });
    row.finish();
}

async fn binding_statuses(h: &Harness) -> String {
    let bindings = h.bindings().list(&ListParams::default()).await.unwrap();
    serde_json::to_string(&bindings.items).unwrap()
}

/// Runs a controller whose registry API endpoint fails as `endpoint` does, until the failure
/// reaches the binding's status; returns what it wrote (debug log, `/metrics`, the binding
/// statuses) and whether the failure was seen.
async fn network_phase(
    h: &Harness,
    binding: &str,
    endpoint: &Unreachable,
) -> (Vec<(String, String)>, bool) {
    let controller = Controller::start(
        h,
        Start {
            rust_log: "debug",
            extra: vec!["--cr-endpoint".into(), endpoint.url.clone()],
            ..Start::default()
        },
    )
    .await;
    let host = endpoint.url.split_once("://").map_or("", |(_, h)| h);
    let wanted = format!("network error talking to {host}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reached = false;
    while Instant::now() < deadline {
        let status = h
            .bindings()
            .get(binding)
            .await
            .ok()
            .and_then(|b| serde_json::to_string(&b.status).ok())
            .unwrap_or_default();
        if status.contains(&wanted) {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the Events and the log lines of the same failure land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let name = endpoint.failure.name();
    let found = vec![
        (format!("debug log ({name})"), controller.log_text()),
        (format!("/metrics ({name})"), controller.metrics().await),
        (
            format!("binding statuses ({name})"),
            binding_statuses(h).await,
        ),
    ];
    (found, reached)
}

/// `acr-credential-provider` (the build named by `ACC_FAULTS_PROVIDER`, or this one) asked for
/// the instance's image with the node's worker role, the registry API at `cr`; its stderr at
/// debug level.
async fn provider_stderr(h: &Harness, cr: &str) -> String {
    let base = h.fake.base_url().as_str().trim_end_matches('/').to_owned();
    let config = format!(
        "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrCredentialProviderConfig\nregion: cn-hangzhou\n\
         source: {{workerRole: {{}}}}\nregistries:\n  - {{instanceId: {INSTANCE}, instanceName: ctrl}}\n\
         endpoints: {{sts: '{base}', cr: '{cr}', metadata: '{base}'}}\n"
    );
    let dir = std::env::temp_dir().join(format!(
        "acr-faults-provider-{}-{}",
        std::process::id(),
        support::random_suffix(8)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": "ctrl-registry.cn-hangzhou.cr.aliyuncs.com/team/app:v1",
    });
    let binary = std::env::var("ACC_FAULTS_PROVIDER")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_acr-credential-provider").to_owned());
    let mut child = tokio::process::Command::new(binary)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting acr-credential-provider");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(request.to_string().as_bytes())
            .await
            .unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8_lossy(&out.stderr).into_owned()
}
