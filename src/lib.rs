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
//! - `fake`: a strict fake of the Alibaba Cloud services, for tests and the sandbox
//!   (`src/bin/acr-fake-cloud.rs` runs it).
//! - `sensitive`: the wrapper that keeps credentials and tokens out of every printed string.
//! - `controller`: the reconcilers, token manager, Secret and ServiceAccount logic, `run`.
//! - `metrics`: the Prometheus counters and gauges counted as things happen.
//! - `provider`: the kubelet image credential provider (`src/bin/acr-credential-provider.rs`),
//!   with node or per-Pod ServiceAccount identity and no Secrets.

pub mod api;
pub mod cli;
pub mod cloud;
pub mod controller;
pub mod fake;
pub mod legacy;
pub mod metrics;
pub mod provider;
pub mod sensitive;
