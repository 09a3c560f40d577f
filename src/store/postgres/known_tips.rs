//! The stream tips the appender remembers, kept in memory.
//!
//! **What it saves.** Each group of appends needs the tip (version and hash) of every stream
//! it appends to or is guarded by. Read under the append lock, that is a round trip per group;
//! remembered, it is none — and when every tip a group needs is remembered, the group is
//! written in one round trip, behind a statement that takes the lock and checks the head
//! (`group_commit`; round 10 of docs/benchmarks.md).
//!
//! **Why it is safe.** The tips are exact as long as the log's head is the one this appender
//! left: every append of every replica takes the same lock and moves the head, so a head found
//! where it was left means no one appended since. A head found elsewhere, or any failure,
//! forgets them all; a guess that finds the head moved is rolled back, and the next groups
//! read it first for a while. Bounded: beyond [`TIPS_REMEMBERED`] streams it forgets them all.

use crate::store::place::Tip;
use std::collections::HashMap;

/// The most stream tips the appender remembers (beyond it, it forgets them all and starts
/// again).
pub(super) const TIPS_REMEMBERED: usize = 100_000;

/// The stream tips the appender wrote or read, exact as long as the log's head is `head`.
#[derive(Default)]
pub(super) struct KnownTips {
    pub(super) head: Option<u64>,
    pub(super) tips: HashMap<String, Tip>,
    /// Groups left to write without guessing the head, after a guess failed.
    doubting: u32,
}

/// The groups written the careful way after another writer moved the head under a guess.
const DOUBTED_GROUPS: u32 = 32;

impl KnownTips {
    pub(super) fn forget(&mut self) {
        self.head = None;
        self.tips.clear();
    }

    /// The head to write a group at in one round trip, without reading anything first: the
    /// remembered one, when every tip the group needs is remembered and optimism has not just
    /// failed.
    pub(super) fn optimistic_head(&mut self, tip_names: &[String]) -> Option<u64> {
        if self.doubting > 0 {
            self.doubting -= 1;
            return None;
        }
        self.head
            .filter(|_| tip_names.iter().all(|n| self.tips.contains_key(n)))
    }

    /// Another writer appended since this appender last wrote: the next groups read the head
    /// under the lock first (where two replicas append all the time, a guess that fails costs
    /// a round trip more than not guessing).
    pub(super) fn doubt(&mut self) {
        self.doubting = DOUBTED_GROUPS;
    }
}
