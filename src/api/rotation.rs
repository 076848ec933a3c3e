//! Rotation on demand: the one annotation that asks the controller for a fresh registry token
//! now, instead of at the planned renewal, the way Flux's `reconcile.fluxcd.io/requestedAt` asks
//! for a reconciliation. `kubectl acr renew` sets it; anything that can patch the object can.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Annotation requesting one rotation: a fresh registry token, written into every pull Secret
/// of the affected bindings. On an AcrRegistryBinding it affects that binding; on an
/// AcrCredentialPolicy, every binding that uses the policy. The value is opaque: any value other
/// than the last one handled requests exactly one rotation, so setting it again to the same
/// value does nothing. `kubectl acr renew` writes the current time (RFC 3339), which is always
/// new. Setting it needs only `patch` on the object.
pub const ROTATION_REQUESTED_AT: &str = "acrcredentials.io/rotation-requested-at";

/// The rotation request an object carries: the value of [`ROTATION_REQUESTED_AT`], if set.
pub fn requested_rotation(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ROTATION_REQUESTED_AT))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_the_request_from_the_annotations() {
        let mut meta = ObjectMeta::default();
        assert_eq!(requested_rotation(&meta), None);
        meta.annotations = Some(
            [(
                ROTATION_REQUESTED_AT.to_owned(),
                "2026-01-02T03:04:05Z".to_owned(),
            )]
            .into(),
        );
        assert_eq!(requested_rotation(&meta), Some("2026-01-02T03:04:05Z"));
        assert!(ROTATION_REQUESTED_AT.starts_with(&format!("{}/", super::super::GROUP)));
    }
}
