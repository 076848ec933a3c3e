//! The renewal wave's pacing (pure): which Secret rewrites only renew tokens and may wait, by
//! when each must be done, its slot in the wave, and whether a wave fits the write budget.
//!
//! When a token renews, every Secret holding the old one needs the new one. Those rewrites can
//! wait: the old token is valid for `renewBefore` more. So a wave is spread over a window that
//! opens when the new token is issued and closes while every old token still has half its
//! `renewBefore` left, less a tenth of it for safety ([`deadline`]): the namespaces of a binding
//! get evenly spaced slots across it, in name order, the first at once ([`slot`]). The pace is the namespaces over
//! the window; a wave whose pace exceeds the write budget ([`WavePace::over_budget`]) is
//! written at that pace all the same (over budget), since a token must never get closer to
//! expiry than that, and the binding says so in its `RenewalPaced` condition.
//!
//! Only rewrites that change nothing but the tokens wait ([`renews_only`]): a new namespace, a
//! changed domain list, a binding joining or leaving a Secret, or a Secret edited by someone
//! else (its expiry no older than ours) is written at once.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;

use crate::api::AcrRegistryBinding;

use super::secret::{EXPIRES_ANNOTATION, MANAGED_BY_LABEL, MANAGED_LABEL, domains_in};

/// When a renewal rewrite of a Secret whose earliest token expires at `old_expires` must be
/// done by: while that token still has half of `renew_before` left, and a tenth more.
pub fn deadline(old_expires: Timestamp, renew_before: Duration) -> Timestamp {
    let margin = renew_before / 2 + renew_before / 10;
    let margin = SignedDuration::try_from(margin).unwrap_or(SignedDuration::MAX);
    old_expires.checked_sub(margin).unwrap_or(Timestamp::MIN)
}

/// The expiry a Secret of ours records (its earliest token's).
pub fn expires_at(secret: &Secret) -> Option<Timestamp> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(EXPIRES_ANNOTATION)?
        .parse()
        .ok()
}

/// The old expiry, when writing `desired` over `existing` only renews tokens: the same type,
/// labels, owners and domains, and a later expiry than the one `existing` records. Anything
/// else (including an `existing` without a readable expiry) is not a renewal.
pub fn renews_only(existing: &Secret, desired: &Secret) -> Option<Timestamp> {
    let label = |s: &Secret, k: &str| s.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let owners = |s: &Secret| -> BTreeSet<String> {
        s.metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|o| o.kind == AcrRegistryBinding::kind(&()))
            .map(|o| o.uid.clone())
            .collect()
    };
    let old = expires_at(existing)?;
    let same = existing.type_ == desired.type_
        && label(existing, MANAGED_LABEL) == label(desired, MANAGED_LABEL)
        && label(existing, MANAGED_BY_LABEL) == label(desired, MANAGED_BY_LABEL)
        && owners(existing) == owners(desired)
        && domains_in(existing) == domains_in(desired);
    (same && expires_at(desired).is_some_and(|new| new > old)).then_some(old)
}

/// The slot of the `rank`-th of `n` namespaces (0-based) in a wave from `start` to `end`:
/// evenly spaced, the first at once and the last one share of the window before its end.
pub fn slot(start: Timestamp, end: Timestamp, rank: usize, n: usize) -> Timestamp {
    let n = n.max(1);
    let window = end.duration_since(start);
    if window <= SignedDuration::ZERO {
        return start;
    }
    let fraction = rank.min(n - 1) as f64 / n as f64;
    start.checked_add(window.mul_f64(fraction)).unwrap_or(start)
}

/// One binding's renewal wave against the write budget.
#[derive(Clone, Debug, PartialEq)]
pub struct WavePace {
    /// The binding's namespaces, every one of which gets the new token.
    pub namespaces: usize,
    /// From the new token's issue to the first deadline.
    pub window: Duration,
    /// Writes per second the budget allows (0: unlimited).
    pub budget: f64,
}

impl WavePace {
    /// Writes per second the wave needs to finish within its window.
    pub fn needed(&self) -> f64 {
        match self.window.as_secs_f64() {
            w if w > 0.0 => self.namespaces as f64 / w,
            _ => f64::INFINITY,
        }
    }

    /// Whether the wave cannot finish in time within the budget.
    pub fn over_budget(&self) -> bool {
        self.budget > 0.0 && self.needed() > self.budget
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::model::secret::{Contribution, desired_secret};
    use crate::sensitive::Sensitive;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn contribution(binding: &str, domains: &[&str], pw: &str, expires: i64) -> Contribution {
        Contribution {
            binding: binding.into(),
            binding_uid: format!("uid-{binding}"),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            username: "cr_temp_user".into(),
            password: Sensitive::new(pw.into()),
            expires_at: at(expires),
        }
    }

    fn secret(contributions: &[Contribution]) -> Secret {
        desired_secret("acr-credentials", "team-a", contributions).unwrap()
    }

    #[test]
    fn the_deadline_leaves_half_the_margin_and_a_tenth_more() {
        assert_eq!(deadline(at(3600), Duration::from_secs(900)), at(3600 - 540));
        assert_eq!(deadline(at(270), Duration::from_secs(180)), at(270 - 108));
    }

    #[test]
    fn only_a_later_token_for_the_same_owners_and_domains_is_a_renewal() {
        let old = secret(&[contribution("a", &["r.example.com"], "old", 1000)]);
        let renewed = secret(&[contribution("a", &["r.example.com"], "new", 4600)]);
        assert_eq!(renews_only(&old, &renewed), Some(at(1000)));
        // A repair: the token someone changed, with the expiry we recorded (not later).
        let repaired = secret(&[contribution("a", &["r.example.com"], "x", 1000)]);
        assert_eq!(renews_only(&old, &repaired), None);
        // Domains, owners: written at once.
        let more = secret(&[contribution(
            "a",
            &["r.example.com", "s.example.com"],
            "new",
            4600,
        )]);
        assert_eq!(renews_only(&old, &more), None);
        let joined = secret(&[
            contribution("a", &["r.example.com"], "new", 4600),
            contribution("b", &["b.example.com"], "b", 4600),
        ]);
        assert_eq!(renews_only(&old, &joined), None);
        // No readable expiry on the Secret: not ours to judge, written at once.
        let mut bare = old.clone();
        bare.metadata = ObjectMeta {
            annotations: Some(BTreeMap::new()),
            ..old.metadata.clone()
        };
        assert_eq!(renews_only(&bare, &renewed), None);
    }

    #[test]
    fn slots_are_evenly_spaced_and_end_before_the_window_does() {
        let slots: Vec<Timestamp> = (0..4).map(|r| slot(at(0), at(80), r, 4)).collect();
        assert_eq!(slots, vec![at(0), at(20), at(40), at(60)]);
        assert_eq!(
            slot(at(0), at(80), 9, 4),
            at(60),
            "a rank past n takes the last"
        );
        assert_eq!(slot(at(50), at(40), 3, 4), at(50), "no window: at once");
        assert_eq!(
            slot(at(0), at(80), 0, 0),
            at(0),
            "a wave of one goes at once"
        );
    }

    #[test]
    fn a_wave_is_over_budget_when_its_namespaces_do_not_fit_its_window() {
        let pace = |namespaces, secs, budget| WavePace {
            namespaces,
            window: Duration::from_secs(secs),
            budget,
        };
        // 1,000 namespaces over the 72 s of a 180 s renewBefore: 13.9/s.
        assert!((pace(1000, 72, 20.0).needed() - 13.888).abs() < 0.01);
        assert!(!pace(1000, 72, 20.0).over_budget());
        assert!(pace(1000, 72, 10.0).over_budget());
        assert!(!pace(1000, 72, 0.0).over_budget(), "unlimited");
        assert!(pace(1, 0, 20.0).over_budget(), "no window at all");
    }
}
