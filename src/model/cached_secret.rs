//! The pull Secret as the watch cache holds it: [`CachedSecret`], a compact form of the trimmed
//! `Secret` that converts back to exactly that `Secret`.
//!
//! The cache holds every Secret with the pull Secret's name, one per namespace, so at ten
//! thousand namespaces it holds ten thousand of them, and the `k8s-openapi` shape costs more
//! than their content: each of a Secret's labels, annotations and data is a `BTreeMap` whose
//! first node has room for eleven entries (about 540 bytes however few it holds), and each
//! owner reference a struct of six owned fields. Here each of those is a boxed slice of its
//! entries, in the map's order (so the way back is exact), and the strings every pull Secret
//! repeats (our labels, the expiry annotation's key, the data key, the type, the binding owner's
//! apiVersion and kind) are [`Text::Known`]: a pointer to a constant, not a copy per Secret.
//!
//! A `CachedSecret` is a `kube::Resource` (the reflector's `Store` indexes it by the name and
//! namespace of its `ObjectMeta`). That `ObjectMeta` holds everything of the Secret's metadata
//! but its labels, annotations and owner references, which only the compact fields hold: the
//! inherent [`CachedSecret::labels`], [`CachedSecret::annotations`] and
//! [`CachedSecret::owner_references`] shadow `ResourceExt`'s, which would read an empty map.
//! Scans over every cached Secret (which namespaces a binding owns a Secret in, the token to
//! adopt after a restart) read the compact form; a reader that needs the API type (planning a
//! write keeps others' labels, annotations and owners) expands one with
//! [`CachedSecret::to_secret`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::secret::{
    DOCKER_CONFIG_JSON, DOCKER_CONFIG_KEY, EXPIRES_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
    MANAGED_LABEL,
};
use super::service_accounts::ADDED_ANNOTATION;

/// The apiVersion of the binding owner reference (`api::GROUP`/`api::VERSION`; a test checks
/// it against the binding's own).
pub const BINDING_API_VERSION: &str = "acrcredentials.io/v1alpha1";
/// The kind of the binding owner reference (a test checks it against the binding's own).
pub const BINDING_KIND: &str = "AcrRegistryBinding";

/// The strings every pull Secret (and every ServiceAccount bound to one) repeats, held once.
const KNOWN: [&str; 10] = [
    MANAGED_LABEL,
    "true",
    MANAGED_BY_LABEL,
    MANAGED_BY,
    EXPIRES_ANNOTATION,
    DOCKER_CONFIG_KEY,
    DOCKER_CONFIG_JSON,
    BINDING_API_VERSION,
    BINDING_KIND,
    ADDED_ANNOTATION,
];

/// A string of a cached Secret: one of the [`KNOWN`] constants, or its own copy.
#[derive(Clone, PartialEq, Eq)]
pub enum Text {
    Known(&'static str),
    Owned(Box<str>),
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        match KNOWN.iter().find(|k| **k == s) {
            Some(k) => Text::Known(k),
            None => Text::Owned(s.into_boxed_str()),
        }
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Known(s) => s,
            Text::Owned(s) => s,
        }
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// String pairs in key order (labels, annotations, `stringData`).
pub type Pairs = Box<[(Text, Text)]>;

/// Data keys and their bytes, in key order.
pub type Data = Box<[(Text, Box<[u8]>)]>;

fn pairs(map: BTreeMap<String, String>) -> Pairs {
    map.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn map(pairs: &[(Text, Text)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((**k).to_owned(), (**v).to_owned()))
        .collect()
}

fn get<'a>(pairs: Option<&'a Pairs>, key: &str) -> Option<&'a str> {
    pairs?.iter().find(|(k, _)| &**k == key).map(|(_, v)| &**v)
}

/// An owner reference, every field kept (an update writes others' references back as read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub api_version: Text,
    pub kind: Text,
    pub name: Box<str>,
    pub uid: Box<str>,
    pub controller: Option<bool>,
    pub block_owner_deletion: Option<bool>,
}

impl From<OwnerReference> for Owner {
    fn from(o: OwnerReference) -> Self {
        Self {
            api_version: o.api_version.into(),
            kind: o.kind.into(),
            name: o.name.into_boxed_str(),
            uid: o.uid.into_boxed_str(),
            controller: o.controller,
            block_owner_deletion: o.block_owner_deletion,
        }
    }
}

impl From<&Owner> for OwnerReference {
    fn from(o: &Owner) -> Self {
        Self {
            api_version: (*o.api_version).to_owned(),
            kind: (*o.kind).to_owned(),
            name: (*o.name).to_owned(),
            uid: (*o.uid).to_owned(),
            controller: o.controller,
            block_owner_deletion: o.block_owner_deletion,
        }
    }
}

impl Owner {
    /// Whether this reference names an `AcrRegistryBinding`.
    pub fn is_binding(&self) -> bool {
        &*self.kind == BINDING_KIND
    }
}

/// A Secret as the watch cache holds it (see the module header). Each `Option` is `None`
/// exactly where the Secret's field is, so [`CachedSecret::to_secret`] gives the Secret back.
#[derive(Clone, PartialEq)]
pub struct CachedSecret {
    /// The Secret's metadata without labels, annotations and owner references.
    metadata: ObjectMeta,
    labels: Option<Pairs>,
    annotations: Option<Pairs>,
    owners: Option<Box<[Owner]>>,
    type_: Option<Text>,
    immutable: Option<bool>,
    data: Option<Data>,
    string_data: Option<Pairs>,
}

impl From<Secret> for CachedSecret {
    fn from(s: Secret) -> Self {
        let mut metadata = s.metadata;
        let labels = metadata.labels.take().map(pairs);
        let annotations = metadata.annotations.take().map(pairs);
        let owners = metadata
            .owner_references
            .take()
            .map(|o| o.into_iter().map(Owner::from).collect());
        Self {
            metadata,
            labels,
            annotations,
            owners,
            type_: s.type_.map(Text::from),
            immutable: s.immutable,
            data: s.data.map(|d| {
                d.into_iter()
                    .map(|(k, v)| (k.into(), v.0.into_boxed_slice()))
                    .collect()
            }),
            string_data: s.string_data.map(pairs),
        }
    }
}

impl CachedSecret {
    /// The Secret this was made from.
    pub fn to_secret(&self) -> Secret {
        let mut metadata = self.metadata.clone();
        metadata.labels = self.labels.as_deref().map(map);
        metadata.annotations = self.annotations.as_deref().map(map);
        metadata.owner_references = self
            .owners
            .as_deref()
            .map(|o| o.iter().map(OwnerReference::from).collect());
        Secret {
            metadata,
            type_: self.type_.as_deref().map(str::to_owned),
            immutable: self.immutable,
            data: self.data.as_deref().map(|d| {
                d.iter()
                    .map(|(k, v)| ((**k).to_owned(), ByteString(v.to_vec())))
                    .collect()
            }),
            string_data: self.string_data.as_deref().map(map),
        }
    }

    /// The labels, in key order (the cached `ObjectMeta` holds none).
    pub fn labels(&self) -> &[(Text, Text)] {
        self.labels.as_deref().unwrap_or_default()
    }

    /// The annotations, in key order (the cached `ObjectMeta` holds none).
    pub fn annotations(&self) -> &[(Text, Text)] {
        self.annotations.as_deref().unwrap_or_default()
    }

    /// The owner references (the cached `ObjectMeta` holds none).
    pub fn owner_references(&self) -> &[Owner] {
        self.owners.as_deref().unwrap_or_default()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        get(self.labels.as_ref(), key)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        get(self.annotations.as_ref(), key)
    }

    /// The bytes of data key `key`.
    pub fn data(&self, key: &str) -> Option<&[u8]> {
        self.data
            .as_deref()?
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// Whether the Secret carries our label: the rule of [`super::secret::managed`].
    pub fn is_ours(&self) -> bool {
        self.label(MANAGED_LABEL) == Some("true")
    }

    /// Whether an owner reference names the binding `name` (with any UID).
    pub fn owned_by_binding(&self, name: &str) -> bool {
        self.owner_references()
            .iter()
            .any(|o| o.is_binding() && &*o.name == name)
    }

    /// Names of the bindings the Secret names as owners: [`super::secret::owner_bindings`].
    pub fn owner_bindings(&self) -> BTreeSet<String> {
        self.owner_references()
            .iter()
            .filter(|o| o.is_binding())
            .map(|o| (*o.name).to_owned())
            .collect()
    }
}

impl Resource for CachedSecret {
    type DynamicType = ();
    type Scope = <Secret as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Secret::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Secret::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Secret::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Secret::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Read as a `Secret` is (a controller's trigger stream asks its objects to be deserialisable).
impl<'de> serde::Deserialize<'de> for CachedSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Secret::deserialize(d).map(Self::from)
    }
}

/// Names the data keys, never their values.
impl fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |d: &[(Text, Box<[u8]>)]| d.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("CachedSecret")
            .field("name", &self.metadata.name)
            .field("namespace", &self.metadata.namespace)
            .field("resource_version", &self.metadata.resource_version)
            .field("labels", &self.labels)
            .field("owners", &self.owners)
            .field("type", &self.type_)
            .field("data_keys", &self.data.as_deref().map(keys))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
