//! What sealing contact values costs a command, measured in this process: the seal of an
//! append and the opens of its later reads (the next decide's stream load, the projection's
//! batch, the publisher's read, the SSE tail's), against the same encodes and decodes of a
//! plain envelope. The join of each read with `data_keys` is PostgreSQL's and in the machine
//! CPU rows, not here.

use recovery_info::domain::{AdminId, DomainEvent, MethodId, MethodKind, StreamId, TenantId};
use recovery_info::events::{Actor, PendingEvent, RecordedEvent};
use recovery_info::keys::{DataKey, KeySlot};
use std::hint::black_box;
use std::time::Instant;
use uuid::Uuid;

/// Reads that decode a command's event after it is appended.
pub const OPENS_PER_COMMAND: usize = 4;

/// Microseconds per command that sealing adds: (seal + opens) − (plain encode + decodes), the
/// median of `rounds` rounds of `n` commands each.
pub fn added_us_per_command(n: usize, rounds: usize) -> f64 {
    let key = DataKey::generate().expect("a data key").0;
    let slot = KeySlot::Live(key.clone());
    let event = RecordedEvent::place(
        PendingEvent {
            event_id: Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            actor: Actor {
                subject: "helpdesk-1".into(),
                roles: vec!["authentication_admin".into()],
                ..Actor::default()
            },
            correlation_id: Uuid::now_v7(),
            idempotency_key: None,
            event: DomainEvent::MethodChanged {
                method_id: MethodId::from_uuid(Uuid::now_v7()),
                kind: MethodKind::Email,
                old_value: "jane.private@example.org".into(),
                new_value: "jane.doe.2026@example.net".into(),
            },
        },
        StreamId::Admin(
            TenantId::from_uuid(Uuid::now_v7()),
            AdminId::from_uuid(Uuid::now_v7()),
        ),
        3,
        1207,
    );
    let time = |f: &dyn Fn()| {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let mut added: Vec<f64> = (0..rounds)
        .map(|_| {
            let sealed_us = time(&|| {
                let bytes = event.encode_sealed(Some(&key)).expect("sealed");
                for _ in 0..OPENS_PER_COMMAND {
                    black_box(RecordedEvent::decode_keyed(&bytes, &slot).expect("opened"));
                }
            });
            let plain_us = time(&|| {
                let bytes = event.encode();
                for _ in 0..OPENS_PER_COMMAND {
                    black_box(RecordedEvent::decode(&bytes).expect("decoded"));
                }
            });
            sealed_us - plain_us
        })
        .collect();
    added.sort_by(f64::total_cmp);
    added[added.len() / 2]
}
