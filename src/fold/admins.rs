//! The admin projection: each admin's security info (the contact view) and the reset-
//! eligibility verdict of the tenant's policy over it, folded together with the same `evolve`
//! functions as the aggregates, beside each tenant's settings. The view and the verdict are
//! two readings of one folded state, so they are one projection with one checkpoint: a view and
//! a verdict read at a position always agree.

use crate::domain::{
    AdminId, AdminState, DomainEvent, MethodId, MethodKind, ResetPolicy, StreamId, TenantId,
    TenantState, Verdict, admin_decider, evaluate, evaluate_masking, mask, masks_alike,
    method_counts, tenant_decider,
};
use crate::events::RecordedEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// What one batch of the admin projection wrote: the tenants whose settings changed (every admin of theirs
/// was re-evaluated) and the verdict of every admin it folded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerdictChanges {
    pub settings_changed: Vec<TenantId>,
    pub verdicts: Vec<((TenantId, AdminId), Verdict)>,
}

/// An admin, as the projection keys it.
pub type AdminKey = (TenantId, AdminId);

/// One admin's row of the admin projection: the contact view and the verdict over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRow {
    /// The contact view: the admin's methods folded from their stream.
    pub state: AdminState,
    pub verdict: Verdict,
    /// The position of the event at which the verdict last changed.
    pub changed_position: u64,
}

/// The admin projection's fold over a part of the log. Before folding, it must hold every tenant whose
/// events are folded, every admin whose events are folded and, for a tenant event, every admin
/// of that tenant (a policy or domain change re-evaluates them all).
#[derive(Clone, Debug, Default)]
pub struct AdminFold {
    pub tenants: HashMap<TenantId, TenantState>,
    pub admins: HashMap<AdminKey, AdminRow>,
    /// The verdicts are worked out at the end: see [`AdminFold::verdicts_at_the_end`].
    verdicts_deferred: bool,
}

impl AdminFold {
    /// A fold that works out the verdicts once, at the end, instead of after every event (a
    /// bulk replay: most verdicts change many times before the end of the log, and a verdict
    /// masks its values, which for a number means parsing and formatting it). Whether a
    /// verdict changed is still decided at every event, on what it shows ([`Shown`], and
    /// [`masks_alike`] for a value set), so the changed positions are those of the fold that
    /// evaluates as it goes. The verdicts are stale until
    /// [`AdminFold::finish_verdicts`]: nothing may read them before.
    pub fn verdicts_at_the_end() -> Self {
        AdminFold {
            verdicts_deferred: true,
            ..AdminFold::default()
        }
    }

    /// Works out the verdicts of a fold made [`AdminFold::verdicts_at_the_end`]
    /// (nothing otherwise); it evaluates as it goes from then on.
    pub fn finish_verdicts(&mut self) {
        if !std::mem::take(&mut self.verdicts_deferred) {
            return;
        }
        let no_settings = TenantState::default();
        for ((t, _), entry) in self.admins.iter_mut() {
            let tenant = self.tenants.get(t).unwrap_or(&no_settings);
            entry.verdict = verdict_for(tenant, &entry.state);
        }
    }

    /// The admins whose verdict `event`, just folded, changed (the fold stamps their
    /// `changed_position` with its position), in a deterministic order: its own admin, or for
    /// a tenant event every admin of the tenant it re-evaluated.
    pub fn changed_by(&self, event: &RecordedEvent) -> Vec<AdminKey> {
        let mut changed: Vec<AdminKey> = match event.stream {
            StreamId::Admin(t, a) => vec![(t, a)],
            StreamId::Tenant(t) => self
                .admins
                .keys()
                .filter(|(at, _)| *at == t)
                .copied()
                .collect(),
            StreamId::Audit(_) => Vec::new(),
        };
        changed.retain(|k| {
            self.admins
                .get(k)
                .is_some_and(|e| e.changed_position == event.position)
        });
        changed.sort();
        changed
    }

    /// Folds one event.
    pub fn apply(&mut self, event: &RecordedEvent) {
        let meta = event.meta();
        let deferred = self.verdicts_deferred;
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
                let entry = self.admins.entry((t, a)).or_insert_with(|| AdminRow {
                    state: AdminState::default(),
                    verdict: verdict_for(tenant, &AdminState::default()),
                    changed_position: 0,
                });
                let set = value_set(&event.event);
                // The fold that works the verdicts out at the end compares what the verdict
                // showed before the event, and whether a usable method whose value is set keeps
                // showing the same (the two values mask alike).
                let before = deferred.then(|| {
                    let shown = Shown::of(tenant, &entry.state);
                    let masks_stay = match set {
                        Some((id, value)) if shown.shows(id) => entry
                            .state
                            .methods
                            .iter()
                            .find(|m| m.id == id)
                            .is_none_or(|m| masks_alike(m.kind, &m.value, value)),
                        _ => true,
                    };
                    (shown, masks_stay)
                });
                entry.state =
                    admin_decider::evolve(std::mem::take(&mut entry.state), &event.event, &meta);
                match before {
                    Some((shown, masks_stay)) => {
                        if !masks_stay || Shown::of(tenant, &entry.state) != shown {
                            entry.changed_position = meta.position;
                        }
                    }
                    None => reevaluate(entry, tenant, meta.position, set.map(|(id, _)| id)),
                }
            }
            StreamId::Tenant(t) => {
                let before = self.tenants.remove(&t).unwrap_or_default();
                let tenant = tenant_decider::evolve(before.clone(), &event.event, &meta);
                for ((at, _), entry) in self.admins.iter_mut() {
                    if *at != t {
                        continue;
                    }
                    if deferred {
                        if Shown::of(&tenant, &entry.state) != Shown::of(&before, &entry.state) {
                            entry.changed_position = meta.position;
                        }
                    } else {
                        reevaluate(entry, &tenant, meta.position, None);
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

/// What [`AdminFold`] must hold before folding `events`.
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

/// The method whose value `event` sets, and the value, if any: every other method keeps its
/// value.
fn value_set(event: &DomainEvent) -> Option<(MethodId, &str)> {
    match event {
        DomainEvent::MethodAdded {
            method_id, value, ..
        } => Some((*method_id, value)),
        DomainEvent::MethodChanged {
            method_id,
            new_value,
            ..
        } => Some((*method_id, new_value)),
        DomainEvent::MethodRemoved(_)
        | DomainEvent::AdminOffboarded { .. }
        | DomainEvent::AdminErased { .. }
        | DomainEvent::TenantDomainsSet { .. }
        | DomainEvent::ResetPolicySet { .. }
        | DomainEvent::NotificationsSet { .. }
        | DomainEvent::PiiRevealed { .. } => None,
    }
}

/// What a verdict shows but the masks: the policy and the usable methods, in kind order (what
/// is missing and whether the admin is eligible follow from them). Built on the stack: the
/// fold that works out the verdicts at the end compares these at every event instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shown {
    policy: ResetPolicy,
    /// An admin has at most one method per kind (`admin_decider::evolve`), kept in kind order.
    usable: [Option<(MethodId, MethodKind)>; MethodKind::ALL.len()],
}

impl Shown {
    fn of(tenant: &TenantState, admin: &AdminState) -> Shown {
        let mut usable = [None; MethodKind::ALL.len()];
        let counted = admin
            .methods
            .iter()
            .filter(|m| method_counts(m, &tenant.domains));
        for (slot, m) in usable.iter_mut().zip(counted) {
            *slot = Some((m.id, m.kind));
        }
        Shown {
            policy: tenant.policy,
            usable,
        }
    }

    fn shows(&self, method: MethodId) -> bool {
        self.usable.iter().flatten().any(|(id, _)| *id == method)
    }
}

/// Re-evaluates an admin after an event that set the value of `revalued` (if any); records
/// the position when the verdict changes.
fn reevaluate(
    entry: &mut AdminRow,
    tenant: &TenantState,
    position: u64,
    revalued: Option<MethodId>,
) {
    let mut previous = std::mem::take(&mut entry.verdict.usable_methods);
    let verdict = evaluate_masking(tenant.policy, &tenant.domains, &entry.state.methods, |m| {
        // The verdict always matches the state folded so far, and a method's kind never
        // changes: a method usable before whose value stayed keeps its mask, which moves over.
        match previous
            .iter_mut()
            .find(|u| u.id == m.id && Some(m.id) != revalued)
        {
            Some(u) => std::mem::take(&mut u.masked_value),
            None => mask(m.kind, &m.value),
        }
    });
    // Whether the admin is eligible and what is missing follow from the policy and the usable
    // methods' kinds.
    let same = verdict.policy == entry.verdict.policy
        && verdict.usable_methods.len() == previous.len()
        && verdict.usable_methods.iter().zip(&previous).all(|(x, y)| {
            // The masks of the methods other than `revalued` moved over: the same.
            x.id == y.id
                && x.kind == y.kind
                && (Some(x.id) != revalued || x.masked_value == y.masked_value)
        });
    if !same {
        entry.changed_position = position;
    }
    entry.verdict = verdict;
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::{AdminId, RemovedMethod, TenantDomain};
    use crate::events::{Actor, PendingEvent};
    use uuid::Uuid;

    /// A log of one tenant and two admins: numbers added, changed (to values with the same
    /// mask and with another), domains and policy changed, a method removed, an offboarding.
    pub(in crate::fold) fn log(t: TenantId) -> Vec<RecordedEvent> {
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
                recorded(event, stream, versions[s], i as u64 + 1)
            })
            .collect()
    }

    /// `event` placed at `version` of `stream` and `position` of the log.
    fn recorded(
        event: DomainEvent,
        stream: StreamId,
        version: u64,
        position: u64,
    ) -> RecordedEvent {
        let pending = PendingEvent {
            event_id: Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            actor: Actor::default(),
            correlation_id: Uuid::now_v7(),
            idempotency_key: None,
            event,
        };
        RecordedEvent::place(pending, stream, version, position)
    }

    #[test]
    fn every_verdict_is_the_one_of_the_state_folded_so_far() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let mut fold = AdminFold::default();
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
    fn verdicts_at_the_end_give_the_rows_of_evaluating_as_it_goes() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let events = log(t);
        // Every prefix of the log: the rows, the masks and the positions where the verdicts
        // last changed are the same.
        for end in 1..=events.len() {
            assert_folds_alike(&events[..end]);
        }
    }

    /// Folds `events` evaluating as it goes and at the end: the same rows.
    fn assert_folds_alike(events: &[RecordedEvent]) {
        let mut live = AdminFold::default();
        let mut deferred = AdminFold::verdicts_at_the_end();
        for event in events {
            live.apply(event);
            deferred.apply(event);
        }
        deferred.finish_verdicts();
        assert_eq!(
            deferred.admins,
            live.admins,
            "after {} events",
            events.len()
        );
        assert_eq!(deferred.tenants, live.tenants);
        // Worked out once: finishing again changes nothing.
        deferred.finish_verdicts();
        assert_eq!(deferred.admins, live.admins);
    }

    #[test]
    fn verdicts_at_the_end_match_evaluating_as_it_goes_over_random_logs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut below = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        // Values of a kind whose masks are alike (the same ending) and not.
        let values = |kind: MethodKind| match kind {
            MethodKind::Email => &[
                "jane@contoso.com",
                "jane@example.com",
                "john@example.com",
                "jx@contoso.com",
            ][..],
            MethodKind::OfficePhone => &["+14255550100x12", "+14255550199", "+4520123456"],
            _ => &["+4520123456", "+4520999956", "+4520999901", "+14255550100"],
        };
        let domains = ["contoso.com", "example.com"].map(|d| TenantDomain::parse(d).unwrap());
        for _ in 0..40 {
            let t = TenantId::from_uuid(Uuid::now_v7());
            let admins = [(); 3].map(|_| StreamId::Admin(t, AdminId::from_uuid(Uuid::now_v7())));
            // Two ids per kind and admin: a method is changed, removed or replaced.
            let ids: Vec<[MethodId; 2]> = (0..admins.len() * MethodKind::ALL.len())
                .map(|_| [(); 2].map(|_| MethodId::from_uuid(Uuid::now_v7())))
                .collect();
            let mut versions = [0; 4];
            let mut events = Vec::new();
            for position in 1..=60 {
                let a = below(admins.len());
                let k = below(MethodKind::ALL.len());
                let kind = MethodKind::ALL[k];
                let id = ids[a * MethodKind::ALL.len() + k][below(2)];
                let value = values(kind)[below(values(kind).len())].to_owned();
                let (stream, event) = match below(12) {
                    0..=3 => (
                        a,
                        DomainEvent::MethodAdded {
                            method_id: id,
                            kind,
                            value,
                        },
                    ),
                    4..=7 => (
                        a,
                        DomainEvent::MethodChanged {
                            method_id: id,
                            kind,
                            old_value: String::new(),
                            new_value: value,
                        },
                    ),
                    8 => (
                        a,
                        DomainEvent::MethodRemoved(RemovedMethod {
                            method_id: id,
                            kind,
                            old_value: String::new(),
                        }),
                    ),
                    9 if below(3) == 0 => (a, DomainEvent::AdminOffboarded { removed: vec![] }),
                    9 | 10 => (
                        3,
                        DomainEvent::TenantDomainsSet {
                            domains: domains.iter().filter(|_| below(2) == 0).cloned().collect(),
                        },
                    ),
                    _ => (
                        3,
                        DomainEvent::ResetPolicySet {
                            policy: [ResetPolicy::EmailAndMobilePhone, ResetPolicy::AnyTwoMethods]
                                [below(2)],
                        },
                    ),
                };
                versions[stream] += 1;
                let version = versions[stream];
                let stream = admins.get(stream).copied().unwrap_or(StreamId::Tenant(t));
                events.push(recorded(event, stream, version, position));
            }
            for end in 1..=events.len() {
                assert_folds_alike(&events[..end]);
            }
        }
    }
}
