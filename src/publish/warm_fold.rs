//! The relay's eligibility fold, kept across its batches while it leads.
//!
//! **What it saves.** To publish the eligibility changes a batch makes, the relay folds the
//! batch over each touched admin's state and its tenant's settings as they were before it
//! (`messages::build`). Read from the log at every batch, that state is a read of every event of
//! every touched admin's stream (and of a whole tenant on a settings change); kept warm, it is
//! read once — the first time a batch touches the admin (or the tenant) — and every new admin of
//! a known tenant costs no read at all.
//!
//! **Why it is safe.** The fold only ever moves forward through the log, batch after batch, in
//! the relay's own order: what it holds of an admin is the fold of every event up to the last
//! batch, the same state the history would give. It lives only while the relay leads (a new
//! leader starts cold), and it is dropped whole when it holds [`WarmFold::bound`]'s capacity;
//! what it held is loaded again as batches touch it.

use super::messages;
use crate::domain::TenantId;
use crate::events::RecordedEvent;
use crate::fold::admins::{AdminFold, newcomers};
use crate::store::{PublisherLog, StoreError};
use std::collections::HashSet;

/// See the module documentation.
#[derive(Default)]
pub(super) struct WarmFold {
    pub(super) fold: AdminFold,
    /// Tenants whose every admin is in the fold.
    whole_tenants: HashSet<TenantId>,
    /// Tenants whose settings (their stream's history) are in the fold.
    settled_tenants: HashSet<TenantId>,
}

impl WarmFold {
    /// Drops the fold when it holds `capacity` admins: memory stays bounded.
    pub(super) fn bound(&mut self, capacity: usize) {
        if self.fold.admins.len() >= capacity {
            tracing::info!(
                admins = self.fold.admins.len(),
                "publisher: eligibility fold at capacity, dropped"
            );
            metrics::counter!("recovery_publisher_fold_drops_total").increment(1);
            *self = WarmFold::default();
        }
    }

    /// Loads the history (up to `position`) of every admin `batch` touches and,
    /// for a tenant settings event, of every admin of the tenant — each only once.
    ///
    /// An admin whose first event in the batch is its stream's first (version 1) has no
    /// history: nothing is read for it once its tenant's settings are in the fold. That is
    /// every new admin of a known tenant, which keeps a large backlog (or a steady stream of
    /// newcomers) from costing a read of the log per round.
    pub(super) async fn prime(
        &mut self,
        store: &impl PublisherLog,
        batch: &[RecordedEvent],
        position: u64,
    ) -> Result<(), StoreError> {
        let (admins, tenants) = messages::fold_scope(batch);
        let newcomers = newcomers(batch);
        let admins: Vec<_> = admins
            .into_iter()
            .filter(|(t, a)| {
                let held =
                    self.whole_tenants.contains(t) || self.fold.admins.contains_key(&(*t, *a));
                let no_history = newcomers.contains(&(*t, *a)) && self.settled_tenants.contains(t);
                !held && !no_history
            })
            .collect();
        let tenants: Vec<_> = tenants
            .into_iter()
            .filter(|t| !self.whole_tenants.contains(t))
            .collect();
        if admins.is_empty() && tenants.is_empty() {
            return Ok(());
        }
        let mut cold = AdminFold::default();
        for e in store.fold_history(&admins, &tenants, position).await? {
            cold.apply(&e);
        }
        // What the warm fold already holds is newer than or equal to the history: keep it.
        for (key, entry) in cold.admins {
            self.fold.admins.entry(key).or_insert(entry);
        }
        for (tenant, state) in cold.tenants {
            self.fold.tenants.entry(tenant).or_insert(state);
        }
        // The history read holds the stream of every tenant it was asked about.
        self.settled_tenants.extend(admins.iter().map(|(t, _)| *t));
        self.settled_tenants.extend(tenants.iter().copied());
        self.whole_tenants.extend(tenants);
        Ok(())
    }
}
