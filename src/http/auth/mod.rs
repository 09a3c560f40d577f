//! Who the caller is, and what each role may do.
//!
//! A bearer token is one of the organisation's identity provider ([`oidc`]: RS256, PS256 or
//! ES256 with the issuer's rotating keys, its claims mapped by [`claims`]) or, for development,
//! tests and the embedded default, an HS256 token signed with the service's own secret
//! ([`hs256`], minted by `recovery-info token`). Writes of security info also need a recent,
//! strong sign-in ([`step_up`]). Verified tokens are remembered ([`verified`]).

pub mod claims;
pub mod hs256;
pub mod oidc;
pub mod step_up;
mod verified;

pub use hs256::JwtKeys;
pub use step_up::StepUp;

use super::error::ApiError;
use crate::domain::{AdminId, TenantId};
use crate::error::Code;
use crate::events::Actor;
use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use oidc::Oidc;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;
use verified::VerifiedTokens;

/// The roles a token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An admin managing their own security info (`sub` is their admin id).
    SelfService,
    /// Manages any admin of the tenant and the tenant's settings.
    AuthenticationAdmin,
    /// The password-reset flow: reads eligibility.
    ResetService,
    /// Reads views, history and the event feed.
    Auditor,
    /// Reads the event feed and eligibility.
    Dashboard,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::SelfService,
        Role::AuthenticationAdmin,
        Role::ResetService,
        Role::Auditor,
        Role::Dashboard,
    ];

    /// The claim value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SelfService => "self_service",
            Role::AuthenticationAdmin => "authentication_admin",
            Role::ResetService => "reset_service",
            Role::Auditor => "auditor",
            Role::Dashboard => "dashboard",
        }
    }
}

/// The sign-in a token came from, as the token says (OpenID Connect `auth_time`, `acr`, `amr`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignIn {
    /// Seconds since the epoch.
    pub auth_time: Option<i64>,
    pub acr: Option<String>,
    pub amr: Vec<String>,
}

/// What a verified token says: who, of which tenant, with which roles, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub tenant: TenantId,
    pub subject: String,
    pub roles: Vec<Role>,
    pub sign_in: SignIn,
    /// `exp`, seconds since the epoch.
    pub expires: i64,
}

/// How tokens are verified: the service's own HS256 secret, the OpenID issuers, or both.
#[derive(Clone)]
pub struct Authenticator {
    hs256: Option<JwtKeys>,
    oidc: Option<Arc<Oidc>>,
    verified: Arc<VerifiedTokens>,
    /// What a write of security info needs of the sign-in.
    pub step_up: StepUp,
}

impl Authenticator {
    /// Tokens of `hs256` (the service's own secret) and of the `oidc` issuers, at least one.
    pub fn new(hs256: Option<JwtKeys>, oidc: Option<Arc<Oidc>>, step_up: StepUp) -> Self {
        Authenticator {
            hs256,
            oidc,
            verified: Arc::default(),
            step_up,
        }
    }

    /// The caller a bearer token names (checked as [`Authenticator::verify`] does); the command
    /// line's `audit export --reveal --token` is checked this way too.
    pub async fn caller(&self, token: &str) -> Result<Caller, String> {
        let identity = self.verify(token).await?;
        Ok(Caller {
            tenant: identity.tenant,
            subject: identity.subject,
            roles: identity.roles,
            sign_in: identity.sign_in,
        })
    }

    /// The identity of a bearer token: an issuer's when its `iss` is one of the issuers, the
    /// service's own otherwise (when it has a secret).
    async fn verify(&self, token: &str) -> Result<Identity, String> {
        let now = chrono::Utc::now().timestamp();
        let leeway = self.oidc.as_ref().map_or(hs256::LEEWAY_SECONDS, |o| {
            o.leeway().max(hs256::LEEWAY_SECONDS)
        });
        match self.verified.get(token, now, leeway) {
            Some(Ok(identity)) => return Ok(identity),
            Some(Err(())) => return Err("the token has expired".into()),
            None => {}
        }
        let identity = match (&self.oidc, &self.hs256) {
            (Some(oidc), _) if oidc.issues(token) => {
                oidc.verify(token).await.map_err(|e| e.to_string())?
            }
            (oidc, Some(keys)) => keys.verify(token).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "the token has expired".to_owned()
                }
                // Not HS256: an asymmetric token of an issuer this service does not trust.
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm if oidc.is_some() => {
                    "the token is neither of this service's OpenID issuers nor signed with its \
                     own secret"
                        .to_owned()
                }
                _ => format!("the token is not valid: {e}"),
            })?,
            (Some(_), None) => {
                return Err("the token is not one of this service's OpenID issuers".into());
            }
            (None, None) => return Err("this service accepts no tokens".into()),
        };
        self.verified.keep(token, &identity);
        Ok(identity)
    }
}

/// What an endpoint gives access to; each variant lists the roles allowed.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Add, change, remove an admin's methods.
    ManageAdmin(AdminId),
    /// Offboard an admin.
    Offboard,
    /// Erase an offboarded admin's contact values.
    Erase,
    /// Read an admin's contact view.
    ReadView(AdminId),
    /// Read an admin's reset eligibility.
    ReadEligibility(AdminId),
    /// Read an admin's change history.
    ReadHistory(AdminId),
    /// Read the tenant's event feed.
    ReadFeed,
    /// Change the tenant's settings.
    ManageSettings,
    /// Read the tenant's settings.
    ReadSettings,
    /// Ask for proofs that the tenant's events are in the log's signed tree.
    AuditProof,
}

impl Access {
    fn allowed(self) -> (&'static [Role], Option<AdminId>) {
        use Role::*;
        match self {
            Access::ManageAdmin(a) => (&[AuthenticationAdmin], Some(a)),
            Access::Offboard | Access::Erase => (&[AuthenticationAdmin], None),
            Access::ReadView(a) => (&[AuthenticationAdmin, Auditor], Some(a)),
            Access::ReadEligibility(a) => (
                &[ResetService, Dashboard, AuthenticationAdmin, Auditor],
                Some(a),
            ),
            Access::ReadHistory(a) => (&[AuthenticationAdmin, Auditor], Some(a)),
            Access::ReadFeed => (&[Auditor, Dashboard], None),
            Access::ManageSettings => (&[AuthenticationAdmin], None),
            Access::ReadSettings => (&[AuthenticationAdmin, Auditor], None),
            Access::AuditProof => (&[Auditor], None),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: TenantId,
    pub subject: String,
    pub roles: Vec<Role>,
    /// The sign-in behind the token.
    pub sign_in: SignIn,
}

impl Caller {
    /// Checks that the caller may have `access` in `tenant`. A token of another tenant never
    /// gets in; `self_service` reaches only the admin whose id is its subject.
    pub fn authorize(&self, tenant: TenantId, access: Access) -> Result<(), ApiError> {
        self.check_tenant(tenant)?;
        let (roles, own_admin) = access.allowed();
        if self.roles.iter().any(|r| roles.contains(r)) {
            return Ok(());
        }
        if let Some(admin) = own_admin
            && self.roles.contains(&Role::SelfService)
            && self.is_admin(admin)
        {
            return Ok(());
        }
        Err(ApiError::new(
            Code::Forbidden,
            "the token's roles do not allow this request",
        ))
    }

    /// Checks that the caller's sign-in is recent and strong enough for a write of security
    /// info ([`StepUp`]).
    pub fn stepped_up(&self, policy: &StepUp) -> Result<(), ApiError> {
        policy.check(self, chrono::Utc::now().timestamp())
    }

    /// Refuses a token of another tenant.
    fn check_tenant(&self, tenant: TenantId) -> Result<(), ApiError> {
        if self.tenant != tenant {
            return Err(ApiError::new(
                Code::TenantMismatch,
                "the token belongs to another tenant",
            ));
        }
        Ok(())
    }

    /// Whether the caller's subject is `admin`: the same UUID, however it is written
    /// (identity providers write them in upper case, with or without braces).
    fn is_admin(&self, admin: AdminId) -> bool {
        Uuid::parse_str(self.subject.trim_start_matches('{').trim_end_matches('}'))
            .is_ok_and(|subject| subject == admin.as_uuid())
    }

    /// The actor recorded in events caused by this caller, with the sign-in behind it.
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.subject.clone(),
            roles: self.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            auth_time: self
                .sign_in
                .auth_time
                .and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
            acr: self.sign_in.acr.clone(),
            amr: self.sign_in.amr.clone(),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = ApiError;

    /// Checks the token and, on a tenant's path, that it is the token's tenant: before any
    /// other part of the request is looked at, so that a caller of another tenant learns
    /// nothing of how the endpoint parses its path, query, headers or body.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let mut headers = parts.headers.get_all(AUTHORIZATION).iter();
        let header = headers.next().ok_or_else(|| {
            ApiError::new(
                Code::Unauthorized,
                "an Authorization: Bearer token is required",
            )
        })?;
        if headers.next().is_some() {
            return Err(ApiError::new(
                Code::DuplicateAuthorization,
                "the request has more than one Authorization header; send one",
            ));
        }
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                ApiError::new(
                    Code::Unauthorized,
                    "the Authorization header must be 'Bearer <token>'",
                )
            })?;
        let caller = Authenticator::from_ref(state)
            .caller(token.trim())
            .await
            .map_err(|why| {
                ApiError::new(Code::Unauthorized, why).with_www_authenticate(
                    "Bearer error=\"invalid_token\", error_description=\"The token is not valid\""
                        .into(),
                )
            })?;
        if let Some(tenant) = path_tenant(parts, state).await? {
            caller.check_tenant(tenant)?;
        }
        Ok(caller)
    }
}

/// The `{tenant_id}` of the request's path, if its route has one; a malformed one is a 400
/// `invalid_path` (it says nothing about the tenant's data).
async fn path_tenant<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Option<TenantId>, ApiError> {
    let Ok(params) = RawPathParams::from_request_parts(parts, state).await else {
        return Ok(None);
    };
    let Some((_, raw)) = params.iter().find(|(name, _)| *name == "tenant_id") else {
        return Ok(None);
    };
    Uuid::parse_str(raw)
        .map(|t| Some(TenantId::from_uuid(t)))
        .map_err(|_| ApiError::new(Code::InvalidPath, "the tenant id is not a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_verified_once_and_its_expiry_checked_on_every_use() {
        let keys = JwtKeys::new(b"secret");
        let auth = Authenticator::new(Some(keys.clone()), None, StepUp::default());
        let tenant = Uuid::now_v7();
        let token = keys
            .mint(tenant, "reset-flow", &[Role::ResetService], 60)
            .unwrap();
        assert_eq!(auth.verify(&token).await.unwrap().subject, "reset-flow");
        assert!(auth.verified.get(&token, 0, 0).is_some(), "remembered");
        // The remembered identity runs out like the token.
        auth.verified
            .expire(&token, chrono::Utc::now().timestamp() - 3600);
        assert_eq!(
            auth.verify(&token).await.unwrap_err(),
            "the token has expired"
        );
    }

    #[tokio::test]
    async fn without_a_secret_the_services_own_tokens_are_refused() {
        let keys = JwtKeys::new(b"secret");
        let token = keys
            .mint(Uuid::now_v7(), "a", &[Role::Auditor], 60)
            .unwrap();
        let none = Authenticator::new(None, None, StepUp::default());
        assert!(none.verify(&token).await.is_err());
    }

    #[test]
    fn a_write_needs_a_recent_and_strong_enough_sign_in() {
        let caller = |auth_time: Option<i64>, acr: Option<&str>, amr: &[&str]| Caller {
            tenant: TenantId::from_uuid(Uuid::now_v7()),
            subject: "a".into(),
            roles: vec![Role::SelfService],
            sign_in: SignIn {
                auth_time,
                acr: acr.map(str::to_owned),
                amr: amr.iter().map(|m| m.to_string()).collect(),
            },
        };
        let now = 1_000_000;
        let ten_minutes = StepUp::default();
        assert!(
            ten_minutes
                .check(&caller(Some(now - 599), None, &[]), now)
                .is_ok()
        );
        let stale = ten_minutes
            .check(&caller(Some(now - 601), None, &[]), now)
            .unwrap_err();
        assert_eq!(stale.code, Code::StepUpRequired);
        assert!(stale.detail.contains("601 s old"), "{}", stale.detail);
        assert!(ten_minutes.check(&caller(None, None, &[]), now).is_err());
        let mfa = StepUp {
            acr_values: vec!["urn:mfa".into()],
            amr_values: vec!["mfa".into()],
            ..StepUp::default()
        };
        assert!(
            mfa.check(&caller(Some(now), Some("urn:mfa"), &[]), now)
                .is_ok()
        );
        assert!(
            mfa.check(&caller(Some(now), None, &["pwd", "mfa"]), now)
                .is_ok()
        );
        assert!(
            mfa.check(&caller(Some(now), Some("urn:pwd"), &["pwd"]), now)
                .is_err()
        );
        assert!(StepUp::off().check(&caller(None, None, &[]), now).is_ok());
        assert_eq!(
            mfa.challenge(),
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A more \
             recent or stronger sign-in is required\", max_age=600, acr_values=\"urn:mfa\""
        );
    }
}
