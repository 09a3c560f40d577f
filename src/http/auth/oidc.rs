//! Tokens of the organisation's OpenID Connect issuers (Microsoft Entra ID, Okta, Keycloak,
//! Auth0…), verified with the issuers' own, rotating keys.
//!
//! At start, each issuer's discovery document (`{issuer}/.well-known/openid-configuration`)
//! and its `jwks_uri` are fetched; an issuer that cannot be reached then is an error of the
//! start. Afterwards the keys are fetched again on a schedule ([`OidcConfig::refresh`]), and
//! once more when a token names a key (`kid`) the issuer's set does not hold — at most once per
//! [`OidcConfig::refetch_interval`] — so that a key rotated in at the issuer needs no restart. A
//! fetch that fails later keeps the keys held: it is a log line and a metric
//! (`recovery_oidc_fetches_total{outcome="failed"}`), not a failure of every request.
//!
//! A token is verified with the key its `kid` names in the key set of the issuer its `iss`
//! names, with that key's algorithm family: RS256, PS256 and ES256 only. `iss`, `aud`, `exp`
//! and `nbf` are checked, with a small leeway. Symmetric algorithms (HS256, the "public key as
//! HMAC secret" confusion) and `none` are never accepted from an issuer.

use super::Identity;
use super::claims::{ClaimMapping, MappingError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The algorithms accepted from an issuer.
const ACCEPTED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];

/// How long a fetch of a discovery document or a key set may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The issuers and how their tokens are read.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuers' URLs, as their tokens' `iss` spells them.
    pub issuers: Vec<String>,
    /// The `aud` every token must name (the service's application id or URI).
    pub audience: String,
    pub mapping: ClaimMapping,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: u64,
    /// How often the key sets are fetched again.
    pub refresh: Duration,
    /// The shortest time between two fetches caused by an unknown `kid`.
    pub refetch_interval: Duration,
    /// A PEM file of a CA that signed the issuers' certificates (beside the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
}

/// Why an issuer's token does not verify, or an issuer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("{0}")]
    Token(String),
    #[error("cannot read the OpenID issuer {issuer}: {why}")]
    Issuer { issuer: String, why: String },
}

/// One issuer: where its keys are, and the keys held.
struct Issuer {
    url: String,
    jwks_uri: String,
    /// `kid` → the key and the algorithm it is for (when the key set says).
    keys: RwLock<HashMap<String, (DecodingKey, Option<Algorithm>)>>,
    /// When a token's unknown `kid` last caused a fetch.
    last_refetch: Mutex<Option<Instant>>,
}

/// The issuers of a service, their keys held and refreshed.
pub struct Oidc {
    config: OidcConfig,
    client: reqwest::Client,
    issuers: HashMap<String, Arc<Issuer>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// The issuer URL as tokens spell it (no trailing slash: Entra's and Keycloak's don't have one;
/// Okta's and Auth0's, which do, are kept as configured).
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Plain HTTP only to this machine (a test's or a sidecar's issuer): keys fetched over a network
/// without TLS could be anyone's.
fn check_scheme(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")) => Ok(()),
        _ => Err(format!(
            "{url} must be https (plain http only to 127.0.0.1 or localhost)"
        )),
    }
}

impl Oidc {
    /// Reads every issuer's discovery document and keys; fails, naming the issuer, when one
    /// cannot be read.
    pub async fn start(config: OidcConfig) -> Result<Arc<Self>, OidcError> {
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .user_agent("recovery-info");
        if let Some(ca) = &config.ca_file {
            let failed = |why: String| OidcError::Issuer {
                issuer: config.issuers.join(", "),
                why,
            };
            let pem = std::fs::read(ca).map_err(|e| failed(format!("{}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| failed(format!("{}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| OidcError::Issuer {
            issuer: config.issuers.join(", "),
            why: e.to_string(),
        })?;
        let mut issuers = HashMap::new();
        for url in &config.issuers {
            let failed = |why: String| OidcError::Issuer {
                issuer: url.clone(),
                why,
            };
            check_scheme(url).map_err(failed)?;
            let discovery: Discovery = fetch_json(&client, &discovery_url(url))
                .await
                .map_err(failed)?;
            // OpenID Connect Discovery §4.3: the document names the issuer it describes.
            if discovery.issuer != *url {
                return Err(failed(format!(
                    "its discovery document names the issuer {:?}",
                    discovery.issuer
                )));
            }
            check_scheme(&discovery.jwks_uri).map_err(failed)?;
            let issuer = Issuer {
                url: url.clone(),
                jwks_uri: discovery.jwks_uri,
                keys: RwLock::default(),
                last_refetch: Mutex::default(),
            };
            let keys = fetch_keys(&client, &issuer).await.map_err(failed)?;
            *issuer.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
            tracing::info!(issuer = %url, "OpenID issuer's keys read");
            issuers.insert(url.clone(), Arc::new(issuer));
        }
        Ok(Arc::new(Oidc {
            config,
            client,
            issuers,
        }))
    }

    /// Fetches every issuer's keys on the schedule, forever (abort the task to stop it).
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let oidc = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(oidc.config.refresh).await;
                for issuer in oidc.issuers.values() {
                    oidc.refetch(issuer).await;
                }
            }
        })
    }

    /// Fetches an issuer's keys again; a failure keeps the keys held.
    async fn refetch(&self, issuer: &Issuer) -> bool {
        match fetch_keys(&self.client, issuer).await {
            Ok(keys) => {
                metrics::counter!("recovery_oidc_fetches_total", "outcome" => "ok").increment(1);
                *issuer.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
                true
            }
            Err(why) => {
                metrics::counter!("recovery_oidc_fetches_total", "outcome" => "failed")
                    .increment(1);
                tracing::warn!(issuer = %issuer.url, error = %why, "cannot fetch the OpenID issuer's keys; keeping the keys held");
                false
            }
        }
    }

    /// Whether `token` claims to be from one of these issuers (its `iss`, unverified).
    pub(super) fn issues(&self, token: &str) -> bool {
        unverified_issuer(token).is_some_and(|iss| self.issuers.contains_key(&iss))
    }

    /// The identity of an issuer's token.
    pub(super) async fn verify(&self, token: &str) -> Result<Identity, OidcError> {
        let invalid = |why: String| OidcError::Token(why);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("the token is not valid: {e}")))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(invalid(format!(
                "the algorithm {:?} is not accepted from an OpenID issuer (RS256, PS256, ES256)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| invalid("the token names no key (kid)".into()))?;
        let iss = unverified_issuer(token)
            .ok_or_else(|| invalid("the token names no issuer (iss)".into()))?;
        let issuer = self
            .issuers
            .get(&iss)
            .ok_or_else(|| invalid(format!("the issuer {iss:?} is not one this service trusts")))?;
        let (key, key_alg) = match self.key(issuer, &kid) {
            Some(key) => key,
            None => {
                if self.may_refetch(issuer) {
                    self.refetch(issuer).await;
                }
                self.key(issuer, &kid).ok_or_else(|| {
                    invalid(format!("the issuer holds no key {kid:?} (unknown kid)"))
                })?
            }
        };
        if key_alg.is_some_and(|a| a != header.alg) {
            return Err(invalid(format!(
                "the key {kid:?} is for {key_alg:?}, not {:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.config.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.url]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|e| {
                invalid(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the token has expired".into()
                    }
                    _ => format!("the token is not valid: {e}"),
                })
            })?
            .claims;
        self.config
            .mapping
            .identity(&claims)
            .map_err(|MappingError(why)| invalid(why))
    }

    fn key(&self, issuer: &Issuer, kid: &str) -> Option<(DecodingKey, Option<Algorithm>)> {
        let keys = issuer.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(kid).cloned()
    }

    /// Whether an unknown `kid` may cause a fetch now (and records that it does).
    fn may_refetch(&self, issuer: &Issuer) -> bool {
        let mut last = issuer
            .last_refetch
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let allowed = last.is_none_or(|at| at.elapsed() >= self.config.refetch_interval);
        if allowed {
            *last = Some(Instant::now());
        }
        allowed
    }

    /// The leeway on `exp`.
    pub(super) fn leeway(&self) -> u64 {
        self.config.leeway
    }
}

/// The `iss` of a token's payload, read without verifying anything: only to pick the issuer
/// whose key verifies it (the verification then checks `iss` against that issuer).
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("{url}: not the JSON expected: {e}"))
}

/// An issuer's signing keys, by `kid`: the keys of its set that sign (no `use`, or `sig`),
/// have a `kid` and are RSA or EC P-256 keys.
async fn fetch_keys(
    client: &reqwest::Client,
    issuer: &Issuer,
) -> Result<HashMap<String, (DecodingKey, Option<Algorithm>)>, String> {
    let set: JwkSet = fetch_json(client, &issuer.jwks_uri).await?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let signs = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
        let usable = matches!(
            jwk.algorithm,
            AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
        );
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if !signs || !usable {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
            Some(KeyAlgorithm::PS256) => Some(Algorithm::PS256),
            Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
            // A key for an algorithm not accepted here is no key of ours.
            Some(_) => continue,
            None => None,
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, (key, alg));
            }
            Err(e) => {
                tracing::warn!(issuer = %issuer.url, kid, error = %e, "an unusable key in the issuer's set")
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_over_tls_or_from_this_machine_only() {
        assert!(check_scheme("https://login.microsoftonline.com/x/v2.0").is_ok());
        assert!(check_scheme("http://127.0.0.1:8080/realms/acme").is_ok());
        assert!(check_scheme("http://localhost/issuer").is_ok());
        assert!(check_scheme("http://idp.example.com/issuer").is_err());
        assert!(check_scheme("ftp://idp.example.com").is_err());
        assert_eq!(
            discovery_url("https://acme.okta.com/oauth2/default/"),
            "https://acme.okta.com/oauth2/default/.well-known/openid-configuration"
        );
    }

    #[test]
    fn the_issuer_of_a_token_is_read_from_its_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://idp.example.com","sub":"a"}"#);
        let token = format!("e30.{payload}.c2ln");
        assert_eq!(
            unverified_issuer(&token).as_deref(),
            Some("https://idp.example.com")
        );
        assert_eq!(unverified_issuer("not-a-token"), None);
    }
}
