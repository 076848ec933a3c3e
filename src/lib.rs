//! acr-credential-controller: password-free image pulls from Alibaba Cloud Container Registry.
//!
//! The library holds everything the binary runs; `main.rs` only parses flags and starts it.
//! Modules by concern:
//! - `api`: the `AcrRegistryBinding` and `AcrCredentialPolicy` CRD types, their conditions and
//!   their validation.
//! - `cli`: the subcommands (`crd`, `migrate`, `validate`), one file each.
//! - `legacy`: translation of the legacy `kube-system/acr-configuration` ConfigMap into those CRs.
//! - `cloud`: the Alibaba Cloud client (signing, credential sources, STS, registry tokens, errors)
//!   and the chain walk behind `doctor`.
//! - `sensitive`: the wrapper that keeps credentials and tokens out of every printed string.
//! - `controller`: the reconcilers, token manager, Secret and ServiceAccount logic, `run`.
//! - `webhook`: the ServiceAccount admission webhook (`injectOnCreate`) and its certificates.
//! - `metrics`: the Prometheus counters and gauges counted as things happen.
//! - `provider`: the kubelet image credential provider (`src/bin/acr-credential-provider.rs`),
//!   with node or per-Pod ServiceAccount identity and no Secrets.
//!
//! The strict fake of the Alibaba Cloud services that the tests, the sandbox and the benchmark
//! run against is not part of this crate: it is the workspace crate `crates/acr-fake-cloud`
//! (library and `acr-fake-cloud` binary), a dev-dependency only, so the product never links it.

pub mod api;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod legacy;
pub mod metrics;
pub mod provider;
pub mod sensitive;
pub mod webhook;
