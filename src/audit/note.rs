//! Signed tree heads as the transparency logs of the Go checksum database and Sigstore write
//! them, so that their witnesses and tools read ours: a checkpoint (C2SP `tlog-checkpoint`:
//! the log's origin, the tree size, the root in base64, one line each) signed as a note (C2SP
//! `signed-note`: the text, a blank line, then `— <key name> <base64(key hash ‖ signature)>`
//! per signature) with Ed25519.
//!
//! Keys are written as the Go `note` package writes them: a verifier key
//! `<name>+<key hash, 8 hex>+<base64(0x01 ‖ public key)>` and a signer key
//! `PRIVATE+KEY+<name>+<key hash>+<base64(0x01 ‖ seed)>`; the key hash is the first four bytes
//! of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`.

use super::merkle::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// The algorithm byte of an Ed25519 key in a note key.
const ALG_ED25519: u8 = 1;

/// Why a key, a checkpoint or a signature was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoteError(pub String);

fn bad(what: impl Into<String>) -> NoteError {
    NoteError(what.into())
}

/// A name is a non-empty string without spaces, `+` or control characters (C2SP signed-note).
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(bad(format!(
            "{name:?} is not a key name (non-empty, no spaces, no '+')"
        )));
    }
    Ok(())
}

/// A key's name, its hash (hex) and its 32 bytes.
type KeyParts<'a> = (&'a str, &'a str, [u8; 32]);

/// `<name>+<hash>+<base64(0x01 ‖ 32 bytes)>` in its parts (`None`: not of that shape; an
/// error: a key of another algorithm).
fn key_parts<'a>(text: &'a str, what: &str) -> Option<Result<KeyParts<'a>, NoteError>> {
    let mut parts = text.splitn(3, '+');
    let (name, hash, data) = (parts.next()?, parts.next()?, parts.next()?);
    let data = B64.decode(data).ok()?;
    Some(match data.split_first() {
        Some((&ALG_ED25519, key)) => Ok((name, hash, key.try_into().ok()?)),
        _ => Err(bad(format!("the {what} is not an Ed25519 key"))),
    })
}

fn key_hash(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The key that signs tree heads.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteSigner({})", self.verifier())
    }
}

impl NoteSigner {
    /// The signer of `name` with the Ed25519 key of `seed`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(NoteSigner {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A new key of `name`, from the operating system's random generator.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| bad(format!("no random numbers for a new key: {e}")))?;
        Self::from_seed(name, &seed)
    }

    /// Reads `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ seed)>` (surrounding white space
    /// ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let refuse = || bad("not a signing key like PRIVATE+KEY+<name>+<8 hex>+<base64>");
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(refuse)?;
        let (name, hash, seed) = key_parts(rest, "signing key").ok_or_else(refuse)??;
        let signer = Self::from_seed(name, &seed)?;
        if hex::encode(key_hash(name, &signer.key.verifying_key())) != hash {
            return Err(bad(
                "the signing key's hash does not match its name and key",
            ));
        }
        Ok(signer)
    }

    /// The key's text, for a key file (secret).
    pub fn to_private_text(&self) -> zeroize::Zeroizing<String> {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        let text = format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &self.key.verifying_key())),
            B64.encode(&data)
        );
        zeroize::Zeroize::zeroize(&mut data);
        zeroize::Zeroizing::new(text)
    }

    /// The key's name (the log's origin by default).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, as a verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which ends with a newline) as a note: the text, a blank line and the
    /// signature line.
    pub fn sign(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n'));
        let signature = self.key.sign(text.as_bytes());
        let mut blob = key_hash(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{text}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// The public key that checks signed tree heads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
}

impl fmt::Display for NoteVerifier {
    /// `<name>+<hash>+<base64(0x01 ‖ key)>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(key_hash(&self.name, &self.key)),
            B64.encode(data)
        )
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(text: &str) -> Result<Self, NoteError> {
        let refuse = || bad("not a verifier key like <name>+<8 hex>+<base64>");
        let (name, hash, public) = key_parts(text.trim(), "verifier key").ok_or_else(refuse)??;
        check_name(name)?;
        let key = VerifyingKey::from_bytes(&public).map_err(|_| refuse())?;
        if hex::encode(key_hash(name, &key)) != hash {
            return Err(bad(
                "the verifier key's hash does not match its name and key",
            ));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            key,
        })
    }
}

impl NoteVerifier {
    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The text of a note this key signed: a signature line of this key must verify (others,
    /// such as a witness's cosignature, are ignored).
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .find("\n\n")
            .ok_or_else(|| bad("not a signed note (no blank line before its signatures)"))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        let hash = key_hash(&self.name, &self.key);
        let mut ours = 0;
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(bad(format!("{line:?} is not a signature line")));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(bad(format!("{line:?} is not a signature line")));
            };
            let blob = B64
                .decode(blob)
                .map_err(|_| bad(format!("the signature of {name} is not base64")))?;
            if name != self.name || blob.len() < 4 || blob[..4] != hash {
                continue;
            }
            ours += 1;
            let signature = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| bad(format!("the signature of {name} is not an Ed25519 one")))?;
            self.key
                .verify_strict(text.as_bytes(), &signature)
                .map_err(|_| {
                    bad(format!(
                        "the signature of {name} does not verify: the checkpoint was not \
                         signed by this key, or was altered"
                    ))
                })?;
        }
        if ours == 0 {
            return Err(bad(format!("the note bears no signature of {}", self.name)));
        }
        Ok(text)
    }
}

/// A tree head: the log's origin, its size and its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint's text (C2SP tlog-checkpoint), which a note signs.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Reads a checkpoint's text (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad(
                "a checkpoint has an origin, a size and a root, a line each",
            ));
        };
        let size = size
            .parse()
            .map_err(|_| bad(format!("{size:?} is not a tree size")))?;
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| <Hash>::try_from(r).ok())
            .ok_or_else(|| bad(format!("{root:?} is not a base64 SHA-256 root")))?;
        if origin.is_empty() {
            return Err(bad("the checkpoint names no origin"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Reads a signed checkpoint, checking its signature by `key`.
    pub fn open(note: &str, key: &NoteVerifier) -> Result<Self, NoteError> {
        Self::parse(key.open(note)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_and_with_no_other() {
        let signer = NoteSigner::generate("example.com/log").unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 1207,
            root: [7; 32],
        };
        let note = signer.sign(&cp.text());
        assert!(note.starts_with("example.com/log\n1207\nBwcH"));
        assert!(note.contains("\n\n\u{2014} example.com/log "));
        assert_eq!(Checkpoint::open(&note, &signer.verifier()).unwrap(), cp);

        // The verifier key round-trips through its text; another key is refused.
        let vkey: NoteVerifier = signer.verifier().to_string().parse().unwrap();
        assert_eq!(vkey, signer.verifier());
        let other = NoteSigner::generate("example.com/log").unwrap();
        assert!(Checkpoint::open(&note, &other.verifier()).is_err());

        // Any change of the text breaks the signature.
        let forged = note.replacen("1207", "1206", 1);
        let e = Checkpoint::open(&forged, &signer.verifier()).unwrap_err();
        assert!(e.0.contains("does not verify"), "{e}");
    }

    #[test]
    fn keys_round_trip_through_their_text_and_bad_ones_are_refused() {
        let signer = NoteSigner::generate("log").unwrap();
        let again = NoteSigner::parse(&signer.to_private_text()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        // A hash that does not match, a bad name, a truncated key.
        let text = signer.to_private_text().to_string();
        let wrong_hash = text.replacen("+log+", "+log+0", 1);
        assert!(NoteSigner::parse(&wrong_hash).is_err());
        assert!(NoteSigner::from_seed("a b", &[1; 32]).is_err());
        assert!(NoteSigner::parse("PRIVATE+KEY+log+00000000+AQ==").is_err());
        assert!("log+00000000".parse::<NoteVerifier>().is_err());
    }

    #[test]
    fn keys_and_signatures_are_the_go_note_packages() {
        // golang.org/x/mod/sumdb/note's documented example verifier key: the key hash is the
        // first four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ key).
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let key: NoteVerifier = vkey.parse().unwrap();
        assert_eq!(key.to_string(), vkey);
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let signer = NoteSigner::parse(skey).unwrap();
        assert_eq!(signer.verifier(), key);
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        // The package's documented signed note, byte for byte (Ed25519 is deterministic).
        let note = signer.sign(text);
        assert_eq!(
            note,
            format!(
                "{text}\n\u{2014} PeterNeumann \
                 x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
            )
        );
        assert_eq!(key.open(&note).unwrap(), text);
    }
}
