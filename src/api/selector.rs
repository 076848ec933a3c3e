//! The label selectors of the API (a binding's `namespaces.selector` and
//! `serviceAccounts.selector`, a policy's `allowedNamespaces`): Kubernetes' own `LabelSelector`,
//! whose schema is tightened here with the rules Kubernetes applies to the selectors of its
//! built-in objects and that a CRD schema otherwise leaves out.
//!
//! - `operator` is one of `In`, `NotIn`, `Exists`, `DoesNotExist` (schema `enum`);
//! - `In` and `NotIn` list at least one value, `Exists` and `DoesNotExist` none (two CEL rules on
//!   each `matchExpressions` entry);
//! - `matchExpressions` and `values` are bounded (`maxItems`), which keeps the CEL rules' cost
//!   estimate small.
//!
//! Without them a selector such as `operator: Equals` is stored and silently selects nothing.
//! [`crate::api::validation`] applies the same rules in code, with the same messages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Value, json};

use super::patterns::{self, msg};

/// The operators a `matchExpressions` entry may use.
pub const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];
/// Operators that need at least one value.
pub const OPERATORS_WITH_VALUES: [&str; 2] = ["In", "NotIn"];
/// Operators that take no values.
pub const OPERATORS_WITHOUT_VALUES: [&str; 2] = ["Exists", "DoesNotExist"];

/// The schema of a selector field: `LabelSelector`'s, with the operator enum, the list bounds
/// and the CEL rules of the module header. Used as `#[schemars(schema_with = ...)]`.
pub fn schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = LabelSelector::json_schema(generator);
    // A change in k8s-openapi's schema shape would skip this silently; the unit tests below
    // and tests/api_agreement.rs check every piece is in place.
    if let Some(Value::Object(expressions)) = schema.pointer_mut("/properties/matchExpressions") {
        expressions.insert(
            "maxItems".into(),
            json!(patterns::SELECTOR_EXPRESSIONS_MAX_ITEMS),
        );
        if let Some(Value::Object(item)) = expressions.get_mut("items") {
            item.insert("x-kubernetes-validations".into(), requirement_rules());
            if let Some(Value::Object(properties)) = item.get_mut("properties") {
                if let Some(Value::Object(operator)) = properties.get_mut("operator") {
                    operator.insert("enum".into(), json!(OPERATORS));
                }
                if let Some(Value::Object(values)) = properties.get_mut("values") {
                    values.insert(
                        "maxItems".into(),
                        json!(patterns::SELECTOR_VALUES_MAX_ITEMS),
                    );
                }
            }
        }
    }
    schema
}

/// The CEL rules on one `matchExpressions` entry. An operator outside the enum passes both,
/// so it gets the schema's one message about the operator and nothing else.
fn requirement_rules() -> Value {
    let list = |ops: [&str; 2]| format!("['{}', '{}']", ops[0], ops[1]);
    json!([
        {
            "rule": format!(
                "!(self.operator in {}) || (has(self.values) && size(self.values) > 0)",
                list(OPERATORS_WITH_VALUES)
            ),
            "message": msg::SELECTOR_VALUES_REQUIRED,
            "fieldPath": ".values",
        },
        {
            "rule": format!(
                "!(self.operator in {}) || !has(self.values) || size(self.values) == 0",
                list(OPERATORS_WITHOUT_VALUES)
            ),
            "message": msg::SELECTOR_VALUES_FORBIDDEN,
            "fieldPath": ".values",
        },
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn generated() -> Value {
        let mut generator = schemars::generate::SchemaSettings::openapi3()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        schema(&mut generator).to_value()
    }

    #[test]
    fn operator_enum_bounds_and_rules_are_in_place() {
        let s = generated();
        let expressions = &s["properties"]["matchExpressions"];
        assert_eq!(
            expressions["maxItems"],
            json!(patterns::SELECTOR_EXPRESSIONS_MAX_ITEMS)
        );
        let item = &expressions["items"];
        assert_eq!(item["properties"]["operator"]["enum"], json!(OPERATORS));
        assert_eq!(
            item["properties"]["values"]["maxItems"],
            json!(patterns::SELECTOR_VALUES_MAX_ITEMS)
        );
        let rules = item["x-kubernetes-validations"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert!(
            rules[0]["rule"]
                .as_str()
                .unwrap()
                .contains("['In', 'NotIn']")
        );
        assert!(
            rules[1]["rule"]
                .as_str()
                .unwrap()
                .contains("['Exists', 'DoesNotExist']")
        );
    }

    #[test]
    fn the_operator_lists_partition_the_operators() {
        let mut both: Vec<&str> = OPERATORS_WITH_VALUES
            .into_iter()
            .chain(OPERATORS_WITHOUT_VALUES)
            .collect();
        both.sort_unstable();
        let mut all = OPERATORS.to_vec();
        all.sort_unstable();
        assert_eq!(both, all);
    }
}
