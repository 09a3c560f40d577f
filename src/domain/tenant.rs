//! The tenant aggregate: the organisation's own email domains and its reset policy.

use super::{DomainError, DomainEvent, EventMeta, ResetPolicy, TenantDomain};
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
}

/// A change of tenant settings; an absent field stays as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetSettings {
    pub domains: Option<Vec<String>>,
    pub reset_policy: Option<String>,
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
    Ok(events)
}

/// Folds one event of the tenant's stream. Admin events are ignored.
pub fn evolve(mut state: TenantState, event: &DomainEvent, meta: &EventMeta) -> TenantState {
    match event {
        DomainEvent::TenantDomainsSet { domains } => state.domains = domains.clone(),
        DomainEvent::ResetPolicySet { policy } => state.policy = *policy,
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
            reset_policy: None,
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
            domains: None,
            reset_policy: Some("anything_goes".into()),
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
    fn a_tenant_lists_at_most_the_configured_number_of_domains() {
        let limits = SettingsLimits { max_domains: 3 };
        let domains = |n: usize| SetSettings {
            domains: Some((0..n).map(|i| format!("d{i}.example.com")).collect()),
            reset_policy: None,
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
