//! What the publisher sends, as a pure function of the log: one message per event and one per
//! eligibility change, in log order, with deterministic subjects and message ids.
//!
//! Eligibility changes are found by folding the log with the same [`AdminFold`] as the
//! admin projection, starting from the history of the admins a batch touches. Because
//! the state before an event is always "every earlier event folded", the messages do not
//! depend on how the log is cut into batches, and a retried batch produces the very same
//! messages (same ids, so JetStream drops the duplicates).

use crate::domain::{
    AdminId, DomainEvent, MethodId, MethodKind, RemovedMethod, StreamId, TenantId, Verdict, mask,
};
use crate::events::{RecordedEvent, pb};
use crate::fold::admins::AdminFold;
use bytes::Bytes;
use prost::Message;
use std::collections::BTreeSet;

/// The header that carries the global position of the event behind a message.
pub const POSITION_HEADER: &str = "Recovery-Position";

/// One message for JetStream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMessage {
    pub subject: String,
    /// `Nats-Msg-Id`: the event id, or `{event_id}.eligibility.{admin_id}`.
    pub msg_id: String,
    /// The position of the event behind the message.
    pub position: u64,
    pub payload: Bytes,
}

/// `{prefix}.events.{tenant_id}.{admin_id}.{event_type}`; tenant events use `tenant` for the
/// admin id, audit-access events `audit`.
pub fn event_subject(prefix: &str, event: &RecordedEvent) -> String {
    let admin = match event.stream {
        StreamId::Admin(_, a) => a.to_string(),
        StreamId::Tenant(_) => "tenant".to_owned(),
        StreamId::Audit(_) => "audit".to_owned(),
    };
    format!(
        "{prefix}.events.{}.{admin}.{}",
        event.stream.tenant(),
        event.type_name()
    )
}

/// `{prefix}.eligibility.{tenant_id}.{admin_id}`.
pub fn eligibility_subject(prefix: &str, tenant: TenantId, admin: AdminId) -> String {
    format!("{prefix}.eligibility.{tenant}.{admin}")
}

/// The published envelope: the stored protobuf bytes when `reveal`, otherwise the same
/// envelope with each phone number and email masked by `masked(method, kind, value)`.
fn masked_payload(
    event: &RecordedEvent,
    reveal: bool,
    masked: impl FnMut(MethodId, MethodKind, &str) -> String,
) -> Vec<u8> {
    if reveal {
        return event.encode();
    }
    let mut out = event.clone();
    out.event = masked_event_with(&event.event, masked);
    out.encode()
}

/// The event with its values masked (`+45 •• •• •• 56`, `j•••@example.com`) by `masked`.
fn masked_event_with(
    event: &DomainEvent,
    mut masked: impl FnMut(MethodId, MethodKind, &str) -> String,
) -> DomainEvent {
    let mut removed = |r: &RemovedMethod| RemovedMethod {
        old_value: masked(r.method_id, r.kind, &r.old_value),
        ..r.clone()
    };
    match event {
        DomainEvent::MethodAdded {
            method_id,
            kind,
            value,
        } => DomainEvent::MethodAdded {
            method_id: *method_id,
            kind: *kind,
            value: masked(*method_id, *kind, value),
        },
        DomainEvent::MethodChanged {
            method_id,
            kind,
            old_value,
            new_value,
        } => DomainEvent::MethodChanged {
            method_id: *method_id,
            kind: *kind,
            old_value: masked(*method_id, *kind, old_value),
            new_value: masked(*method_id, *kind, new_value),
        },
        DomainEvent::MethodRemoved(r) => DomainEvent::MethodRemoved(removed(r)),
        DomainEvent::AdminOffboarded { removed: all } => DomainEvent::AdminOffboarded {
            removed: all.iter().map(&mut removed).collect(),
        },
        other => other.clone(),
    }
}

/// The masks `admin`'s verdict in `fold` shows, with the values they mask: what masking an
/// event's values can reuse instead of formatting the numbers again.
fn shown_masks(
    fold: &AdminFold,
    admin: Option<(TenantId, AdminId)>,
) -> Vec<(MethodId, &str, &str)> {
    let Some(entry) = admin.and_then(|k| fold.admins.get(&k)) else {
        return Vec::new();
    };
    entry
        .verdict
        .usable_methods
        .iter()
        .filter_map(|u| {
            let method = entry.state.method(u.id)?;
            Some((u.id, method.value.as_str(), u.masked_value.as_str()))
        })
        .collect()
}

/// The mask `shown` holds for that very value of method `id`.
fn shown_mask<'a, V: AsRef<str>>(
    shown: &'a [(MethodId, V, V)],
    id: MethodId,
    value: &str,
) -> Option<&'a str> {
    shown
        .iter()
        .find(|(m, v, _)| *m == id && v.as_ref() == value)
        .map(|(_, _, masked)| masked.as_ref())
}

fn kind_to_pb(kind: MethodKind) -> i32 {
    pb::MethodKind::from_str_name(&format!("METHOD_KIND_{}", kind.as_str().to_uppercase()))
        .unwrap_or(pb::MethodKind::Unspecified) as i32
}

/// A verdict as protobuf (values are masked in every verdict).
pub fn verdict_to_pb(verdict: &Verdict) -> pb::EligibilityVerdict {
    pb::EligibilityVerdict {
        eligible: verdict.eligible,
        policy: verdict.policy.name().to_owned(),
        missing: verdict
            .missing
            .iter()
            .map(|m| m.name().to_owned())
            .collect(),
        usable_methods: verdict
            .usable_methods
            .iter()
            .map(|m| pb::UsableMethod {
                id: m.id.to_string(),
                kind: kind_to_pb(m.kind),
                masked_value: m.masked_value.clone(),
            })
            .collect(),
    }
}

/// What the eligibility fold must be primed with before folding `batch`: the admins it
/// touches, and the tenants whose settings change in it (all their admins are re-evaluated).
pub fn fold_scope(batch: &[RecordedEvent]) -> (Vec<(TenantId, AdminId)>, Vec<TenantId>) {
    let mut admins = BTreeSet::new();
    let mut tenants = BTreeSet::new();
    for e in batch {
        match e.stream {
            StreamId::Admin(t, a) => {
                admins.insert((t, a));
            }
            StreamId::Tenant(t) => {
                tenants.insert(t);
            }
            StreamId::Audit(_) => {}
        }
    }
    (admins.into_iter().collect(), tenants.into_iter().collect())
}

/// Builds the messages of `batch`, folding it into `fold` (which must already hold the
/// history from [`fold_scope`]).
pub fn build(
    prefix: &str,
    reveal: bool,
    fold: &mut AdminFold,
    batch: &[RecordedEvent],
) -> Vec<OutMessage> {
    let mut out = Vec::with_capacity(batch.len());
    for event in batch {
        let admin = match event.stream {
            StreamId::Admin(t, a) => Some((t, a)),
            _ => None,
        };
        // The event's values are masked as the verdicts show them: an old value as the verdict
        // before the event shows it, a new one as the verdict after it (a phone number's mask
        // formats it, which costs more than the rest of the message).
        let (old_values, new_values) = match &event.event {
            DomainEvent::MethodAdded { .. } => (false, true),
            DomainEvent::MethodChanged { .. } => (true, true),
            DomainEvent::MethodRemoved(_) | DomainEvent::AdminOffboarded { .. } => (true, false),
            _ => (false, false),
        };
        let before: Vec<(MethodId, String, String)> = if !reveal && old_values {
            shown_masks(fold, admin)
                .into_iter()
                .map(|(id, value, masked)| (id, value.to_owned(), masked.to_owned()))
                .collect()
        } else {
            Vec::new()
        };
        fold.apply(event);
        let after = if !reveal && new_values {
            shown_masks(fold, admin)
        } else {
            Vec::new()
        };
        let payload = masked_payload(event, reveal, |id, kind, value| {
            shown_mask(&before, id, value)
                .or_else(|| shown_mask(&after, id, value))
                .map_or_else(|| mask(kind, value), str::to_owned)
        });
        out.push(OutMessage {
            subject: event_subject(prefix, event),
            msg_id: event.event_id.to_string(),
            position: event.position,
            payload: Bytes::from(payload),
        });
        // Deterministic order (the map's is not): a retry must send the same sequence.
        let changed = fold.changed_by(event);
        for (t, a) in changed {
            let Some(entry) = fold.admins.get(&(t, a)) else {
                continue;
            };
            let message = pb::EligibilityChanged {
                tenant_id: t.to_string(),
                admin_id: a.to_string(),
                position: event.position,
                event_id: event.event_id.to_string(),
                occurred_at_ms: event.occurred_at.timestamp_millis(),
                verdict: Some(verdict_to_pb(&entry.verdict)),
            };
            out.push(OutMessage {
                subject: eligibility_subject(prefix, t, a),
                msg_id: format!("{}.eligibility.{a}", event.event_id),
                position: event.position,
                payload: Bytes::from(message.encode_to_vec()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MethodId, ResetPolicy};
    use crate::events::{Actor, PendingEvent};
    use chrono::Utc;
    use uuid::Uuid;

    fn recorded(
        stream: StreamId,
        version: u64,
        position: u64,
        event: DomainEvent,
    ) -> RecordedEvent {
        RecordedEvent::place(
            PendingEvent {
                event_id: Uuid::now_v7(),
                occurred_at: Utc::now(),
                actor: Actor::default(),
                correlation_id: Uuid::now_v7(),
                idempotency_key: None,
                event,
            },
            stream,
            version,
            position,
        )
    }

    #[test]
    fn eligibility_changes_do_not_depend_on_batch_boundaries() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let a = AdminId::from_uuid(Uuid::now_v7());
        let admin = StreamId::Admin(t, a);
        let log = vec![
            recorded(
                admin,
                1,
                1,
                DomainEvent::MethodAdded {
                    method_id: MethodId::from_uuid(Uuid::now_v7()),
                    kind: MethodKind::MobilePhone,
                    value: "+4520123456".into(),
                },
            ),
            recorded(
                admin,
                2,
                2,
                DomainEvent::MethodAdded {
                    method_id: MethodId::from_uuid(Uuid::now_v7()),
                    kind: MethodKind::Email,
                    value: "jane@example.com".into(),
                },
            ),
            recorded(
                StreamId::Tenant(t),
                1,
                3,
                DomainEvent::ResetPolicySet {
                    policy: ResetPolicy::AnyTwoMethods,
                },
            ),
        ];
        let whole = build("p", false, &mut AdminFold::default(), &log);
        // Second batch alone, primed with the history before it.
        let mut primed = AdminFold::default();
        log[..1].iter().for_each(|e| primed.apply(e));
        let mut split = build("p", false, &mut AdminFold::default(), &log[..1]);
        split.extend(build("p", false, &mut primed, &log[1..]));
        assert_eq!(whole, split);
        let eligibility: Vec<_> = whole
            .iter()
            .filter(|m| m.subject.starts_with("p.eligibility."))
            .collect();
        assert_eq!(
            eligibility.len(),
            3,
            "two adds and a policy change each change the verdict"
        );
        let last = pb::EligibilityChanged::decode(eligibility[2].payload.clone()).unwrap();
        assert_eq!(last.verdict.unwrap().policy, "any_two_methods");
        let first = RecordedEvent::decode(&whole[0].payload).unwrap();
        assert!(
            matches!(first.event, DomainEvent::MethodAdded { ref value, .. } if value == "+45 •• •• •• 56")
        );
    }

    /// The published envelope with each value masked afresh.
    fn event_payload(event: &RecordedEvent, reveal: bool) -> Vec<u8> {
        masked_payload(event, reveal, |_, kind, value| mask(kind, value))
    }

    #[test]
    fn masks_reused_from_the_fold_are_the_masks_of_the_values() {
        use crate::domain::{RemovedMethod, TenantDomain};
        let t = TenantId::from_uuid(Uuid::now_v7());
        let a = AdminId::from_uuid(Uuid::now_v7());
        let admin = StreamId::Admin(t, a);
        let [mobile, office, email, inside] = [(); 4].map(|()| MethodId::from_uuid(Uuid::now_v7()));
        let events = [
            (
                StreamId::Tenant(t),
                DomainEvent::TenantDomainsSet {
                    domains: vec![TenantDomain::parse("contoso.com").unwrap()],
                },
            ),
            (
                admin,
                DomainEvent::MethodAdded {
                    method_id: mobile,
                    kind: MethodKind::MobilePhone,
                    value: "+4520123456".into(),
                },
            ),
            (
                admin,
                DomainEvent::MethodAdded {
                    method_id: office,
                    kind: MethodKind::OfficePhone,
                    value: "+14255550100x12".into(),
                },
            ),
            (
                admin,
                DomainEvent::MethodAdded {
                    method_id: email,
                    kind: MethodKind::Email,
                    value: "jane@example.com".into(),
                },
            ),
            // Not usable (inside the tenant's domain): no verdict shows its mask.
            (
                admin,
                DomainEvent::MethodAdded {
                    method_id: inside,
                    kind: MethodKind::Email,
                    value: "jane@contoso.com".into(),
                },
            ),
            (
                admin,
                DomainEvent::MethodChanged {
                    method_id: mobile,
                    kind: MethodKind::MobilePhone,
                    old_value: "+4520123456".into(),
                    new_value: "+4520123499".into(),
                },
            ),
            // An old value the state does not hold (not written by this service's decider):
            // masked as it is, not as the state's value.
            (
                admin,
                DomainEvent::MethodChanged {
                    method_id: office,
                    kind: MethodKind::OfficePhone,
                    old_value: "+4531000000".into(),
                    new_value: "+4533000000".into(),
                },
            ),
            (
                admin,
                DomainEvent::MethodRemoved(RemovedMethod {
                    method_id: mobile,
                    kind: MethodKind::MobilePhone,
                    old_value: "+4520123499".into(),
                }),
            ),
            (
                admin,
                DomainEvent::AdminOffboarded {
                    removed: vec![
                        RemovedMethod {
                            method_id: office,
                            kind: MethodKind::OfficePhone,
                            old_value: "+4533000000".into(),
                        },
                        RemovedMethod {
                            method_id: email,
                            kind: MethodKind::Email,
                            old_value: "jane@example.com".into(),
                        },
                        RemovedMethod {
                            method_id: inside,
                            kind: MethodKind::Email,
                            old_value: "jane@contoso.com".into(),
                        },
                    ],
                },
            ),
        ];
        let mut versions = std::collections::HashMap::new();
        let log: Vec<RecordedEvent> = events
            .into_iter()
            .enumerate()
            .map(|(i, (stream, event))| {
                let v = versions.entry(stream).or_insert(0);
                *v += 1;
                recorded(stream, *v, i as u64 + 1, event)
            })
            .collect();
        let messages = build("p", false, &mut AdminFold::default(), &log);
        let published: Vec<&OutMessage> = messages
            .iter()
            .filter(|m| m.subject.starts_with("p.events."))
            .collect();
        assert_eq!(published.len(), log.len());
        for (message, event) in published.iter().zip(&log) {
            assert_eq!(
                message.payload,
                event_payload(event, false),
                "{:?}",
                event.event
            );
        }
    }
}
