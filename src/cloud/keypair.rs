//! One set of Alibaba Cloud credentials ([`Credentials`]: AccessKeyId, AccessKeySecret, an
//! optional STS SecurityToken and expiry, and their non-secret principal), as plain data.
//! A leaf of the cloud layer: the request signer, the client, STS and the registry APIs take
//! credentials from here, while [`super::credentials`] (the sources that obtain them, which
//! need the client) builds them.

use crate::sensitive::Sensitive;

/// One set of Alibaba Cloud credentials.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Sensitive<String>,
    /// Present for STS (temporary) credentials.
    pub security_token: Option<Sensitive<String>>,
    /// `None` for long-lived AccessKeys.
    pub expires_at: Option<jiff::Timestamp>,
    /// Who the credentials act as: stable and non-secret (`accessKey:<AccessKeyId>`,
    /// `rrsa:<roleArn>`, `…+assumeRole:<roleArn>`; see [`super::credentials`]).
    pub principal: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &self.access_key_secret)
            .field("security_token", &self.security_token)
            .field("expires_at", &self.expires_at)
            .field("principal", &self.principal)
            .finish()
    }
}
