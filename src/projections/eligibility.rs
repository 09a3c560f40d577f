//! Reset eligibility: the tenant's settings and each admin's methods, folded with the same
//! `evolve` functions as the aggregates, and the verdict of the tenant's policy over them.

use super::contact_view::AdminKey;
use super::verdicts::VerdictChanges;
use crate::domain::{
    AdminState, StreamId, TenantId, TenantState, Verdict, admin_decider, evaluate, tenant_decider,
};
use crate::events::RecordedEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// One admin's row of the eligibility projection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEligibility {
    pub state: AdminState,
    pub verdict: Verdict,
    /// The position of the event at which the verdict last changed.
    pub changed_position: u64,
}

/// The eligibility fold over a part of the log. Before folding, it must hold every tenant whose
/// events are folded, every admin whose events are folded and, for a tenant event, every admin
/// of that tenant (a policy or domain change re-evaluates them all).
#[derive(Clone, Debug, Default)]
pub struct EligibilityFold {
    pub tenants: HashMap<TenantId, TenantState>,
    pub admins: HashMap<AdminKey, AdminEligibility>,
}

impl EligibilityFold {
    /// Folds one event.
    pub fn apply(&mut self, event: &RecordedEvent) {
        let meta = event.meta();
        match event.stream {
            StreamId::Admin(t, a) => {
                let tenant = self.tenants.get(&t).cloned().unwrap_or_default();
                let entry = self
                    .admins
                    .entry((t, a))
                    .or_insert_with(|| AdminEligibility {
                        state: AdminState::default(),
                        verdict: verdict_for(&tenant, &AdminState::default()),
                        changed_position: 0,
                    });
                entry.state =
                    admin_decider::evolve(std::mem::take(&mut entry.state), &event.event, &meta);
                reevaluate(entry, &tenant, meta.position);
            }
            StreamId::Tenant(t) => {
                let tenant = self.tenants.remove(&t).unwrap_or_default();
                let tenant = tenant_decider::evolve(tenant, &event.event, &meta);
                for ((at, _), entry) in self.admins.iter_mut() {
                    if *at == t {
                        reevaluate(entry, &tenant, meta.position);
                    }
                }
                self.tenants.insert(t, tenant);
            }
            StreamId::Audit(_) => {}
        }
    }
}

impl EligibilityFold {
    /// What a batch folded with `needs` wrote, for the in-memory verdicts.
    pub fn changes(&self, needs: &Needs) -> VerdictChanges {
        VerdictChanges {
            settings_changed: needs.settings_changed.iter().copied().collect(),
            verdicts: self
                .admins
                .iter()
                .map(|(key, entry)| (*key, entry.verdict.clone()))
                .collect(),
        }
    }
}

/// The rows a batch of events needs loaded before it is folded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Every tenant with an event in the batch.
    pub tenants: BTreeSet<TenantId>,
    /// Every admin with an event in the batch.
    pub admins: BTreeSet<AdminKey>,
    /// Tenants with a settings event: all their admins are re-evaluated, and their settings
    /// row is written back.
    pub settings_changed: BTreeSet<TenantId>,
}

/// What [`EligibilityFold`] must hold before folding `events`.
pub fn needs(events: &[RecordedEvent]) -> Needs {
    let mut needs = Needs::default();
    for e in events {
        match e.stream {
            StreamId::Admin(t, a) => {
                needs.tenants.insert(t);
                needs.admins.insert((t, a));
            }
            StreamId::Tenant(t) => {
                needs.tenants.insert(t);
                needs.settings_changed.insert(t);
            }
            StreamId::Audit(_) => {}
        }
    }
    needs
}

/// The verdict of the tenant's policy for an admin's state.
pub fn verdict_for(tenant: &TenantState, admin: &AdminState) -> Verdict {
    evaluate(tenant.policy, &tenant.domains, &admin.methods)
}

fn reevaluate(entry: &mut AdminEligibility, tenant: &TenantState, position: u64) {
    let verdict = verdict_for(tenant, &entry.state);
    if verdict != entry.verdict {
        entry.verdict = verdict;
        entry.changed_position = position;
    }
}
