//! The tokens this process verified, kept in memory.
//!
//! **What it saves.** A client (a reset flow, a dashboard) sends the same token with request
//! after request; verifying it is a signature check — an RSA or ECDSA verification for an
//! identity provider's token — and a JSON parse, which showed in the profile of the eligibility
//! reads. Remembered, the next request with the same token skips both.
//!
//! **Why it is safe.** A token cannot change, so a signature that verified stays verified; what
//! time does to a token is checked again on every use: its expiry (with the same leeway as the
//! verification). A token is looked up by its whole text. Keys rotated away at the issuer do not
//! un-verify a token that was valid when it was checked, as with any verifier between its key
//! refreshes; the cache is bounded ([`CAPACITY`]: emptied when full) and a token lives only as
//! long as its `exp`.

use super::Identity;
use std::collections::HashMap;
use std::sync::RwLock;

/// Tokens remembered at most.
const CAPACITY: usize = 10_000;

/// See the module documentation.
#[derive(Default)]
pub(super) struct VerifiedTokens(RwLock<HashMap<String, Identity>>);

impl VerifiedTokens {
    /// The identity of `token` if it was verified here and has not expired at `now` (seconds
    /// since the epoch) within `leeway` seconds; `Err` if it has expired.
    pub(super) fn get(&self, token: &str, now: i64, leeway: u64) -> Option<Result<Identity, ()>> {
        let tokens = self.0.read().unwrap_or_else(|p| p.into_inner());
        let identity = tokens.get(token)?;
        Some(if identity.expires >= now - leeway as i64 {
            Ok(identity.clone())
        } else {
            Err(())
        })
    }

    /// Remembers a token that verified.
    pub(super) fn keep(&self, token: &str, identity: &Identity) {
        let mut tokens = self.0.write().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= CAPACITY {
            tokens.clear();
        }
        tokens.insert(token.to_owned(), identity.clone());
    }

    #[cfg(test)]
    pub(super) fn expire(&self, token: &str, at: i64) {
        let mut tokens = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(identity) = tokens.get_mut(token) {
            identity.expires = at;
        }
    }
}
