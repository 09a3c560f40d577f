//! The outbox of notices (docs/notifications.md): what both backends store and hand back.

use crate::domain::{AdminId, MethodId, MethodKind, NoticeKind, Recipient, TenantId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// How a notice travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// To an alternate email, over SMTP.
    Email,
    /// To a mobile or alternate phone, through the SMS webhook.
    Sms,
    /// To an office phone (a landline), through the webhook as a voice call.
    Voice,
}

impl Channel {
    /// The channel that reaches a method of `kind`.
    pub fn for_kind(kind: MethodKind) -> Self {
        match kind {
            MethodKind::Email => Channel::Email,
            MethodKind::MobilePhone | MethodKind::AlternatePhone => Channel::Sms,
            MethodKind::OfficePhone => Channel::Voice,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Channel::Email, Channel::Sms, Channel::Voice]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// Where a notice is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// To be sent (again) at `next_attempt_at`.
    Pending,
    Sent,
    /// Every try failed: the dead letter (`notifications retry` sends it again).
    Failed,
    /// Not deliverable: no channel configured for it, or the admin's values were erased.
    Skipped,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Pending,
        Status::Sent,
        Status::Failed,
        Status::Skipped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Status::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One notice in the outbox. It names its recipient (the event and the method) without
/// holding any contact value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Derived from the event and the recipient ([`Notification::id_of`]).
    pub id: Uuid,
    pub position: u64,
    pub tenant: TenantId,
    pub admin: AdminId,
    pub event_id: Uuid,
    pub kind: NoticeKind,
    pub method_id: MethodId,
    pub recipient: Recipient,
    pub channel: Channel,
    pub status: Status,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// The namespace of notification ids (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b1f_8f0e_5d2a_4c3e_9a71_2f4b_8c6d_1e27);

impl Notification {
    /// The id of the notice of event `event_id` to `recipient` of `method_id`: the same
    /// notice always has the same id (the outbox's key, the email's Message-ID, the webhook's
    /// idempotency key).
    pub fn id_of(event_id: Uuid, method_id: MethodId, recipient: Recipient) -> Uuid {
        let name = format!("{event_id}/{}/{}", method_id.as_uuid(), recipient.name());
        Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
    }
}

/// What became of a try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Failed; try again at `at`.
    Retry {
        at: DateTime<Utc>,
        error: String,
    },
    /// Failed for the last time: the dead letter.
    Failed {
        error: String,
    },
    /// Not deliverable (why).
    Skipped {
        reason: String,
    },
}
