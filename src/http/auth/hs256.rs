//! HS256 tokens signed with the service's own secret (`RECOVERY_JWT_SECRET`, or the one the
//! embedded default generates): for development, tests and the embedded default, minted by
//! `recovery-info token`. An organisation's own tokens come from its identity provider
//! ([`super::oidc`]).

use super::{Identity, Role, SignIn};
use crate::domain::TenantId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// The claims of a token the service mints.
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
    /// When the operator who minted it "signed in": the minting (for the step-up rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// Seconds of clock skew allowed on `exp`.
pub(super) const LEEWAY_SECONDS: u64 = 5;

/// The HS256 keys made from the service's secret.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: Arc<DecodingKey>,
    encoding: Arc<EncodingKey>,
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn new(secret: &[u8]) -> Self {
        JwtKeys {
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            encoding: Arc::new(EncodingKey::from_secret(secret)),
        }
    }

    /// Mints a token for `tenant` and `subject` with `roles`, valid for `ttl_seconds`, signed
    /// in now (its `auth_time`).
    pub fn mint(
        &self,
        tenant: Uuid,
        subject: &str,
        roles: &[Role],
        ttl_seconds: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        self.mint_claims(&Claims {
            tid: tenant,
            sub: subject.to_owned(),
            roles: roles.to_vec(),
            exp: now + ttl_seconds,
            iat: now,
            auth_time: Some(now),
            acr: None,
            amr: Vec::new(),
        })
    }

    /// Mints a token with these claims.
    pub fn mint_claims(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The identity of a token signed with this secret (HS256 only: a token of another
    /// algorithm, such as one signed with an issuer's public key as an HMAC secret, fails).
    pub(super) fn verify(&self, token: &str) -> Result<Identity, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)?.claims;
        Ok(Identity {
            tenant: TenantId::from_uuid(claims.tid),
            subject: claims.sub,
            roles: claims.roles,
            sign_in: SignIn {
                auth_time: claims.auth_time,
                acr: claims.acr,
                amr: claims.amr,
            },
            expires: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_signed_with_another_secret_is_refused_even_with_the_same_claims() {
        let keys = JwtKeys::new(b"secret");
        let forged = JwtKeys::new(b"other");
        let tenant = Uuid::now_v7();
        let good = keys.mint(tenant, "a", &[Role::Auditor], 60).unwrap();
        let identity = keys.verify(&good).unwrap();
        assert_eq!(identity.tenant, TenantId::from_uuid(tenant));
        assert!(
            identity.sign_in.auth_time.is_some(),
            "minted tokens sign in now"
        );
        let bad = forged.mint(tenant, "a", &[Role::Auditor], 60).unwrap();
        assert!(keys.verify(&bad).is_err());
    }
}
