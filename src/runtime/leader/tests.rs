use std::sync::Arc;
use std::time::Duration;

use super::*;

fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
    LeaseSpec {
        holder_identity: holder.map(str::to_owned),
        lease_duration_seconds: seconds,
        ..LeaseSpec::default()
    }
}

const D: Duration = Duration::from_secs(15);

#[test]
fn absent_lease_is_created() {
    assert_eq!(decide(None, "a", Duration::ZERO, D), Decision::Create);
}

#[test]
fn own_lease_is_renewed_however_old() {
    let s = spec(Some("a"), Some(15));
    assert_eq!(
        decide(Some(&s), "a", Duration::from_secs(60), D),
        Decision::Renew
    );
}

#[test]
fn free_or_released_lease_is_acquired_at_once() {
    for s in [spec(None, Some(1)), spec(Some(""), None)] {
        assert_eq!(decide(Some(&s), "b", Duration::ZERO, D), Decision::Acquire);
    }
}

#[test]
fn live_lease_of_another_is_followed_until_it_expires() {
    let s = spec(Some("a"), Some(15));
    assert_eq!(
        decide(Some(&s), "b", Duration::from_secs(14), D),
        Decision::Follow { holder: "a".into() }
    );
    assert_eq!(
        decide(Some(&s), "b", Duration::from_secs(16), D),
        Decision::Acquire
    );
    // The Lease's own duration wins over ours.
    let short = spec(Some("a"), Some(3));
    assert_eq!(
        decide(Some(&short), "b", Duration::from_secs(4), D),
        Decision::Acquire
    );
}

#[test]
fn timings_follow_client_go_rules() {
    assert_eq!(LeaseTimings::default().validate(), Ok(()));
    let t = |l, r, p| LeaseTimings {
        lease_duration: Duration::from_secs(l),
        renew_deadline: Duration::from_secs(r),
        retry_period: Duration::from_secs(p),
    };
    assert!(t(10, 10, 2).validate().is_err(), "lease must exceed renew");
    assert!(
        t(15, 12, 10).validate().is_err(),
        "renew must exceed 1.2 × retry"
    );
    assert!(t(15, 10, 0).validate().is_err(), "retry must be positive");
    assert_eq!(t(6, 4, 1).validate(), Ok(()));
}

#[test]
fn timings_leave_a_standby_no_overlap_with_the_leader() {
    let t = |l: f64, r: f64, p: f64| LeaseTimings {
        lease_duration: Duration::from_secs_f64(l),
        renew_deadline: Duration::from_secs_f64(r),
        retry_period: Duration::from_secs_f64(p),
    };
    // The leader's loop may notice a missed renew deadline one retry period late: a lease
    // duration that does not cover both, plus the margin, lets a standby lead while it writes.
    let refused = t(11.0, 10.0, 2.0).validate();
    let message = refused.expect_err("11 s / 10 s / 2 s leaves about 1 s of two leaders");
    assert!(
        message.contains("retry period") && message.contains("1s"),
        "the error names the rule and its margin: {message}"
    );
    assert!(t(12.5, 10.0, 2.0).validate().is_err(), "margin below 1 s");
    assert!(t(6.0, 4.0, 1.5).validate().is_err());
    // Exactly renew deadline + retry period + 1 s, and the defaults, pass.
    assert_eq!(t(13.0, 10.0, 2.0).validate(), Ok(()));
    assert_eq!(t(6.0, 4.0, 1.0).validate(), Ok(()));
    assert_eq!(LeaseTimings::default().validate(), Ok(()));
}

/// How the in-memory API server answers Lease requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    /// Every request fails at once (500).
    Errors,
    /// Every request hangs (a partitioned API server).
    Hangs,
}

#[derive(Debug)]
struct ServerState {
    lease: Option<serde_json::Value>,
    version: u64,
    mode: Mode,
    /// When the API server last stored a write of the Lease (its renew time, as a standby
    /// would observe it).
    last_write: Option<Instant>,
}

/// A Kubernetes API server holding one Lease in memory: get, create and compare-and-swap
/// update, enough for the election loop, on paused time.
#[derive(Clone, Debug)]
struct LeaseServer(Arc<std::sync::Mutex<ServerState>>);

impl LeaseServer {
    fn new() -> Self {
        Self(Arc::new(std::sync::Mutex::new(ServerState {
            lease: None,
            version: 0,
            mode: Mode::Up,
            last_write: None,
        })))
    }

    /// Switches the mode; returns when the Lease was last written.
    fn set_mode(&self, mode: Mode) -> Instant {
        let mut s = self.0.lock().unwrap();
        s.mode = mode;
        s.last_write.expect("the Lease was written")
    }

    fn client(&self) -> Client {
        Client::new(self.clone(), "default")
    }
}

fn respond(code: u16, body: &serde_json::Value) -> http::Response<kube::client::Body> {
    http::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .unwrap()
}

fn status(code: u16, reason: &str) -> http::Response<kube::client::Body> {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "message": reason, "code": code});
    respond(code, &body)
}

impl tower::Service<http::Request<kube::client::Body>> for LeaseServer {
    type Response = http::Response<kube::client::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move {
            let method = req.method().clone();
            let body = req.into_body().collect_bytes().await.unwrap();
            let mode = state.lock().unwrap().mode;
            match mode {
                Mode::Up => {}
                Mode::Errors => return Ok(status(500, "InternalError")),
                Mode::Hangs => futures::future::pending::<()>().await,
            }
            let mut s = state.lock().unwrap();
            let write = |s: &mut ServerState, mut lease: serde_json::Value| {
                s.version += 1;
                lease["metadata"]["resourceVersion"] = serde_json::json!(s.version.to_string());
                s.lease = Some(lease.clone());
                s.last_write = Some(Instant::now());
                lease
            };
            Ok(match method {
                http::Method::GET => match &s.lease {
                    Some(l) => respond(200, l),
                    None => status(404, "NotFound"),
                },
                http::Method::POST if s.lease.is_none() => {
                    let lease = write(&mut s, serde_json::from_slice(&body).unwrap());
                    respond(201, &lease)
                }
                http::Method::POST => status(409, "AlreadyExists"),
                http::Method::PUT => {
                    let lease: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let current = s.lease.as_ref().map(|l| &l["metadata"]["resourceVersion"]);
                    if current != Some(&lease["metadata"]["resourceVersion"]) {
                        status(409, "Conflict")
                    } else {
                        let lease = write(&mut s, lease);
                        respond(200, &lease)
                    }
                }
                _ => status(405, "MethodNotAllowed"),
            })
        })
    }
}

fn lease_config(timings: LeaseTimings) -> LeaseConfig {
    LeaseConfig {
        namespace: "default".into(),
        name: "lease".into(),
        holder: "a".into(),
        timings,
    }
}

/// A standby takes the Lease over one lease duration after it saw the last renewal, so for
/// every accepted timing the leader's writes must stop before that, however its renewals fail.
#[tokio::test(start_paused = true)]
async fn the_gate_closes_before_a_standby_may_lead_for_every_accepted_timing() {
    let mut accepted = Vec::new();
    for lease in [6, 11, 13, 15, 20] {
        for renew in [4, 10, 15] {
            for retry in [1, 2, 3, 5] {
                let t = LeaseTimings {
                    lease_duration: Duration::from_secs(lease),
                    renew_deadline: Duration::from_secs(renew),
                    retry_period: Duration::from_secs(retry),
                };
                if t.validate().is_ok() {
                    accepted.push(t);
                }
            }
        }
    }
    assert!(accepted.contains(&LeaseTimings::default()));
    for t in accepted {
        for mode in [Mode::Errors, Mode::Hangs] {
            let server = LeaseServer::new();
            let handle = start(server.client(), lease_config(t.clone()));
            let leadership = handle.leadership.clone();
            leadership.acquired().await;
            // A few renewals, then the API server stops answering well.
            tokio::time::sleep(t.retry_period * 3 + Duration::from_millis(300)).await;
            assert!(
                leadership.is_leader(),
                "{t:?}: leads while renewals succeed"
            );
            let last_write = server.set_mode(mode);
            let standby_may_lead = last_write + t.lease_duration;
            while leadership.is_leader() && Instant::now() < standby_may_lead {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let closed_after = Instant::now() - last_write;
            assert!(
                Instant::now() < standby_may_lead,
                "{t:?}, {mode:?}: still writing {closed_after:?} after the last renewal the API server stored; a standby may lead after {:?}",
                t.lease_duration
            );
            // And it stays closed while the renewals keep failing.
            while Instant::now() < standby_may_lead + t.retry_period {
                assert!(
                    !leadership.is_leader(),
                    "{t:?}, {mode:?}: the gate reopened"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            handle.abort();
        }
    }
}

/// A loop that cannot run (a starved runtime, a frozen process) must not keep writes open:
/// the gate trusts the time since the last renewal, not the loop's flag. The test blocks the
/// runtime's only thread, so the loop cannot make a pass meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_stalled_loop_cannot_keep_the_gate_open() {
    let t = LeaseTimings {
        lease_duration: Duration::from_millis(3000),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(500),
    };
    assert_eq!(t.validate(), Ok(()));
    let server = LeaseServer::new();
    let handle = start(server.client(), lease_config(t.clone()));
    let leadership = handle.leadership.clone();
    leadership.acquired().await;
    assert!(leadership.is_leader());
    let last_write = server.set_mode(Mode::Up);
    std::thread::sleep(t.renew_deadline + Duration::from_millis(100));
    let stalled_for = last_write.elapsed();
    assert!(stalled_for < t.lease_duration);
    assert!(
        !leadership.is_leader(),
        "the loop has not run for {stalled_for:?} (renew deadline {:?}), yet writes are still open",
        t.renew_deadline
    );
    handle.abort();
}
