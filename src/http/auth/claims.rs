//! What an identity provider's token means here: which claims name the tenant, the subject and
//! the roles, and which of the provider's role names are which of the service's five roles.
//!
//! Presets follow the providers' real token shapes (the README shows a payload of each):
//!
//! | preset | tenant | subject | roles |
//! | --- | --- | --- | --- |
//! | `entra` (Microsoft Entra ID) | `tid` | `oid` | `roles` (app roles) |
//! | `okta` | `tenant_id` (a custom claim of the authorization server) | `sub` | `groups` |
//! | `keycloak` | `tenant_id` (a hardcoded-claim mapper) | `sub` | `realm_access.roles`, `resource_access.<client>.roles` |
//! | `generic` | `tid` | `sub` | `roles` |
//!
//! Each part can be set apart (`--oidc-tenant-claim`, `--oidc-tenant` for one fixed tenant,
//! `--oidc-subject-claim`, `--oidc-roles-claim`), and the role table maps the provider's names
//! (`RecoveryInfo.Auditor`, an Okta group, a Keycloak role) onto the service's roles
//! (`--oidc-role-map NAME=role`). The service's own role names and `RecoveryInfo.<Role>`
//! (`RecoveryInfo.SelfService`, …) map to themselves without configuration.

use super::{Identity, Role, SignIn};
use crate::domain::TenantId;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use uuid::Uuid;

/// A provider's token shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Entra,
    Okta,
    Keycloak,
    Generic,
}

impl Preset {
    /// Every preset, by name.
    pub const ALL: [(&'static str, Preset); 4] = [
        ("entra", Preset::Entra),
        ("okta", Preset::Okta),
        ("keycloak", Preset::Keycloak),
        ("generic", Preset::Generic),
    ];

    /// The preset named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Preset::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| *p)
    }
}

/// Where a token's tenant comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantSource {
    /// A claim holding the tenant's UUID.
    Claim(String),
    /// Every token of the issuer is of this tenant (a deployment for one organisation).
    Fixed(TenantId),
}

/// How a provider's claims map onto a caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMapping {
    pub tenant: TenantSource,
    /// The claim holding the subject (for `self_service`, the admin's id).
    pub subject: String,
    /// The claims holding role names: paths with dots (`realm_access.roles`), each a list of
    /// strings or one string of names separated by spaces (as `scope` is).
    pub roles: Vec<String>,
    /// The provider's role names → the service's roles.
    pub role_map: HashMap<String, Role>,
}

/// The service's roles under their own names and as `RecoveryInfo.<Role>` app roles.
fn default_role_map() -> HashMap<String, Role> {
    let mut map = HashMap::new();
    for role in Role::ALL {
        map.insert(role.as_str().to_owned(), role);
        let pascal: String = role
            .as_str()
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        map.insert(format!("RecoveryInfo.{pascal}"), role);
    }
    map
}

impl ClaimMapping {
    /// The mapping of `preset`, for tokens whose audience is `client` (Keycloak's client
    /// roles are under the client's id).
    pub fn preset(preset: Preset, client: &str) -> Self {
        let (tenant, subject, roles): (&str, &str, Vec<String>) = match preset {
            Preset::Entra => ("tid", "oid", vec!["roles".into()]),
            Preset::Okta => ("tenant_id", "sub", vec!["groups".into()]),
            Preset::Keycloak => (
                "tenant_id",
                "sub",
                vec![
                    "realm_access.roles".into(),
                    format!("resource_access.{client}.roles"),
                ],
            ),
            Preset::Generic => ("tid", "sub", vec!["roles".into()]),
        };
        ClaimMapping {
            tenant: TenantSource::Claim(tenant.into()),
            subject: subject.into(),
            roles,
            role_map: default_role_map(),
        }
    }

    /// The caller a verified token's `claims` name.
    pub(super) fn identity(&self, claims: &Value) -> Result<Identity, MappingError> {
        let tenant = match &self.tenant {
            TenantSource::Fixed(t) => *t,
            TenantSource::Claim(name) => {
                let text = lookup(claims, name)
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        MappingError(format!("the token has no tenant claim {name:?}"))
                    })?;
                Uuid::parse_str(text)
                    .map(TenantId::from_uuid)
                    .map_err(|_| MappingError(format!("the tenant claim {name:?} is not a UUID")))?
            }
        };
        let subject = lookup(claims, &self.subject)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                MappingError(format!("the token has no subject claim {:?}", self.subject))
            })?
            .to_owned();
        let mut roles: Vec<Role> = Vec::new();
        for path in &self.roles {
            for name in names(lookup(claims, path)) {
                if let Some(role) = self.role_map.get(name)
                    && !roles.contains(role)
                {
                    roles.push(*role);
                }
            }
        }
        let amr = names(claims.get("amr")).map(str::to_owned).collect();
        Ok(Identity {
            tenant,
            subject,
            roles,
            sign_in: SignIn {
                auth_time: claims.get("auth_time").and_then(Value::as_i64),
                acr: claims.get("acr").and_then(Value::as_str).map(str::to_owned),
                amr,
            },
            expires: claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
        })
    }
}

/// The value at a dotted path of a JSON object.
fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

/// The names in a claim: a list of strings, or one string of names separated by spaces.
fn names(claim: Option<&Value>) -> impl Iterator<Item = &str> {
    let (list, text) = match claim {
        Some(Value::Array(items)) => (items.as_slice(), ""),
        Some(Value::String(s)) => (&[][..], s.as_str()),
        _ => (&[][..], ""),
    };
    list.iter()
        .filter_map(Value::as_str)
        .chain(text.split_whitespace())
}

/// A token whose claims do not say who the caller is.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct MappingError(pub String);

impl fmt::Display for MappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant() -> Uuid {
        Uuid::parse_str("72f988bf-86f1-41af-91ab-2d7cd011db47").unwrap()
    }

    #[test]
    fn an_entra_token_names_its_tenant_object_id_and_app_roles() {
        // The shape of an Entra ID v2 access token for an app with app roles.
        let claims = json!({
            "aud": "api://recovery-info", "iss": format!("https://login.microsoftonline.com/{}/v2.0", tenant()),
            "tid": tenant().to_string(), "oid": "00000000-0000-0000-0000-0000000000aa",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "roles": ["RecoveryInfo.Auditor", "Some.Other.Role"], "scp": "user_impersonation",
            "auth_time": 1_700_000_000, "acr": "1", "amr": ["pwd", "mfa"], "exp": 1_700_003_600
        });
        let identity = ClaimMapping::preset(Preset::Entra, "api://recovery-info")
            .identity(&claims)
            .unwrap();
        assert_eq!(identity.tenant, TenantId::from_uuid(tenant()));
        assert_eq!(identity.subject, "00000000-0000-0000-0000-0000000000aa");
        assert_eq!(identity.roles, [Role::Auditor]);
        assert_eq!(identity.sign_in.auth_time, Some(1_700_000_000));
        assert_eq!(identity.sign_in.amr, ["pwd", "mfa"]);
    }

    #[test]
    fn an_okta_token_names_its_groups_and_a_custom_tenant_claim() {
        let claims = json!({
            "sub": "00u1a2b3c4d5e6f7g8h9", "tenant_id": tenant().to_string(),
            "groups": ["Everyone", "recovery-auditors"], "scp": ["openid"], "exp": 1
        });
        let mut mapping = ClaimMapping::preset(Preset::Okta, "api://default");
        mapping
            .role_map
            .insert("recovery-auditors".into(), Role::Auditor);
        let identity = mapping.identity(&claims).unwrap();
        assert_eq!(identity.subject, "00u1a2b3c4d5e6f7g8h9");
        assert_eq!(identity.roles, [Role::Auditor]);
    }

    #[test]
    fn a_keycloak_token_names_realm_and_client_roles() {
        let claims = json!({
            "sub": "f1d2c3b4-0000-4000-8000-000000000001", "tenant_id": tenant().to_string(),
            "realm_access": {"roles": ["offline_access", "authentication_admin"]},
            "resource_access": {"recovery-info": {"roles": ["auditor"]}, "account": {"roles": ["manage-account"]}},
            "scope": "openid profile", "exp": 1
        });
        let identity = ClaimMapping::preset(Preset::Keycloak, "recovery-info")
            .identity(&claims)
            .unwrap();
        assert_eq!(identity.roles, [Role::AuthenticationAdmin, Role::Auditor]);
    }

    #[test]
    fn a_token_without_a_tenant_or_subject_names_no_caller() {
        let mapping = ClaimMapping::preset(Preset::Generic, "x");
        let no_tenant = json!({"sub": "a", "roles": []});
        assert!(mapping.identity(&no_tenant).unwrap_err().0.contains("tid"));
        let bad_tenant = json!({"sub": "a", "tid": "contoso"});
        assert!(
            mapping
                .identity(&bad_tenant)
                .unwrap_err()
                .0
                .contains("not a UUID")
        );
        let no_subject = json!({"tid": tenant().to_string()});
        assert!(
            mapping
                .identity(&no_subject)
                .unwrap_err()
                .0
                .contains("subject")
        );
        // A fixed tenant needs no claim; space-separated role names count.
        let fixed = ClaimMapping {
            tenant: TenantSource::Fixed(TenantId::from_uuid(tenant())),
            roles: vec!["scope".into()],
            ..mapping
        };
        let identity = fixed
            .identity(&json!({"sub": "svc", "scope": "openid reset_service"}))
            .unwrap();
        assert_eq!(identity.roles, [Role::ResetService]);
    }
}
