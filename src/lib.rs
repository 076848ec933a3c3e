//! acr-credential-controller: password-free image pulls from Alibaba Cloud Container Registry.
//!
//! The library holds everything the binary runs; `main.rs` only parses flags and starts it.
//! Modules in layers, top to bottom; a module imports only layers below its own, never a
//! sibling (`tests/product_module_tree.rs` checks it):
//! - `cli`: the subcommands (`run`, `doctor`, `crd`, `migrate`, `validate`, and `kubectl` for
//!   the `kubectl acr` plugin) and their flags.
//! - `runtime`: the composition root: settings, watch caches, leader election, probes; starts
//!   the reconcilers, the webhook and the translator side by side.
//! - `binding`, `policy`: the reconcilers; `binding/` holds the binding pipeline in stage order.
//!   `translator`: the live translation of the legacy ConfigMap. `webhook`: the ServiceAccount
//!   admission webhook (`injectOnCreate`) and its certificates.
//! - `cluster`: the plumbing those share: caches, the write gate, the one Event writer, locks,
//!   the token manager, the reconcile context and envelope, the layer's error.
//! - `model`: the client-free binding model: resolve, selection, the Secret and ServiceAccount
//!   plans, observe, the status builders, Event notes.
//! - `legacy`: translation of the legacy `kube-system/acr-configuration` ConfigMap into CRs.
//!   `provider`: the kubelet image credential provider (`src/bin/acr-credential-provider.rs`),
//!   with the node's role (`workerRole`) or the pulling Pod's ServiceAccount (`rrsa`) as its
//!   credential source, and no Secrets.
//! - `cloud`: the Alibaba Cloud client (signing, credential sources, STS, registry tokens,
//!   errors, the clock) and the chain walk behind `doctor`.
//! - `api`: the `AcrRegistryBinding` and `AcrCredentialPolicy` CRD types, their conditions and
//!   their validation.
//! - `metrics`: the Prometheus counters and gauges counted as things happen. `sensitive`: the
//!   wrapper that keeps credentials and tokens out of every printed string.
//!
//! The words (binding, policy, pull Secret, credential source, principal, converge, …) mean one
//! thing each: `docs/glossary.md`.
//!
//! The strict fake of the Alibaba Cloud services that the tests, the sandbox and the benchmark
//! run against is not part of this crate: it is the workspace crate `crates/acr-fake-cloud`
//! (library and `acr-fake-cloud` binary), a dev-dependency only, so the product never links it.

pub mod api;
pub mod binding;
pub mod cli;
pub mod cloud;
pub mod cluster;
pub mod legacy;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod provider;
pub mod runtime;
pub mod sensitive;
pub mod translator;
pub mod webhook;
