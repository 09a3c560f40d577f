//! The admin aggregate: one stream per admin holding their security methods.
//!
//! A decider: [`decide`] checks a command against the state folded by [`evolve`] and answers
//! with the events to append. No I/O, no clock, no randomness: ids and time come in from outside.

use super::{
    DomainError, DomainEvent, EventMeta, MethodId, MethodInput, MethodKind, MethodValue,
    RemovedMethod, TenantState,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One current security method of an admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Method {
    pub id: MethodId,
    pub kind: MethodKind,
    /// Canonical value: E.164 phone number or email address.
    pub value: String,
    pub added_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
}

/// An admin's security info as folded from their stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminState {
    /// Stream version: the number of events folded.
    pub version: u64,
    /// Global position of the last event folded (0 for an empty stream).
    pub last_position: u64,
    pub offboarded: bool,
    /// The admin's values were erased (after offboarding): nothing changes any more.
    #[serde(default)]
    pub erased: bool,
    /// At most one per kind, kept in kind order.
    pub methods: Vec<Method>,
}

impl AdminState {
    /// The method of `kind`, if the admin has one.
    pub fn method_of_kind(&self, kind: MethodKind) -> Option<&Method> {
        self.methods.iter().find(|m| m.kind == kind)
    }

    /// The method with `id`.
    pub fn method(&self, id: MethodId) -> Option<&Method> {
        self.methods.iter().find(|m| m.id == id)
    }
}

/// What an admin (or an authentication admin on their behalf) asks for. Values come parsed
/// ([`MethodInput`]); the decider takes the form of the method's kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminCommand {
    AddMethod {
        method_id: MethodId,
        kind: MethodKind,
        value: MethodInput,
    },
    ChangeMethod {
        method_id: MethodId,
        value: MethodInput,
    },
    RemoveMethod {
        method_id: MethodId,
    },
    Offboard,
    /// Erases an offboarded admin's contact values (crypto-shredding: the store destroys their
    /// data key with the event).
    Erase {
        reason: String,
    },
}

/// The longest reason an erasure may give.
pub const MAX_ERASE_REASON: usize = 500;

impl AdminCommand {
    /// The method the command leaves in place, which its answer shows: the added or changed
    /// one.
    pub fn method_shown(&self) -> Option<MethodId> {
        match self {
            AdminCommand::AddMethod { method_id, .. }
            | AdminCommand::ChangeMethod { method_id, .. } => Some(*method_id),
            AdminCommand::RemoveMethod { .. }
            | AdminCommand::Offboard
            | AdminCommand::Erase { .. } => None,
        }
    }
}

/// Decides which events `command` produces against `state`, under the tenant's settings.
/// An empty answer means the command changes nothing (e.g. a change to the current value).
pub fn decide(
    command: &AdminCommand,
    state: &AdminState,
    tenant: &TenantState,
) -> Result<Vec<DomainEvent>, DomainError> {
    if state.erased {
        return Err(DomainError::AdminErased);
    }
    if state.offboarded {
        return match command {
            AdminCommand::Offboard => Ok(vec![]),
            AdminCommand::Erase { reason } => {
                let reason = reason.trim();
                if reason.is_empty()
                    || reason.chars().count() > MAX_ERASE_REASON
                    || reason.chars().any(char::is_control)
                {
                    return Err(DomainError::InvalidEraseReason);
                }
                Ok(vec![DomainEvent::AdminErased {
                    reason: reason.to_owned(),
                }])
            }
            _ => Err(DomainError::AdminOffboarded),
        };
    }
    match command {
        AdminCommand::AddMethod {
            method_id,
            kind,
            value,
        } => {
            if state.method_of_kind(*kind).is_some() {
                return Err(DomainError::MethodKindExists(*kind));
            }
            if *kind == MethodKind::AlternatePhone
                && state.method_of_kind(MethodKind::MobilePhone).is_none()
            {
                return Err(DomainError::AlternatePhoneRequiresMobile);
            }
            let value = value_of(*kind, value, tenant)?;
            Ok(vec![DomainEvent::MethodAdded {
                method_id: *method_id,
                kind: *kind,
                value,
            }])
        }
        AdminCommand::ChangeMethod { method_id, value } => {
            let method = state
                .method(*method_id)
                .ok_or(DomainError::MethodNotFound)?;
            let value = value_of(method.kind, value, tenant)?;
            if value == method.value {
                return Ok(vec![]);
            }
            Ok(vec![DomainEvent::MethodChanged {
                method_id: method.id,
                kind: method.kind,
                old_value: method.value.clone(),
                new_value: value,
            }])
        }
        AdminCommand::RemoveMethod { method_id } => {
            let method = state
                .method(*method_id)
                .ok_or(DomainError::MethodNotFound)?;
            if method.kind == MethodKind::MobilePhone
                && state.method_of_kind(MethodKind::AlternatePhone).is_some()
            {
                return Err(DomainError::MobilePhoneHasAlternate);
            }
            Ok(vec![DomainEvent::MethodRemoved(removed(method))])
        }
        AdminCommand::Offboard => Ok(vec![DomainEvent::AdminOffboarded {
            removed: state.methods.iter().map(removed).collect(),
        }]),
        AdminCommand::Erase { .. } => Err(DomainError::AdminNotOffboarded),
    }
}

fn removed(method: &Method) -> RemovedMethod {
    RemovedMethod {
        method_id: method.id,
        kind: method.kind,
        old_value: method.value.clone(),
    }
}

/// The stored form of a value of `kind`; an email must lie outside the tenant's own domains.
fn value_of(
    kind: MethodKind,
    input: &MethodInput,
    tenant: &TenantState,
) -> Result<String, DomainError> {
    let value = input.for_kind(kind)?;
    if let MethodValue::Email(email) = &value
        && let Some(domain) = tenant.domains.iter().find(|d| d.contains(email.domain()))
    {
        return Err(DomainError::EmailInTenantDomain(domain.as_str().to_owned()));
    }
    Ok(value.canonical())
}

/// Folds one event of the admin's stream into the state. Tenant events are ignored.
pub fn evolve(mut state: AdminState, event: &DomainEvent, meta: &EventMeta) -> AdminState {
    match event {
        DomainEvent::MethodAdded {
            method_id,
            kind,
            value,
        } => {
            state.methods.retain(|m| m.kind != *kind);
            state.methods.push(Method {
                id: *method_id,
                kind: *kind,
                value: value.clone(),
                added_at: meta.occurred_at,
                changed_at: meta.occurred_at,
            });
            state.methods.sort_by_key(|m| m.kind);
        }
        DomainEvent::MethodChanged {
            method_id,
            new_value,
            ..
        } => {
            if let Some(m) = state.methods.iter_mut().find(|m| m.id == *method_id) {
                m.value = new_value.clone();
                m.changed_at = meta.occurred_at;
            }
        }
        DomainEvent::MethodRemoved(r) => state.methods.retain(|m| m.id != r.method_id),
        DomainEvent::AdminOffboarded { .. } => {
            state.methods.clear();
            state.offboarded = true;
        }
        DomainEvent::AdminErased { .. } => {
            state.methods.clear();
            state.erased = true;
        }
        DomainEvent::TenantDomainsSet { .. }
        | DomainEvent::ResetPolicySet { .. }
        | DomainEvent::NotificationsSet { .. }
        | DomainEvent::PiiRevealed { .. } => return state,
    }
    state.version = meta.version;
    state.last_position = meta.position;
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ResetPolicy, TenantDomain};
    use uuid::Uuid;

    fn id(n: u128) -> MethodId {
        MethodId::from_uuid(Uuid::from_u128(n))
    }

    /// Decides and folds, as the command handler does, with versions counted up.
    fn run(
        state: AdminState,
        tenant: &TenantState,
        cmd: AdminCommand,
    ) -> Result<AdminState, DomainError> {
        let events = decide(&cmd, &state, tenant)?;
        Ok(events.iter().fold(state, |s, e| {
            let meta = EventMeta {
                version: s.version + 1,
                position: s.last_position + 1,
                occurred_at: Utc::now(),
            };
            evolve(s, e, &meta)
        }))
    }

    fn add(n: u128, kind: MethodKind, value: &str) -> AdminCommand {
        AdminCommand::AddMethod {
            method_id: id(n),
            kind,
            value: MethodInput::parse(value),
        }
    }

    fn with_mobile() -> AdminState {
        run(
            AdminState::default(),
            &TenantState::default(),
            add(1, MethodKind::MobilePhone, "+45 20 12 34 56"),
        )
        .unwrap()
    }

    #[test]
    fn adding_a_method_stores_it_in_canonical_form() {
        let s = with_mobile();
        assert_eq!(s.version, 1);
        assert_eq!(s.methods[0].value, "+4520123456");
    }

    #[test]
    fn a_second_method_of_the_same_kind_is_refused() {
        let err = run(
            with_mobile(),
            &TenantState::default(),
            add(2, MethodKind::MobilePhone, "+45 20 12 34 57"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "method_kind_exists");
    }

    #[test]
    fn an_alternate_phone_needs_a_mobile_phone_first() {
        let err = run(
            AdminState::default(),
            &TenantState::default(),
            add(2, MethodKind::AlternatePhone, "+45 20 12 34 57"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "alternate_phone_requires_mobile");
        assert!(
            run(
                with_mobile(),
                &TenantState::default(),
                add(2, MethodKind::AlternatePhone, "+45 20 12 34 57")
            )
            .is_ok()
        );
    }

    #[test]
    fn the_mobile_phone_cannot_be_removed_while_an_alternate_exists() {
        let t = TenantState::default();
        let s = run(
            with_mobile(),
            &t,
            add(2, MethodKind::AlternatePhone, "+45 20 12 34 57"),
        )
        .unwrap();
        let err = run(
            s.clone(),
            &t,
            AdminCommand::RemoveMethod { method_id: id(1) },
        )
        .unwrap_err();
        assert_eq!(err.code(), "mobile_phone_has_alternate");
        let s = run(s, &t, AdminCommand::RemoveMethod { method_id: id(2) }).unwrap();
        let s = run(s, &t, AdminCommand::RemoveMethod { method_id: id(1) }).unwrap();
        assert!(s.methods.is_empty());
        assert_eq!(s.version, 4);
    }

    #[test]
    fn changing_a_method_to_its_current_value_appends_nothing() {
        let events = decide(
            &AdminCommand::ChangeMethod {
                method_id: id(1),
                value: MethodInput::parse("+45 2012 3456"),
            },
            &with_mobile(),
            &TenantState::default(),
        )
        .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn changing_keeps_the_kind_and_records_old_and_new_value() {
        let events = decide(
            &AdminCommand::ChangeMethod {
                method_id: id(1),
                value: MethodInput::parse("+45 20 12 34 99"),
            },
            &with_mobile(),
            &TenantState::default(),
        )
        .unwrap();
        assert_eq!(
            events,
            vec![DomainEvent::MethodChanged {
                method_id: id(1),
                kind: MethodKind::MobilePhone,
                old_value: "+4520123456".into(),
                new_value: "+4520123499".into(),
            }]
        );
    }

    #[test]
    fn unknown_methods_are_not_found() {
        let err = run(
            with_mobile(),
            &TenantState::default(),
            AdminCommand::RemoveMethod { method_id: id(9) },
        )
        .unwrap_err();
        assert_eq!(err.code(), "method_not_found");
    }

    #[test]
    fn an_email_in_a_tenant_domain_is_refused() {
        let tenant = TenantState {
            domains: vec![TenantDomain::parse("contoso.com").unwrap()],
            policy: ResetPolicy::default(),
            version: 1,
            last_position: 1,
            ..TenantState::default()
        };
        let err = run(
            AdminState::default(),
            &tenant,
            add(3, MethodKind::Email, "jane@mail.contoso.com"),
        )
        .unwrap_err();
        assert_eq!(err.code(), "email_in_tenant_domain");
        assert!(
            run(
                AdminState::default(),
                &tenant,
                add(3, MethodKind::Email, "jane@example.com")
            )
            .is_ok()
        );
    }

    #[test]
    fn offboarding_removes_every_method_and_freezes_the_admin() {
        let t = TenantState::default();
        let s = run(with_mobile(), &t, AdminCommand::Offboard).unwrap();
        assert!(s.offboarded && s.methods.is_empty());
        let err = run(s.clone(), &t, add(5, MethodKind::Email, "jane@example.com")).unwrap_err();
        assert_eq!(err.code(), "admin_offboarded");
        assert!(decide(&AdminCommand::Offboard, &s, &t).unwrap().is_empty());
    }

    #[test]
    fn the_states_refusal_comes_before_the_values() {
        let t = TenantState::default();
        let bad = "+45 9";
        let change = |n: u128| AdminCommand::ChangeMethod {
            method_id: id(n),
            value: MethodInput::parse(bad),
        };
        let code = |s: AdminState, cmd: AdminCommand| run(s, &t, cmd).unwrap_err().code();
        assert_eq!(code(with_mobile(), change(9)), "method_not_found");
        assert_eq!(code(with_mobile(), change(1)), "invalid_phone_number");
        assert_eq!(
            code(with_mobile(), add(2, MethodKind::MobilePhone, bad)),
            "method_kind_exists"
        );
        assert_eq!(
            code(
                AdminState::default(),
                add(2, MethodKind::AlternatePhone, bad)
            ),
            "alternate_phone_requires_mobile"
        );
        let offboarded = run(with_mobile(), &t, AdminCommand::Offboard).unwrap();
        assert_eq!(
            code(
                offboarded.clone(),
                add(2, MethodKind::Email, "not-an-address")
            ),
            "admin_offboarded"
        );
        assert_eq!(code(offboarded, change(1)), "admin_offboarded");
    }

    #[test]
    fn a_changed_value_is_read_in_the_form_of_the_methods_kind() {
        let t = TenantState::default();
        let s = run(
            AdminState::default(),
            &t,
            add(3, MethodKind::Email, "jane@example.com"),
        )
        .unwrap();
        let change = |value: &str| AdminCommand::ChangeMethod {
            method_id: id(3),
            value: MethodInput::parse(value),
        };
        assert_eq!(
            run(s.clone(), &t, change("+45 20 12 34 56"))
                .unwrap_err()
                .code(),
            "invalid_email"
        );
        let s = run(s, &t, change("joe@example.com")).unwrap();
        assert_eq!(s.methods[0].value, "joe@example.com");
    }
}
