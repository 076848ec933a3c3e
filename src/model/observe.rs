//! What one reconcile of a binding observed, folded from the per-namespace outcomes (pure):
//! [`tally`] counts this binding's namespaces and ServiceAccounts and collects its failures;
//! [`observation`] adds the token and the selection, ready for [`super::status::binding_status`].

use crate::api::conditions::reasons;
use crate::api::{AcrRegistryBinding, NamespaceFailure};

use super::plan::{NamespaceOutcome, SecretState};
use super::resolve::Resolved;
use super::selection::{NamespaceSelectionResult, service_account_selected};
use super::status::BindingObservation;
use super::token::TokenOutcome;

/// This binding's view of one pass over its namespaces.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    /// Selected namespaces whose Secret is current and carries this binding's auths.
    pub synced: usize,
    /// Selected namespaces that are not synced, and why (not allowed, not ours, failed).
    pub failures: Vec<NamespaceFailure>,
    /// Selected ServiceAccounts in selected namespaces, and how many list our Secret.
    pub service_accounts_selected: usize,
    pub service_accounts_bound: usize,
    /// Messages of ServiceAccount patches that failed.
    pub service_account_errors: Vec<String>,
    /// Something failed that a prompt retry may fix.
    pub retry_soon: bool,
}

/// Folds the outcomes of converging `results` (the selected namespaces and those the binding
/// still owns a Secret in) into this binding's view.
pub fn tally<E: std::fmt::Display>(
    resolved: &Resolved,
    policy: &str,
    secret_name: &str,
    selection: &NamespaceSelectionResult,
    results: &[(String, Result<NamespaceOutcome, E>)],
) -> Tally {
    let mut t = Tally {
        failures: selection
            .not_allowed
            .iter()
            .map(|ns| NamespaceFailure {
                name: ns.clone(),
                reason: reasons::NAMESPACE_NOT_ALLOWED.into(),
                message: format!(
                    "selected, but policy {policy} does not allow it (allowedNamespaces)"
                ),
            })
            .collect(),
        ..Tally::default()
    };
    for (ns, result) in results {
        if !selection.selected.contains(ns) {
            // A namespace the binding left: only its cleanup matters here.
            t.retry_soon |= result.is_err();
            continue;
        }
        match result {
            Ok(o) => count_namespace(&mut t, resolved, secret_name, ns, o),
            Err(e) => {
                t.retry_soon = true;
                t.failures.push(NamespaceFailure {
                    name: ns.clone(),
                    reason: reasons::SECRET_SYNC_FAILED.into(),
                    message: e.to_string(),
                });
            }
        }
    }
    t
}

fn count_namespace(
    t: &mut Tally,
    resolved: &Resolved,
    secret_name: &str,
    ns: &str,
    o: &NamespaceOutcome,
) {
    match o.secret {
        SecretState::Current if o.contributors.contains(&resolved.name) => t.synced += 1,
        SecretState::OwnedByOthers => t.failures.push(NamespaceFailure {
            name: ns.to_owned(),
            reason: reasons::SECRET_OWNED_BY_OTHERS.into(),
            message: format!(
                "a Secret named {secret_name} exists and is not managed by this controller; it is left untouched"
            ),
        }),
        _ => {}
    }
    for sa in &o.service_accounts {
        if service_account_selected(&resolved.service_accounts, &sa.name, &sa.labels) {
            t.service_accounts_selected += 1;
            if sa.bound && o.secret != SecretState::OwnedByOthers {
                t.service_accounts_bound += 1;
            }
        }
    }
    t.service_account_errors
        .extend(o.service_account_errors.iter().cloned());
    t.retry_soon |= !o.service_account_errors.is_empty();
}

/// Everything the status builder needs from one reconcile.
pub fn observation(
    binding: &AcrRegistryBinding,
    resolved: &Resolved,
    outcome: &TokenOutcome,
    selection: &NamespaceSelectionResult,
    tally: Tally,
) -> BindingObservation {
    // Domains from the spec win over discovered ones.
    let token = outcome.token.clone().map(|mut t| {
        if let Some(d) = &resolved.domains {
            t.domains = d.clone();
        }
        t
    });
    BindingObservation {
        generation: binding.metadata.generation,
        registry: binding.spec.registry.display(),
        blocker: None,
        domains: token
            .as_ref()
            .map(|t| t.domains.clone())
            .unwrap_or_default(),
        token_digest: token
            .as_ref()
            .map(|t| super::adopt::token_digest(&resolved.uid, &t.username, t.password.expose())),
        token,
        token_failure: outcome.failure.clone(),
        namespaces_selected: selection.selected.len(),
        namespaces_synced: tally.synced,
        namespace_failures: tally.failures,
        service_accounts_selected: tally.service_accounts_selected,
        service_accounts_bound: tally.service_accounts_bound,
        service_account_failures: tally.service_account_errors,
        rotation: None,
        renewal: None,
    }
}

#[cfg(test)]
mod tests;
