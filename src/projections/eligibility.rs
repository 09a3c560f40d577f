//! Reset eligibility: the tenant's settings and each admin's methods, folded with the same
//! `evolve` functions as the aggregates, and the verdict of the tenant's policy over them.

use super::contact_view::AdminKey;
use super::verdicts::VerdictChanges;
use crate::domain::{
    AdminState, DomainEvent, MethodId, StreamId, TenantId, TenantState, UsableMethod, Verdict,
    admin_decider, evaluate, evaluate_masking, mask, masks_alike, tenant_decider,
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
    /// Verdicts hold the usable methods' values, not their masks, until
    /// [`EligibilityFold::mask_verdicts`]: see [`EligibilityFold::masking_at_the_end`].
    masks_deferred: bool,
}

impl EligibilityFold {
    /// A fold that masks the verdicts once, at the end, instead of every new value as it is
    /// folded (a bulk replay: most values are replaced before the end of the log, and masking
    /// a number means parsing and formatting it). Whether a verdict changed is still decided
    /// on the masks ([`masks_alike`], which formats only numbers that end alike), so the
    /// changed positions are those of the fold that masks as it goes. The verdicts hold raw
    /// values until [`EligibilityFold::mask_verdicts`]: nothing may read them before.
    pub fn masking_at_the_end() -> Self {
        EligibilityFold {
            masks_deferred: true,
            ..EligibilityFold::default()
        }
    }

    /// Masks the verdicts of a fold made [`EligibilityFold::masking_at_the_end`] (nothing
    /// otherwise); it masks as it goes from then on.
    pub fn mask_verdicts(&mut self) {
        if !std::mem::take(&mut self.masks_deferred) {
            return;
        }
        for entry in self.admins.values_mut() {
            for usable in &mut entry.verdict.usable_methods {
                usable.masked_value = mask(usable.kind, &usable.masked_value);
            }
        }
    }

    /// Folds one event.
    pub fn apply(&mut self, event: &RecordedEvent) {
        let meta = event.meta();
        match event.stream {
            StreamId::Admin(t, a) => {
                let no_settings;
                let tenant = match self.tenants.get(&t) {
                    Some(tenant) => tenant,
                    None => {
                        no_settings = TenantState::default();
                        &no_settings
                    }
                };
                let entry = self
                    .admins
                    .entry((t, a))
                    .or_insert_with(|| AdminEligibility {
                        state: AdminState::default(),
                        verdict: verdict_for(tenant, &AdminState::default()),
                        changed_position: 0,
                    });
                entry.state =
                    admin_decider::evolve(std::mem::take(&mut entry.state), &event.event, &meta);
                reevaluate(
                    entry,
                    tenant,
                    meta.position,
                    revalued(&event.event),
                    self.masks_deferred,
                );
            }
            StreamId::Tenant(t) => {
                let tenant = self.tenants.remove(&t).unwrap_or_default();
                let tenant = tenant_decider::evolve(tenant, &event.event, &meta);
                for ((at, _), entry) in self.admins.iter_mut() {
                    if *at == t {
                        reevaluate(entry, &tenant, meta.position, None, self.masks_deferred);
                    }
                }
                self.tenants.insert(t, tenant);
            }
            StreamId::Audit(_) => {}
        }
    }

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

/// The admins whose first event in `events` is their stream's first (version 1): they have no
/// history before these events, so no row or history needs reading for them.
pub fn newcomers(events: &[RecordedEvent]) -> BTreeSet<AdminKey> {
    events
        .iter()
        .filter_map(|e| match e.stream {
            StreamId::Admin(t, a) if e.version == 1 => Some((t, a)),
            _ => None,
        })
        .collect()
}

/// The verdict of the tenant's policy for an admin's state.
pub fn verdict_for(tenant: &TenantState, admin: &AdminState) -> Verdict {
    evaluate(tenant.policy, &tenant.domains, &admin.methods)
}

/// The method whose value `event` sets, if any: every other method keeps its value.
fn revalued(event: &DomainEvent) -> Option<MethodId> {
    match event {
        DomainEvent::MethodAdded { method_id, .. }
        | DomainEvent::MethodChanged { method_id, .. } => Some(*method_id),
        DomainEvent::MethodRemoved(_)
        | DomainEvent::AdminOffboarded { .. }
        | DomainEvent::TenantDomainsSet { .. }
        | DomainEvent::ResetPolicySet { .. }
        | DomainEvent::PiiRevealed { .. } => None,
    }
}

/// Re-evaluates an admin after an event that set the value of `revalued` (if any). With
/// `deferred` masks, the verdict keeps the new values themselves.
fn reevaluate(
    entry: &mut AdminEligibility,
    tenant: &TenantState,
    position: u64,
    revalued: Option<MethodId>,
    deferred: bool,
) {
    let mut previous = std::mem::take(&mut entry.verdict.usable_methods);
    let verdict = evaluate_masking(tenant.policy, &tenant.domains, &entry.state.methods, |m| {
        // The verdict always matches the state folded so far, and a method's kind never
        // changes: a method usable before whose value stayed keeps its mask, which moves over
        // (`shown_alike` knows it is the same).
        match previous
            .iter_mut()
            .find(|u| u.id == m.id && Some(m.id) != revalued)
        {
            Some(u) => std::mem::take(&mut u.masked_value),
            None if deferred => m.value.clone(),
            None => mask(m.kind, &m.value),
        }
    });
    if !shown_alike(&verdict, &entry.verdict, &previous, revalued, deferred) {
        entry.changed_position = position;
    }
    entry.verdict = verdict;
}

/// Whether `verdict` shows what the previous one (`before`, whose usable methods are
/// `previous`) showed. The masks of the methods other than `revalued` moved over from
/// `previous`; the one of `revalued` is compared, as a value that would mask alike when
/// `deferred`.
fn shown_alike(
    verdict: &Verdict,
    before: &Verdict,
    previous: &[UsableMethod],
    revalued: Option<MethodId>,
    deferred: bool,
) -> bool {
    verdict.eligible == before.eligible
        && verdict.policy == before.policy
        && verdict.missing == before.missing
        && verdict.usable_methods.len() == previous.len()
        && verdict.usable_methods.iter().zip(previous).all(|(x, y)| {
            x.id == y.id
                && x.kind == y.kind
                && (Some(x.id) != revalued
                    || if deferred {
                        masks_alike(x.kind, &x.masked_value, &y.masked_value)
                    } else {
                        x.masked_value == y.masked_value
                    })
        })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::{AdminId, MethodKind, RemovedMethod, ResetPolicy, TenantDomain};
    use crate::events::{Actor, PendingEvent};
    use uuid::Uuid;

    /// A log of one tenant and two admins: numbers added, changed (to values with the same
    /// mask and with another), domains and policy changed, a method removed, an offboarding.
    pub(in crate::projections) fn log(t: TenantId) -> Vec<RecordedEvent> {
        let admins = [
            StreamId::Admin(t, AdminId::from_uuid(Uuid::now_v7())),
            StreamId::Admin(t, AdminId::from_uuid(Uuid::now_v7())),
        ];
        let [mobile, email, office] = [(); 3].map(|_| MethodId::from_uuid(Uuid::now_v7()));
        let changed = |method_id, kind, new_value: &str| DomainEvent::MethodChanged {
            method_id,
            kind,
            old_value: String::new(),
            new_value: new_value.into(),
        };
        let added = |method_id, kind, value: &str| DomainEvent::MethodAdded {
            method_id,
            kind,
            value: value.into(),
        };
        let events = [
            (0, added(mobile, MethodKind::MobilePhone, "+4520123456")),
            (0, added(email, MethodKind::Email, "jane@contoso.com")),
            (1, added(office, MethodKind::OfficePhone, "+14255550100x12")),
            // The same mask, then another one.
            (0, changed(mobile, MethodKind::MobilePhone, "+4520999956")),
            (0, changed(mobile, MethodKind::MobilePhone, "+4520999901")),
            (
                2,
                DomainEvent::TenantDomainsSet {
                    domains: vec![TenantDomain::parse("contoso.com").unwrap()],
                },
            ),
            (0, changed(email, MethodKind::Email, "jane@example.com")),
            (
                2,
                DomainEvent::ResetPolicySet {
                    policy: ResetPolicy::AnyTwoMethods,
                },
            ),
            (1, changed(office, MethodKind::OfficePhone, "+14255550199")),
            (
                0,
                DomainEvent::MethodRemoved(RemovedMethod {
                    method_id: email,
                    kind: MethodKind::Email,
                    old_value: String::new(),
                }),
            ),
            (0, DomainEvent::AdminOffboarded { removed: vec![] }),
        ];
        let mut versions = [0; 3];
        events
            .into_iter()
            .enumerate()
            .map(|(i, (s, event))| {
                versions[s] += 1;
                let stream = admins.get(s).copied().unwrap_or(StreamId::Tenant(t));
                let pending = PendingEvent {
                    event_id: Uuid::now_v7(),
                    occurred_at: chrono::Utc::now(),
                    actor: Actor::default(),
                    correlation_id: Uuid::now_v7(),
                    idempotency_key: None,
                    event,
                };
                RecordedEvent::place(pending, stream, versions[s], i as u64 + 1)
            })
            .collect()
    }

    #[test]
    fn every_verdict_is_the_one_of_the_state_folded_so_far() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let mut fold = EligibilityFold::default();
        let mut changes = 0;
        for event in log(t) {
            fold.apply(&event);
            let tenant = fold.tenants.get(&t).cloned().unwrap_or_default();
            for entry in fold.admins.values() {
                // The masks carried over from the previous verdict are the ones of the values.
                assert_eq!(
                    entry.verdict,
                    verdict_for(&tenant, &entry.state),
                    "{event:?}"
                );
                changes += usize::from(entry.changed_position == event.position);
            }
        }
        // Every event changes a verdict but the change to a number with the same mask; the
        // policy change changes both admins'.
        assert_eq!(changes, 11);
    }

    #[test]
    fn masking_at_the_end_gives_the_rows_of_masking_as_it_goes() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let events = log(t);
        // Every prefix of the log: the rows, the masks and the positions where the verdicts
        // last changed are the same.
        for end in 1..=events.len() {
            let mut live = EligibilityFold::default();
            let mut deferred = EligibilityFold::masking_at_the_end();
            for event in &events[..end] {
                live.apply(event);
                deferred.apply(event);
            }
            deferred.mask_verdicts();
            assert_eq!(deferred.admins, live.admins, "after {end} events");
            assert_eq!(deferred.tenants, live.tenants);
            // Masked once: masking again changes nothing.
            deferred.mask_verdicts();
            assert_eq!(deferred.admins, live.admins);
        }
        // The raw values are what the deferred fold holds before: never a mask.
        let mut deferred = EligibilityFold::masking_at_the_end();
        events.iter().take(2).for_each(|e| deferred.apply(e));
        let values: Vec<&str> = deferred
            .admins
            .values()
            .flat_map(|e| &e.verdict.usable_methods)
            .map(|u| u.masked_value.as_str())
            .collect();
        assert!(values.contains(&"+4520123456"), "{values:?}");
    }
}
