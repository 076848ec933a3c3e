//! A ServiceAccount as the watch cache holds it: [`CachedServiceAccount`], a compact form of
//! the trimmed `ServiceAccount` that converts back to exactly that `ServiceAccount`.
//!
//! The cache holds every ServiceAccount of the cluster, and each one bound to our Secret carries
//! our bookkeeping annotation: alone in its `BTreeMap`, whose first node has room for eleven
//! entries (about 540 bytes). Here the annotations are a boxed slice of pairs in key order, with
//! our annotation's key held once for all ([`super::cached_secret::Text`]), and
//! `imagePullSecrets` a boxed slice of names. The labels stay in the `ObjectMeta`, as a map:
//! selection reads them as one, and most ServiceAccounts have none (no map, no node).
//!
//! A `CachedServiceAccount` is a `kube::Resource` over that `ObjectMeta` (everything of the
//! metadata but the annotations, which only the compact field holds: the inherent
//! [`CachedServiceAccount::annotations`] shadows `ResourceExt`'s, which would read an empty
//! map). The `imagePullSecrets` patch is planned from it directly
//! ([`super::service_accounts::Account`]); [`CachedServiceAccount::to_service_account`] gives
//! the API type back.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{LocalObjectReference, ObjectReference, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::cached_secret::{Pairs, Text};
use super::service_accounts::{ADDED_ANNOTATION, Account};

/// A ServiceAccount as the watch cache holds it (see the module header). Each `Option` is
/// `None` exactly where the ServiceAccount's field is.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedServiceAccount {
    /// The ServiceAccount's metadata without annotations.
    metadata: ObjectMeta,
    annotations: Option<Pairs>,
    image_pull_secrets: Option<Box<[Box<str>]>>,
    /// Trimmed away in the cache; kept so that any ServiceAccount converts back exactly.
    secrets: Option<Vec<ObjectReference>>,
    automount_service_account_token: Option<bool>,
}

impl From<ServiceAccount> for CachedServiceAccount {
    fn from(sa: ServiceAccount) -> Self {
        let mut metadata = sa.metadata;
        let annotations = metadata.annotations.take().map(|a| {
            a.into_iter()
                .map(|(k, v)| (Text::from(k), Text::from(v)))
                .collect()
        });
        Self {
            metadata,
            annotations,
            image_pull_secrets: sa
                .image_pull_secrets
                .map(|r| r.into_iter().map(|r| r.name.into_boxed_str()).collect()),
            secrets: sa.secrets,
            automount_service_account_token: sa.automount_service_account_token,
        }
    }
}

impl CachedServiceAccount {
    /// The ServiceAccount this was made from.
    pub fn to_service_account(&self) -> ServiceAccount {
        let mut metadata = self.metadata.clone();
        metadata.annotations = self.annotations.as_deref().map(|a| {
            a.iter()
                .map(|(k, v)| ((**k).to_owned(), (**v).to_owned()))
                .collect()
        });
        ServiceAccount {
            metadata,
            image_pull_secrets: self.image_pull_secrets.as_deref().map(|r| {
                r.iter()
                    .map(|n| LocalObjectReference {
                        name: (**n).to_owned(),
                    })
                    .collect()
            }),
            secrets: self.secrets.clone(),
            automount_service_account_token: self.automount_service_account_token,
        }
    }

    /// The annotations, in key order (the cached `ObjectMeta` holds none).
    pub fn annotations(&self) -> &[(Text, Text)] {
        self.annotations.as_deref().unwrap_or_default()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations()
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }
}

impl Account for CachedServiceAccount {
    fn tested_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }

    fn lists_pull_secrets(&self) -> bool {
        self.image_pull_secrets.is_some()
    }

    fn pull_secret_names(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator {
        self.image_pull_secrets
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|n| &**n)
    }

    fn has_annotations(&self) -> bool {
        self.annotations.is_some()
    }

    fn added_annotation(&self) -> Option<&str> {
        self.annotation(ADDED_ANNOTATION)
    }
}

impl Resource for CachedServiceAccount {
    type DynamicType = ();
    type Scope = <ServiceAccount as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ServiceAccount::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        ServiceAccount::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        ServiceAccount::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        ServiceAccount::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Read as a `ServiceAccount` is (a controller's trigger stream asks its objects to be
/// deserialisable).
impl<'de> serde::Deserialize<'de> for CachedServiceAccount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ServiceAccount::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests;
