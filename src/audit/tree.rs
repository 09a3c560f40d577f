//! The Merkle tree over the global log, kept in the store, and the signed tree heads
//! (checkpoints) that commit the service to it (docs/audit.md "Checkpoints").
//!
//! Leaf `i` is `SHA-256(0x00 ‖ hash)` of the event at position `i + 1` (its chain hash, which
//! covers its payload and its stream's previous event). The store keeps the leaves in chunks
//! of [`CHUNK`] and the roots of every aligned perfect subtree of a chunk or more, built by
//! [`catch_up`] as the log grows: a proof over any size is then a few reads. A stored chunk or
//! node is never changed: when the log no longer has the leaves a checkpoint covered, building
//! stops with [`TreeError::Diverged`] and the stored tree keeps what was signed, which is how
//! `audit verify --checkpoint` finds the first position that differs.

use super::merkle::{self, Hash, Source, Span};
use super::note::{Checkpoint, NoteSigner};
use crate::store::audit::{TreeHead, TreeNode};
use crate::store::{EventLog, Maintenance, Store, StoreConfig, StoreError, TreeStorage};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The height of a chunk's subtree.
pub const CHUNK_LEVEL: u32 = 8;
/// Leaves per stored chunk.
pub const CHUNK: u64 = 1 << CHUNK_LEVEL;
/// Chunks built per transaction.
const CHUNKS_PER_BATCH: u64 = 64;

/// What can stop work on the tree.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log at a position no longer holds the leaf the stored tree has there.
    #[error(
        "the log differs at position {position} from what the stored tree holds there (a \
         checkpoint covered it): the log was rewritten; see `recovery-info audit verify \
         --checkpoint`"
    )]
    Diverged { position: u64 },
    /// A size beyond the log.
    #[error("the log has {head} events, not {size}")]
    BeyondLog { size: u64, head: u64 },
    /// The stored tree lacks a part it should have (its tables were edited).
    #[error("the stored Merkle tree lacks part of leaves {}..{}", .0.start, .0.end)]
    Incomplete(Span),
}

/// The leaf of an event with chain hash `hash`.
pub fn leaf_of(hash: &[u8]) -> Hash {
    merkle::leaf_hash(hash)
}

/// Parts of a tree at hand: leaves and subtree roots, as a [`Source`].
#[derive(Clone, Debug, Default)]
pub struct Pieces {
    leaves: HashMap<u64, Hash>,
    nodes: HashMap<(u32, u64), Hash>,
}

impl Source for Pieces {
    fn leaf(&self, index: u64) -> Option<Hash> {
        self.leaves.get(&index).copied()
    }
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.nodes.get(&(level, index)).copied()
    }
}

impl Pieces {
    /// Adds leaves from `first` on.
    pub fn add_leaves(&mut self, first: u64, leaves: impl IntoIterator<Item = Hash>) {
        for (i, leaf) in leaves.into_iter().enumerate() {
            self.leaves.insert(first + i as u64, leaf);
        }
    }

    /// Adds the leaves of a stored chunk (32 bytes each).
    fn add_chunk(&mut self, chunk: u64, bytes: &[u8]) {
        self.add_leaves(chunk * CHUNK, bytes.chunks_exact(32).filter_map(to_hash));
    }

    /// The tree whose chunks have the roots `chunk_roots`: every node from a chunk up.
    pub fn of_chunk_roots(chunk_roots: &[Hash]) -> Self {
        let mut nodes = HashMap::new();
        let mut level: Vec<Hash> = chunk_roots.to_vec();
        let mut height = CHUNK_LEVEL;
        while !level.is_empty() {
            for (i, h) in level.iter().enumerate() {
                nodes.insert((height, i as u64), *h);
            }
            level = level
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            height += 1;
        }
        Pieces {
            leaves: HashMap::new(),
            nodes,
        }
    }

    /// `MTH` of `span`.
    pub fn root(&self, span: Span) -> Result<Hash, TreeError> {
        merkle::span_root(self, span.clone()).ok_or(TreeError::Incomplete(span))
    }
}

fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

/// The stored subtree roots that cover a tree of `chunks` whole chunks: one per set bit, the
/// largest first (what [`catch_up`] merges new chunks into).
fn frontier_keys(chunks: u64) -> Vec<(u32, u64)> {
    let mut keys = Vec::new();
    let mut offset = 0u64;
    for bit in (0..64u32).rev() {
        if chunks & (1 << bit) != 0 {
            keys.push((CHUNK_LEVEL + bit, offset >> bit));
            offset += 1 << bit;
        }
    }
    keys
}

/// Builds the stored tree's whole chunks up to `head` (rounded down to a chunk), a batch at a
/// time; returns how many leaves it covers. Replicas may run it at once: what they store is
/// the same, and a stored part is never changed.
pub async fn catch_up(store: &Store, head: u64) -> Result<u64, TreeError> {
    let mut built = store.tree_built().await?;
    let target = head / CHUNK * CHUNK;
    if built >= target {
        return Ok(built);
    }
    // The roots of the perfect subtrees so far, largest first, as (level, index, hash).
    let keys = frontier_keys(built / CHUNK);
    let mut stored: HashMap<(u32, u64), Hash> = store
        .tree_nodes(keys.clone())
        .await?
        .into_iter()
        .map(|(l, i, h)| ((l, i), h))
        .collect();
    let mut frontier: Vec<TreeNode> = Vec::new();
    for key in keys {
        let hash = stored.remove(&key).ok_or(TreeError::Incomplete(
            (key.1 << key.0)..((key.1 + 1) << key.0),
        ))?;
        frontier.push((key.0, key.1, hash));
    }
    while built < target {
        let first_chunk = built / CHUNK;
        let chunks = ((target - built) / CHUNK).min(CHUNKS_PER_BATCH);
        let hashes = store.chain_hashes(built, (chunks * CHUNK) as u32).await?;
        if (hashes.len() as u64) < chunks * CHUNK {
            // The head moved back (a restore?): build what is there next time.
            break;
        }
        let leaves: Vec<Hash> = hashes.iter().map(|h| leaf_of(h)).collect();
        // Chunks stored before (a checkpoint's partial one) must be where the log still is.
        let known = store
            .tree_chunks((first_chunk..first_chunk + chunks).collect())
            .await?;
        for (chunk, bytes) in &known {
            let at = ((chunk - first_chunk) * CHUNK) as usize;
            if let Some(i) = first_difference(bytes, &leaves[at..at + CHUNK as usize]) {
                return Err(TreeError::Diverged {
                    position: chunk * CHUNK + i + 1,
                });
            }
        }
        let mut new_chunks = Vec::new();
        let mut nodes = Vec::new();
        for (n, leaves) in leaves.chunks_exact(CHUNK as usize).enumerate() {
            let chunk = first_chunk + n as u64;
            new_chunks.push((chunk, leaves.concat()));
            let mut node = (CHUNK_LEVEL, chunk, merkle::root(leaves));
            nodes.push(node);
            while let Some(&(level, index, left)) = frontier.last() {
                if level != node.0 {
                    break;
                }
                frontier.pop();
                node = (level + 1, index / 2, merkle::node_hash(&left, &node.2));
                nodes.push(node);
            }
            frontier.push(node);
        }
        built += chunks * CHUNK;
        store.save_tree(new_chunks, nodes, built).await?;
        metrics::gauge!("recovery_tree_built_leaves").set(built as f64);
    }
    Ok(built)
}

/// The index (0-based) of the first stored leaf that is not the log's.
fn first_difference(stored: &[u8], leaves: &[Hash]) -> Option<u64> {
    stored
        .chunks(32)
        .zip(leaves)
        .position(|(s, l)| s != l.as_slice())
        .map(|i| i as u64)
        .or_else(|| (stored.len() > leaves.len() * 32).then_some(leaves.len() as u64))
}

/// The stored nodes and chunks that `spans` need, below `built` leaves: planned by computing
/// the spans' roots with a [`Plan`], then read in two queries.
async fn fetch_stored(store: &Store, spans: &[Span], built: u64) -> Result<Pieces, TreeError> {
    let plan = Plan {
        built,
        nodes: Default::default(),
        chunks: Default::default(),
    };
    for span in spans {
        merkle::span_root(&plan, span.clone());
    }
    let mut pieces = Pieces::default();
    for (level, index, hash) in store
        .tree_nodes(plan.nodes.into_inner().into_iter().collect())
        .await?
    {
        pieces.nodes.insert((level, index), hash);
    }
    for (chunk, bytes) in store
        .tree_chunks(plan.chunks.into_inner().into_iter().collect())
        .await?
    {
        pieces.add_chunk(chunk, &bytes);
    }
    Ok(pieces)
}

/// Records which leaves and stored nodes a computation asks for (planning the reads).
struct Plan {
    built: u64,
    nodes: std::cell::RefCell<BTreeSet<(u32, u64)>>,
    chunks: std::cell::RefCell<BTreeSet<u64>>,
}

impl Source for Plan {
    fn leaf(&self, index: u64) -> Option<Hash> {
        if index < self.built {
            self.chunks.borrow_mut().insert(index / CHUNK);
        }
        Some([0; 32])
    }
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        if level >= CHUNK_LEVEL && (index + 1) << level <= self.built {
            self.nodes.borrow_mut().insert((level, index));
            return Some([0; 32]);
        }
        None
    }
}

/// The parts of the log's tree of `size` leaves that `spans` need, read from the store: the
/// stored nodes and chunks below what is built, the events' hashes above it.
pub async fn pieces_for(store: &Store, spans: &[Span], size: u64) -> Result<Pieces, TreeError> {
    Ok(read_pieces(store, spans, size).await?.0)
}

/// [`pieces_for`], and how many of the leaves below `size` the stored chunks hold.
async fn read_pieces(store: &Store, spans: &[Span], size: u64) -> Result<(Pieces, u64), TreeError> {
    let head = store.head().await?;
    if size > head {
        return Err(TreeError::BeyondLog { size, head });
    }
    let built = catch_up(store, size).await?.min(size / CHUNK * CHUNK);
    let mut pieces = fetch_stored(store, spans, built).await?;
    if size > built {
        let hashes = store.chain_hashes(built, (size - built) as u32).await?;
        pieces.add_leaves(built, hashes.iter().map(|h| leaf_of(h)));
    }
    Ok((pieces, built))
}

/// The root of the log's tree of `size` leaves.
pub async fn root_at(store: &Store, size: u64) -> Result<Hash, TreeError> {
    let whole = 0..size;
    pieces_for(store, std::slice::from_ref(&whole), size)
        .await?
        .root(whole)
}

/// The hashes of `spans` in the log's tree of `size` leaves, in order (a proof).
pub async fn proof(store: &Store, spans: Vec<Span>, size: u64) -> Result<Vec<Hash>, TreeError> {
    let pieces = pieces_for(store, &spans, size).await?;
    spans.into_iter().map(|span| pieces.root(span)).collect()
}

/// Signs the tree head of the log as it is now and records it; returns it (or the one of that
/// size recorded before, by another replica).
pub async fn sign_checkpoint(store: &Store, signer: &NoteSigner) -> Result<TreeHead, TreeError> {
    let size = store.head().await?;
    let whole = 0..size;
    let (pieces, built) = read_pieces(store, std::slice::from_ref(&whole), size).await?;
    let root = pieces.root(whole)?;
    if size > built {
        // The part of the last chunk the checkpoint covers, so that the stored tree keeps what
        // was signed (a longer stored part must begin with it).
        let chunk = built / CHUNK;
        let leaves: Vec<u8> = (built..size)
            .filter_map(|i| pieces.leaf(i))
            .flatten()
            .collect();
        if let Some((_, stored)) = store.tree_chunks(vec![chunk]).await?.pop() {
            let common = stored.len().min(leaves.len());
            if let Some(i) = first_difference(&stored[..common], &to_leaves(&leaves[..common])) {
                return Err(TreeError::Diverged {
                    position: built + i + 1,
                });
            }
        }
        store
            .save_tree(vec![(chunk, leaves)], Vec::new(), built)
            .await?;
    }
    let checkpoint = Checkpoint {
        origin: signer.name().to_owned(),
        size,
        root,
    };
    let head = TreeHead {
        size,
        root,
        signed_at: chrono::Utc::now(),
        key: signer.verifier().to_string(),
        note: signer.sign(&checkpoint.text()),
    };
    if store.insert_tree_head(head.clone()).await? {
        metrics::counter!("recovery_checkpoints_signed_total").increment(1);
        metrics::gauge!("recovery_checkpoint_size").set(size as f64);
        tracing::info!(size, root = %hex::encode(root), "signed a checkpoint");
        return Ok(head);
    }
    Ok(head_of_size(store, size).await?.unwrap_or(head))
}

/// The signed tree head of exactly `size`, if one was recorded.
pub async fn head_of_size(store: &Store, size: u64) -> Result<Option<TreeHead>, StoreError> {
    let heads = store.tree_heads(size.saturating_sub(1), 1).await?;
    Ok(heads.into_iter().find(|h| h.size == size))
}

fn to_leaves(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks_exact(32).filter_map(to_hash).collect()
}

/// The name of the signing key's file in the embedded store's data directory.
pub const SIGNING_KEY_FILE: &str = "audit-signing.key";
/// The name of the signing key's seed among the server keys (PostgreSQL without a key file).
pub const SIGNING_KEY_NAME: &str = "audit-signing";

/// Where the key that signs checkpoints came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerSource {
    /// The file given.
    File,
    /// The embedded store's data directory (generated there at the first start).
    DataDir,
    /// The database's server keys: anyone who can write the database can sign as the log.
    Database,
}

/// The key that signs checkpoints: `key_file`'s, else the data directory's (embedded; made
/// at the first start), else one kept in the database named `name`.
pub async fn signer(
    store: &Store,
    config: &StoreConfig,
    key_file: Option<&Path>,
    name: &str,
) -> anyhow::Result<(NoteSigner, SignerSource)> {
    use anyhow::Context;
    let read = |path: &Path| -> anyhow::Result<NoteSigner> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the signing key {}", path.display()))?,
        );
        NoteSigner::parse(&text).with_context(|| format!("{}", path.display()))
    };
    if let Some(path) = key_file {
        return Ok((read(path)?, SignerSource::File));
    }
    match config {
        StoreConfig::Embedded { data_dir, .. } => {
            let path = data_dir.join(SIGNING_KEY_FILE);
            if !path.exists() {
                let signer = NoteSigner::generate(name)?;
                crate::config::write_secret_file(&path, &signer.to_private_text())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok((read(&path)?, SignerSource::DataDir))
        }
        StoreConfig::Postgres { .. } => {
            let seed = zeroize::Zeroizing::new(store.server_key(SIGNING_KEY_NAME).await?);
            Ok((NoteSigner::from_seed(name, &seed)?, SignerSource::Database))
        }
    }
}

/// The leaves of the log as `audit verify` reads it, up to a checkpoint's size: the roots of
/// its whole chunks and the leaves of the last part (memory: 32 bytes per chunk).
#[derive(Debug)]
pub struct LeafCollector {
    size: u64,
    count: u64,
    chunk_roots: Vec<Hash>,
    current: Vec<Hash>,
}

impl LeafCollector {
    /// Collects the first `size` leaves.
    pub fn new(size: u64) -> Self {
        LeafCollector {
            size,
            count: 0,
            chunk_roots: Vec::new(),
            current: Vec::with_capacity(CHUNK as usize),
        }
    }

    /// The next event's chain hash (ignored beyond the size).
    pub fn push(&mut self, hash: &[u8]) {
        if self.count >= self.size {
            return;
        }
        self.current.push(leaf_of(hash));
        self.count += 1;
        if self.current.len() as u64 == CHUNK {
            self.chunk_roots.push(merkle::root(&self.current));
            self.current.clear();
        }
    }
}

/// Where a log first differs from the one a checkpoint signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The first position that differs (exact when `exact`).
    pub position: u64,
    /// Whether the stored tree let the search go down to one leaf; otherwise the difference is
    /// somewhere in `position..=last` (the stored tree was altered as well).
    pub exact: bool,
    pub last: u64,
    /// Whether the log ends before that position (truncated) rather than holding another event.
    pub missing: bool,
}

/// Compares the log `leaves` collected with `checkpoint` (already opened with its key):
/// `None` when the log's first `size` events are the ones it signed. Otherwise bisects with
/// the tree: from the signed root down, the stored tree's two children of a part are trusted
/// only when they hash to that part's trusted root, and the search goes into the first child
/// whose root the log does not reproduce, down to one leaf.
pub async fn compare(
    store: &Store,
    checkpoint: &Checkpoint,
    leaves: LeafCollector,
) -> Result<Option<Difference>, TreeError> {
    let size = checkpoint.size;
    let have = leaves.count;
    let whole_chunks = leaves.chunk_roots.len() as u64;
    let mut log = Pieces::of_chunk_roots(&leaves.chunk_roots);
    log.add_leaves(whole_chunks * CHUNK, leaves.current);
    if have == size && log.root(0..size).ok() == Some(checkpoint.root) {
        return Ok(None);
    }
    let log_root = |log: &Pieces, span: Span| match span.end <= have {
        true => log.root(span).ok(),
        false => None,
    };
    let (mut span, mut trusted) = (0..size, checkpoint.root);
    let mut loaded_chunk = None;
    loop {
        let unsure = |span: &Span| Difference {
            position: span.start + 1,
            exact: false,
            last: span.end,
            missing: false,
        };
        if span.end - span.start == 1 {
            return Ok(Some(Difference {
                position: span.start + 1,
                exact: true,
                last: span.start + 1,
                missing: span.start >= have,
            }));
        }
        if span.end - span.start <= CHUNK && loaded_chunk.is_none() {
            // Into one chunk: its leaves, of the log (whole chunks were only summed up).
            let chunk = span.start / CHUNK;
            if chunk < whole_chunks {
                let hashes = store.chain_hashes(chunk * CHUNK, CHUNK as u32).await?;
                log.add_leaves(chunk * CHUNK, hashes.iter().map(|h| leaf_of(h)));
            }
            loaded_chunk = Some(chunk);
        }
        let mid = span.start + merkle::split(span.end - span.start);
        let (left, right) = (span.start..mid, mid..span.end);
        let stored = stored_pieces(store, &[left.clone(), right.clone()], size).await?;
        let (Ok(old_left), Ok(old_right)) = (stored.root(left.clone()), stored.root(right.clone()))
        else {
            return Ok(Some(unsure(&span)));
        };
        if merkle::node_hash(&old_left, &old_right) != trusted {
            return Ok(Some(unsure(&span)));
        }
        (span, trusted) = match log_root(&log, left.clone()) == Some(old_left) {
            false => (left, old_left),
            true => (right, old_right),
        };
    }
}

/// What the stored tree holds for `spans` of the tree of `size` leaves: its nodes and its
/// chunks' leaves only (never the events, which may have been rewritten).
async fn stored_pieces(store: &Store, spans: &[Span], size: u64) -> Result<Pieces, TreeError> {
    let mut pieces = fetch_stored(store, spans, size).await?;
    // Leaves beyond the size are not part of the signed tree.
    pieces.leaves.retain(|&i, _| i < size);
    Ok(pieces)
}
