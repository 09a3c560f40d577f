//! Black-box tests: the service on a real listener against a real PostgreSQL, a fresh
//! database per test. `scripts/test` provides the servers (TEST_PG_URL, TEST_NATS_URL).

#[path = "../support/mod.rs"]
mod support;

mod access;
mod audit;
mod checkpoints;
mod cli;
mod cluster;
mod concurrency;
mod console;
mod deploy;
mod eligibility;
mod embedded;
mod erasure;
mod errors;
mod history;
mod identity;
mod limits;
mod matrix;
mod methods;
mod notifications;
mod operations;
mod positions;
mod private_pg;
mod publish;
mod schema;
mod schemathesis;
