//! The benchmark's table: each figure beside its floor or goal, as Markdown, saved under
//! `bench/results/` with the machine's core count, the parameters and the date.

use std::path::PathBuf;
use std::time::Duration;

use crate::Params;
use crate::metrics::Requests;
use crate::neighbour::Window;
use crate::wave::Wave;

/// Peak and current resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// One row: what was measured, the floor or goal, and how they compare.
pub struct Figure {
    name: String,
    measured: String,
    floor: String,
    verdict: String,
}

/// New namespace → ServiceAccount bound, 99th percentile.
const LATENCY_GOAL_MS: f64 = 250.0;

/// New namespace → ServiceAccount bound during a renewal wave, 99th percentile: 250 ms up to
/// 1,000 namespaces, 500 ms beyond (10,000).
pub fn wave_latency_goal_ms(namespaces: usize) -> f64 {
    if namespaces <= 1000 { 250.0 } else { 500.0 }
}

/// The fewest requests a window needs for its p99 to be judged against a goal.
pub const MIN_P99_SAMPLES: usize = 100;

/// The neighbour's p99 during the renewal wave over its p99 idle: 1.5× up to 1,000
/// namespaces, 2× beyond (10,000).
pub fn neighbour_goal(namespaces: usize) -> f64 {
    if namespaces <= 1000 { 1.5 } else { 2.0 }
}

/// The controller's peak RSS goal: 40 MiB up to 1,000 namespaces, 128 MiB beyond (10,000).
pub fn memory_goal_mib(namespaces: usize) -> f64 {
    if namespaces <= 1000 { 40.0 } else { 128.0 }
}

/// `measured / floor`, as the table prints it (a zero floor counts as a nanosecond).
pub fn ratio(measured: Duration, floor: Duration) -> f64 {
    measured.as_secs_f64() / floor.as_secs_f64().max(1e-9)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Figure {
    pub fn time(name: &str, measured: Duration, floor: Duration) -> Figure {
        let ratio = ratio(measured, floor);
        Figure {
            name: name.into(),
            measured: format!("{:.2} s", measured.as_secs_f64()),
            floor: format!("{:.2} s", floor.as_secs_f64()),
            verdict: format!("{ratio:.2}× the floor (goal ≤ 1.1×)"),
        }
    }

    pub fn writes(name: &str, measured: &Requests, floor: &Requests, expected: u64) -> Figure {
        let ours = measured.get("secrets") + measured.get("serviceaccounts");
        Figure {
            name: name.into(),
            measured: format!("{} Secret/ServiceAccount ({})", ours, measured.describe()),
            floor: format!("{expected} (floor client did {})", floor.describe()),
            verdict: format!("{:.2}× the floor", ours as f64 / expected.max(1) as f64),
        }
    }

    pub fn writes_expect(name: &str, measured: &Requests, expected: u64) -> Figure {
        let ours = measured.get("secrets") + measured.get("serviceaccounts");
        let verdict = match ours.cmp(&expected) {
            std::cmp::Ordering::Equal => "at the floor".to_string(),
            std::cmp::Ordering::Greater => format!("{} more than the floor", ours - expected),
            std::cmp::Ordering::Less => format!("{} fewer than the floor", expected - ours),
        };
        Figure {
            name: name.into(),
            measured: format!(
                "{} Secret/ServiceAccount (all writes: {})",
                ours,
                measured.describe()
            ),
            floor: expected.to_string(),
            verdict,
        }
    }

    pub fn count(name: &str, measured: u64, floor: u64) -> Figure {
        Figure {
            name: name.into(),
            measured: measured.to_string(),
            floor: floor.to_string(),
            verdict: if measured == floor {
                "at the floor".into()
            } else {
                format!("{:.2}× the floor", measured as f64 / floor.max(1) as f64)
            },
        }
    }

    pub fn latency(name: &str, samples: Vec<Duration>) -> Figure {
        Figure::latency_goal(name, samples, LATENCY_GOAL_MS)
    }

    /// p50, p95 and p99 of `samples` against a p99 goal of `goal_ms`.
    pub fn latency_goal(name: &str, mut samples: Vec<Duration>, goal_ms: f64) -> Figure {
        samples.sort();
        let pct = |p: f64| -> f64 {
            if samples.is_empty() {
                return f64::NAN;
            }
            let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        let p99 = pct(0.99);
        Figure {
            name: format!("{name} ({} namespaces)", samples.len()),
            measured: format!(
                "p50 {:.0} ms, p95 {:.0} ms, p99 {p99:.0} ms",
                pct(0.5),
                pct(0.95)
            ),
            floor: format!("goal: p99 ≤ {goal_ms} ms"),
            verdict: if p99 <= goal_ms {
                "meets the goal"
            } else {
                "misses the goal"
            }
            .into(),
        }
    }

    /// The neighbour's latency in one window; with `idle` and a goal, the window's p99 against
    /// `goal`× the idle p99.
    pub fn neighbour(name: &str, window: &Window, idle: Option<(&Window, f64)>) -> Figure {
        let measured = format!(
            "p50 {:.1} ms, p99 {:.1} ms ({} reads, {} writes, {} failed)",
            window.quantile_ms(0.5),
            window.quantile_ms(0.99),
            window.reads,
            window.writes,
            window.errors
        );
        let (floor, verdict) = match idle {
            None => ("the baseline".to_string(), "—".to_string()),
            Some((idle, _)) if window.all.len() < MIN_P99_SAMPLES => (
                format!("idle p99 {:.1} ms", idle.quantile_ms(0.99)),
                format!(
                    "{} requests, too few for a p99 (at least {MIN_P99_SAMPLES}): no verdict",
                    window.all.len()
                ),
            ),
            Some((idle, goal)) => {
                let ratio = window.quantile_ms(0.99) / idle.quantile_ms(0.99);
                let meets = ratio <= goal && window.errors == 0 && !window.all.is_empty();
                (
                    format!(
                        "idle p99 {:.1} ms; goal: p99 ≤ {goal}× idle",
                        idle.quantile_ms(0.99)
                    ),
                    format!(
                        "{ratio:.2}× idle: {}",
                        if meets {
                            "meets the goal"
                        } else {
                            "misses the goal"
                        }
                    ),
                )
            }
        };
        Figure {
            name: name.into(),
            measured,
            floor,
            verdict,
        }
    }

    /// The neighbour's latency in a window that has no goal, beside the idle p99.
    pub fn neighbour_versus(name: &str, window: &Window, idle: &Window) -> Figure {
        let mut f = Figure::neighbour(name, window, Some((idle, f64::INFINITY)));
        f.floor = format!("idle p99 {:.1} ms; no goal", idle.quantile_ms(0.99));
        f.verdict = match window.all.len() < MIN_P99_SAMPLES {
            true => format!("{} requests, too few for a p99", window.all.len()),
            false => format!(
                "{:.2}× idle",
                window.quantile_ms(0.99) / idle.quantile_ms(0.99)
            ),
        };
        f
    }

    /// The wave's length and pace; no goal until the controller has a write budget.
    /// `budget`: the controller's `--write-budget` when not its default.
    pub fn wave_pace(wave: &Wave, namespaces: usize, budget: Option<&str>) -> Figure {
        let budget = match budget {
            None => {
                "the default write budget (20 writes/s): spread over the renewal window".to_owned()
            }
            Some("0") => "an unlimited write budget: every rewrite at once".to_owned(),
            Some(b) => format!("a write budget of {b} writes/s: spread over the renewal window"),
        };
        Figure {
            name: "renewal wave: first to last Secret rewritten, peak Secrets per second".into(),
            measured: format!(
                "{:.2} s for {} Secrets; peak {} in one second by the API server's write times, {} as the benchmark's watch saw them arrive (mean {:.0}/s)",
                wave.duration().as_secs_f64(),
                wave.renewed,
                wave.peak_per_server_second,
                wave.peak_per_second,
                wave.mean_per_second()
            ),
            floor: format!("no goal; {budget}"),
            verdict: if wave.renewed == namespaces {
                "every Secret renewed".into()
            } else {
                format!("{} of {namespaces} renewed", wave.renewed)
            },
        }
    }

    /// Whether every Secret kept a token with at least half of `renewBefore` left, during the
    /// wave (the old token when it was replaced) and after it (the new one).
    pub fn wave_validity(wave: &Wave, namespaces: usize, renew_before_s: i64) -> Figure {
        let half = jiff::SignedDuration::from_secs(renew_before_s / 2);
        let secs = |d: Option<jiff::SignedDuration>| {
            d.map_or("none".into(), |d| format!("{:.0} s", d.as_secs_f64()))
        };
        let meets = wave.renewed == namespaces
            && wave.unknown_or_expired == 0
            && wave.least_left_during.is_some_and(|d| d >= half)
            && wave.least_left_after.is_some_and(|d| d >= half);
        Figure {
            name: "token life left in every Secret, during and after the wave".into(),
            measured: format!(
                "least {} left on a token when the wave replaced it, least {} on the new tokens after it; {} unknown or expired",
                secs(wave.least_left_during),
                secs(wave.least_left_after),
                wave.unknown_or_expired
            ),
            floor: format!(
                "goal: ≥ {} s (renewBefore/2) in all {namespaces}",
                renew_before_s / 2
            ),
            verdict: if meets {
                "meets the goal"
            } else {
                "misses the goal"
            }
            .into(),
        }
    }

    /// `peak_kib` is the high-water mark over the whole run; the others are RSS at three moments.
    pub fn memory(
        name: &str,
        goal_mib: f64,
        peak_kib: u64,
        after_fanout: Memory,
        before: Memory,
        after: Memory,
    ) -> Figure {
        let growth = mib(after.rss_kib) - mib(before.rss_kib);
        Figure {
            name: name.into(),
            measured: format!(
                "{:.1} MiB right after fan-out, {:.1} MiB steady, {:.1} MiB with the unrelated Secrets ({growth:+.1} MiB); peak {:.1} MiB",
                mib(after_fanout.rss_kib),
                mib(before.rss_kib),
                mib(after.rss_kib),
                mib(peak_kib)
            ),
            floor: format!("goal: ≤ {goal_mib:.0} MiB, growth < 5 MiB"),
            verdict: if mib(peak_kib) <= goal_mib && growth < 5.0 {
                "meets the goal"
            } else {
                "misses the goal"
            }
            .into(),
        }
    }
}

/// The first three fields of `/proc/loadavg` ("?" where it cannot be read).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The whole table plus notes.
pub struct Report {
    params: Params,
    date: jiff::Zoned,
    /// `/proc/loadavg` when the benchmark started: other work on the machine shows here.
    load_at_start: String,
    rows: Vec<Figure>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(params: &Params) -> Report {
        Report {
            params: params.clone(),
            date: jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC),
            load_at_start: load_average(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn add(&mut self, figure: Figure) {
        self.rows.push(figure);
    }

    pub fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub fn markdown(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let p = &self.params;
        let mut out = format!(
            "# Benchmark {}\n\nMachine: {cores} cores, load average (1, 5, 15 min) {} at the start, {} at the end. N = {} namespaces, M = {} unrelated Secrets, \
             {} new namespaces at {}/s, API concurrency {}, controller write budget {}.\n\n\
             | figure | measured | floor / goal | verdict |\n|---|---|---|---|\n",
            self.date.strftime("%Y-%m-%d %H:%M UTC"),
            self.load_at_start,
            load_average(),
            p.namespaces,
            p.unrelated_secrets,
            p.new_namespaces,
            p.rate,
            p.concurrency,
            match p.write_budget.as_deref() {
                None => "default",
                Some("0") => "unlimited",
                Some(b) => b,
            }
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.name, r.measured, r.floor, r.verdict
            ));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }

    /// Requests the table to `bench/results/<date>-n<N>-m<M>[-b<write budget>].md` and returns the path.
    pub fn save(&self, markdown: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/results");
        std::fs::create_dir_all(&dir).expect("creating bench/results");
        let budget = match self.params.write_budget.as_deref() {
            Some(b) => format!("-b{b}"),
            None => String::new(),
        };
        let path = dir.join(format!(
            "{}-n{}-m{}{budget}.md",
            self.date.strftime("%Y%m%dT%H%M"),
            self.params.namespaces,
            self.params.unrelated_secrets
        ));
        std::fs::write(&path, markdown).expect("writing the results file");
        path
    }
}
