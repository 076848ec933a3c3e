//! A client-side evaluator for the part of OpenAPI v3 / structural-schema validation our CRDs
//! use: `type`, `nullable`, `required`, `properties`, `additionalProperties`, `items`,
//! `pattern`, `enum`, `minimum`/`maximum`, `minLength`/`maxLength`, `minItems`/`maxItems`,
//! `format` (`date-time`, `int32`, `int64`) and `x-kubernetes-list-type` `set`/`map`.
//!
//! kube's `cel` feature evaluates only the CEL rules; this covers the rest, so a test can ask
//! "would the API server accept this object?" without a server, and `validate` can point out
//! fields the server would silently drop. It reads the generated schema, so expectations are
//! never hard-coded.

use std::collections::BTreeSet;

use regex::Regex;
use serde_json::Value;

/// One schema violation, with the path the API server would report.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// `spec.registry.domains[1]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// The verdict on one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// Violations: the API server would reject the object.
    pub violations: Vec<Violation>,
    /// Fields the schema does not know: the API server drops them silently (pruning).
    pub unknown_fields: Vec<String>,
}

/// Evaluates `object` (a whole custom resource, or any value) against `schema`.
/// Top-level `apiVersion`, `kind` and `metadata` are the API server's business and skipped.
pub fn check(schema: &Value, object: &Value) -> SchemaReport {
    let mut report = SchemaReport::default();
    let mut object = object.clone();
    if let Value::Object(map) = &mut object {
        for key in ["apiVersion", "kind", "metadata"] {
            map.remove(key);
        }
    }
    walk(schema, &object, "", &mut report);
    report.violations.sort();
    report.violations.dedup();
    report
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(schema: &Value, value: &Value, path: &str, report: &mut SchemaReport) {
    let mut violation = |message: String| {
        report.violations.push(Violation {
            path: path.to_owned(),
            message,
        })
    };

    // A null is kept only where the schema says `nullable`; elsewhere the API server prunes it
    // (and `object` below counts a pruned required field as missing).
    if value.is_null() {
        return;
    }

    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            _ => true,
        };
        if !ok {
            violation(format!("must be of type {ty}"));
            return;
        }
    }

    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        violation(format!("must be one of {}", Value::Array(allowed.clone())));
    }

    match value {
        Value::String(s) => string(schema, s, &mut violation),
        Value::Number(n) => number(schema, n, &mut violation),
        Value::Array(items) => array(schema, items, path, report),
        Value::Object(map) => object(schema, map, path, report),
        _ => {}
    }
}

fn string(schema: &Value, s: &str, violation: &mut impl FnMut(String)) {
    let len = s.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        violation(format!("should be at least {min} chars long"));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        violation(format!("may not be longer than {max}"));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match Regex::new(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => violation(format!("should match '{pattern}'")),
            Err(e) => violation(format!("schema pattern '{pattern}' does not compile: {e}")),
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("date-time")
        && s.parse::<jiff::Timestamp>().is_err()
    {
        violation("must be an RFC 3339 date-time".to_owned());
    }
}

fn number(schema: &Value, n: &serde_json::Number, violation: &mut impl FnMut(String)) {
    let Some(v) = n.as_f64() else { return };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && v < min
    {
        violation(format!("should be greater than or equal to {min}"));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && v > max
    {
        violation(format!("should be less than or equal to {max}"));
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
        _ => None,
    };
    if let Some((lo, hi)) = range
        && (v < lo || v > hi)
    {
        violation("is out of range for int32".to_owned());
    }
}

fn array(schema: &Value, items: &[Value], path: &str, report: &mut SchemaReport) {
    let len = items.len() as u64;
    let mut push = |message: String| {
        report.violations.push(Violation {
            path: path.to_owned(),
            message,
        })
    };
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        push(format!("should have at least {min} items"));
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        push(format!("must have at most {max} items"));
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    report.violations.push(Violation {
                        path: format!("{path}[{i}]"),
                        message: format!("Duplicate value: {item}"),
                    });
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys
                    .iter()
                    .map(|k| item.get(k).map(Value::to_string).unwrap_or_default())
                    .collect();
                if !seen.insert(key.clone()) {
                    report.violations.push(Violation {
                        path: format!("{path}[{i}]"),
                        message: format!("Duplicate value: {}", key.join(",")),
                    });
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), report);
        }
    }
}

fn properties_of<'a>(schema: &'a Value, key: &str) -> Option<&'a Value> {
    schema.get("properties").and_then(|p| p.get(key))
}

fn nullable(schema: Option<&Value>) -> bool {
    schema
        .and_then(|s| s.get("nullable"))
        .and_then(Value::as_bool)
        == Some(true)
}

fn object(
    schema: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    report: &mut SchemaReport,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if map
                .get(key)
                .is_none_or(|v| v.is_null() && !nullable(properties_of(schema, key)))
            {
                report.violations.push(Violation {
                    path: join(path, key),
                    message: "Required value".to_owned(),
                });
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    for (key, child) in map {
        let child_path = join(path, key);
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(child_schema), _) | (None, Some(child_schema)) => {
                walk(child_schema, child, &child_path, report)
            }
            (None, None) if !preserve => report.unknown_fields.push(child_path),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(schema: &Value, v: &Value) -> Vec<String> {
        check(schema, v)
            .violations
            .into_iter()
            .map(|v| v.path)
            .collect()
    }

    #[test]
    fn types_required_and_unknown_fields() {
        let schema = json!({"type": "object", "required": ["a"], "properties": {
            "a": {"type": "string"}, "b": {"type": "integer", "nullable": true}}});
        assert!(paths(&schema, &json!({"a": "x", "b": 1})).is_empty());
        assert_eq!(paths(&schema, &json!({"b": "1"})), ["a", "b"]);
        assert!(paths(&schema, &json!({"a": "x", "b": null})).is_empty());
        // Without nullable, a null is pruned: fine when optional, missing when required.
        assert_eq!(paths(&schema, &json!({"a": null})), ["a"]);
        let r = check(
            &schema,
            &json!({"a": "x", "c": 1, "metadata": {"name": "n"}}),
        );
        assert_eq!(r.unknown_fields, ["c"]);
    }

    #[test]
    fn string_and_number_limits() {
        let schema = json!({"type": "object", "properties": {
            "s": {"type": "string", "pattern": "^a+$", "minLength": 2, "maxLength": 3},
            "n": {"type": "integer", "minimum": 0, "maximum": 5},
            "e": {"type": "string", "enum": ["x", "y"]},
            "t": {"type": "string", "format": "date-time"}}});
        assert!(
            paths(
                &schema,
                &json!({"s": "aa", "n": 5, "e": "x", "t": "2024-01-01T00:00:00Z"})
            )
            .is_empty()
        );
        assert_eq!(
            paths(
                &schema,
                &json!({"s": "b", "n": -1, "e": "z", "t": "yesterday"})
            ),
            ["e", "n", "s", "s", "t"]
        );
    }

    #[test]
    fn lists_sets_and_maps() {
        let schema = json!({"type": "object", "properties": {
            "set": {"type": "array", "minItems": 1, "maxItems": 2, "x-kubernetes-list-type": "set",
                    "items": {"type": "string"}},
            "map": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                    "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}});
        assert_eq!(
            paths(
                &schema,
                &json!({"set": ["a", "a", "b"], "map": [{"type": "R"}, {"type": "R"}],
                        "labels": {"k": 1}})
            ),
            ["labels.k", "map[1]", "set", "set[1]"]
        );
        assert_eq!(paths(&schema, &json!({"set": []})), ["set"]);
    }
}
