//! The leader's pass over the managed webhook certificate, as a pure plan: given the state the
//! Secret holds and how the webhook configuration stood towards its bundle, the step to take
//! and the state to write. [`super::rotation`] does the reading and writing around it.
//!
//! Two rules on top of [`certs::next_step`]:
//! - The publication time is recorded: when the configuration is first seen carrying the
//!   Secret's bundle ([`CertState::published_at`]); it is cleared while the configuration
//!   does not carry it. `overlap` is counted from it, not from when the Secret was written.
//! - [`Step::Create`] (no usable state: a Secret missing, or one that stopped parsing, or a
//!   certificate expired) keeps the CAs the configuration carried in the new bundle, after the
//!   new CA: replicas still serving the previous certificate stay trusted for one overlap,
//!   then [`Step::DropOldCa`] leaves the new CA alone.

use jiff::Timestamp;

use super::certs::{self, CertError, CertState, CertTimings, ServingNames, Step};

/// How the webhook configuration stood towards the Secret's bundle in this pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publication {
    /// It carried the Secret's bundle when read.
    Carried,
    /// This pass wrote the Secret's bundle into it.
    Published,
    /// It does not carry the Secret's bundle (no configuration, a conflict, no state).
    Missing,
}

/// What one pass does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub step: Step,
    /// The state to write to the Secret: a step taken, or only the publication time recorded.
    pub write: Option<CertState>,
}

/// Most CAs kept from a previous bundle on [`Step::Create`] (a bundle never grows unbounded).
const MAX_KEPT: usize = 4;

/// The plan of one pass at `now`. `configured` is the bundle the configuration carried before
/// this pass (its CAs, PEM), which [`Step::Create`] keeps for one overlap.
pub fn plan(
    state: Option<&CertState>,
    publication: Publication,
    configured: &[String],
    now: Timestamp,
    timings: &CertTimings,
    serving_names: &ServingNames,
) -> Result<Plan, CertError> {
    let observed = state.map(|s| CertState {
        published_at: match publication {
            Publication::Carried => s.published_at.or(Some(now)),
            Publication::Published => Some(now),
            Publication::Missing => None,
        },
        ..s.clone()
    });
    let step = certs::next_step(observed.as_ref(), now, timings, serving_names);
    let taken = certs::take_step(step, observed.as_ref(), now, timings, serving_names)?;
    let taken = taken.map(|mut next| {
        if step == Step::Create {
            let kept: Vec<&String> = configured
                .iter()
                .filter(|ca| !next.bundle.contains(ca))
                .collect();
            let skip = kept.len().saturating_sub(MAX_KEPT);
            next.bundle.extend(kept.into_iter().skip(skip).cloned());
        }
        next
    });
    let write = taken.or_else(|| observed.filter(|o| Some(o) != state));
    Ok(Plan { step, write })
}

#[cfg(test)]
mod tests;
