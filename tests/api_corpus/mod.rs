//! Loads `tests/corpus/api_objects.yaml`, the corpus shared by the agreement test and the
//! API-server integration test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Deserialize;
use serde_json::{Value, json};

/// Which layer of the API server rejects a case.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The OpenAPI schema (patterns, lengths, types, required): every supported server.
    Schema,
    /// A CEL `x-kubernetes-validations` rule: Kubernetes 1.25 and later only.
    Cel,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub case: String,
    pub kind: String,
    #[serde(default)]
    pub valid: bool,
    pub rejected_by: Option<Layer>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub decode_fails: bool,
    /// How many messages the server gives (schema violations and CEL rule failures together),
    /// where a case pins that a user sees exactly that many.
    pub messages: Option<usize>,
    pub spec: Value,
}

impl Case {
    /// The full custom resource, named after the case.
    pub fn object(&self) -> Value {
        let kind = match self.kind.as_str() {
            "binding" => "AcrRegistryBinding",
            "policy" => "AcrCredentialPolicy",
            other => panic!("case {}: unknown kind {other}", self.case),
        };
        json!({
            "apiVersion": "acrcredentials.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": format!("corpus-{}", self.case)},
            "spec": self.spec,
        })
    }
}

pub fn load() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus/api_objects.yaml");
    let text = std::fs::read_to_string(path).expect("corpus readable");
    let cases: Vec<Case> = serde_yaml::from_str(&text).expect("corpus parses");
    for c in &cases {
        assert!(
            c.valid != c.rejected_by.is_some(),
            "case {}: set exactly one of valid and rejectedBy",
            c.case
        );
        assert!(
            c.valid || !c.paths.is_empty(),
            "case {}: invalid cases list the paths they are rejected at",
            c.case
        );
    }
    cases
}
