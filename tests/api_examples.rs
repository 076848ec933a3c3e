//! The committed artefacts stay true to the code: `crds/` is what the types generate, every
//! example CR passes the schema, the CEL rules and the code rules, and every
//! `examples/legacy/*/translated.yaml` is exactly what `migrate` prints for its ConfigMap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use acr_credential_controller::api::{
    AcrCredentialPolicy, AcrRegistryBinding, crd, schema_check, validate_binding, validate_policy,
};
use kube::core::cel::Validator;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const REGENERATE_CRDS: &str = "cargo run -- crd --output-dir crds";

#[test]
fn committed_crds_match_the_types() {
    let dir = root().join("crds");
    let mut expected_files = BTreeSet::new();
    for c in crd::crds() {
        let name = crd::file_name(&c);
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        let generated = crd::to_yaml(&c).unwrap();
        assert!(
            committed == generated,
            "crds/{name} differs from what the Rust types generate; regenerate it with `{REGENERATE_CRDS}` and commit the result"
        );
        expected_files.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        present, expected_files,
        "crds/ holds files the types do not generate; remove them and run `{REGENERATE_CRDS}`"
    );
}

/// Every YAML document of the example CR files, with the file it came from.
pub fn example_objects() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["examples/policies", "examples/bindings"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    for e in std::fs::read_dir(root().join("examples/legacy")).unwrap() {
        files.push(e.unwrap().path().join("translated.yaml"));
    }
    files.sort();
    let mut objects = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
            if !v.is_null() {
                let rel = f.strip_prefix(root()).unwrap().display().to_string();
                objects.push((rel, serde_json::to_value(v).unwrap()));
            }
        }
    }
    objects
}

#[test]
fn every_example_passes_schema_cel_and_code_rules() {
    let crds = crd::crds();
    let policy_schema = crd::schema_json(&crds[0]).unwrap();
    let binding_schema = crd::schema_json(&crds[1]).unwrap();
    let mut kinds = BTreeSet::new();
    for (file, obj) in example_objects() {
        let kind = obj["kind"].as_str().unwrap().to_owned();
        let schema = match kind.as_str() {
            "AcrCredentialPolicy" => &policy_schema,
            "AcrRegistryBinding" => &binding_schema,
            other => panic!("{file}: unexpected kind {other}"),
        };
        let report = schema_check::check(schema, &obj);
        assert!(
            report.violations.is_empty(),
            "{file}: {:?}",
            report.violations
        );
        assert!(
            report.unknown_fields.is_empty(),
            "{file}: {:?}",
            report.unknown_fields
        );
        if let Err(e) = Validator::new().validate(schema, &obj, None) {
            panic!("{file}: CEL: {e}");
        }
        match kind.as_str() {
            "AcrCredentialPolicy" => {
                let p: AcrCredentialPolicy = serde_json::from_value(obj.clone()).unwrap();
                validate_policy(&p.spec).unwrap_or_else(|e| panic!("{file}: {e:?}"));
            }
            _ => {
                let b: AcrRegistryBinding = serde_json::from_value(obj.clone()).unwrap();
                validate_binding(&b.spec).unwrap_or_else(|e| panic!("{file}: {e:?}"));
            }
        }
        kinds.insert(kind);
    }
    assert_eq!(kinds.len(), 2);
}

#[test]
fn hand_written_examples_cover_every_source_and_selection_style() {
    let objects: Vec<Value> = example_objects()
        .into_iter()
        .filter(|(f, _)| !f.starts_with("examples/legacy"))
        .map(|(_, o)| o)
        .collect();
    let has = |pointer: &str| objects.iter().any(|o| o.pointer(pointer).is_some());
    let policies_with = |source: &str, assume: bool| {
        objects.iter().any(|o| {
            o.pointer(&format!("/spec/source/{source}")).is_some()
                && o.pointer("/spec/assumeRole").is_some() == assume
        })
    };
    for source in ["managedRole", "workerRole", "rrsa", "accessKey"] {
        assert!(policies_with(source, false), "{source} without assumeRole");
        assert!(policies_with(source, true), "{source} with assumeRole");
    }
    for p in [
        "/spec/namespaces/names",
        "/spec/namespaces/all",
        "/spec/namespaces/selector",
        "/spec/namespaces/exclude",
        "/spec/serviceAccounts/names",
        "/spec/serviceAccounts/all",
        "/spec/serviceAccounts/selector",
        "/spec/injectOnCreate",
        "/spec/registry/domains",
        "/spec/allowedNamespaces",
    ] {
        assert!(has(p), "no example sets {p}");
    }
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "AcrRegistryBinding"
                && o.pointer("/spec/serviceAccounts").is_none()),
        "no example relies on the default ServiceAccount"
    );
}

#[test]
fn hand_written_example_names_are_unique_per_kind() {
    // `kubectl apply -f examples/policies -f examples/bindings` must not overwrite anything.
    let mut seen = BTreeSet::new();
    for (file, obj) in example_objects() {
        if file.starts_with("examples/legacy") {
            continue;
        }
        let key = (
            obj["kind"].as_str().unwrap().to_owned(),
            obj["metadata"]["name"].as_str().unwrap().to_owned(),
        );
        assert!(seen.insert(key.clone()), "{file}: {key:?} is defined twice");
    }
}

fn migrate(configmap: &Path, token_mode: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"))
        .args(["migrate", "-f"])
        .arg(configmap)
        .args(["--legacy-token-mode", token_mode])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn translated_examples_are_what_migrate_prints() {
    let mut checked = 0;
    for e in std::fs::read_dir(root().join("examples/legacy")).unwrap() {
        let dir = e.unwrap().path();
        let committed = std::fs::read_to_string(dir.join("translated.yaml")).unwrap();
        // The header names the token mode the file was produced with.
        let mode = committed
            .lines()
            .next()
            .and_then(|l| l.split("--legacy-token-mode ").nth(1))
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_else(|| panic!("{}: header lacks --legacy-token-mode", dir.display()));
        let (code, stdout, stderr) = migrate(&dir.join("configmap.yaml"), mode);
        assert_eq!(code, 0, "{}: {stderr}", dir.display());
        assert!(
            stdout == committed,
            "{0}/translated.yaml differs from `migrate` output; regenerate it with\n  cargo run -- migrate -f {0}/configmap.yaml --legacy-token-mode {mode} > {0}/translated.yaml",
            dir.strip_prefix(root()).unwrap().display()
        );
        checked += 1;
    }
    assert!(checked >= 10);
}
