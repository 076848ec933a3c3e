//! The fault suite: what the controller survives, measured (issue 14). Each scenario injects one
//! fault against the local control plane and the fake cloud, checks what must hold, and records
//! one row (scenario, what was injected, the figure, pass/fail).
//!
//! `cargo test --test faults` runs the fast subset at small scale (drift, conflict writer,
//! throttling, canary, bad input); the scenarios that stop control plane components, kill the
//! controller or wait out token lifetimes are `#[ignore]`d and run from `scripts/faults.sh`,
//! which gives them a control plane of their own, runs them one at a time at full scale
//! (`ACC_FAULTS_FULL=true`) against the release controller (`ACC_FAULTS_CONTROLLER`) and turns
//! the rows (`ACC_FAULTS_ROWS`, JSON lines) into the table saved under `bench/results/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../controller_common/mod.rs"]
mod controller_common;
#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod canary;
mod common;
mod conflict;
mod drift;
mod kill;
mod outage;
mod rbac;
mod restarts;
mod throttling;
