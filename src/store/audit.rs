//! Raw reads of the log for the audit tools: each row exactly as stored, with the columns the
//! hash chain and the indexes rely on, so that `audit verify` can check them against each other.

/// One row of the `events` table, as stored (nothing decoded, nothing trusted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub position: u64,
    pub stream_id: String,
    pub stream_version: u64,
    /// The indexed copies of envelope fields, in their text form.
    pub event_id: String,
    pub event_type: String,
    pub tenant_id: String,
    pub admin_id: Option<String>,
    pub occurred_at_ms: i64,
    /// The protobuf `Envelope`: the bytes the hash covers.
    pub payload: Vec<u8>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// The domain-separation prefix of the anchor digest.
const ANCHOR_PREFIX: &[u8] = b"recovery-info-anchor-v1";

/// The digest of an anchor: the position and every stream's tip (name, version, hash), the
/// streams in byte order of their names (docs/audit.md).
pub fn anchor_digest<'a>(
    position: u64,
    tips: impl IntoIterator<Item = (&'a str, u64, &'a [u8])>,
) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(ANCHOR_PREFIX);
    h.update(position.to_be_bytes());
    for (stream, version, hash) in tips {
        h.update((stream.len() as u32).to_be_bytes());
        h.update(stream.as_bytes());
        h.update(version.to_be_bytes());
        h.update(hash);
    }
    h.finalize().into()
}

/// A rewrite of hash chains the store recorded (see `chain_reanchors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reanchor {
    pub reason: String,
    /// The log's head when it ran.
    pub position: u64,
    pub streams: u64,
    pub events: u64,
    /// The anchors (`<position>:<digest>`) at `position` before and after the rewrite.
    pub anchor_before: String,
    pub anchor_after: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Display for Reanchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "re-anchored at position {} on {}: {} ({} events of {} streams rewritten; anchor \
             before {}, after {})",
            self.position,
            self.at.to_rfc3339(),
            self.reason,
            self.events,
            self.streams,
            self.anchor_before,
            self.anchor_after
        )
    }
}

/// The reason of the one-time sealing of values written before values were sealed.
pub const SEAL_LEGACY_VALUES: &str = "seal_legacy_values";

/// A signed tree head as stored (see `audit::tree`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: [u8; 32],
    pub signed_at: chrono::DateTime<chrono::Utc>,
    /// The verifier key of the signer (`<name>+<hash>+<base64>`).
    pub key: String,
    /// The signed note (C2SP tlog-checkpoint), as published.
    pub note: String,
}

/// The root of a subtree of the stored Merkle tree: its level, its index, its hash.
pub type TreeNode = (u32, u64, [u8; 32]);
