//! The schema + CEL rules (evaluated client-side, as the API server would) and the code
//! validation (`validate_binding`, `validate_policy`) reject exactly the same objects of the
//! shared corpus, at the same field paths.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_corpus;

use std::collections::BTreeSet;

use acr_credential_controller::api::{
    AcrCredentialPolicy, AcrRegistryBinding, crd, schema_check, validate_binding, validate_policy,
};
use api_corpus::{Case, Layer};
use kube::core::cel::{
    ErrorKind, ScopeContext, Validator, WarningKind, analyze_rule, compile_schema,
};
use serde_json::Value;

fn schema_for(kind: &str) -> Value {
    let crds = crd::crds();
    let crd = match kind {
        "policy" => &crds[0],
        "binding" => &crds[1],
        other => panic!("unknown kind {other}"),
    };
    crd::schema_json(crd).expect("schema")
}

/// What the API server would say: OpenAPI schema violations and CEL rule failures.
struct ServerVerdict {
    /// Paths the schema reports.
    schema_paths: BTreeSet<String>,
    /// Paths the CEL rules report.
    cel_paths: BTreeSet<String>,
    /// Every message, `path: message`, schema first.
    messages: Vec<String>,
    /// CEL rules that failed to evaluate (rather than evaluating to false).
    cel_evaluation_errors: Vec<String>,
}

fn server_verdict(case: &Case) -> ServerVerdict {
    let schema = schema_for(&case.kind);
    let object = case.object();
    let report = schema_check::check(&schema, &object);
    assert!(
        report.unknown_fields.is_empty(),
        "case {}: corpus objects must not carry unknown fields: {:?}",
        case.case,
        report.unknown_fields
    );
    let cel_errors = match Validator::new().validate(&schema, &object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_vec(),
    };
    let mut messages: Vec<String> = report
        .violations
        .iter()
        .map(|v| format!("{}: {}", v.path, v.message))
        .collect();
    messages.extend(
        cel_errors
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message)),
    );
    ServerVerdict {
        schema_paths: report.violations.into_iter().map(|v| v.path).collect(),
        cel_paths: cel_errors.iter().map(|e| e.field_path.clone()).collect(),
        messages,
        cel_evaluation_errors: cel_errors
            .iter()
            .filter(|e| e.kind != ErrorKind::ValidationFailure)
            .map(|e| format!("{}: {} ({})", e.field_path, e.message, e.rule))
            .collect(),
    }
}

/// What the code says: `None` when the object does not decode into the Rust types.
fn code_verdict(case: &Case) -> Option<BTreeSet<String>> {
    let object = case.object();
    let result = match case.kind.as_str() {
        "binding" => {
            let b: AcrRegistryBinding = serde_json::from_value(object).ok()?;
            validate_binding(&b.spec)
        }
        "policy" => {
            let p: AcrCredentialPolicy = serde_json::from_value(object).ok()?;
            validate_policy(&p.spec)
        }
        other => panic!("unknown kind {other}"),
    };
    Some(match result {
        Ok(()) => BTreeSet::new(),
        Err(errors) => errors.into_iter().map(|e| e.path).collect(),
    })
}

#[test]
fn schema_with_cel_and_code_agree_on_the_corpus() {
    let cases = api_corpus::load();
    assert!(cases.len() >= 40, "corpus unexpectedly small");
    let mut failures = Vec::new();
    for case in &cases {
        let verdict = server_verdict(case);
        let (schema_paths, cel_paths) = (&verdict.schema_paths, &verdict.cel_paths);
        let server: BTreeSet<String> = schema_paths.union(cel_paths).cloned().collect();
        // A rule that fails to evaluate shows the user a "type conversion error" or "no such
        // overload" next to the real message. Only a value of the wrong type (which does not
        // even decode) may do that; a malformed string must get the schema's message alone.
        if !case.decode_fails && !verdict.cel_evaluation_errors.is_empty() {
            failures.push(format!(
                "{}: CEL rules fail to evaluate: {:?}",
                case.case, verdict.cel_evaluation_errors
            ));
        }
        if let Some(expected) = case.messages
            && verdict.messages.len() != expected
        {
            failures.push(format!(
                "{}: the server gives {} messages, the corpus expects {expected}: {:?}",
                case.case,
                verdict.messages.len(),
                verdict.messages
            ));
        }
        let expected: BTreeSet<String> = case.paths.iter().cloned().collect();
        let code = code_verdict(case);

        if case.valid {
            if !server.is_empty() {
                failures.push(format!(
                    "{}: server rejects a valid object at {server:?}",
                    case.case
                ));
            }
            if code.as_ref() != Some(&BTreeSet::new()) {
                failures.push(format!(
                    "{}: code rejects a valid object: {code:?}",
                    case.case
                ));
            }
            continue;
        }

        if server != expected {
            failures.push(format!(
                "{}: server reports {server:?}, corpus expects {expected:?}",
                case.case
            ));
        }
        // The layer that rejects it: a `cel` case must pass the OpenAPI schema (so a server
        // without CEL accepts it), a `schema` case must fail it.
        match case.rejected_by {
            Some(Layer::Schema) if schema_paths.is_empty() => failures.push(format!(
                "{}: marked rejectedBy schema but the schema accepts it",
                case.case
            )),
            Some(Layer::Cel) if !schema_paths.is_empty() || cel_paths.is_empty() => {
                failures.push(format!(
                    "{}: marked rejectedBy cel but schema says {schema_paths:?}, CEL says {cel_paths:?}",
                    case.case
                ))
            }
            _ => {}
        }
        match (&code, case.decode_fails) {
            (None, true) => {}
            (None, false) => failures.push(format!("{}: does not decode", case.case)),
            (Some(_), true) => failures.push(format!("{}: expected a decode failure", case.case)),
            (Some(code), false) if *code != expected => failures.push(format!(
                "{}: code reports {code:?}, corpus expects {expected:?}",
                case.case
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
}

/// Walks a JSON schema and yields every node that carries CEL rules.
fn cel_nodes<'a>(schema: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    if schema.get(crd::CEL_KEY).is_some() {
        out.push((path.clone(), schema));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            cel_nodes(v, format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        cel_nodes(items, format!("{path}[]"), out);
    }
}

#[test]
fn every_cel_rule_compiles_and_fits_the_cost_budget() {
    let mut checked = 0;
    for kind in ["policy", "binding"] {
        let schema = schema_for(kind);
        let mut nodes = Vec::new();
        cel_nodes(&schema, kind.to_owned(), &mut nodes);
        for (path, node) in nodes {
            let compiled = compile_schema(node);
            for result in &compiled.validations {
                assert!(result.is_ok(), "{path}: rule does not compile: {result:?}");
            }
            for rule in node[crd::CEL_KEY].as_array().unwrap() {
                let rule = rule["rule"].as_str().unwrap();
                let warnings: Vec<_> = analyze_rule(rule, &compiled, ScopeContext::CrdValidation)
                    .into_iter()
                    // Only the cost estimate matters here: kube-cel 0.8's scope check also
                    // flags macro variables (`n` in `exists(n, ...)`) as unknown.
                    .filter(|w| w.kind == WarningKind::CostExceeded)
                    .collect();
                assert!(warnings.is_empty(), "{path}: {rule}: {warnings:?}");
                checked += 1;
            }
        }
    }
    // 10 on the types, and 2 on the entries of each of the 3 label selectors.
    assert_eq!(checked, 16, "every CEL rule of both CRDs was analysed");
}
