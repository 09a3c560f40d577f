//! The fold of a bulk replay: the admin projection folded from position 0 in memory, in one
//! pass over the log, then written out whole into the empty shadow tables (`store::replay`).
//! It holds every admin's state until the end, so it takes about as much memory as the
//! projection's tables themselves.

use super::admins::{AdminFold, AdminKey, AdminRow};
use crate::domain::{StreamId, TenantId, TenantState};
use crate::events::RecordedEvent;
use std::collections::HashMap;

/// The admin projection, folded from an empty start: one fold per tenant, because a settings
/// event re-evaluates every admin its fold holds, which over one fold of the whole log would
/// make the rebuild quadratic.
#[derive(Debug, Default)]
pub struct BulkFold {
    tenants: HashMap<TenantId, AdminFold>,
}

impl BulkFold {
    /// An empty fold.
    pub fn new() -> Self {
        BulkFold::default()
    }

    /// Folds the next event of the log.
    pub fn apply(&mut self, event: &RecordedEvent) {
        match event.stream {
            StreamId::Admin(t, _) | StreamId::Tenant(t) => {
                self.tenants
                    .entry(t)
                    .or_insert_with(AdminFold::verdicts_at_the_end)
                    .apply(event);
            }
            StreamId::Audit(_) => {}
        }
    }

    /// Works out the verdicts, stale until then ([`AdminFold::verdicts_at_the_end`]): after
    /// the last event, before the rows are read. Evaluating, and masking the values above
    /// all, is the dearest step of the fold, and this runs it on the final states only.
    pub fn finish(&mut self) {
        self.tenants
            .values_mut()
            .for_each(AdminFold::finish_verdicts);
    }

    /// Adds the fold of other tenants (a shard of the same log folded apart): tenants' folds
    /// are independent, so this only moves their entries.
    pub fn merge(&mut self, other: BulkFold) {
        self.tenants.extend(other.tenants);
    }

    /// The rows of the projection's tables, in key order; after [`BulkFold::finish`].
    pub fn rows(&self) -> Rows<'_> {
        let mut tenants: Vec<_> = self.tenants.values().flat_map(|f| &f.tenants).collect();
        tenants.sort_unstable_by_key(|(t, _)| **t);
        let mut admins: Vec<_> = self.tenants.values().flat_map(|f| &f.admins).collect();
        admins.sort_unstable_by_key(|(key, _)| **key);
        Rows { tenants, admins }
    }
}

/// The rows of the admin projection's tables.
#[derive(Debug)]
pub struct Rows<'a> {
    /// The settings of every tenant with a settings event.
    pub tenants: Vec<(&'a TenantId, &'a TenantState)>,
    /// Every admin with an event: the contact view and the verdict.
    pub admins: Vec<(&'a AdminKey, &'a AdminRow)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::admins::tests::log;
    use uuid::Uuid;

    #[test]
    fn the_bulk_fold_is_the_fold_of_the_whole_log() {
        let tenants = [(); 2].map(|_| TenantId::from_uuid(Uuid::now_v7()));
        // Two tenants' logs interleaved, positions renumbered: each tenant's settings events
        // must re-evaluate its own admins only.
        let mut interleaved: Vec<_> = log(tenants[0])
            .into_iter()
            .zip(log(tenants[1]))
            .flat_map(|(a, b)| [a, b])
            .collect();
        for (i, e) in interleaved.iter_mut().enumerate() {
            e.position = i as u64 + 1;
        }
        let mut whole = AdminFold::default();
        for e in &interleaved {
            whole.apply(e);
        }
        let mut admins: Vec<_> = whole.admins.iter().collect();
        admins.sort_unstable_by_key(|(key, _)| **key);
        let mut settings: Vec<_> = whole.tenants.iter().collect();
        settings.sort_unstable_by_key(|(t, _)| **t);

        let mut bulk = BulkFold::new();
        interleaved.iter().for_each(|e| bulk.apply(e));
        bulk.finish();
        // Each tenant folded apart and merged, as the sharded bulk replay does.
        let mut merged = BulkFold::new();
        for tenant in tenants {
            let mut shard = BulkFold::new();
            interleaved
                .iter()
                .filter(|e| e.stream.tenant() == tenant)
                .for_each(|e| shard.apply(e));
            shard.finish();
            merged.merge(shard);
        }
        let (m, b) = (merged.rows(), bulk.rows());
        assert_eq!((&m.admins, &m.tenants), (&b.admins, &b.tenants));
        assert_eq!(b.admins, admins);
        assert_eq!(b.tenants, settings);
    }
}
