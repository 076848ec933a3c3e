//! ServiceAccount conflict writer: another client rewrites the ServiceAccount's
//! `imagePullSecrets` once a second (replacing the list, as `kubectl apply` of a manifest that
//! does not know ours would); its entries are never lost, and ours is back within 1 s of each
//! of its writes (figure: p99).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};

use crate::common::{Controller, Row, Start, binding_spec, percentile_ms, scale};
use crate::controller_common::{Harness, SECRET_NAME, pull_secret_names, wait_sa};

#[tokio::test]
async fn conflict_writer_never_loses_entries() {
    let seconds = scale(10u64, 120);
    let h = Harness::new("faults-conflict", 3600, "15m").await;
    let ns = h.env.namespace().to_owned();
    let _controller = Controller::start(&h, Start::default()).await;
    let name = format!("{}-conflict", h.id);
    h.binding(&name, &binding_spec(&h, &format!("{{names: [{ns}]}}")))
        .await;
    h.wait_ready(&name, "True", Duration::from_secs(60)).await;
    let sas: Api<ServiceAccount> = h.service_accounts(&ns);
    let ours = SECRET_NAME.to_owned();
    wait_sa(&sas, "default", "bound", |sa| {
        pull_secret_names(sa).contains(&ours)
    })
    .await;

    let writer = PatchParams::default();
    let mut latencies = Vec::new();
    let (mut lost, mut missed) = (Vec::new(), 0usize);
    for i in 0..seconds {
        let tick = Instant::now();
        // Two entries of its own, different every second.
        let theirs = [format!("theirs-{i}-a"), format!("theirs-{i}-b")];
        let patch =
            serde_json::json!({"imagePullSecrets": [{"name": theirs[0]}, {"name": theirs[1]}]});
        sas.patch("default", &writer, &Patch::Merge(&patch))
            .await
            .unwrap();
        let mut back = None;
        while tick.elapsed() < Duration::from_secs(1) {
            if let Ok(sa) = sas.get("default").await {
                let names = pull_secret_names(&sa);
                if !theirs.iter().all(|t| names.contains(t)) {
                    lost.push(format!("second {i}: {names:?}"));
                }
                if back.is_none() && names.contains(&ours) {
                    back = Some(tick.elapsed());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match back {
            Some(t) => latencies.push(t),
            None => missed += 1,
        }
    }
    let mut row = Row::new(
        6,
        "ServiceAccount conflict writer",
        format!("imagePullSecrets replaced once a second for {seconds} s"),
    );
    let p99 = percentile_ms(&latencies, 0.99);
    row.figure = format!(
        "ours back: p50 {:.0} ms, p99 {p99:.0} ms, max {:.0} ms; not back within 1 s: {missed} of {seconds}; writer entries lost: {}",
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 1.0),
        lost.len()
    );
    row.check(lost.is_empty(), || {
        format!("the writer's entries were lost: {lost:?}")
    });
    row.check(missed == 0, || {
        format!("{missed} writes not answered within 1 s")
    });
    row.check(p99 <= 1000.0, || format!("p99 {p99:.0} ms > 1000 ms"));
    row.finish();
}
