//! acr-credential-controller: password-free image pulls from Alibaba Cloud Container Registry.
//!
//! The library holds everything the binary runs; `main.rs` only parses flags and starts it.
//! Modules by concern:
//! - `sensitive`: the wrapper that keeps credentials and tokens out of every printed string.
//! - `cloud`: the Alibaba Cloud client (signing, credential sources, STS, registry tokens, errors).
//! - `fake`: a strict fake of the Alibaba Cloud services, for tests and the sandbox.

pub mod cloud;
pub mod fake;
pub mod sensitive;
