//! The product does not link the fake cloud: `cargo tree -e normal` of the controller package
//! (what the release binary is built from) holds neither the `acr-fake-cloud` crate nor the
//! crate only the fake needs (`jsonwebtoken`, which verifies the tokens the fake's STS is shown).
//! They are dev-dependencies, for the integration tests and the benchmark. (`axum` is in the
//! product for its own probe and metrics server.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::process::Command;

/// Names of the crates in the controller's normal (non-dev, non-build) dependency tree.
fn normal_dependencies() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--edges",
            "normal",
            "--prefix",
            "none",
            "--package",
            env!("CARGO_PKG_NAME"),
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_product_links_no_fake_cloud_crate() {
    let crates = normal_dependencies();
    // The tree is really the controller's: it has the crates the product runs on.
    for needed in ["acr-credential-controller", "kube", "reqwest", "hmac"] {
        assert!(crates.contains(needed), "{needed} missing from {crates:?}");
    }
    for fake_only in ["acr-fake-cloud", "jsonwebtoken"] {
        assert!(
            !crates.contains(fake_only),
            "{fake_only} is in the product's normal dependency tree"
        );
    }
}
