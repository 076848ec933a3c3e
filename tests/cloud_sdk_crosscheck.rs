//! Cross-check with a client nobody here wrote: `tests/sdk_crosscheck.py` signs requests with
//! Alibaba's official `alibabacloud-openapi-util` (RPC V2, ROA, V3) and sends them to the fake;
//! they must be accepted, and the same requests tampered must be rejected. This proves the fake
//! verifies like the real service, not like our own client.
//!
//! The Python package is required: when it is missing the test fails and says
//! `pip install -r tests/requirements.txt` (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cloud_common;

#[tokio::test]
async fn official_sdk_signatures_are_accepted_and_tampering_rejected() {
    let fake = cloud_common::fake().await;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!("{}/tests/sdk_crosscheck.py", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(fake.base_url().as_str())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; install Python 3 and run: pip install -r tests/requirements.txt"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(3) {
        panic!(
            "the official SDK package is missing: pip install -r tests/requirements.txt\n{stdout}{stderr}"
        );
    }
    assert!(
        output.status.success(),
        "SDK cross-check failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("crosscheck: 20 ok, 0 failed"),
        "unexpected summary:\n{stdout}"
    );
    // Every accepted call reached the fake's real handlers.
    assert!(fake.handle().count_ok("cr:GetAuthorizationToken") >= 4);
    assert!(fake.handle().count_ok("cr-personal:GetAuthorizationToken") >= 3);
}
