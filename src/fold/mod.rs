//! The pure folds of the log: each admin's contact view and eligibility verdict beside their
//! tenant's settings ([`admins`]), as the admin projection's batches, the publisher and as-of
//! queries fold them, and the one-pass fold of a bulk rebuild ([`bulk`]). No I/O: the store
//! loads what a fold needs and saves what it folded.

pub mod admins;
pub mod bulk;
