//! Log positions as a tenant sees them: sealed consistency tokens.
//!
//! The log is global: its positions count every tenant's events, so a tenant that saw plain
//! positions could watch how much all the others write (an empty tenant's view said
//! `position: 149`; the gap between two of its own events is everyone else's traffic). What a
//! tenant needs of a position is only to hand it back: `min_position` for read-your-writes,
//! `after` and `Last-Event-ID` to page and resume. So every position in a tenant's answers is
//! a token that only this service can open, and every position it accepts is one.
//!
//! A token is the position encrypted with AES-256 as one block, `position (8 bytes) ‖ 8 zero
//! bytes`, under a key of the tenant's own derived from the server's `positions` key (kept in
//! the store, shared by every replica): `p` and the block in unpadded base64url, 23 characters.
//! Decrypting a token of another tenant, a token edited by hand or a made-up one gives a block
//! whose last eight bytes are not zero (one chance in 2^64 otherwise): it is refused. The same
//! position always seals to the same token for a tenant, and tokens of two tenants for the same
//! position differ. Order is not visible: a tenant compares tokens for equality only.
//!
//! `--plain-positions` shows and accepts the global positions as numbers, as before, for
//! clients written against them.

use super::error::ApiError;
use crate::domain::TenantId;
use crate::error::Code;
use aes::Aes256;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The name of the server key that seals positions.
pub const KEY_NAME: &str = "positions";

/// The first character of every token (a number never starts with it).
const PREFIX: char = 'p';

/// How positions appear in a tenant's answers and queries.
#[derive(Clone)]
pub enum Positions {
    /// Global positions as numbers (`--plain-positions`).
    Plain,
    /// Sealed tokens, opened with this server key.
    Sealed(Arc<[u8; 32]>),
}

/// Why a position a caller sent cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAPosition;

impl Positions {
    /// The key a tenant's tokens are sealed with.
    fn cipher(key: &[u8; 32], tenant: TenantId) -> Aes256 {
        let mut h = Sha256::new();
        h.update(b"recovery-info positions v1\0");
        h.update(key);
        h.update(tenant.as_uuid().as_bytes());
        Aes256::new(&h.finalize())
    }

    /// `position` as the tenant sees it: a number, or a token.
    pub fn show(&self, tenant: TenantId, position: u64) -> Value {
        match self {
            Positions::Plain => Value::from(position),
            Positions::Sealed(key) => Value::String(seal(key, tenant, position)),
        }
    }

    /// A position the tenant sent back (a token it was shown, or a number when plain).
    pub fn read(&self, tenant: TenantId, text: &str) -> Result<u64, NotAPosition> {
        let text = text.trim();
        match self {
            Positions::Plain => text.parse().map_err(|_| NotAPosition),
            Positions::Sealed(key) => open(key, tenant, text),
        }
    }

    /// What a caller is told a position must be.
    pub fn expected(&self) -> &'static str {
        match self {
            Positions::Plain => "a log position (a non-negative integer)",
            Positions::Sealed(_) => {
                "a position token of this tenant, as an answer gave it (e.g. a command's \
                 \"position\")"
            }
        }
    }

    /// Reads the optional query parameter `name`; a bad one is a 400 `invalid_query`.
    pub fn query(
        &self,
        tenant: TenantId,
        name: &str,
        text: Option<&str>,
    ) -> Result<Option<u64>, ApiError> {
        text.map(|t| {
            self.read(tenant, t).map_err(|NotAPosition| {
                ApiError::new(
                    Code::InvalidQuery,
                    format!("{name} must be {}", self.expected()),
                )
            })
        })
        .transpose()
    }

    /// Whether answers carry tokens.
    pub fn sealed(&self) -> bool {
        matches!(self, Positions::Sealed(_))
    }
}

fn seal(key: &[u8; 32], tenant: TenantId, position: u64) -> String {
    let mut block = [0u8; 16];
    block[..8].copy_from_slice(&position.to_be_bytes());
    let mut block = block.into();
    Positions::cipher(key, tenant).encrypt_block(&mut block);
    let mut token = String::with_capacity(23);
    token.push(PREFIX);
    URL_SAFE_NO_PAD.encode_string(block, &mut token);
    token
}

fn open(key: &[u8; 32], tenant: TenantId, token: &str) -> Result<u64, NotAPosition> {
    let encoded = token.strip_prefix(PREFIX).ok_or(NotAPosition)?;
    let bytes: [u8; 16] = URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(NotAPosition)?;
    let mut block = bytes.into();
    Positions::cipher(key, tenant).decrypt_block(&mut block);
    let (position, check) = block.split_at(8);
    if check != [0u8; 8] {
        return Err(NotAPosition);
    }
    let position: [u8; 8] = position.try_into().map_err(|_| NotAPosition)?;
    Ok(u64::from_be_bytes(position))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn sealed() -> Positions {
        Positions::Sealed(Arc::new([7; 32]))
    }

    #[test]
    fn a_token_opens_to_its_position_for_its_tenant_only() {
        let positions = sealed();
        let (a, b) = (
            TenantId::from_uuid(Uuid::now_v7()),
            TenantId::from_uuid(Uuid::now_v7()),
        );
        for position in [0, 1, 149, 1 << 40, u64::MAX] {
            let Value::String(token) = positions.show(a, position) else {
                panic!("a token is a string")
            };
            assert_eq!(token.len(), 23);
            assert!(!token.contains(&position.to_string()) || position < 10);
            assert_eq!(positions.read(a, &token), Ok(position));
            assert_eq!(
                positions.read(b, &token),
                Err(NotAPosition),
                "another tenant's"
            );
            assert_eq!(
                positions.show(a, position),
                Value::String(token.clone()),
                "stable"
            );
            assert_ne!(positions.show(b, position), Value::String(token));
        }
    }

    #[test]
    fn numbers_edited_tokens_and_other_keys_are_refused() {
        let positions = sealed();
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let Value::String(token) = positions.show(tenant, 42) else {
            panic!()
        };
        let mut edited = token.clone().into_bytes();
        edited[5] = if edited[5] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        let other_key = Positions::Sealed(Arc::new([8; 32]));
        for bad in [
            "42",
            "",
            "p",
            "pAAAAAAAAAAAAAAAAAAAAAA",
            &edited,
            &token[1..],
            "p!!",
        ] {
            assert_eq!(positions.read(tenant, bad), Err(NotAPosition), "{bad:?}");
        }
        assert_eq!(other_key.read(tenant, &token), Err(NotAPosition));
        assert_eq!(Positions::Plain.read(tenant, "42"), Ok(42));
        assert_eq!(Positions::Plain.read(tenant, &token), Err(NotAPosition));
        assert_eq!(Positions::Plain.show(tenant, 42), Value::from(42));
    }
}
