//! Key-encryption keys: what wraps the admins' data keys (envelope encryption).
//!
//! [`KeyWrapper`] is the one interface the store wraps and unwraps through; [`KekRing`]
//! implements it with keys the operator gives (`--kek-file`, `RECOVERY_KEK`) or the service
//! generates (the embedded store's data directory, or PostgreSQL's `server_keys` without
//! either). A KMS (Vault transit, AWS KMS) is another implementation of the trait.
//!
//! A KEK file holds one key per line, `<id> <base64 of 32 bytes>`; `#` starts a comment. The
//! **last** key is the active one, which wraps new data keys; the others only unwrap, until the
//! background rewrap has moved every data key to the active one (rotation: append a new line,
//! restart, wait for `recovery-info keys status` to show no key under the old id, remove it).

use super::{DataKey, SealError, random_key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use thiserror::Error;
use zeroize::Zeroizing;

/// The id of the KEK PostgreSQL keeps in `server_keys` without `--kek-file`.
pub const DATABASE_KEK_ID: &str = "server-keys";

/// The file in the embedded store's data directory that keeps its generated KEK.
pub const KEK_FILE: &str = "kek";

/// Why a KEK could not be loaded or used.
#[derive(Debug, Error)]
pub enum KekError {
    /// The KEK file or variable is not in the expected form.
    #[error("{0}")]
    Invalid(String),
    /// A data key is wrapped by a KEK this process does not hold.
    #[error("no key-encryption key {0:?} is configured (--kek-file / RECOVERY_KEK)")]
    Unknown(String),
    /// The wrapped bytes did not open: another KEK under the same id, or edited bytes.
    #[error("the data key does not unwrap under key-encryption key {0:?}")]
    Unwrap(String),
    #[error("cannot read or write {path}: {error}")]
    Io { path: String, error: String },
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Wraps and unwraps data keys. `aad` names the admin the data key belongs to, so a wrapped key
/// copied to another admin's row does not unwrap.
pub trait KeyWrapper: Send + Sync + fmt::Debug {
    /// The id of the KEK that wraps new data keys.
    fn active_id(&self) -> &str;
    /// Every KEK id this wrapper can unwrap with.
    fn ids(&self) -> Vec<String>;
    /// `key` wrapped under the active KEK.
    fn wrap(&self, aad: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, KekError>;
    /// The data key `wrapped` under KEK `id`.
    fn unwrap(&self, id: &str, aad: &[u8], wrapped: &[u8])
    -> Result<Zeroizing<[u8; 32]>, KekError>;
    /// A value that tells whether the KEK `id` is the one the store has seen under that id
    /// (stored at first use, compared at every start), without revealing it.
    fn check_value(&self, id: &str) -> Result<Vec<u8>, KekError>;
}

/// KEKs held in memory: the operator's file or variable, or a generated one.
pub struct KekRing {
    /// In file order; the last is active.
    keys: Vec<(String, DataKey, Zeroizing<[u8; 32]>)>,
}

impl fmt::Debug for KekRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.0.as_str()).collect();
        f.debug_struct("KekRing").field("ids", &ids).finish()
    }
}

impl KekRing {
    /// Parses a KEK file's text (or `RECOVERY_KEK`, where `;` may stand for a line break).
    pub fn parse(text: &str, source: &str) -> Result<Self, KekError> {
        let mut keys: Vec<(String, DataKey, Zeroizing<[u8; 32]>)> = Vec::new();
        for (n, line) in text.split(['\n', ';']).enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: &str| KekError::Invalid(format!("{source}: entry {}: {why}", n + 1));
            let (id, b64) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("expected `<id> <base64 of 32 bytes>`"))?;
            if id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(bad("the id must be 1-64 letters, digits, '-', '_' or '.'"));
            }
            let raw = Zeroizing::new(
                STANDARD
                    .decode(b64.trim())
                    .map_err(|_| bad("the key is not base64"))?,
            );
            let raw: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| bad("the key must be 32 bytes (44 base64 characters)"))?;
            if keys.iter().any(|k| k.0 == id) {
                return Err(bad("the id is used twice"));
            }
            keys.push((
                id.to_owned(),
                DataKey::from_bytes(&raw),
                Zeroizing::new(raw),
            ));
        }
        if keys.is_empty() {
            return Err(KekError::Invalid(format!(
                "{source}: no key-encryption key"
            )));
        }
        Ok(KekRing { keys })
    }

    /// Reads a KEK file.
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        let text = std::fs::read_to_string(path).map_err(|e| KekError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// One KEK of these bytes (PostgreSQL's `server_keys` without `--kek-file`).
    pub fn single(id: &str, raw: &[u8; 32]) -> Self {
        KekRing {
            keys: vec![(
                id.to_owned(),
                DataKey::from_bytes(raw),
                Zeroizing::new(*raw),
            )],
        }
    }

    /// The KEK file in `data_dir`, generated (readable by its owner only) when missing.
    pub fn in_data_dir(data_dir: &Path) -> Result<Self, KekError> {
        let path = data_dir.join(KEK_FILE);
        if path.exists() {
            return Self::from_file(&path);
        }
        let io = |e: std::io::Error| KekError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let raw = random_key()?;
        let id = format!("kek-{}", chrono::Utc::now().format("%Y%m%d"));
        let text = Zeroizing::new(format!(
            "# recovery-info key-encryption keys: `<id> <base64>`, the last one wraps new data keys.\n\
             # Losing this file loses every contact value in the log. Back it up apart from the data.\n\
             {id} {}\n",
            STANDARD.encode(raw.as_ref())
        ));
        crate::config::write_secret_file(&path, &text).map_err(io)?;
        Ok(Self::single(&id, &raw))
    }

    fn key(&self, id: &str) -> Result<&(String, DataKey, Zeroizing<[u8; 32]>), KekError> {
        self.keys
            .iter()
            .find(|k| k.0 == id)
            .ok_or_else(|| KekError::Unknown(id.to_owned()))
    }

    fn active(&self) -> &(String, DataKey, Zeroizing<[u8; 32]>) {
        // `parse` and the constructors never make an empty ring.
        &self.keys[self.keys.len() - 1]
    }
}

/// The associated data of a wrapped key: the KEK id and the admin's.
fn wrap_aad(id: &str, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(id.len() + 1 + aad.len());
    out.extend_from_slice(id.as_bytes());
    out.push(0);
    out.extend_from_slice(aad);
    out
}

impl KeyWrapper for KekRing {
    fn active_id(&self) -> &str {
        &self.active().0
    }

    fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.0.clone()).collect()
    }

    fn wrap(&self, aad: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, KekError> {
        let (id, kek, _) = self.active();
        Ok(kek.seal(&wrap_aad(id, aad), key)?)
    }

    fn unwrap(
        &self,
        id: &str,
        aad: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KekError> {
        let (_, kek, _) = self.key(id)?;
        let raw = kek
            .open(&wrap_aad(id, aad), wrapped)
            .map_err(|_| KekError::Unwrap(id.to_owned()))?;
        let raw: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| KekError::Unwrap(id.to_owned()))?;
        Ok(Zeroizing::new(raw))
    }

    fn check_value(&self, id: &str) -> Result<Vec<u8>, KekError> {
        let (_, _, raw) = self.key(id)?;
        let mut hash = Sha256::new();
        hash.update(b"recovery-info kek check v1\0");
        hash.update(id.as_bytes());
        hash.update([0]);
        hash.update(raw.as_ref());
        Ok(hash.finalize().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str) -> String {
        format!("{id} {}", STANDARD.encode(random_key().unwrap().as_ref()))
    }

    #[test]
    fn the_last_key_wraps_and_every_key_unwraps() {
        let text = format!("# rotation\n{}\n\n{}  # new\n", line("old"), line("new"));
        let ring = KekRing::parse(&text, "test").unwrap();
        assert_eq!(ring.active_id(), "new");
        assert_eq!(ring.ids(), ["old", "new"]);
        let key = [7u8; 32];
        let wrapped = ring.wrap(b"admin-1", &key).unwrap();
        assert_eq!(*ring.unwrap("new", b"admin-1", &wrapped).unwrap(), key);
        assert!(matches!(
            ring.unwrap("new", b"admin-2", &wrapped),
            Err(KekError::Unwrap(_))
        ));
        assert!(matches!(
            ring.unwrap("old", b"admin-1", &wrapped),
            Err(KekError::Unwrap(_))
        ));
        assert!(matches!(
            ring.unwrap("gone", b"admin-1", &wrapped),
            Err(KekError::Unknown(_))
        ));
        let env = KekRing::parse(&format!("{};{}", line("a"), line("b")), "RECOVERY_KEK").unwrap();
        assert_eq!(env.active_id(), "b");
    }

    #[test]
    fn a_malformed_kek_is_refused_with_a_reason() {
        for (text, why) in [
            ("", "no key-encryption key"),
            ("k1", "expected"),
            ("k1 not-base64!", "not base64"),
            ("k1 AAAA", "32 bytes"),
            ("k/1 AAAA", "the id"),
        ] {
            let err = KekRing::parse(text, "f").unwrap_err().to_string();
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let twice = format!("{}\n{}", line("k"), line("k"));
        assert!(
            KekRing::parse(&twice, "f")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn check_values_tell_keys_apart() {
        let a = KekRing::parse(&line("k1"), "a").unwrap();
        let b = KekRing::parse(&line("k1"), "b").unwrap();
        assert_eq!(a.check_value("k1").unwrap(), a.check_value("k1").unwrap());
        assert_ne!(a.check_value("k1").unwrap(), b.check_value("k1").unwrap());
    }

    #[test]
    fn the_data_directory_keeps_one_generated_kek() {
        let dir = std::env::temp_dir().join(format!("kek-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = KekRing::in_data_dir(&dir).unwrap();
        let again = KekRing::in_data_dir(&dir).unwrap();
        let id = first.active_id().to_owned();
        assert_eq!(again.active_id(), id);
        assert_eq!(
            first.check_value(&id).unwrap(),
            again.check_value(&id).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEK_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
