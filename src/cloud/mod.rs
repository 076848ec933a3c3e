//! The Alibaba Cloud client: signing, credential sources, STS and registry token APIs.
//!
//! - [`percent`], [`sign`]: the exact encodings and the three signature schemes (pure).
//! - [`endpoints`]: region/network → hosts, with per-service override URLs.
//! - [`http`]: transport with timeouts and bounded, jittered retries; error envelopes.
//! - [`keypair`]: [`keypair::Credentials`], the plain credential data every part signs with.
//! - [`request`]: building and signing requests (pure).
//! - [`client`]: [`CloudClient`], which signs with the injected clock and nonces and sends.
//! - [`sts`]: `AssumeRole`, `AssumeRoleWithOIDC`.
//! - [`registry`]: Enterprise and Personal Edition tokens, domain discovery and classification.
//! - [`credentials`]: the credential sources and the caching [`credentials::CredentialProvider`].
//! - [`error`]: [`CloudError`], with `reason()` and `is_retryable()`.
//! - [`from_api`]: policy and binding specs → provider configuration and registry.
//! - [`clock`]: injected time and nonces.
//! - [`doctor`]: the chain walk behind the `doctor` command (source → hop → token → domains).

pub mod client;
pub mod clock;
pub mod credentials;
pub mod doctor;
pub mod endpoints;
pub mod error;
pub mod from_api;
pub mod http;
pub mod keypair;
pub mod percent;
pub mod registry;
pub mod request;
pub mod sign;
pub mod sts;

pub use client::{CloudClient, CloudConfig, SignatureStyle};
pub use error::CloudError;
