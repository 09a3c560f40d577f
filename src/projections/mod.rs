//! Projections: pure folds of the log ([`contact_view`], [`eligibility`]) and the
//! checkpointed [`runner`] that keeps their tables up to date, [`replay`], which rebuilds
//! them beside the live tables and swaps them in, and the [`verdicts`] answered from memory.

pub mod contact_view;
pub mod eligibility;
pub mod replay;
pub mod runner;
pub mod verdicts;
