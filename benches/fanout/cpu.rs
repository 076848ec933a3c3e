//! CPU time of the processes that share the machine during a phase: the controller, and the
//! control plane's API server, etcd and controller manager (their pid files are in the run directory that
//! `ACC_CLUSTER_DIR/run` names). On 2 cores a phase's wall-clock time depends on all of them,
//! so these figures say where the work went, which the times alone cannot.

use std::path::PathBuf;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// The processes to account, by name.
#[derive(Clone, Debug, Default)]
pub struct Processes(Vec<(&'static str, u32)>);

/// CPU seconds (user + system) per process at one moment.
#[derive(Clone, Debug, Default)]
pub struct Sample(Vec<(&'static str, f64)>);

impl Processes {
    /// The control plane's processes, when their pids are known.
    pub fn control_plane() -> Self {
        let mut found = Vec::new();
        let run_dir = std::env::var("ACC_CLUSTER_DIR")
            .ok()
            .and_then(|d| std::fs::read_to_string(PathBuf::from(d).join("run")).ok())
            .map(|s| PathBuf::from(s.trim()));
        if let Some(dir) = run_dir {
            for name in ["kube-apiserver", "etcd", "kube-controller-manager"] {
                let pid = std::fs::read_to_string(dir.join(format!("{name}.pid")))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                if let Some(pid) = pid {
                    found.push((name, pid));
                }
            }
        }
        Processes(found)
    }

    /// The same, and the controller.
    pub fn with_controller(&self, pid: u32) -> Self {
        let mut all = self.0.clone();
        all.push(("controller", pid));
        Processes(all)
    }

    pub fn sample(&self) -> Sample {
        Sample(
            self.0
                .iter()
                .filter_map(|(name, pid)| Some((*name, cpu_seconds(*pid)?)))
                .collect(),
        )
    }
}

impl Sample {
    /// The CPU each process used since `before`, as "name X.XX s, ...".
    pub fn since(&self, before: &Sample) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter_map(|(name, now)| {
                let then = before.0.iter().find(|(n, _)| n == name)?.1;
                Some(format!("{name} {:.2} s", now - then))
            })
            .collect();
        if parts.is_empty() {
            "not measured".into()
        } else {
            parts.join(", ")
        }
    }
}

/// User + system CPU seconds of `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}
