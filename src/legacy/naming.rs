//! Deterministic names for translated objects: translating the same ConfigMap again yields
//! the same names, so applying the result is idempotent and Git diffs stay quiet.

use std::collections::BTreeMap;

use super::{Warning, key, registry_info};
use crate::api::{AcrCredentialPolicySpec, AcrRegistryBindingSpec};

/// `legacy-managed-role` / `legacy-worker-role` for the plain add-on identities; otherwise a
/// readable slug plus a hash of the credential chain (source and assume-role settings,
/// not `renewBefore`, so changing the threshold keeps the names).
pub(super) fn policy_name(spec: &AcrCredentialPolicySpec, slug: &str) -> String {
    let plain = spec.assume_role.is_none()
        && (spec.source.managed_role.is_some() || spec.source.worker_role.is_some());
    if plain {
        return format!("legacy-{slug}");
    }
    let chain = serde_json::to_string(&(&spec.source, &spec.assume_role)).unwrap_or_default();
    let via = spec
        .assume_role
        .as_ref()
        .map(|a| format!("-to-{}", role_slug(&a.role_arn)))
        .unwrap_or_default();
    format!("legacy-{slug}{via}-{}", short_hash(&chain))
}

/// `legacy-<instanceId>`, or `legacy-personal[-<region>]`; later duplicates get `-2`, `-3`.
pub(super) fn unique_binding_name(
    entry: &registry_info::Entry,
    taken: &BTreeMap<String, AcrRegistryBindingSpec>,
    warnings: &mut Vec<Warning>,
) -> String {
    let base = match (&entry.instance_id, &entry.region) {
        (Some(id), _) => format!("legacy-{id}"),
        (None, Some(region)) => format!("legacy-personal-{region}"),
        (None, None) => "legacy-personal".to_owned(),
    };
    if !taken.contains_key(&base) {
        return base;
    }
    let name = (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken.contains_key(n))
        .unwrap_or(base.clone());
    warnings.push(Warning::new(
        key::ACR_REGISTRY_INFO,
        format!(
            "[{}]: the same registry is listed again; translated as a second binding, {name}",
            entry.index
        ),
    ));
    name
}

/// The role name of an ARN, as a DNS-label-friendly slug of at most 40 characters.
pub(super) fn role_slug(arn: &str) -> String {
    let name = arn.rsplit('/').next().unwrap_or(arn).to_ascii_lowercase();
    let mut slug = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (slug.is_empty() || slug.ends_with('-'))) {
            slug.push(c);
        }
    }
    slug.truncate(40);
    let slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        "role".to_owned()
    } else {
        slug
    }
}

/// 8 hex digits of the 64-bit FNV-1a hash. Stable across Rust versions and platforms, unlike
/// `std`'s hashers, which is what deterministic names need.
pub(super) fn short_hash(input: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in input.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_slugs_are_dns_friendly() {
        assert_eq!(role_slug("acs:ram::1:role/Acr_Puller"), "acr-puller");
        assert_eq!(role_slug("acs:ram::1:role/--x..y--"), "x-y");
        assert_eq!(role_slug("acs:ram::1:role/___"), "role");
        assert_eq!(
            role_slug(&format!("acs:ram::1:role/{}", "a".repeat(64))).len(),
            40
        );
    }

    #[test]
    fn short_hash_is_stable() {
        // Pinned: names derived from it must not change between releases.
        assert_eq!(short_hash(""), "cbf29ce4");
        assert_eq!(short_hash("acr"), short_hash("acr"));
        assert_ne!(short_hash("a"), short_hash("b"));
    }
}
