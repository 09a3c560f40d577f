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
