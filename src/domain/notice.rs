//! Notices to an admin's contacts when their security info changes (docs/notifications.md):
//! who is told of an event, pure. The old email or phone is the one an attacker who replaced
//! it cannot silence, so a change or a removal is told to the **previous** value; an addition
//! is told to the admin's remaining email and mobile phone; an offboarding to every value it
//! removed.

use super::{AdminState, DomainError, DomainEvent, MethodId, MethodKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a notice is about (a tenant may turn each off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    MethodAdded,
    MethodChanged,
    MethodRemoved,
    AdminOffboarded,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 4] = [
        NoticeKind::MethodAdded,
        NoticeKind::MethodChanged,
        NoticeKind::MethodRemoved,
        NoticeKind::AdminOffboarded,
    ];

    /// The stable name used in the API, the settings and the outbox.
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::MethodAdded => "method_added",
            NoticeKind::MethodChanged => "method_changed",
            NoticeKind::MethodRemoved => "method_removed",
            NoticeKind::AdminOffboarded => "admin_offboarded",
        }
    }

    /// Parses a name.
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        NoticeKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| DomainError::UnknownNoticeKind(name.to_owned()))
    }

    /// The kind of notice an event gives, if any.
    pub fn of(event: &DomainEvent) -> Option<Self> {
        match event {
            DomainEvent::MethodAdded { .. } => Some(NoticeKind::MethodAdded),
            DomainEvent::MethodChanged { .. } => Some(NoticeKind::MethodChanged),
            DomainEvent::MethodRemoved(_) => Some(NoticeKind::MethodRemoved),
            DomainEvent::AdminOffboarded { .. } => Some(NoticeKind::AdminOffboarded),
            _ => None,
        }
    }
}

/// The languages notices are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    En,
    Da,
}

impl Language {
    /// The stable name (BCP 47 tag).
    pub fn name(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Da => "da",
        }
    }

    /// Parses a tag.
    pub fn parse(tag: &str) -> Result<Self, DomainError> {
        [Language::En, Language::Da]
            .into_iter()
            .find(|l| l.name() == tag)
            .ok_or_else(|| DomainError::UnknownLanguage(tag.to_owned()))
    }
}

/// A tenant's notice settings: the language, and the kinds turned off (default: all on).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeSettings {
    pub language: Language,
    pub disabled: BTreeSet<NoticeKind>,
}

impl NoticeSettings {
    /// Whether these are the defaults (English, every kind on).
    pub fn is_default(&self) -> bool {
        *self == NoticeSettings::default()
    }

    /// Whether notices of `kind` go out.
    pub fn enabled(&self, kind: NoticeKind) -> bool {
        !self.disabled.contains(&kind)
    }
}

/// Which of a method's values a notice goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The value the event replaced or removed.
    Previous,
    /// The value a method held when the event happened (another method than the event's).
    Remaining,
}

impl Recipient {
    pub fn name(self) -> &'static str {
        match self {
            Recipient::Previous => "previous",
            Recipient::Remaining => "remaining",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Recipient::Previous, Recipient::Remaining]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

/// One notice of an event: to the value `recipient` of method `method_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub method_id: MethodId,
    pub recipient: Recipient,
    /// The recipient's kind of method and value (an email address or an E.164 number).
    pub to_kind: MethodKind,
    pub to: String,
    /// The kind of method the event was about.
    pub about: MethodKind,
}

/// Whether the notices of `event` depend on the admin's state before it: an addition tells
/// the admin's other methods; every other event carries the values it tells.
pub fn needs_state(event: &DomainEvent) -> bool {
    matches!(event, DomainEvent::MethodAdded { .. })
}

/// The notices of `event`, given the admin's state just before it ([`needs_state`]: only an
/// addition reads it).
pub fn notices(event: &DomainEvent, before: &AdminState) -> Vec<Notice> {
    match event {
        DomainEvent::MethodChanged {
            method_id,
            kind,
            old_value,
            ..
        } => vec![Notice {
            kind: NoticeKind::MethodChanged,
            method_id: *method_id,
            recipient: Recipient::Previous,
            to_kind: *kind,
            to: old_value.clone(),
            about: *kind,
        }],
        DomainEvent::MethodRemoved(removed) => vec![Notice {
            kind: NoticeKind::MethodRemoved,
            method_id: removed.method_id,
            recipient: Recipient::Previous,
            to_kind: removed.kind,
            to: removed.old_value.clone(),
            about: removed.kind,
        }],
        DomainEvent::MethodAdded { kind, .. } => before
            .methods
            .iter()
            .filter(|m| matches!(m.kind, MethodKind::Email | MethodKind::MobilePhone))
            .filter(|m| m.kind != *kind)
            .map(|m| Notice {
                kind: NoticeKind::MethodAdded,
                method_id: m.id,
                recipient: Recipient::Remaining,
                to_kind: m.kind,
                to: m.value.clone(),
                about: *kind,
            })
            .collect(),
        DomainEvent::AdminOffboarded { removed } => removed
            .iter()
            .map(|r| Notice {
                kind: NoticeKind::AdminOffboarded,
                method_id: r.method_id,
                recipient: Recipient::Previous,
                to_kind: r.kind,
                to: r.old_value.clone(),
                about: r.kind,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Method, RemovedMethod};
    use uuid::Uuid;

    fn method(kind: MethodKind, value: &str) -> Method {
        Method {
            id: MethodId::from_uuid(Uuid::now_v7()),
            kind,
            value: value.into(),
            added_at: chrono::Utc::now(),
            changed_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_change_or_a_removal_is_told_to_the_previous_value_and_an_addition_to_the_others() {
        let email = method(MethodKind::Email, "jane@example.org");
        let mobile = method(MethodKind::MobilePhone, "+4520123456");
        let office = method(MethodKind::OfficePhone, "+4533123456");
        let before = AdminState {
            methods: vec![mobile.clone(), office.clone(), email.clone()],
            ..AdminState::default()
        };
        let changed = DomainEvent::MethodChanged {
            method_id: email.id,
            kind: MethodKind::Email,
            old_value: "jane@example.org".into(),
            new_value: "attacker@example.net".into(),
        };
        let n = notices(&changed, &before);
        assert_eq!(n.len(), 1);
        assert_eq!(
            (n[0].to.as_str(), n[0].recipient),
            ("jane@example.org", Recipient::Previous)
        );
        let removed = DomainEvent::MethodRemoved(RemovedMethod {
            method_id: mobile.id,
            kind: MethodKind::MobilePhone,
            old_value: "+4520123456".into(),
        });
        assert_eq!(notices(&removed, &before)[0].to, "+4520123456");
        // An added alternate phone: the email and the mobile are told, not the office phone.
        let added = DomainEvent::MethodAdded {
            method_id: MethodId::from_uuid(Uuid::now_v7()),
            kind: MethodKind::AlternatePhone,
            value: "+4540123456".into(),
        };
        let to: Vec<_> = notices(&added, &before).into_iter().map(|n| n.to).collect();
        assert_eq!(to, ["+4520123456", "jane@example.org"]);
        // A new email replacing none: only the mobile (the email kind is the one added).
        let added_email = DomainEvent::MethodAdded {
            method_id: MethodId::from_uuid(Uuid::now_v7()),
            kind: MethodKind::Email,
            value: "new@example.net".into(),
        };
        let to: Vec<_> = notices(&added_email, &before)
            .into_iter()
            .map(|n| n.to)
            .collect();
        assert_eq!(to, ["+4520123456"]);
        // The first method of an admin has nobody to tell.
        assert!(notices(&added, &AdminState::default()).is_empty());
        assert!(NoticeKind::of(&DomainEvent::AdminErased { reason: "x".into() }).is_none());
    }

    /// The notifier reads an admin's state only for the events that need one: every other
    /// event's notices must come out the same whatever the state.
    #[test]
    fn only_an_addition_reads_the_state_before_it() {
        let email = method(MethodKind::Email, "jane@example.org");
        let mobile = method(MethodKind::MobilePhone, "+4520123456");
        let full = AdminState {
            methods: vec![mobile.clone(), email.clone()],
            ..AdminState::default()
        };
        let removed = RemovedMethod {
            method_id: mobile.id,
            kind: MethodKind::MobilePhone,
            old_value: "+4520123456".into(),
        };
        let events = [
            DomainEvent::MethodChanged {
                method_id: email.id,
                kind: MethodKind::Email,
                old_value: "jane@example.org".into(),
                new_value: "joe@example.org".into(),
            },
            DomainEvent::MethodRemoved(removed.clone()),
            DomainEvent::AdminOffboarded {
                removed: vec![removed],
            },
            DomainEvent::MethodAdded {
                method_id: MethodId::from_uuid(Uuid::now_v7()),
                kind: MethodKind::OfficePhone,
                value: "+4533123456".into(),
            },
        ];
        for event in &events {
            let same = notices(event, &full) == notices(event, &AdminState::default());
            assert_eq!(same, !needs_state(event), "{event:?}");
            assert!(!notices(event, &full).is_empty(), "{event:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for k in NoticeKind::ALL {
            assert_eq!(NoticeKind::parse(k.name()).unwrap(), k);
        }
        assert_eq!(Language::parse("da").unwrap(), Language::Da);
        assert_eq!(
            Language::parse("de").unwrap_err().code(),
            crate::error::Code::UnknownLanguage
        );
    }
}
