//! The renewal wave as the benchmark's watch saw it: when the first and the last Secret got
//! their new token, the peak number of Secrets rewritten in one second, and how much life the
//! tokens had left: each old token at the moment its Secret was rewritten (the least any
//! Secret held during the wave), each new token when the wave was over. Expiries are the fake
//! cloud's own record of the tokens it issued, not what the controller wrote beside them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use acr_fake_cloud::FakeHandle;

use crate::observe::Observer;

pub struct Wave {
    /// Secrets whose content changed after the wave's start.
    pub renewed: usize,
    pub first: Instant,
    pub last: Instant,
    /// The most Secrets rewritten within one second, counting seconds from the first, as the
    /// benchmark's watch saw them arrive (a watch that falls behind delivers in clumps).
    pub peak_per_second: usize,
    /// The most Secrets the API server wrote within one wall-clock second, by their
    /// managedFields times: what the API server and etcd took.
    pub peak_per_server_second: usize,
    /// The least life left on the token a Secret held, at the moment the wave replaced it.
    pub least_left_during: Option<jiff::SignedDuration>,
    /// The least life left on the tokens the Secrets hold once the wave is over.
    pub least_left_after: Option<jiff::SignedDuration>,
    /// Secrets whose old or new token the fake did not issue or that had expired (by the
    /// fake's clock) when the wave was over.
    pub unknown_or_expired: usize,
}

impl Wave {
    pub fn duration(&self) -> Duration {
        self.last - self.first
    }

    /// Secrets rewritten per second on average, first to last.
    pub fn mean_per_second(&self) -> f64 {
        self.renewed as f64 / self.duration().as_secs_f64().max(1.0)
    }
}

/// Reads the wave that started after `since` over `namespaces` from what `observer` saw;
/// `over` is the wall-clock time the wave was over, the moment the new tokens are checked at.
pub fn analyse(
    observer: &Observer,
    namespaces: &[String],
    since: Instant,
    over: jiff::Timestamp,
    fake: &FakeHandle,
) -> Wave {
    observer.with(|seen| {
        let mut changes: Vec<Instant> = Vec::new();
        let mut written: HashMap<i64, usize> = HashMap::new();
        let mut renewed = 0;
        let mut least_during: Option<jiff::SignedDuration> = None;
        let mut least_after: Option<jiff::SignedDuration> = None;
        let mut unknown_or_expired = 0;
        let least = |acc: &mut Option<jiff::SignedDuration>, v: jiff::SignedDuration| {
            *acc = Some(acc.map_or(v, |a| a.min(v)));
        };
        for ns in namespaces {
            let Some(secret) = seen.secrets.get(ns) else {
                continue;
            };
            let Some(first_new) = secret.versions.iter().position(|v| v.at > since) else {
                continue;
            };
            renewed += 1;
            changes.extend(secret.versions[first_new..].iter().map(|v| v.at));
            for v in &secret.versions[first_new..] {
                if let Some(at) = v.written {
                    *written.entry(at.as_second()).or_default() += 1;
                }
            }
            // The token the Secret held until the wave rewrote it.
            if let Some(old) = first_new.checked_sub(1).map(|i| &secret.versions[i]) {
                match fake.registry_token_expiry(&old.password) {
                    Some(expiry) => least(
                        &mut least_during,
                        expiry.duration_since(secret.versions[first_new].wall),
                    ),
                    None => unknown_or_expired += 1,
                }
            }
            let newest = &secret.versions[secret.versions.len() - 1];
            match fake.registry_token_expiry(&newest.password) {
                Some(expiry) if fake.registry_token_valid(&newest.password) => {
                    least(&mut least_after, expiry.duration_since(over));
                }
                _ => unknown_or_expired += 1,
            }
        }
        changes.sort();
        let first = changes.first().copied().unwrap_or(since);
        let last = changes.last().copied().unwrap_or(since);
        let mut buckets = vec![0usize; (last - first).as_secs() as usize + 1];
        for at in &changes {
            buckets[(*at - first).as_secs() as usize] += 1;
        }
        Wave {
            renewed,
            first,
            last,
            peak_per_second: buckets.into_iter().max().unwrap_or(0),
            peak_per_server_second: written.into_values().max().unwrap_or(0),
            least_left_during: least_during,
            least_left_after: least_after,
            unknown_or_expired,
        }
    })
}
