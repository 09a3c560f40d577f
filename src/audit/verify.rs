//! `audit verify`: recomputes every stream's hash chain and the dense global order from the
//! stored rows, and names the first broken link. The canonical encoding and what this can and
//! cannot detect are in `docs/audit.md`.

use crate::audit::note::Checkpoint;
use crate::audit::tree::{self, Difference, LeafCollector};
use crate::events::pb;
use crate::progress::Progress;
use crate::store::audit::RawEvent;
use crate::store::{AuditReads, EventLog};
use crate::store::{GENESIS_HASH, chain_hash};
use crate::store::{Store, StoreError};
use prost::Message;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Rows read per round trip.
pub const PAGE: u32 = 2000;

/// Where the log stops being trustworthy: the first row (in position order) that does not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the hash chain is broken at position {position}{}: {problem}", at_stream(.stream, .version))]
pub struct BrokenLink {
    pub position: u64,
    /// The row's stream and version, when the row exists.
    pub stream: Option<String>,
    pub version: Option<u64>,
    pub problem: String,
}

fn at_stream(stream: &Option<String>, version: &Option<u64>) -> String {
    match (stream, version) {
        (Some(s), Some(v)) => format!(" (stream {s}, version {v})"),
        _ => String::new(),
    }
}

/// What can stop a verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log was altered: the first broken link.
    #[error(transparent)]
    Broken(#[from] BrokenLink),
    /// The log is self-consistent but is not the one an auditor anchored.
    #[error("{0}")]
    AnchorMismatch(String),
    /// The log's first events are not the ones a signed checkpoint covers: rewritten or
    /// truncated below it.
    #[error("{0}")]
    CheckpointMismatch(String),
    /// The log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored Merkle tree could not be read.
    #[error(transparent)]
    Tree(#[from] crate::audit::tree::TreeError),
}

/// A recorded state of the log: the head position and a digest over every stream's tip at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub position: u64,
    pub digest: [u8; 32],
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.position, hex::encode(self.digest))
    }
}

impl FromStr for Anchor {
    type Err = String;

    /// Parses `<position>:<64 hex digits>`, as `verify` prints it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an anchor like 1207:<64 hex digits>");
        let (position, digest) = s.split_once(':').ok_or_else(bad)?;
        let position = position.parse().map_err(|_| bad())?;
        let digest = hex::decode(digest)
            .ok()
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
            .ok_or_else(bad)?;
        Ok(Anchor { position, digest })
    }
}

/// The end of one stream's chain so far.
#[derive(Clone, Copy, Debug)]
struct Tip {
    version: u64,
    hash: [u8; 32],
}

/// What a verification found when the log is intact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub streams: u64,
    pub head: u64,
    /// The anchor at the head, for the auditor to record.
    pub anchor: Anchor,
    /// The `--expect-anchor` that was checked, if any.
    pub checked_anchor: Option<Anchor>,
    /// The size of the `--checkpoint` that was checked, if any.
    pub checked_checkpoint: Option<u64>,
}

/// The streaming checker: feed it every row in position order, then [`Verifier::finish`].
/// Memory: one tip (stream id, version, hash) per stream.
pub struct Verifier {
    tips: BTreeMap<String, Tip>,
    last_position: u64,
    expect: Option<Anchor>,
    /// Whether the rows are the whole log (dense positions) or one tenant's part of it.
    dense: bool,
}

impl Verifier {
    /// A verifier that also checks `expect` when it passes the anchored position.
    pub fn new(expect: Option<Anchor>) -> Self {
        Verifier {
            tips: BTreeMap::new(),
            last_position: 0,
            expect,
            dense: true,
        }
    }

    /// A verifier of one tenant's rows: each of its streams' chains, in log order; the gaps
    /// between its positions are other tenants' events.
    pub fn of_streams() -> Self {
        Verifier {
            dense: false,
            ..Verifier::new(None)
        }
    }

    /// How many streams were seen.
    pub fn streams(&self) -> u64 {
        self.tips.len() as u64
    }

    /// The position of the last row checked.
    pub fn position(&self) -> u64 {
        self.last_position
    }

    /// Checks the next row; the first row that does not fit is the broken link.
    pub fn check(&mut self, row: &RawEvent) -> Result<(), VerifyError> {
        let broken = |problem: String| {
            VerifyError::Broken(BrokenLink {
                position: row.position,
                stream: Some(row.stream_id.clone()),
                version: Some(row.stream_version),
                problem,
            })
        };
        let expected = self.last_position + 1;
        if (self.dense && row.position != expected) || row.position < expected {
            return Err(VerifyError::Broken(BrokenLink {
                position: expected,
                stream: None,
                version: None,
                problem: format!(
                    "the row is missing: the log jumps from position {} to {} \
                     (stream {}, version {}); rows were deleted",
                    self.last_position, row.position, row.stream_id, row.stream_version
                ),
            }));
        }
        let env = pb::Envelope::decode(row.payload.as_slice())
            .map_err(|e| broken(format!("the payload is not a protobuf envelope ({e})")))?;
        if env.position != row.position {
            return Err(broken(format!(
                "the payload belongs at position {} (stream {}, version {}): rows were \
                 reordered or their payloads swapped",
                env.position, env.stream, env.stream_version
            )));
        }
        if env.stream != row.stream_id || env.stream_version != row.stream_version {
            return Err(broken(format!(
                "the payload says stream {} version {}, the row's columns disagree",
                env.stream, env.stream_version
            )));
        }
        if let Some(column) = column_disagreeing(row, &env) {
            return Err(broken(format!(
                "the {column} column disagrees with the payload"
            )));
        }
        let tip = self.tips.get(&row.stream_id).copied();
        let (tip_version, tip_hash) = tip.map_or((0, GENESIS_HASH), |t| (t.version, t.hash));
        if row.stream_version != tip_version + 1 {
            return Err(broken(format!(
                "the stream's previous event is version {tip_version}: version {} is missing \
                 or out of order",
                tip_version + 1
            )));
        }
        if row.prev_hash != tip_hash {
            return Err(broken(format!(
                "prev_hash is not the hash of version {tip_version} of the stream"
            )));
        }
        let hash = chain_hash(&row.prev_hash, &row.payload);
        if row.hash != hash {
            return Err(broken(
                "the hash is not sha256(prev_hash || payload): the payload or the hash was altered"
                    .into(),
            ));
        }
        let mut tip_hash = [0; 32];
        tip_hash.copy_from_slice(&hash);
        self.tips.insert(
            row.stream_id.clone(),
            Tip {
                version: row.stream_version,
                hash: tip_hash,
            },
        );
        self.last_position = row.position;
        self.check_anchor()
    }

    /// Ends the scan; `head` is the `log_head` position (read before the scan started, and
    /// again after it when the scan went further).
    pub fn finish(self, head: u64) -> Result<Summary, VerifyError> {
        if self.last_position > head {
            return Err(VerifyError::Broken(BrokenLink {
                position: head + 1,
                stream: None,
                version: None,
                problem: format!(
                    "the log goes on to position {} beyond its head {head}: rows were inserted",
                    self.last_position
                ),
            }));
        }
        if self.expect.is_some_and(|a| a.position == 0) {
            self.check_anchor()?;
        }
        if self.last_position < head {
            return Err(VerifyError::Broken(BrokenLink {
                position: self.last_position + 1,
                stream: None,
                version: None,
                problem: format!(
                    "the log ends at position {} but its head is {head}: the tail was deleted",
                    self.last_position
                ),
            }));
        }
        if let Some(a) = self.expect
            && a.position > self.last_position
        {
            return Err(VerifyError::AnchorMismatch(format!(
                "the log ends at position {}, before the anchored position {}: it was truncated",
                self.last_position, a.position
            )));
        }
        Ok(Summary {
            events: self.last_position,
            streams: self.tips.len() as u64,
            head: self.last_position,
            anchor: self.anchor(),
            checked_anchor: self.expect,
            checked_checkpoint: None,
        })
    }

    /// The anchor at the current position (see `docs/audit.md` for the encoding).
    pub fn anchor(&self) -> Anchor {
        let tips = self
            .tips
            .iter()
            .map(|(stream, tip)| (stream.as_str(), tip.version, &tip.hash[..]));
        Anchor {
            position: self.last_position,
            digest: crate::store::audit::anchor_digest(self.last_position, tips),
        }
    }

    /// At the anchored position, the anchor must be the expected one.
    fn check_anchor(&self) -> Result<(), VerifyError> {
        match self.expect {
            Some(expected) if expected.position == self.last_position => {
                let actual = self.anchor();
                if actual == expected {
                    Ok(())
                } else {
                    Err(VerifyError::AnchorMismatch(format!(
                        "the log up to position {} does not match the anchor {expected} (it is \
                         {actual}): a stream was rewritten with recomputed hashes",
                        expected.position
                    )))
                }
            }
            _ => Ok(()),
        }
    }
}

/// The first indexed column that does not hold the payload's value.
fn column_disagreeing(row: &RawEvent, env: &pb::Envelope) -> Option<&'static str> {
    let same_uuid = |column: &str, field: &str| column.eq_ignore_ascii_case(field);
    if !same_uuid(&row.event_id, &env.event_id) {
        return Some("event_id");
    }
    if !same_uuid(&row.tenant_id, &env.tenant_id) {
        return Some("tenant_id");
    }
    // A reveal's row indexes the admin whose values were read (its stream has none).
    let indexed_admin = match &env.event {
        Some(pb::envelope::Event::PiiRevealed(r)) if env.admin_id.is_empty() => &r.admin_id,
        _ => &env.admin_id,
    };
    if !same_uuid(row.admin_id.as_deref().unwrap_or(""), indexed_admin) {
        return Some("admin_id");
    }
    if row.occurred_at_ms != env.occurred_at_ms {
        return Some("occurred_at");
    }
    if Some(row.event_type.as_str()) != env.event.as_ref().map(crate::events::pb_type_name) {
        return Some("event_type");
    }
    None
}

/// Verifies the whole log of `store`, paging in position order, with progress on stderr.
///
/// The head is read first: rows appended while the scan runs are checked too, and a log that
/// ends before that head had its tail deleted.
///
/// With a `checkpoint` (opened with its key), the log's first `size` events must also be the
/// ones it signed: the first position that differs is named.
pub async fn verify(
    store: &Store,
    expect: Option<Anchor>,
    checkpoint: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    match verify_log(store, expect, checkpoint).await {
        Err(VerifyError::AnchorMismatch(text)) => {
            let reanchors = store.reanchors().await?;
            let expected = expect.map_or(0, |a| a.position);
            let why = reanchors
                .iter()
                .filter(|r| r.position >= expected)
                .map(|r| format!("; the chains were {r}"))
                .collect::<String>();
            Err(VerifyError::AnchorMismatch(format!("{text}{why}")))
        }
        other => other,
    }
}

async fn verify_log(
    store: &Store,
    expect: Option<Anchor>,
    checkpoint: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    let head = store.head().await?;
    let mut progress = Progress::new("verify", "events", Some(head));
    let mut verifier = Verifier::new(expect);
    let mut leaves = checkpoint.map(|c| LeafCollector::new(c.size));
    loop {
        let rows = store.raw_events(verifier.position(), PAGE).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            verifier.check(row)?;
            if let Some(leaves) = &mut leaves {
                leaves.push(&row.hash);
            }
        }
        progress.add(rows.len() as u64);
    }
    // Rows beyond the head read first: appended meanwhile, or inserted behind the store's back.
    let head = if verifier.position() > head {
        store.head().await?
    } else {
        head
    };
    let mut summary = verifier.finish(head)?;
    progress.finish();
    if let (Some(checkpoint), Some(leaves)) = (checkpoint, leaves) {
        if let Some(d) = tree::compare(store, checkpoint, leaves).await? {
            return Err(VerifyError::CheckpointMismatch(describe(
                checkpoint,
                summary.head,
                &d,
            )));
        }
        summary.checked_checkpoint = Some(checkpoint.size);
    }
    Ok(summary)
}

/// The one line that says where the log stops being the checkpoint's.
fn describe(checkpoint: &Checkpoint, head: u64, d: &Difference) -> String {
    let size = checkpoint.size;
    let what = match (d.exact, d.missing) {
        (true, true) => format!(
            "position {} is missing: the log ends at {head}, it was truncated",
            d.position
        ),
        (true, false) => format!(
            "the event at position {} is not the one signed: the log was rewritten from there",
            d.position
        ),
        (false, _) => format!(
            "the stored Merkle tree was altered too, so the first difference is only known to \
             lie in positions {}..={}",
            d.position, d.last
        ),
    };
    format!(
        "the log is not the one checkpoint {size} of {} signed: it first differs at position \
         {}; {what}",
        checkpoint.origin, d.position
    )
}

/// What the verification of one tenant's streams found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSummary {
    pub events: u64,
    pub streams: u64,
    /// The last position checked.
    pub last: u64,
}

/// Verifies the hash chains of every stream of `tenant` from its stored rows (for its auditors:
/// their part of the log, not the global order, which `audit verify` checks).
pub async fn verify_tenant(
    store: &Store,
    tenant: crate::domain::TenantId,
) -> Result<TenantSummary, VerifyError> {
    let mut verifier = Verifier::of_streams();
    let mut events = 0;
    loop {
        let rows = store
            .tenant_raw_events(tenant, verifier.position(), PAGE)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            verifier.check(row)?;
        }
        events += rows.len() as u64;
    }
    Ok(TenantSummary {
        events,
        streams: verifier.streams(),
        last: verifier.position(),
    })
}
