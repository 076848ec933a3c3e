//! Control plane restarts: kube-apiserver stopped for 60 s, and etcd for 30 s, each once in
//! steady state and once in the middle of a fan-out. The controller must not crash or restart,
//! and everything converges within 30 s of the component's return (figure: seconds). In steady
//! state a pull Secret is deleted right after the return, so convergence also proves the
//! controller's watches are live again.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};

use crate::common::{
    Controller, Row, Start, bind_set, census, cluster_sh, converge, namespace_set, own_cluster,
    scale,
};
use crate::controller_common::{Harness, SECRET_NAME};

const GOAL: Duration = Duration::from_secs(30);

/// Keeps the component stopped for `down`, checking every second that the controller runs.
/// Returns whether it ran throughout, and how long the component took from its start to
/// ready (convergence is timed from ready; the controller may reconnect before).
async fn outage(component: &str, down: Duration, controller: &mut Controller) -> (bool, Duration) {
    cluster_sh(&["stop", component]);
    let t0 = Instant::now();
    let mut alive = true;
    while t0.elapsed() < down {
        alive &= controller.running();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let starting = Instant::now();
    cluster_sh(&["start", component]);
    (alive && controller.running(), starting.elapsed())
}

async fn restart_scenario(order: u32, scenario: &'static str, component: &str, down_full: u64) {
    assert!(
        own_cluster(),
        "this scenario stops {component}: run it with scripts/faults.sh, on a control plane of its own"
    );
    let down = Duration::from_secs(scale(10, down_full));
    let n = scale(20, 200);
    let h = Harness::new(&format!("faults-{component}"), 3600, "15m").await;
    let steady = namespace_set(&h, &format!("{}-s", h.id), n).await;
    let fanout = namespace_set(&h, &format!("{}-f", h.id), n).await;
    let mut controller = Controller::start(&h, Start::default()).await;
    let mut row = Row::new(
        order,
        scenario,
        format!(
            "{component} stopped {} s in steady state ({n} namespaces), then again mid fan-out ({n} more)",
            down.as_secs()
        ),
    );

    // 1. Steady state.
    bind_set(&h, &format!("{}-s", h.id), &format!("{}-s", h.id)).await;
    let first = converge(&h, &steady, Duration::from_secs(120)).await;
    row.check(first.is_ok(), || format!("no first convergence: {first:?}"));
    let (alive_steady, start_steady) = outage(component, down, &mut controller).await;
    let back = Instant::now();
    let probe = &steady[0];
    let deleted = Api::<Secret>::namespaced(h.client(), probe)
        .delete(SECRET_NAME, &DeleteParams::default())
        .await;
    row.check(deleted.is_ok(), || {
        format!("deleting the probe Secret: {deleted:?}")
    });
    let steady_time = converge(&h, &steady, Duration::from_secs(90))
        .await
        .map(|_| back.elapsed());
    row.check(alive_steady, || {
        "the controller exited during the steady-state outage".into()
    });

    // 2. Mid fan-out: stop as soon as the first Secrets of the new binding appear.
    bind_set(&h, &format!("{}-f", h.id), &format!("{}-f", h.id)).await;
    let t0 = Instant::now();
    let mut done_when_stopped = 0;
    while t0.elapsed() < Duration::from_secs(20) {
        if let Some(c) = census(&h, &fanout).await
            && c.valid > 0
        {
            done_when_stopped = c.valid;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (alive, start_fanout) = outage(component, down, &mut controller).await;
    let back = Instant::now();
    let all: Vec<String> = steady.iter().chain(&fanout).cloned().collect();
    let fanout_time = converge(&h, &all, Duration::from_secs(90))
        .await
        .map(|_| back.elapsed());
    row.check(alive, || {
        "the controller exited during the mid fan-out outage".into()
    });
    row.check(controller.running(), || {
        format!("the controller exited: {:?}", controller.exit())
    });
    let secs = |r: &Result<Duration, String>| {
        r.as_ref().map_or_else(
            |e| format!("not converged ({e})"),
            |d| format!("{:.1} s", d.as_secs_f64()),
        )
    };
    row.figure = format!(
        "converged after the return (ready): steady state {}, mid fan-out {} ({done_when_stopped}/{n} done when stopped); {component} took {:.1} s and {:.1} s from start to ready; controller ran throughout: {}",
        secs(&steady_time),
        secs(&fanout_time),
        start_steady.as_secs_f64(),
        start_fanout.as_secs_f64(),
        alive_steady && alive && controller.running()
    );
    row.check(steady_time.as_ref().is_ok_and(|d| *d <= GOAL), || {
        format!("steady state: {}", secs(&steady_time))
    });
    row.check(fanout_time.as_ref().is_ok_and(|d| *d <= GOAL), || {
        format!("mid fan-out: {}", secs(&fanout_time))
    });
    if !(steady_time.is_ok() && fanout_time.is_ok()) {
        let warnings = controller.lines_at("WARN");
        let errors = controller.lines_at("ERROR");
        let tail: Vec<String> = warnings
            .iter()
            .chain(&errors)
            .rev()
            .take(4)
            .map(|l| l.chars().take(400).collect())
            .collect();
        row.problems.push(format!(
            "controller: {} warnings, {} errors; last: {tail:?}",
            warnings.len(),
            errors.len()
        ));
    }
    row.check(done_when_stopped < n, || {
        "the fan-out was complete before the stop: not mid fan-out".into()
    });
    row.finish();
}

#[tokio::test]
#[ignore = "stops the API server: run by scripts/faults.sh"]
async fn api_server_restart() {
    restart_scenario(1, "API server restart", "kube-apiserver", 60).await;
}

#[tokio::test]
#[ignore = "stops etcd: run by scripts/faults.sh"]
async fn etcd_restart() {
    restart_scenario(2, "etcd restart", "etcd", 30).await;
}
