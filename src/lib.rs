//! recovery-info: the event-sourced system of record for administrators' security info.
//!
//! Data flows through the modules in this order:
//! - [`error`]: the stable codes of refusals and failures, which every interface reports;
//! - [`domain`]: pure rules, the admin and tenant deciders, reset policies, masking;
//! - [`events`]: the protobuf envelope of each stored event and its conversions;
//! - [`store`]: the PostgreSQL event store (append with expected version and idempotency,
//!   gap-free global log) and the storage of the projections;
//! - [`projections`]: the contact-view and eligibility folds and the checkpointed runner;
//! - [`publish`]: live events out: the JetStream relay, eligibility over NATS, SSE;
//! - [`app`]: command handling and queries, shared by every interface;
//! - [`audit`]: the auditor's command-line tools (`audit verify`, `audit export`);
//! - [`http`]: the axum API (auth, errors, routes) and the metrics listener;
//! - [`config`], [`progress`] and [`telemetry`]: configuration, progress lines and
//!   logs/metrics for the binary; [`task`]: awaiting tasks of the runtime.

pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod fold;
pub mod http;
pub mod progress;
pub mod projections;
pub mod publish;
pub mod server;
pub mod store;
pub mod task;
pub mod telemetry;
