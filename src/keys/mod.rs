//! Envelope encryption of contact values, the ground of erasure by crypto-shredding (issue 22).
//!
//! Every admin has a **data key** (AES-256-GCM, [`DataKey`]); a contact value is sealed under it
//! with associated data naming the event, its stream and the field ([`event_aad`]), so that a
//! ciphertext copied into another event, stream or field does not open. Data keys are stored
//! wrapped by a **key-encryption key** ([`kek::KeyWrapper`]: a KEK file or variable today, a KMS
//! later); destroying an admin's data key leaves their events in the log, hash chains intact,
//! with values nobody can read again.
//!
//! The format of a sealed value is `0x01 ‖ nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`; the
//! first byte names the format so a later one can be told apart. Nonces are random: a data key
//! seals the values of one admin, far below the 2^32 messages a random 96-bit nonce allows.
//!
//! [`Keyring`] is what a store holds: the KEK wrapper and the admins' unwrapped data keys it
//! has met, for appends and reads.

pub mod kek;

use crate::domain::{AdminId, TenantId};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use kek::{KekError, KeyWrapper};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use thiserror::Error;
use uuid::Uuid;
use zeroize::Zeroizing;

/// The first byte of a value sealed by this version.
pub const SEALED_FORMAT: u8 = 0x01;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// What reads show in place of a value whose data key was destroyed.
pub const ERASED: &str = "[erased]";

/// Why a sealed value did not open.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// Shorter than a nonce and a tag, or of a format this build does not know.
    #[error("the sealed value is malformed ({0})")]
    Malformed(&'static str),
    /// The tag did not verify: another key, another event/stream/field, or edited bytes.
    #[error("the sealed value does not open under this key and associated data")]
    Tampered,
    /// The operating system's random generator failed.
    #[error("no random numbers for a nonce: {0}")]
    Random(String),
}

/// 32 random bytes from the operating system, held so that they are wiped when dropped.
pub fn random_key() -> Result<Zeroizing<[u8; 32]>, SealError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut()).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(key)
}

/// One admin's data key, ready to seal and open (the cipher's key schedule is computed once).
#[derive(Clone)]
pub struct DataKey(Arc<Aes256Gcm>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

impl DataKey {
    /// The data key of these raw bytes (as unwrapped from the store).
    pub fn from_bytes(raw: &[u8; 32]) -> Self {
        Self(Arc::new(Aes256Gcm::new(raw.into())))
    }

    /// A new random data key, and its raw bytes to wrap and store.
    pub fn generate() -> Result<(Self, Zeroizing<[u8; 32]>), SealError> {
        let raw = random_key()?;
        Ok((Self::from_bytes(&raw), raw))
    }

    /// `plaintext` sealed under this key with `aad` as associated data.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
        let ciphertext = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Malformed("the plaintext is too long"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(SEALED_FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// The plaintext of `sealed`, if it was sealed under this key with this `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (&format, rest) = sealed.split_first().ok_or(SealError::Malformed("empty"))?;
        if format != SEALED_FORMAT {
            return Err(SealError::Malformed("unknown format byte"));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed("too short"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| SealError::Malformed("too short"))?;
        self.0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Tampered)
    }
}

/// Which value of an event a ciphertext holds: part of its associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A method's value as added.
    Value,
    /// The value before a change, or the value removed.
    OldValue,
    /// The value after a change.
    NewValue,
    /// The value of the n-th method an offboarding removed.
    Removed(u32),
}

impl Field {
    fn tag(self) -> u8 {
        match self {
            Field::Value => 1,
            Field::OldValue => 2,
            Field::NewValue => 3,
            Field::Removed(_) => 4,
        }
    }
}

/// The associated data of a value in an event: a version byte, the event id, the field, and the
/// stream's name, so a ciphertext opens only where it was written.
pub fn event_aad(event_id: Uuid, stream: &str, field: Field) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + 16 + 1 + 4 + stream.len());
    aad.push(SEALED_FORMAT);
    aad.extend_from_slice(event_id.as_bytes());
    aad.push(field.tag());
    if let Field::Removed(n) = field {
        aad.extend_from_slice(&n.to_be_bytes());
    }
    aad.extend_from_slice(stream.as_bytes());
    aad
}

/// What the store knows of an admin's data key, for reading their events.
#[derive(Clone, Debug)]
pub enum KeySlot {
    /// No data key: the admin has no sealed value (a tenant stream, or only plain legacy
    /// events).
    None,
    Live(DataKey),
    /// Destroyed by an erasure: the admin's values read as [`ERASED`].
    Erased,
}

/// A data key as the store keeps it: wrapped under a KEK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

/// Data keys met by this process, at most this many (then forgotten all at once).
const KEYS_REMEMBERED: usize = 20_000;

/// The KEK wrapper and the unwrapped data keys of the admins this process met. A data key is
/// written once, with the admin's first sealed event, and only ever destroyed (erasure), after
/// which the admin's stream takes no more events: a remembered key is never stale for an
/// append, and reads learn of an erasure from the store (their row says so).
#[derive(Debug)]
pub struct Keyring {
    wrapper: Box<dyn KeyWrapper>,
    keys: Mutex<HashMap<(TenantId, AdminId), DataKey>>,
}

/// The associated data a data key is wrapped with: the admin it belongs to.
fn admin_aad(tenant: TenantId, admin: AdminId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + 32);
    aad.push(SEALED_FORMAT);
    aad.extend_from_slice(tenant.as_uuid().as_bytes());
    aad.extend_from_slice(admin.as_uuid().as_bytes());
    aad
}

impl Keyring {
    pub fn new(wrapper: Box<dyn KeyWrapper>) -> Self {
        Keyring {
            wrapper,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The KEKs.
    pub fn wrapper(&self) -> &dyn KeyWrapper {
        self.wrapper.as_ref()
    }

    /// The id of the KEK, when it is the one PostgreSQL keeps in `server_keys`.
    pub fn database_kek(&self) -> Option<&str> {
        let id = self.wrapper.active_id();
        (id == kek::DATABASE_KEK_ID).then_some(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, AdminId), DataKey>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The admin's data key, if this process has met it.
    pub fn remembered(&self, tenant: TenantId, admin: AdminId) -> Option<DataKey> {
        self.lock().get(&(tenant, admin)).cloned()
    }

    /// Remembers a data key (after the transaction that wrote it committed, for a new one).
    pub fn remember(&self, tenant: TenantId, admin: AdminId, key: DataKey) {
        let mut keys = self.lock();
        if keys.len() >= KEYS_REMEMBERED {
            keys.clear();
        }
        keys.insert((tenant, admin), key);
    }

    /// Forgets an erased admin's data key.
    pub fn forget(&self, tenant: TenantId, admin: AdminId) {
        self.lock().remove(&(tenant, admin));
    }

    /// A new data key for the admin, and its wrapped form to store.
    pub fn generate(
        &self,
        tenant: TenantId,
        admin: AdminId,
    ) -> Result<(DataKey, WrappedKey), KekError> {
        let (key, raw) = DataKey::generate()?;
        let wrapped = self.wrapper.wrap(&admin_aad(tenant, admin), &raw)?;
        Ok((
            key,
            WrappedKey {
                kek_id: self.wrapper.active_id().to_owned(),
                wrapped,
            },
        ))
    }

    /// The data key of a stored row (remembered, or unwrapped and remembered).
    pub fn unwrap(
        &self,
        tenant: TenantId,
        admin: AdminId,
        row: &WrappedKey,
    ) -> Result<DataKey, KekError> {
        if let Some(key) = self.remembered(tenant, admin) {
            return Ok(key);
        }
        let key = self.unwrap_uncached(tenant, admin, row)?;
        self.remember(tenant, admin, key.clone());
        Ok(key)
    }

    /// The data key of a stored row, not remembered (a bulk replay meets every admin once).
    pub fn unwrap_uncached(
        &self,
        tenant: TenantId,
        admin: AdminId,
        row: &WrappedKey,
    ) -> Result<DataKey, KekError> {
        let raw = self
            .wrapper
            .unwrap(&row.kek_id, &admin_aad(tenant, admin), &row.wrapped)?;
        Ok(DataKey::from_bytes(&raw))
    }

    /// The slot of a row read beside an event: no row, a destroyed key (`wrapped` absent), or a
    /// live one.
    pub fn slot(
        &self,
        tenant: TenantId,
        admin: Option<AdminId>,
        row: Option<Option<WrappedKey>>,
    ) -> Result<KeySlot, KekError> {
        let Some(admin) = admin else {
            return Ok(KeySlot::None);
        };
        Ok(match row {
            None => KeySlot::None,
            Some(None) => {
                self.forget(tenant, admin);
                KeySlot::Erased
            }
            Some(Some(row)) => KeySlot::Live(self.unwrap(tenant, admin, &row)?),
        })
    }

    /// The same data key wrapped under the active KEK (rotation), `None` when it already is.
    pub fn rewrap(
        &self,
        tenant: TenantId,
        admin: AdminId,
        row: &WrappedKey,
    ) -> Result<Option<WrappedKey>, KekError> {
        let active = self.wrapper.active_id();
        if row.kek_id == active {
            return Ok(None);
        }
        let aad = admin_aad(tenant, admin);
        let raw = self.wrapper.unwrap(&row.kek_id, &aad, &row.wrapped)?;
        Ok(Some(WrappedKey {
            kek_id: active.to_owned(),
            wrapped: self.wrapper.wrap(&aad, &raw)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        DataKey::generate().unwrap().0
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_associated_data() {
        let k = key();
        let id = Uuid::now_v7();
        let aad = event_aad(id, "admin-t-a", Field::Value);
        let sealed = k.seal(&aad, b"+4520123456").unwrap();
        assert_eq!(sealed[0], SEALED_FORMAT);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 11 + TAG_LEN);
        assert!(!sealed.windows(11).any(|w| w == b"+4520123456"));
        assert_eq!(&k.open(&aad, &sealed).unwrap()[..], b"+4520123456");
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let k = key();
        let aad = event_aad(Uuid::now_v7(), "s", Field::Value);
        assert_ne!(k.seal(&aad, b"x").unwrap(), k.seal(&aad, b"x").unwrap());
    }

    #[test]
    fn a_ciphertext_moved_to_another_event_stream_or_field_does_not_open() {
        let k = key();
        let id = Uuid::now_v7();
        let sealed = k
            .seal(&event_aad(id, "admin-1", Field::OldValue), b"a@b.c")
            .unwrap();
        for other in [
            event_aad(Uuid::now_v7(), "admin-1", Field::OldValue),
            event_aad(id, "admin-2", Field::OldValue),
            event_aad(id, "admin-1", Field::NewValue),
        ] {
            assert_eq!(k.open(&other, &sealed), Err(SealError::Tampered));
        }
    }

    #[test]
    fn another_key_or_an_edited_byte_is_refused() {
        let (k, other) = (key(), key());
        let aad = event_aad(Uuid::now_v7(), "s", Field::Value);
        let sealed = k.seal(&aad, b"value").unwrap();
        assert_eq!(other.open(&aad, &sealed), Err(SealError::Tampered));
        for i in 1..sealed.len() {
            let mut edited = sealed.clone();
            edited[i] ^= 0x01;
            assert_eq!(k.open(&aad, &edited), Err(SealError::Tampered), "byte {i}");
        }
        let mut format = sealed.clone();
        format[0] = 2;
        assert!(matches!(
            k.open(&aad, &format),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            k.open(&aad, &sealed[..20]),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(k.open(&aad, &[]), Err(SealError::Malformed(_))));
    }
}
