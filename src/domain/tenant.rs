//! The tenant aggregate: the organisation's own email domains, its reset policy and its
//! notices to the old contact.

use super::{
    DomainError, DomainEvent, EventMeta, Language, NoticeKind, NoticeSettings, ResetPolicy,
    TenantDomain,
};
use serde::{Deserialize, Serialize};

/// A tenant's settings as folded from its stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantState {
    pub version: u64,
    /// Global position of the last event folded (0 for an empty stream).
    #[serde(default)]
    pub last_position: u64,
    /// Sorted and de-duplicated.
    pub domains: Vec<TenantDomain>,
    pub policy: ResetPolicy,
    /// The notices to the old contact: their language, the kinds turned off.
    #[serde(default)]
    pub notices: NoticeSettings,
}

/// A change of tenant settings; an absent field stays as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetSettings {
    pub domains: Option<Vec<String>>,
    pub reset_policy: Option<String>,
    /// The notices' language (`en`, `da`).
    pub notice_language: Option<String>,
    /// The notice kinds turned off (the others are on).
    pub notices_disabled: Option<Vec<String>>,
}

/// Bounds on a tenant's settings, configured by the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingsLimits {
    /// The most domains a tenant may list: every admin of the tenant is re-evaluated against
    /// them and every email compared with each.
    pub max_domains: usize,
}

impl Default for SettingsLimits {
    fn default() -> Self {
        SettingsLimits { max_domains: 500 }
    }
}

/// Decides the events for a settings change; a setting equal to the current one appends nothing.
pub fn decide(
    command: &SetSettings,
    state: &TenantState,
    limits: SettingsLimits,
) -> Result<Vec<DomainEvent>, DomainError> {
    let mut events = Vec::new();
    if let Some(domains) = &command.domains {
        if domains.len() > limits.max_domains {
            return Err(DomainError::TooManyDomains {
                given: domains.len(),
                max: limits.max_domains,
            });
        }
        let mut parsed = domains
            .iter()
            .map(|d| TenantDomain::parse(d))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort();
        parsed.dedup();
        if parsed != state.domains {
            events.push(DomainEvent::TenantDomainsSet { domains: parsed });
        }
    }
    if let Some(name) = &command.reset_policy {
        let policy = ResetPolicy::parse(name)?;
        if policy != state.policy {
            events.push(DomainEvent::ResetPolicySet { policy });
        }
    }
    let mut notices = state.notices.clone();
    if let Some(tag) = &command.notice_language {
        notices.language = Language::parse(tag)?;
    }
    if let Some(kinds) = &command.notices_disabled {
        notices.disabled = kinds
            .iter()
            .map(|k| NoticeKind::parse(k))
            .collect::<Result<_, _>>()?;
    }
    if notices != state.notices {
        events.push(DomainEvent::NotificationsSet { settings: notices });
    }
    Ok(events)
}

/// Folds one event of the tenant's stream. Admin events are ignored.
pub fn evolve(mut state: TenantState, event: &DomainEvent, meta: &EventMeta) -> TenantState {
    match event {
        DomainEvent::TenantDomainsSet { domains } => state.domains = domains.clone(),
        DomainEvent::ResetPolicySet { policy } => state.policy = *policy,
        DomainEvent::NotificationsSet { settings } => state.notices = settings.clone(),
        _ => return state,
    }
    state.version = meta.version;
    state.last_position = meta.position;
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_and_unchanged_settings_append_nothing() {
        let cmd = SetSettings {
            domains: Some(vec![
                "Contoso.com".into(),
                "contoso.com".into(),
                "fabrikam.dk".into(),
            ]),
            reset_policy: Some("email_and_mobile_phone".into()),
            ..Default::default()
        };
        let events = decide(&cmd, &TenantState::default(), SettingsLimits::default()).unwrap();
        assert_eq!(
            events.len(),
            1,
            "the default policy is not an event: {events:?}"
        );
        let state = evolve(
            TenantState::default(),
            &events[0],
            &EventMeta {
                version: 1,
                position: 1,
                occurred_at: chrono::Utc::now(),
            },
        );
        assert_eq!(state.domains.len(), 2);
        assert!(
            decide(&cmd, &state, SettingsLimits::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_domains_and_unknown_policies_are_refused() {
        let bad_domain = SetSettings {
            domains: Some(vec!["not a domain".into()]),
            ..Default::default()
        };
        assert_eq!(
            decide(
                &bad_domain,
                &TenantState::default(),
                SettingsLimits::default()
            )
            .unwrap_err()
            .code(),
            "invalid_domain"
        );
        let bad_policy = SetSettings {
            reset_policy: Some("anything_goes".into()),
            ..Default::default()
        };
        assert_eq!(
            decide(
                &bad_policy,
                &TenantState::default(),
                SettingsLimits::default()
            )
            .unwrap_err()
            .code(),
            "unknown_reset_policy"
        );
    }

    #[test]
    fn notice_settings_are_one_event_when_they_change_and_bad_ones_are_refused() {
        let cmd = SetSettings {
            notice_language: Some("da".into()),
            notices_disabled: Some(vec!["method_added".into()]),
            ..Default::default()
        };
        let events = decide(&cmd, &TenantState::default(), SettingsLimits::default()).unwrap();
        let [DomainEvent::NotificationsSet { settings }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(settings.language, Language::Da);
        assert!(!settings.enabled(NoticeKind::MethodAdded));
        assert!(settings.enabled(NoticeKind::MethodChanged));
        let meta = EventMeta {
            version: 1,
            position: 1,
            occurred_at: chrono::Utc::now(),
        };
        let state = evolve(TenantState::default(), &events[0], &meta);
        assert!(
            decide(&cmd, &state, SettingsLimits::default())
                .unwrap()
                .is_empty()
        );
        // The language alone keeps what is off.
        let english = SetSettings {
            notice_language: Some("en".into()),
            ..Default::default()
        };
        let events = decide(&english, &state, SettingsLimits::default()).unwrap();
        let [DomainEvent::NotificationsSet { settings }] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert!(!settings.enabled(NoticeKind::MethodAdded));
        for (bad, code) in [
            (
                SetSettings {
                    notice_language: Some("fr".into()),
                    ..Default::default()
                },
                "unknown_language",
            ),
            (
                SetSettings {
                    notices_disabled: Some(vec!["everything".into()]),
                    ..Default::default()
                },
                "unknown_notice_kind",
            ),
        ] {
            let e = decide(&bad, &state, SettingsLimits::default()).unwrap_err();
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn a_tenant_lists_at_most_the_configured_number_of_domains() {
        let limits = SettingsLimits { max_domains: 3 };
        let domains = |n: usize| SetSettings {
            domains: Some((0..n).map(|i| format!("d{i}.example.com")).collect()),
            ..Default::default()
        };
        assert_eq!(
            decide(&domains(3), &TenantState::default(), limits)
                .unwrap()
                .len(),
            1
        );
        let err = decide(&domains(4), &TenantState::default(), limits).unwrap_err();
        assert_eq!(err.code(), "too_many_domains");
        assert!(err.to_string().contains("4 domains; at most 3"), "{err}");
    }
}
