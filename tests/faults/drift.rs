//! Drift: a user edits our Secret's data, deletes our Secret, removes our entry from a
//! ServiceAccount; each is restored within 1 s (figure: the slowest restore of each kind).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use crate::common::{Controller, Row, Start, binding_spec, scale};
use crate::controller_common::{Harness, SECRET_NAME, pull_secret_names, wait_sa, wait_secret};

const GOAL: Duration = Duration::from_secs(1);

/// Polls every 10 ms until `done`, for at most 10 s; the time it took, or `None`.
async fn time_until<F, Fut>(mut done: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if done().await {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn worst(samples: &[Option<Duration>]) -> String {
    if samples.iter().any(Option::is_none) {
        return "not restored within 10 s".into();
    }
    let max = samples.iter().flatten().max().copied().unwrap_or_default();
    format!("{} ms", max.as_millis())
}

#[tokio::test]
async fn drift_is_restored_within_a_second() {
    let rounds = scale(3, 10);
    let h = Harness::new("faults-drift", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let _controller = Controller::start(&h, Start::default()).await;
    let name = format!("{}-drift", h.id);
    h.binding(&name, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let secrets: Api<Secret> = h.secrets(&ns);
    let sas: Api<ServiceAccount> = h.service_accounts(&ns);
    let good = wait_secret(&secrets, "the pull Secret", |_| true)
        .await
        .data;
    wait_sa(&sas, "default", "bound", |sa| {
        pull_secret_names(sa).contains(&SECRET_NAME.to_owned())
    })
    .await;
    let user = PatchParams::default();
    let (mut edited, mut deleted, mut unbound) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // 1. Someone overwrites the data.
        let patch = serde_json::json!({"data": {".dockerconfigjson": "e30="}});
        secrets
            .patch(SECRET_NAME, &user, &Patch::Merge(&patch))
            .await
            .unwrap();
        edited.push(
            time_until(|| async {
                secrets
                    .get_opt(SECRET_NAME)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.data == good)
            })
            .await,
        );
        // 2. Someone deletes it.
        secrets
            .delete(SECRET_NAME, &DeleteParams::default())
            .await
            .unwrap();
        deleted.push(
            time_until(|| async {
                secrets
                    .get_opt(SECRET_NAME)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.data == good)
            })
            .await,
        );
        // 3. Someone removes our entry, keeping another one.
        let patch = serde_json::json!({"imagePullSecrets": [{"name": "users-own"}]});
        sas.patch("default", &user, &Patch::Merge(&patch))
            .await
            .unwrap();
        unbound.push(
            time_until(|| async {
                sas.get("default").await.ok().is_some_and(|sa| {
                    let names = pull_secret_names(&sa);
                    names.contains(&SECRET_NAME.to_owned())
                        && names.contains(&"users-own".to_owned())
                })
            })
            .await,
        );
    }
    let mut row = Row::new(
        7,
        "drift",
        format!(
            "{rounds}× each: Secret data overwritten, Secret deleted, our ServiceAccount entry removed"
        ),
    );
    row.figure = format!(
        "slowest restore: data {}, deleted Secret {}, ServiceAccount entry {}",
        worst(&edited),
        worst(&deleted),
        worst(&unbound)
    );
    let all = edited.iter().chain(&deleted).chain(&unbound);
    for (i, t) in all.enumerate() {
        row.check(t.is_some_and(|t| t <= GOAL), || {
            format!("restore {i} took {t:?} (goal ≤ 1 s)")
        });
    }
    row.finish();
}
