//! The `crd`, `migrate` and `validate` subcommands as a user runs them: exit codes, what goes
//! to stdout and what to stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api_corpus;

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acr-credential-controller"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn crd_prints_both_crds_with_and_without_cel() {
    let with = run(&["crd"], None);
    assert_eq!(with.code, 0, "{}", with.stderr);
    assert_eq!(
        with.stdout
            .matches("kind: CustomResourceDefinition")
            .count(),
        2
    );
    assert!(
        with.stdout.contains("\n    x-kubernetes-validations:")
            || with.stdout.contains("x-kubernetes-validations:\n")
    );
    let without = run(&["crd", "--no-cel"], None);
    assert_eq!(without.code, 0);
    assert!(!without.stdout.contains("rule:"));
    assert!(without.stdout.contains("pattern:"));
}

#[test]
fn migrate_reads_stdin_and_prints_manifests_and_warnings_apart() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: acr-configuration, namespace: kube-system}\ndata:\n  watch-namespace: all\n  notify-email: a@example.com\n";
    let r = run(&["migrate", "-f", "-"], Some(cm));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("kind: AcrRegistryBinding"));
    assert!(r.stdout.contains("kind: AcrCredentialPolicy"));
    assert!(r.stderr.contains("warning: notify-email: obsolete"));
    assert!(r.stderr.contains("warning: tokenMode"));
    // The manifests parse as YAML documents.
    let docs = serde_yaml::Deserializer::from_str(&r.stdout).count();
    assert_eq!(docs, 2);
}

#[test]
fn migrate_check_prints_no_manifests() {
    let r = run(
        &[
            "migrate",
            "--check",
            "-f",
            "examples/legacy/cross-region/configmap.yaml",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr
            .contains("translates to 1 AcrCredentialPolicy and 2 AcrRegistryBinding")
    );
}

#[derive(serde::Deserialize)]
struct Malformed {
    case: String,
    data: BTreeMap<String, String>,
    expect: Vec<String>,
}

#[test]
fn migrate_fails_clearly_on_every_malformed_configmap() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpus/legacy_malformed.yaml"
    ))
    .unwrap();
    let cases: Vec<Malformed> = serde_yaml::from_str(&text).unwrap();
    for c in cases {
        let cm = serde_yaml::to_string(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "acr-configuration", "namespace": "kube-system"},
            "data": c.data,
        }))
        .unwrap();
        for check in [false, true] {
            let args: &[&str] = if check {
                &["migrate", "--check", "-f", "-"]
            } else {
                &["migrate", "-f", "-"]
            };
            let r = run(args, Some(&cm));
            assert_eq!(r.code, 1, "{}: {}", c.case, r.stderr);
            assert!(r.stdout.is_empty(), "{}: half-translated output", c.case);
            for needle in &c.expect {
                assert!(
                    r.stderr.contains(needle.as_str()),
                    "{}: {needle:?} not in:\n{}",
                    c.case,
                    r.stderr
                );
            }
            assert!(r.stderr.contains("nothing was translated"));
        }
    }
}

#[test]
fn migrate_refuses_what_is_not_a_configmap() {
    let r = run(&["migrate", "-f", "examples/bindings/selectors.yaml"], None);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("expected a ConfigMap manifest"),
        "{}",
        r.stderr
    );
    let r = run(&["migrate", "-f", "does-not-exist.yaml"], None);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does-not-exist.yaml"));
    let r = run(&["migrate"], None);
    assert_eq!(r.code, 2, "a source is required");
}

#[test]
fn validate_accepts_the_examples() {
    let r = run(
        &[
            "validate",
            "-f",
            "examples/policies/access-key.yaml",
            "examples/bindings/selectors.yaml",
        ],
        None,
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("3 object(s) checked, 0 problem(s)"),
        "{}",
        r.stderr
    );
}

#[test]
fn validate_reports_every_corpus_problem_with_its_path() {
    for case in api_corpus::load().into_iter().filter(|c| !c.valid) {
        let yaml = serde_yaml::to_string(&case.object()).unwrap();
        let r = run(&["validate", "-f", "-"], Some(&yaml));
        assert_eq!(r.code, 1, "{}: {}", case.case, r.stdout);
        let reported = |path: &String| r.stdout.contains(&format!(": {path}: "));
        if case.decode_fails {
            // Objects that do not decode get their schema violations; the CEL errors the
            // server adds on top (a rule evaluating a wrongly typed field) are not repeated.
            assert!(
                case.paths.iter().any(reported),
                "{}:\n{}",
                case.case,
                r.stdout
            );
        } else {
            for path in &case.paths {
                assert!(
                    reported(path),
                    "{}: {path} not reported:\n{}",
                    case.case,
                    r.stdout
                );
            }
        }
    }
}

#[test]
fn validate_flags_fields_the_server_would_drop() {
    let yaml = "apiVersion: acrcredentials.io/v1alpha1\nkind: AcrRegistryBinding\nmetadata: {name: t}\nspec:\n  registry: {instanceID: cri-abc}\n  namespaces: {all: true}\n";
    let r = run(&["validate", "-f", "-"], Some(yaml));
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("spec.registry.instanceID: unknown field"),
        "{}",
        r.stdout
    );
}
