//! Eligibility verdicts answered from memory.
//!
//! The admin projection's runner in this process keeps a map of verdicts that is exact at one log
//! position: the projection's checkpoint as this process last moved or saw it. Every batch the
//! runner commits updates the verdicts it changed, under the same lock as the position, so an
//! entry is never older than the position it is answered with. Verdicts read from PostgreSQL
//! are remembered only when they were read at that same position. When the checkpoint moves
//! without this runner (another replica projected, or an operator reset or replayed the
//! projection), the map is emptied and starts again at the new position.
//!
//! An answer from memory therefore reflects exactly the events up to the position it reports,
//! like an answer from the table; `min_position` beyond it falls back to the store.

use crate::domain::{AdminId, TenantId, Verdict};
use crate::fold::admins::VerdictChanges;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// How many verdicts are kept at most; beyond it, reads of other admins go to the store.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// The verdicts at one log position (see the module documentation).
pub struct VerdictCache {
    inner: RwLock<Inner>,
    capacity: usize,
}

#[derive(Default)]
struct Inner {
    /// The position every entry is exact at; `None` until the runner's first batch.
    position: Option<u64>,
    tenants: HashMap<TenantId, HashMap<AdminId, Arc<Verdict>>>,
    len: usize,
}

impl Inner {
    fn clear(&mut self, position: u64) {
        self.tenants.clear();
        self.len = 0;
        self.position = Some(position);
    }

    fn insert(&mut self, tenant: TenantId, admin: AdminId, verdict: Arc<Verdict>, cap: usize) {
        let admins = self.tenants.entry(tenant).or_default();
        match admins.get_mut(&admin) {
            Some(slot) => *slot = verdict,
            None if self.len < cap => {
                admins.insert(admin, verdict);
                self.len += 1;
            }
            None => {}
        }
    }
}

impl VerdictCache {
    pub fn new(capacity: usize) -> Self {
        VerdictCache {
            inner: RwLock::new(Inner::default()),
            capacity,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The admin's verdict and the position it is exact at, if known here and at least
    /// `min_position` fresh.
    pub fn get(
        &self,
        tenant: TenantId,
        admin: AdminId,
        min_position: Option<u64>,
    ) -> Option<(u64, Arc<Verdict>)> {
        let inner = self.read();
        let position = inner.position?;
        if min_position.is_some_and(|min| min > position) {
            return None;
        }
        let verdict = inner.tenants.get(&tenant)?.get(&admin)?;
        Some((position, verdict.clone()))
    }

    /// Remembers a verdict read from the store at `position`, if that is the position the
    /// entries are exact at (otherwise a batch moved on meanwhile and the read may be stale).
    pub fn remember(&self, tenant: TenantId, admin: AdminId, position: u64, verdict: &Verdict) {
        let mut inner = self.write();
        if inner.position == Some(position) {
            inner.insert(tenant, admin, Arc::new(verdict.clone()), self.capacity);
        }
    }

    /// The runner's batch found the checkpoint at `from` and left it at `to`, having written
    /// `changes` (none when it found nothing to fold). A checkpoint that is not where this
    /// process last left it moved without us: what is held may be stale, and is dropped.
    pub fn advance(&self, from: u64, to: u64, changes: VerdictChanges) {
        let mut inner = self.write();
        if inner.position != Some(from) {
            inner.clear(from);
        }
        for tenant in changes.settings_changed {
            // Admins of the tenant without events are not in the batch: forget them all.
            if let Some(admins) = inner.tenants.remove(&tenant) {
                inner.len -= admins.len();
            }
        }
        for ((tenant, admin), verdict) in changes.verdicts {
            inner.insert(tenant, admin, Arc::new(verdict), self.capacity);
        }
        inner.position = Some(to);
    }

    /// How many verdicts are held.
    pub fn len(&self) -> usize {
        self.read().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AdminState, TenantState};
    use crate::fold::admins::verdict_for;
    use uuid::Uuid;

    fn ids() -> (TenantId, AdminId) {
        (
            TenantId::from_uuid(Uuid::new_v4()),
            AdminId::from_uuid(Uuid::new_v4()),
        )
    }

    fn verdict() -> Verdict {
        verdict_for(&TenantState::default(), &AdminState::default())
    }

    /// A batch of the runner that found nothing to fold, with the checkpoint at `position`.
    fn saw(cache: &VerdictCache, position: u64) {
        cache.advance(position, position, VerdictChanges::default());
    }

    #[test]
    fn nothing_is_answered_before_the_first_batch() {
        let cache = VerdictCache::new(10);
        let (t, a) = ids();
        cache.remember(t, a, 0, &verdict());
        assert!(cache.get(t, a, None).is_none());
    }

    #[test]
    fn a_read_is_remembered_only_at_the_current_position() {
        let cache = VerdictCache::new(10);
        let (t, a) = ids();
        saw(&cache, 5);
        cache.remember(t, a, 4, &verdict());
        assert!(cache.get(t, a, None).is_none(), "read at an older position");
        cache.remember(t, a, 5, &verdict());
        assert_eq!(cache.get(t, a, None).map(|(p, _)| p), Some(5));
        assert!(cache.get(t, a, Some(6)).is_none(), "not fresh enough");
        assert!(cache.get(t, a, Some(5)).is_some());
    }

    #[test]
    fn a_checkpoint_moved_elsewhere_empties_the_cache() {
        let cache = VerdictCache::new(10);
        let (t, a) = ids();
        saw(&cache, 5);
        cache.remember(t, a, 5, &verdict());
        cache.advance(7, 9, VerdictChanges::default());
        assert!(cache.get(t, a, None).is_none());
        cache.remember(t, a, 9, &verdict());
        saw(&cache, 3);
        assert!(cache.get(t, a, None).is_none(), "reset behind us");
        assert!(cache.is_empty());
    }

    #[test]
    fn a_batch_updates_its_admins_and_forgets_tenants_whose_settings_changed() {
        let cache = VerdictCache::new(10);
        let (t, a) = ids();
        let (other_t, other_a) = ids();
        let b = AdminId::from_uuid(Uuid::new_v4());
        saw(&cache, 1);
        cache.remember(t, a, 1, &verdict());
        cache.remember(t, b, 1, &verdict());
        cache.remember(other_t, other_a, 1, &verdict());
        let mut changed = verdict();
        changed.eligible = !changed.eligible;
        cache.advance(
            1,
            4,
            VerdictChanges {
                settings_changed: vec![t],
                verdicts: vec![((t, a), changed.clone())],
            },
        );
        assert_eq!(
            cache.get(t, a, Some(4)).map(|(_, v)| (*v).clone()),
            Some(changed)
        );
        assert!(cache.get(t, b, None).is_none(), "b had no event: forgotten");
        assert_eq!(cache.get(other_t, other_a, None).map(|(p, _)| p), Some(4));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn new_entries_stop_at_capacity_but_updates_do_not() {
        let cache = VerdictCache::new(1);
        let (t, a) = ids();
        let b = AdminId::from_uuid(Uuid::new_v4());
        saw(&cache, 1);
        cache.remember(t, a, 1, &verdict());
        cache.remember(t, b, 1, &verdict());
        assert!(cache.get(t, b, None).is_none());
        let mut changed = verdict();
        changed.eligible = !changed.eligible;
        cache.advance(
            1,
            2,
            VerdictChanges {
                settings_changed: vec![],
                verdicts: vec![((t, a), changed.clone())],
            },
        );
        assert_eq!(
            cache.get(t, a, None).map(|(_, v)| (*v).clone()),
            Some(changed)
        );
        assert_eq!(cache.len(), 1);
    }
}
