//! Canary: one unique string planted as the AccessKeySecret and inside the STS credentials and
//! registry tokens the fake issues; the fake then echoes the request (SecurityToken included)
//! in its error bodies. The string must appear nowhere but the pull Secret: not in the
//! controller's debug logs, Events, any status, or `/metrics`.

use std::time::Duration;

use acr_fake_cloud::{FakeCloud, Fault, FaultKind, Scenario};
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

use crate::common::{Controller, Row, Start, binding_spec, password};
use crate::controller_common::{ACCOUNT, Harness, INSTANCE, ROLE, wait_secret};
use crate::support::{self, TestEnv, install_crds};

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

    let mut places: Vec<(&str, String)> = vec![("debug log", controller.log_text())];
    places.push(("/metrics", controller.metrics().await));
    let bindings = h.bindings().list(&ListParams::default()).await.unwrap();
    let policies = h.policies().list(&ListParams::default()).await.unwrap();
    places.push((
        "binding statuses",
        serde_json::to_string(&bindings.items).unwrap(),
    ));
    places.push((
        "policy statuses",
        serde_json::to_string(&policies.items).unwrap(),
    ));
    let events: Api<Event> = Api::all(h.client());
    let core_events: Api<CoreEvent> = Api::all(h.client());
    places.push((
        "Events",
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap().items).unwrap(),
    ));
    places.push((
        "Events (core/v1)",
        serde_json::to_string(
            &core_events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        )
        .unwrap(),
    ));
    let echoed_reached_status = places[2].1.contains("SignatureDoesNotMatch")
        || places[2].1.contains("InvalidSecurityToken");

    let found: Vec<String> = places
        .iter()
        .map(|(place, text)| format!("{place}: {}", text.matches(&canary).count()))
        .collect();
    let total: usize = places.iter().map(|(_, t)| t.matches(&canary).count()).sum();
    let mut row = Row::new(
        9,
        "canary",
        "one string as AccessKeySecret, inside STS credentials and registry tokens; error bodies echo the request",
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
    drop(controller);
}
