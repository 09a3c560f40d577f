//! The admin rows this process's live batches wrote last, kept in memory.
//!
//! **What it saves.** A batch must load the row of every admin its events touch before it
//! folds them. Under a steady stream of commands the same admins come back batch after batch
//! (an admin's commands, a reset flow's read-your-writes), and the row a batch needs is most
//! often the one this process's previous batch just wrote: taken from here, it is not read
//! again (a round trip and a JSON parse per admin; docs/benchmarks.md).
//!
//! **Why it is safe.** The rows are exact at one checkpoint: the one the last batch of this
//! process left. A batch takes them only when it finds the checkpoint, under its row lock, at
//! exactly that position — no one else folded anything since, so the table holds what this
//! process wrote. A checkpoint found anywhere else (another replica projected, a reset, a
//! replay) means they may be stale: they are all forgotten. Only the live batches use them (a
//! replay's shadow tables never do). Bounded: beyond [`ROWS_KNOWN`] rows it forgets them all
//! and starts again.

use crate::fold::admins::{AdminKey, AdminRow};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// The most admin rows remembered (beyond it, they are forgotten and remembered again).
const ROWS_KNOWN: usize = 100_000;

/// See the module documentation.
#[derive(Default)]
pub(super) struct KnownRows(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    position: Option<u64>,
    admins: HashMap<AdminKey, AdminRow>,
}

impl KnownRows {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Poisoned only if a holder panicked between two plain map operations: still consistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rows of `keys` it holds, taken out, if they are exact at `checkpoint`.
    pub(super) fn take(
        &self,
        checkpoint: u64,
        keys: &BTreeSet<AdminKey>,
    ) -> HashMap<AdminKey, AdminRow> {
        let mut inner = self.inner();
        if inner.position != Some(checkpoint) {
            inner.position = None;
            inner.admins.clear();
            return HashMap::new();
        }
        keys.iter()
            .filter_map(|k| inner.admins.remove(k).map(|row| (*k, row)))
            .collect()
    }

    /// A batch moved the checkpoint from `from` to `to`, writing `rows`.
    pub(super) fn keep(&self, from: u64, to: u64, rows: HashMap<AdminKey, AdminRow>) {
        let mut inner = self.inner();
        if inner.position != Some(from) || inner.admins.len() + rows.len() > ROWS_KNOWN {
            inner.admins.clear();
        }
        inner.position = Some(to);
        inner.admins.extend(rows);
    }
}
