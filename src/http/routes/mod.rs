//! One module per resource.

pub mod audit;
pub mod eligibility;
pub(crate) mod history;
pub mod methods;
pub mod ops;
pub mod settings;
pub mod sse;
