//! The benchmark's table: each figure beside its floor or goal, as Markdown, saved under
//! `bench/results/` with the machine's core count, the parameters and the date.

use std::path::PathBuf;
use std::time::Duration;

use crate::Params;
use crate::metrics::Requests;

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

/// The controller's peak RSS goal: 64 MiB up to 1,000 namespaces, 96 MiB beyond (5,000).
pub fn memory_goal_mib(namespaces: usize) -> f64 {
    if namespaces <= 1000 { 64.0 } else { 96.0 }
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
        let verdict = if ours == expected {
            "at the floor".to_string()
        } else {
            format!("{} more than the floor", ours as i64 - expected as i64)
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

    pub fn latency(name: &str, mut samples: Vec<Duration>) -> Figure {
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
            floor: format!("goal: p99 ≤ {LATENCY_GOAL_MS} ms"),
            verdict: if p99 <= LATENCY_GOAL_MS {
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

/// The whole table plus notes.
pub struct Report {
    params: Params,
    date: jiff::Zoned,
    rows: Vec<Figure>,
    notes: Vec<String>,
}

impl Report {
    pub fn new(params: &Params) -> Report {
        Report {
            params: params.clone(),
            date: jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC),
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
            "# Benchmark {}\n\nMachine: {cores} cores. N = {} namespaces, M = {} unrelated Secrets, \
             {} new namespaces at {}/s, API concurrency {}.\n\n\
             | figure | measured | floor / goal | verdict |\n|---|---|---|---|\n",
            self.date.strftime("%Y-%m-%d %H:%M UTC"),
            p.namespaces,
            p.unrelated_secrets,
            p.new_namespaces,
            p.rate,
            p.concurrency
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

    /// Requests the table to `bench/results/<date>-n<N>-m<M>.md` and returns the path.
    pub fn save(&self, markdown: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/results");
        std::fs::create_dir_all(&dir).expect("creating bench/results");
        let path = dir.join(format!(
            "{}-n{}-m{}.md",
            self.date.strftime("%Y%m%dT%H%M"),
            self.params.namespaces,
            self.params.unrelated_secrets
        ));
        std::fs::write(&path, markdown).expect("writing the results file");
        path
    }
}
