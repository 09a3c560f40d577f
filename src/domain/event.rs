//! What happened: the domain events of both stream kinds, and where they sit in the log.

use super::{AdminId, MethodId, MethodKind, NoticeSettings, ResetPolicy, TenantDomain};
use chrono::{DateTime, Utc};

/// A method as it was when it was removed (kept in the event for the audit trail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedMethod {
    pub method_id: MethodId,
    pub kind: MethodKind,
    pub old_value: String,
}

/// An event of an admin stream or a tenant stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainEvent {
    MethodAdded {
        method_id: MethodId,
        kind: MethodKind,
        value: String,
    },
    MethodChanged {
        method_id: MethodId,
        kind: MethodKind,
        old_value: String,
        new_value: String,
    },
    MethodRemoved(RemovedMethod),
    AdminOffboarded {
        removed: Vec<RemovedMethod>,
    },
    TenantDomainsSet {
        domains: Vec<TenantDomain>,
    },
    ResetPolicySet {
        policy: ResetPolicy,
    },
    /// The tenant's notice settings (language, kinds turned off), whole.
    NotificationsSet {
        settings: NoticeSettings,
    },
    /// An offboarded admin's contact values were erased (their data key destroyed). The
    /// events stay, their values read as erased.
    AdminErased {
        /// Why: a ticket, the request's reference.
        reason: String,
    },
    /// An auditor read raw (unmasked) values: reading PII leaves a trace.
    PiiRevealed {
        /// What was read: `admin_history`, `tenant_events` or `export`.
        scope: String,
        /// The admin whose values were read, for an admin's history.
        admin: Option<AdminId>,
        /// The filters of the read, as the query string it came with.
        query: String,
    },
}

impl DomainEvent {
    /// Every event type name, for validating filters.
    pub const TYPE_NAMES: [&'static str; 9] = [
        "MethodAdded",
        "MethodChanged",
        "MethodRemoved",
        "AdminOffboarded",
        "TenantDomainsSet",
        "ResetPolicySet",
        "PiiRevealed",
        "AdminErased",
        "NotificationsSet",
    ];

    /// The event type name used in the API, NATS subjects and the store.
    pub fn type_name(&self) -> &'static str {
        match self {
            DomainEvent::MethodAdded { .. } => "MethodAdded",
            DomainEvent::MethodChanged { .. } => "MethodChanged",
            DomainEvent::MethodRemoved(_) => "MethodRemoved",
            DomainEvent::AdminOffboarded { .. } => "AdminOffboarded",
            DomainEvent::TenantDomainsSet { .. } => "TenantDomainsSet",
            DomainEvent::ResetPolicySet { .. } => "ResetPolicySet",
            DomainEvent::NotificationsSet { .. } => "NotificationsSet",
            DomainEvent::PiiRevealed { .. } => "PiiRevealed",
            DomainEvent::AdminErased { .. } => "AdminErased",
        }
    }
}

/// Where an event sits: its stream version, its global position and when it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventMeta {
    pub version: u64,
    pub position: u64,
    pub occurred_at: DateTime<Utc>,
}
