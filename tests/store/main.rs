//! The store conformance suite: the event store's roles (`recovery_info::store::{EventLog,
//! Idempotency, …}`) through its interface only, each test on both backends — the embedded
//! SQLite store and PostgreSQL (a fresh database per test; `scripts/test` provides the server).
//! The black-box suite over HTTP is `tests/api`.

#[path = "../support/mod.rs"]
mod support;

mod idempotency;
mod log;
