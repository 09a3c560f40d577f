//! Projections: the pure fold of the log into each admin's contact view and eligibility verdict
//! ([`admins`]), the checkpointed [`runner`] that keeps its tables up to date, [`replay`], which
//! rebuilds them beside the live tables (in one pass with [`bulk`] where the store can) and
//! swaps them in, and the [`verdicts`] answered from memory.

pub mod admins;
pub mod bulk;
pub mod replay;
pub mod runner;
pub mod verdicts;
