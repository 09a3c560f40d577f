//! Bearer JWTs (HS256): who the caller is, and what each role may do.

use super::error::ApiError;
use crate::domain::{AdminId, TenantId};
use crate::error::Code;
use crate::events::Actor;
use axum::extract::{FromRef, FromRequestParts, RawPathParams};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// The roles a token can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The claims of a token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant id.
    pub tid: Uuid,
    /// Subject: for `self_service`, the admin's own id.
    pub sub: String,
    pub roles: Vec<Role>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: i64,
}

/// Seconds of clock skew allowed on `exp`.
const LEEWAY_SECONDS: i64 = 5;

/// Tokens verified at most, remembered so that a client's next request with the same token
/// skips the signature and JSON work (the profile of the eligibility reads showed it).
const VERIFIED_CAPACITY: usize = 10_000;

/// The HS256 keys made from `RECOVERY_JWT_SECRET`, and the tokens they verified.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: Arc<DecodingKey>,
    encoding: Arc<EncodingKey>,
    /// Token → its claims. A token cannot change, so its signature stays valid; only its
    /// expiry is checked again on every use. Emptied when full.
    verified: Arc<RwLock<HashMap<String, Claims>>>,
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8]) -> Self {
        JwtKeys {
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            verified: Arc::default(),
        }
    }

    /// Mints a token for `tenant` and `subject` with `roles`, valid for `ttl_seconds`.
    pub fn mint(
        &self,
        tenant: Uuid,
        subject: &str,
        roles: &[Role],
        ttl_seconds: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            tid: tenant,
            sub: subject.to_owned(),
            roles: roles.to_vec(),
            exp: now + ttl_seconds,
            iat: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self
            .verified
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
        {
            if claims.exp >= now - LEEWAY_SECONDS {
                return Ok(claims.clone());
            }
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS as u64;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims;
        let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CAPACITY {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

/// What an endpoint gives access to; each variant lists the roles allowed.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Add, change, remove an admin's methods.
    ManageAdmin(AdminId),
    /// Offboard an admin.
    Offboard,
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
}

impl Access {
    fn allowed(self) -> (&'static [Role], Option<AdminId>) {
        use Role::*;
        match self {
            Access::ManageAdmin(a) => (&[AuthenticationAdmin], Some(a)),
            Access::Offboard => (&[AuthenticationAdmin], None),
            Access::ReadView(a) => (&[AuthenticationAdmin, Auditor], Some(a)),
            Access::ReadEligibility(a) => (
                &[ResetService, Dashboard, AuthenticationAdmin, Auditor],
                Some(a),
            ),
            Access::ReadHistory(a) => (&[AuthenticationAdmin, Auditor], Some(a)),
            Access::ReadFeed => (&[Auditor, Dashboard], None),
            Access::ManageSettings => (&[AuthenticationAdmin], None),
            Access::ReadSettings => (&[AuthenticationAdmin, Auditor], None),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: TenantId,
    pub subject: String,
    pub roles: Vec<Role>,
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

    /// The actor recorded in events caused by this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.subject.clone(),
            roles: self.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    JwtKeys: FromRef<S>,
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
        let claims = JwtKeys::from_ref(state).verify(token.trim()).map_err(|e| {
            ApiError::new(
                Code::Unauthorized,
                match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the token has expired".to_owned()
                    }
                    _ => format!("the token is not valid: {e}"),
                },
            )
        })?;
        let caller = Caller {
            tenant: TenantId::from_uuid(claims.tid),
            subject: claims.sub,
            roles: claims.roles,
        };
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

    #[test]
    fn a_token_is_verified_once_and_its_expiry_checked_on_every_use() {
        let keys = JwtKeys::new(b"secret");
        let tenant = Uuid::now_v7();
        let token = keys
            .mint(tenant, "reset-flow", &[Role::ResetService], 60)
            .unwrap();
        assert_eq!(keys.verify(&token).unwrap().tid, tenant);
        assert_eq!(keys.verify(&token).unwrap().sub, "reset-flow");
        // The remembered claims run out like the token.
        keys.verified.write().unwrap().get_mut(&token).unwrap().exp =
            chrono::Utc::now().timestamp() - LEEWAY_SECONDS - 1;
        let e = keys.verify(&token).unwrap_err();
        assert_eq!(e.kind(), &jsonwebtoken::errors::ErrorKind::ExpiredSignature);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused_even_with_the_same_claims() {
        let keys = JwtKeys::new(b"secret");
        let forged = JwtKeys::new(b"other");
        let tenant = Uuid::now_v7();
        let good = keys.mint(tenant, "a", &[Role::Auditor], 60).unwrap();
        keys.verify(&good).unwrap();
        let bad = forged.mint(tenant, "a", &[Role::Auditor], 60).unwrap();
        assert!(keys.verify(&bad).is_err());
    }
}
