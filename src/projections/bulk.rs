//! The fold of a bulk replay: every requested projection folded from position 0 in memory, in
//! one pass over the log, then written out whole into the empty shadow tables
//! (`store::replay`). It holds every admin's state until the end, so it takes about as much
//! memory as the projection tables themselves.

use super::contact_view::{self, AdminKey};
use super::eligibility::{AdminEligibility, EligibilityFold};
use crate::domain::{AdminState, StreamId, TenantId, TenantState};
use crate::events::RecordedEvent;
use crate::store::projections::Projection;
use std::collections::HashMap;

/// The requested projections, folded from an empty start.
#[derive(Debug, Default)]
pub struct BulkFold {
    contact_view: bool,
    /// The contact views, folded on their own when eligibility is not rebuilt. When it is,
    /// its fold holds each admin's state already (the same `evolve` over the same events),
    /// and the contact views are read from there instead of folding every admin twice.
    contact_views: Option<HashMap<AdminKey, AdminState>>,
    /// One eligibility fold per tenant: a settings event re-evaluates every admin its fold
    /// holds, which over one fold of the whole log would make the rebuild quadratic.
    eligibility: Option<HashMap<TenantId, EligibilityFold>>,
}

impl BulkFold {
    /// An empty fold of `projections`.
    pub fn new(projections: &[Projection]) -> Self {
        let contact_view = projections.contains(&Projection::ContactView);
        let eligibility = projections.contains(&Projection::Eligibility);
        BulkFold {
            contact_view,
            contact_views: (contact_view && !eligibility).then(HashMap::new),
            eligibility: eligibility.then(HashMap::new),
        }
    }

    /// Folds the next event of the log.
    pub fn apply(&mut self, event: &RecordedEvent) {
        if let Some(views) = &mut self.contact_views {
            contact_view::apply(views, event);
        }
        if let Some(tenants) = &mut self.eligibility {
            match event.stream {
                StreamId::Admin(t, _) | StreamId::Tenant(t) => {
                    tenants
                        .entry(t)
                        .or_insert_with(EligibilityFold::verdicts_at_the_end)
                        .apply(event);
                }
                StreamId::Audit(_) => {}
            }
        }
    }

    /// Works out the eligibility verdicts, stale until then
    /// ([`EligibilityFold::verdicts_at_the_end`]): after the last event, before the rows are
    /// read. Evaluating, and masking the values above all, is the dearest step of the fold,
    /// and this runs it on the final states only.
    pub fn finish(&mut self) {
        if let Some(tenants) = &mut self.eligibility {
            tenants
                .values_mut()
                .for_each(EligibilityFold::finish_verdicts);
        }
    }

    /// Adds the fold of other tenants (a shard of the same log folded apart): tenants' folds
    /// are independent, so this only moves their entries.
    pub fn merge(&mut self, other: BulkFold) {
        if let (Some(views), Some(more)) = (&mut self.contact_views, other.contact_views) {
            views.extend(more);
        }
        if let (Some(tenants), Some(more)) = (&mut self.eligibility, other.eligibility) {
            tenants.extend(more);
        }
    }

    /// The rows of the contact view, in key order (none when it is not rebuilt).
    pub fn contact_views(&self) -> Vec<(&AdminKey, &AdminState)> {
        let mut rows: Vec<_> = match &self.contact_views {
            _ if !self.contact_view => Vec::new(),
            Some(views) => views.iter().collect(),
            None => self
                .eligibility_folds()
                .flat_map(|f| &f.admins)
                .map(|(key, e)| (key, &e.state))
                .collect(),
        };
        rows.sort_unstable_by_key(|(key, _)| **key);
        rows
    }

    /// Whether the contact views are the eligibility rows' own states (both projections
    /// rebuilt): then [`BulkFold::contact_views`] and the admins of [`BulkFold::eligibility`]
    /// are the same admins in the same order, each with the same state.
    pub fn views_are_eligibility_states(&self) -> bool {
        self.contact_view && self.eligibility.is_some()
    }

    /// The rows of the eligibility projection, in key order (none when it is not rebuilt);
    /// after [`BulkFold::finish`].
    pub fn eligibility(&self) -> EligibilityRows<'_> {
        let mut tenants: Vec<_> = self.eligibility_folds().flat_map(|f| &f.tenants).collect();
        tenants.sort_unstable_by_key(|(t, _)| **t);
        let mut admins: Vec<_> = self.eligibility_folds().flat_map(|f| &f.admins).collect();
        admins.sort_unstable_by_key(|(key, _)| **key);
        EligibilityRows { tenants, admins }
    }

    fn eligibility_folds(&self) -> impl Iterator<Item = &EligibilityFold> {
        self.eligibility.iter().flat_map(HashMap::values)
    }
}

/// The rows of the eligibility tables.
#[derive(Debug)]
pub struct EligibilityRows<'a> {
    /// The settings of every tenant with a settings event.
    pub tenants: Vec<(&'a TenantId, &'a TenantState)>,
    /// Every admin with an event.
    pub admins: Vec<(&'a AdminKey, &'a AdminEligibility)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::eligibility::tests::log;
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
        let mut whole = EligibilityFold::default();
        let mut views = HashMap::new();
        for e in &interleaved {
            whole.apply(e);
            contact_view::apply(&mut views, e);
        }
        let mut views: Vec<_> = views.iter().collect();
        views.sort_unstable_by_key(|(key, _)| **key);
        let mut admins: Vec<_> = whole.admins.iter().collect();
        admins.sort_unstable_by_key(|(key, _)| **key);
        let mut settings: Vec<_> = whole.tenants.iter().collect();
        settings.sort_unstable_by_key(|(t, _)| **t);

        for projections in [
            &Projection::ALL[..],
            &[Projection::ContactView],
            &[Projection::Eligibility],
        ] {
            let mut bulk = BulkFold::new(projections);
            interleaved.iter().for_each(|e| bulk.apply(e));
            bulk.finish();
            // Each tenant folded apart and merged, as the sharded bulk replay does.
            let mut merged = BulkFold::new(projections);
            for tenant in tenants {
                let mut shard = BulkFold::new(projections);
                interleaved
                    .iter()
                    .filter(|e| e.stream.tenant() == tenant)
                    .for_each(|e| shard.apply(e));
                shard.finish();
                merged.merge(shard);
            }
            assert_eq!(merged.contact_views(), bulk.contact_views());
            let (m, b) = (merged.eligibility(), bulk.eligibility());
            assert_eq!((m.admins, m.tenants), (b.admins, b.tenants));
            let eligibility = bulk.eligibility();
            if projections.contains(&Projection::ContactView) {
                assert_eq!(bulk.contact_views(), views);
            } else {
                assert!(bulk.contact_views().is_empty());
            }
            if projections.contains(&Projection::Eligibility) {
                assert_eq!(eligibility.admins, admins);
                assert_eq!(eligibility.tenants, settings);
            } else {
                assert!(eligibility.admins.is_empty() && eligibility.tenants.is_empty());
            }
            // Both rebuilt: the views are the eligibility rows' states, row for row.
            let views = bulk.contact_views();
            let shared = views.len() == eligibility.admins.len()
                && views
                    .iter()
                    .zip(&eligibility.admins)
                    .all(|((vk, state), (ak, e))| vk == ak && std::ptr::eq(*state, &e.state));
            assert_eq!(
                bulk.views_are_eligibility_states(),
                projections.len() == 2 && shared
            );
        }
    }
}
