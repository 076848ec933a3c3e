//! The shared plumbing: what the reconcilers and the webhook all use and `runtime` constructs.
//! Everything here talks to the cluster (or the cloud) on their behalf; what to say is decided
//! in [`crate::model`].
//!
//! - [`caches`]: the watch caches ([`Stores`]), their one shared [`Readiness`] and re-list
//!   triggers.
//! - [`written`]: our pull Secret writes, in front of the Secret cache until it shows them.
//! - [`patched`]: our ServiceAccount patches, in front of the ServiceAccount cache until it
//!   shows them (and their echoes told apart).
//! - [`flights`]: the writes under way, counted per key, for those two to tell an echo that
//!   beats its write's response.
//! - [`leadership`]: the write gate: whether this replica leads, and the client that refuses
//!   writes while it does not.
//! - [`recorder`]: the one Event writer (one Event per distinct note, repeats counted).
//! - [`locks`]: the per-namespace write locks.
//! - [`tokens`]: the shared token manager, and the fetcher that reaches the cloud.
//! - [`context`]: the one reconcile [`Context`] and the reconcilers' settings.
//! - [`backoff`]: consecutive failures per object, and how soon it runs again.
//! - [`guard`]: the envelope of every reconcile (caches synced, deadline, leadership, error
//!   policy and its Events).
//! - [`status`]: server-side apply on `/status`.
//! - [`budget`]: the write budget (a token bucket with an urgent and a wave lane).
//! - [`wave`]: the renewal rewrites deferred to their slot in a paced wave.
//! - [`touched`]: the namespaces whose objects just changed, for the namespace pass.
//! - [`error`]: the layer's error type, with a bounded reason per variant.

pub mod backoff;
pub mod budget;
pub mod caches;
pub mod context;
pub mod error;
pub mod flights;
pub mod guard;
pub mod leadership;
pub mod locks;
pub mod patched;
pub mod recorder;
pub mod status;
pub mod tokens;
pub mod touched;
pub mod wave;
pub mod written;

pub use caches::Readiness;
pub use context::{CONTROLLER_NAME, Context, ReconcileConfig, Stores};
pub use error::{Error, Result};
pub use leadership::{Leadership, gated_client};
