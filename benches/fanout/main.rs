//! Benchmark: what fan-out, renewal and new-namespace binding cost, against the floor.
//!
//! Run it with `scripts/bench.sh` (it builds release binaries and gives the benchmark a fresh
//! control plane of its own). It expects `KUBECONFIG` to point at that control plane and
//! `ACC_BENCH_CONTROLLER` at the release controller binary, starts the fake cloud in-process and
//! the controller as a child process (so its memory is its own), and prints a Markdown table that
//! it also saves under `bench/results/`.
//!
//! Options (after `--`): `--namespaces N` (1000), `--unrelated-secrets M` (20000),
//! `--new-namespaces K` (100), `--rate R` new namespaces per second (10), `--concurrency C`
//! (the floor client's parallel namespaces; 8, as the controller converges 8 namespaces at
//! once), `--steady-seconds S` (20), `--neighbour-rate Q` operations per second of the
//! neighbour client (20), `--wave-namespaces W` new namespaces created during the renewal wave
//! (20), `--write-budget B` the controller's `--write-budget` (its default when not given; 0:
//! unlimited).
//!
//! A neighbour client (another client, its own connection, its own namespace) reads and writes
//! ConfigMaps at a steady rate from before the first floor run to the end; its latency is
//! reported idle (the steady-state window), during the fan-out and during the renewal wave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cpu;
mod floor;
mod metrics;
mod neighbour;
mod observe;
mod report;
mod setup;
mod wave;

use std::time::{Duration, Instant};

use observe::Observer;
use report::{Figure, Report, ratio};

/// Benchmark parameters.
#[derive(Clone, Debug)]
pub struct Params {
    pub namespaces: usize,
    pub unrelated_secrets: usize,
    pub new_namespaces: usize,
    pub rate: f64,
    pub concurrency: usize,
    pub steady_seconds: u64,
    pub neighbour_rate: f64,
    pub wave_namespaces: usize,
    /// The controller's `--write-budget`, when not its default.
    pub write_budget: Option<String>,
}

fn parse_args() -> Params {
    let mut p = Params {
        namespaces: 1000,
        unrelated_secrets: 20_000,
        new_namespaces: 100,
        rate: 10.0,
        concurrency: 8,
        steady_seconds: 20,
        neighbour_rate: 20.0,
        wave_namespaces: 20,
        write_budget: None,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--namespaces" => p.namespaces = number(flag, value),
            "--unrelated-secrets" => p.unrelated_secrets = number(flag, value),
            "--new-namespaces" => p.new_namespaces = number(flag, value),
            "--rate" => p.rate = number(flag, value),
            "--concurrency" => p.concurrency = number(flag, value),
            "--steady-seconds" => p.steady_seconds = number(flag, value),
            "--neighbour-rate" => p.neighbour_rate = number(flag, value),
            "--wave-namespaces" => p.wave_namespaces = number(flag, value),
            "--write-budget" => {
                let _: f64 = number(flag, value);
                p.write_budget = Some(value.clone());
            }
            other => panic!("unknown option {other}"),
        }
    }
    p
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    value
        .parse()
        .unwrap_or_else(|_| panic!("bad value for {flag}: {value}"))
}

fn log(msg: &str) {
    eprintln!("[bench] {} {msg}", jiff::Timestamp::now());
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
async fn wait_for(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The floor runs of one benchmark: the same client, namespaces, payload and concurrency.
struct Floors<'a> {
    client: &'a kube::Client,
    namespaces: &'a [String],
    payload: &'a [u8],
    concurrency: usize,
    control_plane: &'a cpu::Processes,
}

impl Floors<'_> {
    /// One floor run writing `secret_name` the way `create` says: its time, the ServiceAccount
    /// patches it retried, and the CPU the control plane used meanwhile. The ServiceAccounts are
    /// read first, off the clock.
    async fn run(&self, secret_name: &str, create: floor::Create) -> (Duration, usize, String) {
        let accounts = floor::default_service_accounts(self.client, self.namespaces)
            .await
            .unwrap();
        let before = self.control_plane.sample();
        let (time, retries) = floor::run(
            self.client,
            self.namespaces,
            accounts,
            secret_name,
            self.payload,
            self.concurrency,
            create,
        )
        .await
        .unwrap();
        (time, retries, self.control_plane.sample().since(&before))
    }
}

#[tokio::main]
async fn main() {
    let params = parse_args();
    let started = Instant::now();
    let world = setup::World::prepare(&params).await;
    let client = world.client.clone();
    let mut report = Report::new(&params);

    // The neighbour runs from here to the end, on a client of its own.
    let neighbour = neighbour::Neighbour::start(
        setup::client(&world.kubeconfig).await,
        params.neighbour_rate,
    )
    .await;

    // The observer's watches load the API server during the floor as during the fan-out: it
    // watches the floor runs' Secrets as it watches the controller's.
    let observer = Observer::start(
        &client,
        setup::SECRET_NAME,
        &setup::WATCHED_FLOOR_SECRET_NAMES,
    );

    // The controller runs from here on, idle until the binding is applied: the floor runs on
    // namespaces no binding selects, so it loads the API server with the controller's watches
    // as the fan-out does.
    let mut controller = world.start_controller(params.write_budget.as_deref());
    world.wait_policy_ready().await;

    // 1. The floor the fan-out goal is measured against: the controller's own objects with the
    // controller's rights, on namespaces no binding selects. It runs right before and right
    // after the fan-out, and the goal takes the mean of the two: one run varies by more than
    // the goal's margin, and the control plane slows as the benchmark fills it (a later floor
    // run took up to 36% longer than an earlier one), so the runs bracket the fan-out.
    log(&format!(
        "floor with the controller's objects: {} Secret applies + {} ServiceAccount patches",
        params.namespaces, params.namespaces
    ));
    let control_plane = cpu::Processes::control_plane();
    let payload = setup::sample_payload();
    let floors = Floors {
        client: &client,
        namespaces: &world.floor_namespaces,
        payload: &payload,
        concurrency: params.concurrency,
        control_plane: &control_plane,
    };
    let owner = world.policy_owner().await;
    let like = || floor::Create::LikeController {
        owner: owner.clone(),
    };
    let before = metrics::scrape(&client).await.unwrap();
    let reads_before = metrics::scrape_reads(&client).await.unwrap();
    let (first_floor_time, floor_retries, floor_cpu) =
        floors.run(setup::LIKE_FLOOR_SECRET_NAME, like()).await;
    let floor_writes = metrics::scrape(&client).await.unwrap().since(&before);
    let floor_reads = metrics::scrape_reads(&client)
        .await
        .unwrap()
        .since(&reads_before);

    // 2. Fan-out: one binding selecting every prepared namespace.
    let before = metrics::scrape(&client).await.unwrap();
    let reads_before = metrics::scrape_reads(&client).await.unwrap();
    let cloud_before = world.cloud_calls();
    let everyone = control_plane.with_controller(controller.pid());
    log("fan-out: applying the binding");
    let cpu_before = everyone.sample();
    let t0 = Instant::now();
    world.apply_binding().await;
    wait_for(
        Duration::from_secs(600 + params.namespaces as u64 / 10),
        "every Secret and ServiceAccount",
        || observer.all_done(&world.fanout_namespaces).is_some(),
    )
    .await;
    let fanout_done = observer.all_done(&world.fanout_namespaces).unwrap();
    let fanout_time = fanout_done - t0;
    let fanout_first = observer
        .first_secret(&world.fanout_namespaces)
        .map_or(Duration::ZERO, |first| first - t0);
    let neighbour_fanout = neighbour.window(t0, fanout_done);
    let fanout_cpu = everyone.sample().since(&cpu_before);
    // Let the last status write land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fanout_writes = metrics::scrape(&client).await.unwrap().since(&before);
    let fanout_reads = metrics::scrape_reads(&client)
        .await
        .unwrap()
        .since(&reads_before);
    let fanout_cloud = world.cloud_calls() - cloud_before;
    let rss_after_fanout = controller.memory();
    let written_payload = world.payload_bytes(&world.fanout_namespaces[0]).await;

    log("floor with the controller's objects, again");
    let (repeat_floor_time, _, _) = floors.run(setup::REPEAT_FLOOR_SECRET_NAME, like()).await;
    let floor_time = (first_floor_time + repeat_floor_time) / 2;
    // References on bare objects, which split the floor's cost. A plain POST is the cheapest
    // create, and needs a cluster-wide `create` right on Secrets (RBAC cannot pin a POST to a
    // name): the controller does not have it.
    log("reference: bare objects, POST");
    let (post_floor_time, _, post_floor_cpu) =
        floors.run(setup::SECRET_NAME, floor::Create::Post).await;
    // Bare objects by server-side apply, as a `create` right pinned to the Secret's name needs.
    log("reference: bare objects, server-side apply");
    let (apply_floor_time, _, apply_floor_cpu) = floors
        .run(setup::APPLY_FLOOR_SECRET_NAME, floor::Create::Apply)
        .await;
    // The controller's objects once more, their Secrets unwatched by the benchmark: what its
    // watch costs the floor.
    log("reference: the controller's objects, unwatched");
    let (unwatched_floor_time, _, _) = floors.run(setup::UNWATCHED_FLOOR_SECRET_NAME, like()).await;

    // 3. Steady state: nothing changes, nothing should be written.
    let mut overlaps = Vec::new();
    let steady_end =
        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(params.steady_seconds as i64);
    if world
        .renew_at_if_known()
        .await
        .is_some_and(|r| steady_end >= r)
    {
        overlaps.push("the steady-state window reached the renewal: its writes include renewals");
    }
    log(&format!("steady state: {} s", params.steady_seconds));
    let before = metrics::scrape(&client).await.unwrap();
    let steady_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(params.steady_seconds)).await;
    let neighbour_idle = neighbour.window(steady_start, Instant::now());
    let steady_writes = metrics::scrape(&client).await.unwrap().since(&before);

    // 4. One renewal wave.
    let renew_at = world.renew_at().await;
    log(&format!("renewal wave: waiting for renewAt {renew_at}"));
    let lead = Duration::from_secs(2);
    let until = Duration::try_from(jiff::Timestamp::now().duration_until(renew_at))
        .unwrap_or_default()
        .saturating_sub(lead);
    tokio::time::sleep(until).await;
    let before = metrics::scrape(&client).await.unwrap();
    let cloud_before = world.cloud_calls();
    let wave_start = Instant::now();
    // While the wave runs, new namespaces: from the first Secret rewritten on, spread over
    // about the time the fan-out's Secret writes took (half the fan-out's writes).
    let wave_spread = (fanout_time / 2).max(Duration::from_secs(1));
    let wave_interval =
        (wave_spread / params.wave_namespaces.max(1) as u32).max(Duration::from_millis(10));
    let renewed = async {
        wait_for(
            Duration::from_secs(300 + params.namespaces as u64 / 20),
            "every Secret renewed",
            || {
                observer.changed_since(&world.fanout_namespaces, wave_start)
                    == world.fanout_namespaces.len()
            },
        )
        .await;
        jiff::Timestamp::now()
    };
    let during = async {
        wait_for(Duration::from_secs(300), "the first Secret renewed", || {
            observer.changed_since(&world.fanout_namespaces, wave_start) > 0
        })
        .await;
        log(&format!(
            "renewal wave: {} new namespaces, one every {} ms",
            params.wave_namespaces,
            wave_interval.as_millis()
        ));
        world
            .create_namespaces_paced("wave", params.wave_namespaces, wave_interval)
            .await
    };
    let (wave_over, wave_created) = futures::join!(renewed, during);
    let wave_names: Vec<String> = wave_created.iter().map(|(n, _)| n.clone()).collect();
    wait_for(
        Duration::from_secs(120),
        "every namespace created during the wave bound",
        || observer.all_done(&wave_names).is_some(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wave_writes = metrics::scrape(&client).await.unwrap().since(&before);
    let wave_cloud = world.cloud_calls() - cloud_before;
    let wave = wave::analyse(
        &observer,
        &world.fanout_namespaces,
        wave_start,
        wave_over,
        &world.fake.handle(),
    );
    let wave_time = wave.duration();
    let neighbour_wave = neighbour.window(wave.first, wave.last);
    // The wave's own writes, without the burst of the namespaces the benchmark creates during
    // it (kube-controller-manager's ServiceAccounts and token Secrets, the controller's Secrets
    // and patches for them), from the first created to a second after the last bound.
    let burst = wave_created.first().map(|(_, first)| {
        let done = observer.all_done(&wave_names).unwrap_or(wave.last);
        (*first, done + Duration::from_secs(1))
    });
    let neighbour_wave_only = neighbour.window_without(wave.first, wave.last, burst);
    let wave_latencies: Vec<Duration> = observer.with(|seen| {
        wave_created
            .iter()
            .map(|(ns, at)| seen.bound[ns].max(seen.secrets[ns].first) - *at)
            .collect()
    });
    let created_within = wave_created
        .iter()
        .filter(|(_, at)| *at >= wave.first && *at <= wave.last)
        .count();
    let uids_kept = observer.with(|seen| {
        world
            .fanout_namespaces
            .iter()
            .all(|ns| seen.secrets.get(ns).is_some_and(|s| !s.uid.is_empty()))
    });

    // 5. New namespaces at a steady rate, before the next renewal.
    let new_end = jiff::Timestamp::now()
        + jiff::SignedDuration::from_secs_f64(params.new_namespaces as f64 / params.rate + 5.0);
    if world
        .renew_at_if_known()
        .await
        .is_some_and(|r| new_end >= r)
    {
        overlaps.push("the new namespaces reached the next renewal: their latency includes it");
    }
    log(&format!(
        "new namespaces: {} at {}/s",
        params.new_namespaces, params.rate
    ));
    let before = metrics::scrape(&client).await.unwrap();
    let created = world.create_namespaces_at_rate(&params).await;
    let names: Vec<String> = created.iter().map(|(n, _)| n.clone()).collect();
    wait_for(
        Duration::from_secs(120),
        "every new namespace bound",
        || observer.all_done(&names).is_some(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let new_writes = metrics::scrape(&client).await.unwrap().since(&before);
    let ours = |r: &metrics::Requests| r.get("secrets") + r.get("serviceaccounts");
    // What one new namespace costs in Secret and ServiceAccount writes, everyone's
    // (kube-controller-manager's ServiceAccount and token Secret, the controller's pull Secret
    // and binding): the renewal wave's floor adds this for each namespace created during it.
    let per_new_namespace = ours(&new_writes) as f64 / params.new_namespaces.max(1) as f64;
    // End to end, and the part after kube-controller-manager created the ServiceAccount.
    let (latencies, after_sa): (Vec<Duration>, Vec<Duration>) = observer.with(|seen| {
        created
            .iter()
            .map(|(ns, at)| {
                let done = seen.bound[ns].max(seen.secrets[ns].first);
                (
                    done - *at,
                    done.saturating_duration_since(seen.sa_created[ns]),
                )
            })
            .unzip()
    });

    // 6. Memory with unrelated Secrets in the cluster.
    let rss_before_unrelated = controller.memory();
    log(&format!(
        "memory: adding {} unrelated 1 KiB Secrets",
        params.unrelated_secrets
    ));
    world.create_unrelated_secrets(&params).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_after_unrelated = controller.memory();
    let peak = controller.memory().peak_kib;
    controller.stop();
    let cached = setup::cached_counts(&world.client).await;

    report.add(Figure::time(
        "fan-out: all Secrets + ServiceAccounts",
        fanout_time,
        floor_time,
    ));
    report.note(format!(
        "floor: the controller's exact objects with the controller's rights (labels, expiry annotation and owner reference on the Secret, created by server-side apply; the bookkeeping annotation on the ServiceAccount, by a version-checked patch; ServiceAccounts read before the clock starts): {:.2} s for {} namespaces, the mean of the runs right before and right after the fan-out ({:.2} s before, {:.2} s after; {} ServiceAccount patches retried after a concurrent change in the first)",
        floor_time.as_secs_f64(),
        params.namespaces,
        first_floor_time.as_secs_f64(),
        repeat_floor_time.as_secs_f64(),
        floor_retries
    ));
    report.note(format!(
        "fan-out, split: the first Secret appeared {:.0} ms after the binding was applied (the binding's watch, finalizer, status and token before any Secret is written); from the first to the last, {:.2} s ({:.2}× the floor)",
        fanout_first.as_secs_f64() * 1000.0,
        (fanout_time - fanout_first).as_secs_f64(),
        ratio(fanout_time - fanout_first, floor_time),
    ));
    report.note(format!(
        "references, bare objects (no labels, annotations or owner): by a plain POST, which needs a cluster-wide `create` right on Secrets the controller does not have, {:.2} s ({:.2}× the floor; the fan-out is {:.2}× it); by server-side apply, {:.2} s ({:.2}× the floor; the fan-out is {:.2}× it)",
        post_floor_time.as_secs_f64(),
        ratio(post_floor_time, floor_time),
        ratio(fanout_time, post_floor_time),
        apply_floor_time.as_secs_f64(),
        ratio(apply_floor_time, floor_time),
        ratio(fanout_time, apply_floor_time),
    ));
    report.note(format!(
        "the benchmark watches the Secrets of every floor run above as it watches the fan-out's (the API server encodes each event for it, the benchmark decodes it); a last run of the controller's objects whose Secrets it does not watch took {:.2} s ({:.2}× the floor; the fan-out is {:.2}× it)",
        unwatched_floor_time.as_secs_f64(),
        ratio(unwatched_floor_time, floor_time),
        ratio(fanout_time, unwatched_floor_time),
    ));
    report.note(format!(
        "payload: the floor writes {} bytes of dockerconfigjson per Secret, the controller wrote {} (both domains of the instance, a token of the fake's form)",
        payload.len(),
        written_payload
    ));
    report.note(format!(
        "reads (GET, LIST, WATCH requests, everyone's): floor (first run, with its one list off the clock) {}; fan-out {}",
        floor_reads.describe(),
        fanout_reads.describe()
    ));
    report.note(format!(
        "CPU used: floor (first run) {floor_cpu}; bare objects by POST {post_floor_cpu}; bare objects by server-side apply {apply_floor_cpu}; fan-out {fanout_cpu}"
    ));
    let n = params.namespaces as u64;
    report.add(Figure::writes(
        "fan-out writes",
        &fanout_writes,
        &floor_writes,
        2 * n,
    ));
    report.add(Figure::count(
        "fan-out cloud calls (token + domain discovery)",
        fanout_cloud as u64,
        2,
    ));
    report.add(Figure::writes_expect(
        "steady-state writes",
        &steady_writes,
        0,
    ));
    let wave_new_writes = (per_new_namespace * wave_created.len() as f64).round() as u64;
    report.add(Figure::writes_expect(
        &format!(
            "renewal wave writes (with the {} namespaces created during it)",
            wave_created.len()
        ),
        &wave_writes,
        n + wave_new_writes,
    ));
    report.note(format!(
        "renewal wave writes: its floor is one Secret update per namespace ({n}) plus {wave_new_writes} for the namespaces created during it, at the {per_new_namespace:.2} Secret/ServiceAccount writes a new namespace cost outside the wave ({} for {} new namespaces: {})",
        ours(&new_writes),
        params.new_namespaces,
        new_writes.describe()
    ));
    report.add(Figure::count(
        "renewal wave cloud calls",
        wave_cloud as u64,
        1,
    ));
    report.note(format!(
        "renewal wave: {:.2} s from the first to the last Secret updated (as the benchmark's watch saw them); Secrets kept their UIDs: {uids_kept}",
        wave_time.as_secs_f64()
    ));
    report.add(Figure::wave_pace(
        &wave,
        params.namespaces,
        params.write_budget.as_deref(),
    ));
    report.add(Figure::wave_validity(
        &wave,
        params.namespaces,
        setup::RENEW_BEFORE_SECONDS,
    ));
    report.add(Figure::latency_goal(
        "new namespace → ServiceAccount bound during the renewal wave",
        wave_latencies,
        report::wave_latency_goal_ms(params.namespaces),
    ));
    report.note(format!(
        "namespaces created during the wave: {} of {} were created between the first and the last Secret rewritten (one every {} ms from the first)",
        created_within,
        wave_created.len(),
        wave_interval.as_millis()
    ));
    report.add(Figure::neighbour(
        "neighbour latency, idle (steady state)",
        &neighbour_idle,
        None,
    ));
    report.add(Figure::neighbour_versus(
        "neighbour latency during the fan-out",
        &neighbour_fanout,
        &neighbour_idle,
    ));
    // The goal is judged on the wave's own writes when that window holds enough requests for
    // a p99; a wave shorter than the burst (an unlimited budget) is judged whole.
    let goal = Some((&neighbour_idle, report::neighbour_goal(params.namespaces)));
    let own_judged = neighbour_wave_only.all.len() >= report::MIN_P99_SAMPLES;
    report.add(match own_judged {
        true => Figure::neighbour_versus(
            "neighbour latency during the renewal wave, with the namespaces created during it",
            &neighbour_wave,
            &neighbour_idle,
        ),
        false => Figure::neighbour(
            "neighbour latency during the renewal wave, with the namespaces created during it",
            &neighbour_wave,
            goal,
        ),
    });
    report.add(match own_judged {
        true => Figure::neighbour(
            "neighbour latency during the renewal wave, outside those namespaces' burst",
            &neighbour_wave_only,
            goal,
        ),
        false => Figure::neighbour_versus(
            "neighbour latency during the renewal wave, outside those namespaces' burst",
            &neighbour_wave_only,
            &neighbour_idle,
        ),
    });
    if let Some((a, b)) = burst {
        report.note(format!(
            "neighbour during the wave: the goal is judged on the wave's own writes (when they leave at least 100 requests; else on the whole wave), without the {:.1} s from the first namespace created during the wave to a second after the last one bound ({} of the wave's {:.1} s)",
            (b - a).as_secs_f64(),
            match b.min(wave.last).checked_duration_since(a.max(wave.first)) {
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
                None => "none".into(),
            },
            wave.last.saturating_duration_since(wave.first).as_secs_f64(),
        ));
    }
    report.note(format!(
        "neighbour: another client with a connection of its own, {}/s operations on ConfigMaps of its own namespace (per four: two GETs, one LIST, one create-update-delete cycle), each started on its tick; windows by the request's start; over the whole run: {}",
        params.neighbour_rate,
        neighbour.describe_totals()
    ));
    report.add(Figure::latency(
        "new namespace → ServiceAccount bound",
        latencies,
    ));
    report.add(Figure::latency(
        "of which: ServiceAccount created (by kube-controller-manager) → bound",
        after_sa,
    ));
    report.note(format!(
        "what the controller caches at the end (it watches every namespace and ServiceAccount, and every Secret named {}): {} namespaces, {} ServiceAccounts, {} such Secrets; the floor and reference runs' namespaces count too ({} of them), so the RSS row is that of a cluster of that many namespaces",
        setup::SECRET_NAME,
        cached.namespaces,
        cached.service_accounts,
        cached.secrets,
        world.floor_namespaces.len(),
    ));
    report.add(Figure::memory(
        "controller RSS",
        report::memory_goal_mib(params.namespaces),
        peak,
        rss_after_fanout,
        rss_before_unrelated,
        rss_after_unrelated,
    ));
    for overlap in &overlaps {
        report.note(format!("**not comparable:** {overlap}"));
    }
    report.note(format!(
        "total benchmark time: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let markdown = report.markdown();
    println!("{markdown}");
    let path = report.save(&markdown);
    log(&format!("saved {}", path.display()));
}
