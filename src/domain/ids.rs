//! Identifiers: UUIDs wrapped so that a tenant id can never be passed where an admin id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an already-parsed UUID.
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// An organisation (tenant).
    TenantId
);
uuid_id!(
    /// An administrator of a tenant: the owner of one security-info stream.
    AdminId
);
uuid_id!(
    /// One security method of an admin; stable across changes of its value.
    MethodId
);

/// The stream an event belongs to: one per admin, one per tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// `admin-{tenant_id}-{admin_id}`: the admin's security methods.
    Admin(TenantId, AdminId),
    /// `tenant-{tenant_id}`: the tenant's domains and reset policy.
    Tenant(TenantId),
    /// `audit-{tenant_id}`: who read raw PII of the tenant (audit-access events).
    Audit(TenantId),
}

impl StreamId {
    /// The tenant the stream belongs to.
    pub fn tenant(&self) -> TenantId {
        match self {
            StreamId::Admin(t, _) | StreamId::Tenant(t) | StreamId::Audit(t) => *t,
        }
    }

    /// The admin, for an admin stream.
    pub fn admin(&self) -> Option<AdminId> {
        match self {
            StreamId::Admin(_, a) => Some(*a),
            StreamId::Tenant(_) | StreamId::Audit(_) => None,
        }
    }

    /// Parses the text form written by `Display`.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(rest) = s.strip_prefix("admin-") {
            // Two hyphenated UUIDs of 36 characters each, joined by '-'.
            let (t, a) = (rest.get(..36)?, rest.get(37..)?);
            return Some(StreamId::Admin(t.parse().ok()?, a.parse().ok()?));
        }
        if let Some(t) = s.strip_prefix("tenant-") {
            return t.parse().ok().map(StreamId::Tenant);
        }
        s.strip_prefix("audit-")?.parse().ok().map(StreamId::Audit)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Admin(t, a) => write!(f, "admin-{t}-{a}"),
            StreamId::Tenant(t) => write!(f, "tenant-{t}"),
            StreamId::Audit(t) => write!(f, "audit-{t}"),
        }
    }
}
