//! Placing appends in the log: the one pure function both backends decide an append with.
//!
//! Given the log's head and the tips of the streams involved, read under the append lock (the
//! `log_head` row on PostgreSQL, SQLite's write lock), [`place`] checks each append's expected
//! version and guard, gives its events their stream versions and dense global positions, and
//! links each into its stream's hash chain. It reads nothing and writes nothing: the backend
//! reads the head and the tips before, and writes what it placed after.

use super::{GENESIS_HASH, StoreError, chain_hash};
use crate::domain::StreamId;
use crate::events::{PendingEvent, RecordedEvent};
use crate::keys::DataKey;
use std::collections::HashMap;

/// The newest event of a stream: its version and hash (0 and the genesis hash when it has
/// none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tip {
    pub version: u64,
    pub hash: Vec<u8>,
}

impl Tip {
    /// The tip of a stream without events.
    pub(crate) fn genesis() -> Self {
        Tip {
            version: 0,
            hash: GENESIS_HASH.to_vec(),
        }
    }
}

/// One append to place.
pub(crate) struct Request<'a> {
    pub stream: StreamId,
    /// `None`: at whatever version the stream is (the audit stream).
    pub expected: Option<u64>,
    /// Another stream the command was decided on (the tenant's settings) and the version it
    /// was read at.
    pub guard: Option<(StreamId, u64)>,
    pub events: &'a [PendingEvent],
    /// The data key of the stream's admin, which seals the events' contact values (`None`
    /// for a tenant or audit stream, whose events carry none).
    pub key: Option<&'a DataKey>,
}

/// An event placed in the log: as recorded, its stored payload, and its link in the chain.
pub(crate) struct Placed {
    pub event: RecordedEvent,
    pub payload: Vec<u8>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Places `requests` one after the other after `head`, on `tips` (by stream name; a stream
/// missing from it has no events), which it moves as it goes: the checks of an append see the
/// appends placed before it (a settings change earlier in a group moves the tenant's stream
/// for the commands behind it). Returns the head after the last event placed and, for each
/// request, its events as placed, or why it is refused: [`StoreError::Conflict`] when its
/// stream is not at the expected version, [`StoreError::DecidedOnStale`] when its guard has
/// moved. A refused request places nothing; the ones after it are placed as if it were not.
pub(crate) fn place<'a>(
    head: u64,
    tips: &mut HashMap<String, Tip>,
    requests: impl IntoIterator<Item = Request<'a>>,
) -> (u64, Vec<Result<Vec<Placed>, StoreError>>) {
    let mut next = head;
    let outcomes = requests
        .into_iter()
        .map(|request| place_one(&mut next, tips, request))
        .collect();
    (next, outcomes)
}

fn place_one(
    next: &mut u64,
    tips: &mut HashMap<String, Tip>,
    request: Request<'_>,
) -> Result<Vec<Placed>, StoreError> {
    let name = request.stream.to_string();
    let tip = tips.get(&name).cloned().unwrap_or_else(Tip::genesis);
    if let Some(expected) = request.expected
        && expected != tip.version
    {
        return Err(StoreError::Conflict {
            expected,
            actual: tip.version,
        });
    }
    if let Some((guarded, read_at)) = request.guard {
        let guarded = guarded.to_string();
        let now_at = tips.get(&guarded).map_or(0, |t| t.version);
        if now_at != read_at {
            return Err(StoreError::DecidedOnStale {
                stream: guarded,
                read_at,
                now_at,
            });
        }
    }
    let mut prev_hash = tip.hash;
    let mut placed = Vec::with_capacity(request.events.len());
    for (i, pending) in request.events.iter().enumerate() {
        *next += 1;
        let event = RecordedEvent::place(
            pending.clone(),
            request.stream,
            tip.version + 1 + i as u64,
            *next,
        );
        let payload = event.encode_sealed(request.key).map_err(|e| {
            StoreError::Config(format!("cannot seal the values of {}: {e}", request.stream))
        })?;
        let hash = chain_hash(&prev_hash, &payload);
        placed.push(Placed {
            event,
            payload,
            prev_hash: std::mem::replace(&mut prev_hash, hash.clone()),
            hash,
        });
    }
    if let Some(last) = placed.last() {
        tips.insert(
            name,
            Tip {
                version: last.event.version,
                hash: prev_hash,
            },
        );
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AdminId, DomainEvent, TenantId};
    use crate::events::Actor;
    use uuid::Uuid;

    fn pending() -> PendingEvent {
        PendingEvent {
            event_id: Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            actor: Actor::default(),
            correlation_id: Uuid::now_v7(),
            idempotency_key: None,
            event: DomainEvent::AdminOffboarded { removed: vec![] },
        }
    }

    #[test]
    fn appends_get_dense_positions_versions_and_a_chain_and_refusals_place_nothing() {
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        let admin = StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7()));
        let settings = StreamId::Tenant(tenant);
        let two = [pending(), pending()];
        let one = [pending()];
        let mut tips = HashMap::new();
        let (head, outcomes) = place(
            10,
            &mut tips,
            [
                Request {
                    stream: admin,
                    expected: Some(0),
                    guard: Some((settings, 0)),
                    events: &two,
                    key: None,
                },
                // Stale: the stream is at 2 now.
                Request {
                    stream: admin,
                    expected: Some(0),
                    guard: None,
                    events: &one,
                    key: None,
                },
                Request {
                    stream: settings,
                    expected: Some(0),
                    guard: None,
                    events: &one,
                    key: None,
                },
                // Decided on the settings before the change just placed.
                Request {
                    stream: admin,
                    expected: Some(2),
                    guard: Some((settings, 0)),
                    events: &one,
                    key: None,
                },
                Request {
                    stream: admin,
                    expected: None,
                    guard: Some((settings, 1)),
                    events: &one,
                    key: None,
                },
            ],
        );
        assert_eq!(head, 14);
        let placed: Vec<Vec<(u64, u64)>> = outcomes
            .iter()
            .map(|o| match o {
                Ok(events) => events
                    .iter()
                    .map(|p| (p.event.position, p.event.version))
                    .collect(),
                Err(_) => vec![],
            })
            .collect();
        assert_eq!(
            placed,
            [
                vec![(11, 1), (12, 2)],
                vec![],
                vec![(13, 1)],
                vec![],
                vec![(14, 3)]
            ]
        );
        assert!(matches!(
            outcomes[1],
            Err(StoreError::Conflict {
                expected: 0,
                actual: 2
            })
        ));
        assert!(matches!(
            outcomes[3],
            Err(StoreError::DecidedOnStale {
                read_at: 0,
                now_at: 1,
                ..
            })
        ));
        // Each event links to the one before it in its stream, the first to the genesis.
        let admin_events: Vec<&Placed> = [&outcomes[0], &outcomes[4]]
            .into_iter()
            .flat_map(|o| o.as_ref().unwrap())
            .collect();
        assert_eq!(admin_events[0].prev_hash, GENESIS_HASH.to_vec());
        for pair in admin_events.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
            assert_eq!(
                pair[1].hash,
                chain_hash(&pair[1].prev_hash, &pair[1].payload)
            );
        }
        assert_eq!(tips[&admin.to_string()].version, 3);
        assert_eq!(tips[&admin.to_string()].hash, admin_events[2].hash);
    }
}
