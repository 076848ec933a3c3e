//! The binding model: everything the binding reconciler and the webhook decide, without a
//! Kubernetes client (no `kube::Client`, no `Api` call). Functions of their inputs and of
//! watch-cache snapshots, unit-tested without a cluster.
//!
//! In the order a binding passes through them:
//! - [`resolve`]: from a binding and its policy to a token request and a selection, or a
//!   blocker; [`ResolveConfig`] is the settings part it needs.
//! - [`selection`]: which namespaces and ServiceAccounts a binding targets.
//! - [`token`]: what a token is (request, cache key, held token, outcome).
//! - [`adopt`]: recognising, after a restart, a token the binding's Secrets hold.
//! - [`rotation`]: rotation on demand: the requests a binding carries and whether one is
//!   pending against what its status records as handled.
//! - [`secret`]: the dockerconfigjson Secret builder and change detection.
//! - [`cached_secret`]: the compact form the watch cache keeps of a Secret, read without
//!   expanding it back.
//! - [`service_accounts`]: the version-checked `imagePullSecrets` patch of one ServiceAccount.
//! - [`cached_service_account`]: the compact form the watch cache keeps of a ServiceAccount,
//!   planned from directly.
//! - [`plan`]: the whole plan of one namespace (Secret and ServiceAccounts) and its outcome.
//! - [`wave`]: the renewal wave's pacing: which rewrites may wait, until when, their slots.
//! - [`observe`]: folds one reconcile's namespace outcomes into the binding's view.
//! - [`status`]: the status builders (one function per condition).
//! - [`events`]: Event reasons, actions and the token Event's note.

pub mod adopt;
pub mod cached_secret;
pub mod cached_service_account;
pub mod events;
pub mod observe;
pub mod plan;
pub mod resolve;
pub mod rotation;
pub mod secret;
pub mod selection;
pub mod service_accounts;
pub mod status;
pub mod token;
pub mod wave;

pub use resolve::{ResolveConfig, Resolved, resolve};
