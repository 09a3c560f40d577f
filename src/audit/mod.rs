//! The auditor's tools: `audit verify` (tamper evidence: the hash chains and the dense global
//! order, recomputed from the stored rows) and `audit export` (a tenant's or an admin's history
//! as JSON Lines or CSV). See `docs/audit.md`; the command line is in `cli::audit`.

pub mod checkpoints;
pub mod export;
pub mod merkle;
pub mod note;
pub mod tree;
pub mod verify;
