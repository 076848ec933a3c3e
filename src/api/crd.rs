//! The CustomResourceDefinitions, generated from the Rust types: as objects, as the YAML that is
//! committed under `crds/`, and without CEL rules for API servers older than 1.25.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;
use serde_json::Value;

use super::{AcrCredentialPolicy, AcrRegistryBinding};

/// The schema key that carries CEL rules.
pub const CEL_KEY: &str = "x-kubernetes-validations";

/// First lines of every generated CRD file.
const HEADER: &str = "# Generated from the Rust types in src/api by `acr-credential-controller crd`.\n# Do not edit: change the types and regenerate with\n#   cargo run -- crd --output-dir crds\n";
const NO_CEL_HEADER: &str = "# CEL rules (x-kubernetes-validations) are stripped from this copy, for API servers\n# older than Kubernetes 1.25; the controller applies the same rules in code.\n";

/// Errors while rendering CRDs.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    /// The CRD could not be rendered as YAML.
    #[error("cannot render CustomResourceDefinition {name} as YAML: {source}")]
    Yaml {
        /// The CRD name.
        name: String,
        /// The cause.
        #[source]
        source: serde_yaml::Error,
    },
}

impl CrdError {
    /// A stable CamelCase reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            CrdError::Yaml { .. } => "CrdYamlError",
        }
    }
}

/// Both CRDs, with their CEL rules, in a stable order (policies, then bindings).
///
/// Use this rather than `AcrRegistryBinding::crd()`: it also drops the `nullable: true` that
/// kube puts on every `Option` field. Our optional fields are absent, never null; without
/// `nullable` the API server prunes an explicit null (so `renewBefore: ~` simply means unset)
/// and publishes the fields' types in OpenAPI v2 (`kubectl explain` on older servers).
pub fn crds() -> Vec<CustomResourceDefinition> {
    [AcrCredentialPolicy::crd(), AcrRegistryBinding::crd()]
        .into_iter()
        .map(|mut crd| {
            for_each_schema(&mut crd, &mut |s| s.nullable = None);
            crd
        })
        .collect()
}

/// Both CRDs without `x-kubernetes-validations`, for API servers older than 1.25 (which reject
/// or drop them). The rules still hold: the controller applies them in code.
pub fn crds_without_cel() -> Vec<CustomResourceDefinition> {
    crds().into_iter().map(strip_cel).collect()
}

/// Removes every `x-kubernetes-validations` from a CRD's schemas.
pub fn strip_cel(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for_each_schema(&mut crd, &mut |s| s.x_kubernetes_validations = None);
    crd
}

/// Calls `f` on every schema node of every version of `crd`.
fn for_each_schema(crd: &mut CustomResourceDefinition, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            walk(schema, f);
        }
    }
}

fn walk(s: &mut JSONSchemaProps, f: &mut impl FnMut(&mut JSONSchemaProps)) {
    f(s);
    for child in s.properties.iter_mut().flat_map(|p| p.values_mut()) {
        walk(child, f);
    }
    match &mut s.items {
        Some(JSONSchemaPropsOrArray::Schema(item)) => walk(item, f),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(|i| walk(i, f)),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &mut s.additional_properties {
        walk(extra, f);
    }
    for branch in [&mut s.all_of, &mut s.any_of, &mut s.one_of]
        .into_iter()
        .flatten()
        .flatten()
    {
        walk(branch, f);
    }
    if let Some(not) = &mut s.not {
        walk(not, f);
    }
}

/// One CRD as the YAML document committed under `crds/` (with a header comment).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    let body = serde_yaml::to_string(crd).map_err(|source| CrdError::Yaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    let cel_note = if serde_json::to_string(crd).is_ok_and(|s| !s.contains(CEL_KEY)) {
        NO_CEL_HEADER
    } else {
        ""
    };
    Ok(format!("{HEADER}{cel_note}{body}"))
}

/// Both CRDs as one multi-document YAML stream; `with_cel: false` strips the CEL rules.
pub fn all_yaml(with_cel: bool) -> Result<String, CrdError> {
    let crds = if with_cel { crds() } else { crds_without_cel() };
    let docs: Vec<String> = crds.iter().map(to_yaml).collect::<Result<_, _>>()?;
    Ok(docs.join("---\n"))
}

/// The file name a CRD is committed under in `crds/`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The served version's `openAPIV3Schema` as JSON, the form schema evaluators work on.
pub fn schema_json(crd: &CustomResourceDefinition) -> Option<Value> {
    let schema = crd.spec.versions.first()?.schema.as_ref()?;
    serde_json::to_value(schema.open_api_v3_schema.as_ref()?).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_crds_are_cluster_scoped_with_status_and_category() {
        for crd in crds() {
            assert_eq!(crd.spec.group, "acrcredentials.io");
            assert_eq!(crd.spec.scope, "Cluster");
            assert_eq!(crd.spec.names.categories, Some(vec!["acr".to_owned()]));
            let v = &crd.spec.versions[0];
            assert_eq!(v.name, "v1alpha1");
            assert!(v.subresources.as_ref().unwrap().status.is_some());
        }
    }

    #[test]
    fn printer_columns() {
        let names = |crd: &CustomResourceDefinition| -> Vec<String> {
            crd.spec.versions[0]
                .additional_printer_columns
                .as_ref()
                .unwrap()
                .iter()
                .map(|c| c.name.to_uppercase())
                .collect()
        };
        let [policy, binding] = <[_; 2]>::try_from(crds()).unwrap();
        assert_eq!(names(&policy), ["READY", "SOURCE", "ASSUME-ROLE", "AGE"]);
        assert_eq!(
            names(&binding),
            [
                "READY",
                "REGISTRY",
                "NAMESPACES",
                "EXPIRES",
                "RENEWS",
                "AGE"
            ]
        );
    }

    #[test]
    fn stripping_removes_every_cel_rule_and_nothing_else() {
        for (with, without) in crds().into_iter().zip(crds_without_cel()) {
            let with_s = serde_json::to_string(&with).unwrap();
            let without_s = serde_json::to_string(&without).unwrap();
            assert!(with_s.contains(CEL_KEY));
            assert!(!without_s.contains(CEL_KEY));
            // Patterns survive.
            assert_eq!(
                with_s.matches("\"pattern\"").count(),
                without_s.matches("\"pattern\"").count()
            );
        }
    }

    #[test]
    fn optional_fields_are_not_nullable() {
        for crd in crds() {
            let json = serde_json::to_string(&crd).unwrap();
            assert!(!json.contains("nullable"), "{json}");
        }
    }

    #[test]
    fn yaml_has_a_regeneration_header() {
        let yaml = all_yaml(false).unwrap();
        assert!(yaml.starts_with("# Generated"));
        assert!(yaml.contains("stripped"));
        assert_eq!(yaml.matches("kind: CustomResourceDefinition").count(), 2);
        assert!(!all_yaml(true).unwrap().contains("stripped"));
    }
}
