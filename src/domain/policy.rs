//! Reset-eligibility policies and the verdict they give for an admin's methods.

use super::{DomainError, MethodId};
use super::{Method, MethodKind, TenantDomain, mask};
use serde::{Deserialize, Serialize};

/// When an admin may reset their own password.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetPolicy {
    /// The default admin policy: an alternate email **and** a mobile phone that count.
    #[default]
    EmailAndMobilePhone,
    /// Any two distinct methods (the identity providers' two-gate rule for admins).
    AnyTwoMethods,
}

impl ResetPolicy {
    /// The stable name used in the API and in events.
    pub fn name(self) -> &'static str {
        match self {
            ResetPolicy::EmailAndMobilePhone => "email_and_mobile_phone",
            ResetPolicy::AnyTwoMethods => "any_two_methods",
        }
    }

    /// Parses a policy name.
    pub fn parse(name: &str) -> Result<Self, DomainError> {
        [ResetPolicy::EmailAndMobilePhone, ResetPolicy::AnyTwoMethods]
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| DomainError::UnknownResetPolicy(name.to_owned()))
    }
}

/// A method a reset flow may use, with its value masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsableMethod {
    pub id: MethodId,
    pub kind: MethodKind,
    pub masked_value: String,
}

/// What a policy still needs before an admin may reset (the stable names of the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    Email,
    MobilePhone,
    /// One more method of any kind ([`ResetPolicy::AnyTwoMethods`]).
    AnotherMethod,
}

impl Missing {
    /// The stable name used in the API and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Missing::Email => "email",
            Missing::MobilePhone => "mobile_phone",
            Missing::AnotherMethod => "another_method",
        }
    }
}

/// Whether an admin may reset now, what is missing, and with which methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Verdict {
    pub eligible: bool,
    pub policy: ResetPolicy,
    pub missing: Vec<Missing>,
    pub usable_methods: Vec<UsableMethod>,
}

/// Whether a method counts towards reset: an email inside a tenant domain does not.
pub fn method_counts(method: &Method, domains: &[TenantDomain]) -> bool {
    match method.kind {
        MethodKind::Email => match super::email_domain(&method.value) {
            Some(d) => !domains.iter().any(|td| td.contains(d)),
            None => false,
        },
        _ => true,
    }
}

/// Evaluates `policy` for an admin's current methods under the tenant's domains.
pub fn evaluate<'a>(
    policy: ResetPolicy,
    domains: &[TenantDomain],
    methods: impl IntoIterator<Item = &'a Method>,
) -> Verdict {
    evaluate_masking(policy, domains, methods, |m| mask(m.kind, &m.value))
}

/// [`evaluate`], taking each usable method's masked value from `masked`, which must answer
/// what [`mask`] would. A fold passes the masks of its previous verdict for the values that
/// did not change: masking a phone number formats it for its country, the dearest step of a
/// verdict.
pub fn evaluate_masking<'a>(
    policy: ResetPolicy,
    domains: &[TenantDomain],
    methods: impl IntoIterator<Item = &'a Method>,
    mut masked: impl FnMut(&Method) -> String,
) -> Verdict {
    let mut usable_methods: Vec<UsableMethod> = methods
        .into_iter()
        .filter(|m| method_counts(m, domains))
        .map(|m| UsableMethod {
            id: m.id,
            kind: m.kind,
            masked_value: masked(m),
        })
        .collect();
    usable_methods.sort_by_key(|m| m.kind);
    let has = |k: MethodKind| usable_methods.iter().any(|m| m.kind == k);
    let missing: Vec<Missing> = match policy {
        ResetPolicy::EmailAndMobilePhone => [
            (MethodKind::Email, Missing::Email),
            (MethodKind::MobilePhone, Missing::MobilePhone),
        ]
        .into_iter()
        .filter(|(k, _)| !has(*k))
        .map(|(_, missing)| missing)
        .collect(),
        ResetPolicy::AnyTwoMethods => {
            vec![Missing::AnotherMethod; 2usize.saturating_sub(usable_methods.len())]
        }
    };
    Verdict {
        eligible: missing.is_empty(),
        policy,
        missing,
        usable_methods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_serialized_ones() {
        for m in [Missing::Email, Missing::MobilePhone, Missing::AnotherMethod] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        for p in [ResetPolicy::EmailAndMobilePhone, ResetPolicy::AnyTwoMethods] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
    }
}
