//! recovery-info: the event-sourced system of record for administrators' security info.
//!
//! Data flows through the modules in this order:
//! - [`domain`]: pure rules, the admin and tenant deciders, commands' outcomes, reset policies,
//!   masking;
//! - [`events`]: the protobuf envelope of each stored event and its conversions;
//! - [`keys`]: the sealing of contact values under per-admin data keys (erasure by
//!   crypto-shredding);
//! - [`fold`]: the pure folds of the log (each admin's view and verdict, the bulk rebuild's);
//! - [`store`]: the event store (append with expected version and idempotency, the gap-free
//!   global log, the hash chains) and the storage of the projection, on either backend: the
//!   embedded SQLite store (the zero-setup default) or PostgreSQL;
//! - [`projections`]: the checkpointed runner that keeps the admin projection up to date, its
//!   replay, and the verdicts answered from memory;
//! - [`publish`]: live events out: the JetStream relay, eligibility over NATS, and the log
//!   tail that feeds the Server-Sent Events;
//! - [`app`]: command handling and queries, shared by every interface;
//! - [`audit`]: the auditor's tools (`verify`, `export`), the Merkle tree and its signed
//!   checkpoints;
//! - [`notify`]: notices to the old contact when security info changes (the outbox, SMTP and
//!   the SMS webhook);
//! - [`http`]: the axum API (auth, errors, routes, the SSE stream) and the metrics listener;
//!   [`server`] starts it with everything it needs;
//! - [`cli`]: the command line: flags, environment, subcommands, and the dispatch to the
//!   modules above.
//!
//! Beside them, importing nothing of the crate, so that any module may use them: [`error`], the
//! stable codes of refusals and failures, and [`config`], the resolved settings; and
//! `progress` lines for the long-running commands, [`telemetry`] (logs and metrics) and
//! [`task`] (awaiting tasks of the runtime). No module imports one that imports it back
//! (`scripts/import-graph`, run by `scripts/test`).

pub mod domain;
pub mod events;
pub mod fold;
pub mod keys;

pub mod store;

pub mod projections;
pub mod publish;

pub mod app;
pub mod audit;
pub mod http;
pub mod notify;
pub mod server;

pub mod cli;

pub mod config;
pub mod error;
pub(crate) mod progress;
pub mod task;
pub mod telemetry;
