//! The pure domain: ids, method values, the admin and tenant deciders, commands' outcomes, reset
//! policies, masking.
//!
//! Nothing here does I/O or reads the clock; the whole rule set is unit-tested in milliseconds.

mod admin;
mod email;
mod error;
mod event;
mod ids;
mod mask;
mod method;
mod notice;
mod outcome;
mod phone;
mod policy;
mod tenant;

pub use admin::{AdminCommand, AdminState, Method};
pub use email::{AlternateEmail, TenantDomain, email_domain};
pub use error::DomainError;
pub use event::{DomainEvent, EventMeta, RemovedMethod};
pub use ids::{AdminId, MethodId, StreamId, TenantId};
pub use mask::{mask, masks_alike};
pub use method::{MethodInput, MethodKind, MethodValue};
pub use notice::{Language, Notice, NoticeKind, NoticeSettings, Recipient, needs_state, notices};
pub use outcome::CommandOutcome;
pub use phone::{LineType, PhoneNumber, load_phone_metadata};
pub use policy::{
    Missing, ResetPolicy, UsableMethod, Verdict, evaluate, evaluate_masking, method_counts,
};
pub use tenant::{SetSettings, SettingsLimits, TenantState};

/// The admin decider: `decide` and `evolve` for admin streams.
pub mod admin_decider {
    pub use super::admin::{decide, evolve};
}

/// The tenant decider: `decide` and `evolve` for tenant streams.
pub mod tenant_decider {
    pub use super::tenant::{decide, evolve};
}
