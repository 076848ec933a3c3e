//! The neighbour: another client of the same API server, with a connection of its own, doing a
//! steady mix of reads and writes on ConfigMaps in a namespace of its own (nothing the
//! controller watches), at a fixed rate whatever the answers' latency (each operation starts
//! on its tick, so a slow API server cannot thin out the samples it slows). Every request's
//! latency is kept with the instant it started, and the report cuts windows out of them: idle,
//! during the fan-out, during the renewal wave.
//!
//! The mix, per four ticks: two GETs of one of ten fixed ConfigMaps, one LIST of the namespace's
//! ConfigMaps, and one write cycle (create a ConfigMap, update it, delete it: three writes, one
//! after the other).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

pub const NAMESPACE: &str = "acc-bench-neighbour";
const FIXED: usize = 10;

/// What one request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Get,
    List,
    Create,
    Update,
    Delete,
}

impl Op {
    fn is_write(self) -> bool {
        matches!(self, Op::Create | Op::Update | Op::Delete)
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    started: Instant,
    latency: Duration,
    op: Op,
    ok: bool,
}

/// The neighbour client, running in the background until dropped.
pub struct Neighbour {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
}

/// The neighbour's requests that started within a window.
#[derive(Clone, Debug, Default)]
pub struct Window {
    /// Latencies of every successful request.
    pub all: Vec<Duration>,
    pub reads: usize,
    pub writes: usize,
    pub errors: usize,
}

impl Window {
    /// The `p`-quantile in milliseconds (nearest rank), NaN without samples.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        quantile_ms(&self.all, p)
    }
}

/// Nearest-rank quantile of `samples` in milliseconds; NaN when empty.
pub fn quantile_ms(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"acc-bench": "neighbour"}},
        "data": {"value": value},
    }))
    .expect("config map")
}

impl Neighbour {
    /// Creates the neighbour's namespace and fixed ConfigMaps, then starts `rate` operations
    /// per second with `client` (give it a client of its own).
    pub async fn start(client: Client, rate: f64) -> Neighbour {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("creating the neighbour's namespace");
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
        for i in 0..FIXED {
            api.create(
                &PostParams::default(),
                &config_map(&format!("fixed-{i}"), &"n".repeat(512)),
            )
            .await
            .expect("creating the neighbour's ConfigMaps");
        }
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (recorded, stopped) = (samples.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut tick: u64 = 0;
            while !stopped.load(Ordering::Relaxed) {
                ticker.tick().await;
                let api = api.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let out = operate(&api, tick).await;
                    recorded
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(out);
                });
                tick += 1;
            }
        });
        Neighbour { samples, stop }
    }

    /// The requests that started in `[from, to)`.
    pub fn window(&self, from: Instant, to: Instant) -> Window {
        self.window_without(from, to, None)
    }

    /// The requests that started in `[from, to)` but not in `skip` (`[start, end)`).
    pub fn window_without(
        &self,
        from: Instant,
        to: Instant,
        skip: Option<(Instant, Instant)>,
    ) -> Window {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut w = Window::default();
        let skipped = |t: Instant| skip.is_some_and(|(a, b)| t >= a && t < b);
        for s in samples
            .iter()
            .filter(|s| s.started >= from && s.started < to && !skipped(s.started))
        {
            if !s.ok {
                w.errors += 1;
                continue;
            }
            if s.op.is_write() {
                w.writes += 1;
            } else {
                w.reads += 1;
            }
            w.all.push(s.latency);
        }
        w
    }

    /// Requests and errors by operation over the whole run, e.g. `GET 812, LIST 406, ...`.
    pub fn describe_totals(&self) -> String {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_op: BTreeMap<Op, (usize, usize)> = BTreeMap::new();
        for s in samples.iter() {
            let e = by_op.entry(s.op).or_default();
            e.0 += 1;
            e.1 += usize::from(!s.ok);
        }
        by_op
            .iter()
            .map(|(op, (n, err))| format!("{op:?} {n} ({err} failed)"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One tick's operation; returns a sample per request.
async fn operate(api: &Api<ConfigMap>, tick: u64) -> Vec<Sample> {
    async fn timed<T, E>(
        op: Op,
        out: &mut Vec<Sample>,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> Option<T> {
        let started = Instant::now();
        let result = request.await;
        out.push(Sample {
            started,
            latency: started.elapsed(),
            op,
            ok: result.is_ok(),
        });
        result.ok()
    }
    let mut out = Vec::with_capacity(3);
    let fixed = format!("fixed-{}", (tick / 4) % FIXED as u64);
    match tick % 4 {
        0 | 2 => {
            timed(Op::Get, &mut out, api.get(&fixed)).await;
        }
        1 => {
            timed(Op::List, &mut out, api.list(&ListParams::default())).await;
        }
        _ => {
            let name = format!("cycle-{tick}");
            let pp = PostParams::default();
            if let Some(mut created) = timed(
                Op::Create,
                &mut out,
                api.create(&pp, &config_map(&name, "created")),
            )
            .await
            {
                created
                    .data
                    .get_or_insert_with(Default::default)
                    .insert("value".into(), "updated".into());
                timed(Op::Update, &mut out, api.replace(&name, &pp, &created)).await;
            }
            timed(
                Op::Delete,
                &mut out,
                api.delete(&name, &DeleteParams::default()),
            )
            .await;
        }
    }
    out
}
