//! Stage 5, observe. Talks to the cluster: no.
//!
//! What this reconcile saw: the per-namespace outcomes folded into the binding's view
//! ([`crate::model::observe`]), with its token and selection, ready for the status.

use super::plan::Targets;
use crate::api::AcrRegistryBinding;
use crate::cluster::Result;
use crate::model::observe::{observation, tally};
use crate::model::plan::NamespaceOutcome;
use crate::model::resolve::Resolved;
use crate::model::status::BindingObservation;
use crate::model::token::TokenOutcome;

/// What one reconcile observed, and whether something failed that a prompt retry may fix.
#[derive(Clone, Debug)]
pub struct Observed {
    pub observation: BindingObservation,
    pub retry_soon: bool,
}

/// Folds the outcomes of converging `results` into what `binding` observed.
pub fn observe(
    binding: &AcrRegistryBinding,
    resolved: &Resolved,
    token: &TokenOutcome,
    targets: &Targets,
    results: &[(String, Result<NamespaceOutcome>)],
    secret_name: &str,
) -> Observed {
    let tally = tally(
        resolved,
        binding.spec.policy_name(),
        secret_name,
        &targets.selection,
        results,
    );
    let retry_soon = tally.retry_soon;
    Observed {
        observation: observation(binding, resolved, token, &targets.selection, tally),
        retry_soon,
    }
}
