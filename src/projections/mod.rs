//! Projections: pure folds of the log ([`contact_view`], [`eligibility`]) and the
//! checkpointed [`runner`] that keeps their PostgreSQL tables up to date.

pub mod contact_view;
pub mod eligibility;
pub mod runner;
