//! Projections: pure folds of the log ([`contact_view`], [`eligibility`]) and the
//! checkpointed [`runner`] that keeps their tables up to date, [`replay`], which rebuilds
//! them beside the live tables (in one pass with [`bulk`] where the store can) and swaps them
//! in, and the [`verdicts`] answered from memory.

pub mod bulk;
pub mod contact_view;
pub mod eligibility;
pub mod replay;
pub mod runner;
pub mod verdicts;
