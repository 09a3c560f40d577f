//! The admin projection at work: the checkpointed [`runner`] that keeps its tables up to date
//! with the log (the fold is [`crate::fold::admins`]), [`replay`], which rebuilds them beside
//! the live tables and swaps them in, and the [`verdicts`] answered from memory.

pub mod replay;
pub mod runner;
pub mod verdicts;
