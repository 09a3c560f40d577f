//! Idempotency records: written in the append's transaction, from the events as placed, and
//! read back as they were built.

use crate::support::{Backend, spawn_backend};
use recovery_info::domain::{AdminId, CommandOutcome, DomainEvent, StreamId, TenantId};
use recovery_info::events::{Actor, PendingEvent, RecordedEvent};
use recovery_info::store::{EventLog, Idempotency, IdempotencyKey, IdempotentAnswer, StoreError};
use uuid::Uuid;

fn offboarded() -> PendingEvent {
    PendingEvent {
        event_id: Uuid::now_v7(),
        occurred_at: chrono::Utc::now(),
        actor: Actor::default(),
        correlation_id: Uuid::now_v7(),
        idempotency_key: Some("k1".into()),
        event: DomainEvent::AdminOffboarded { removed: vec![] },
    }
}

async fn an_idempotency_record_is_kept_with_its_append_and_read_back_as_built(backend: Backend) {
    let app = spawn_backend(backend).await;
    let store = app.store();
    let tenant = TenantId::from_uuid(app.tenant);
    let key = IdempotencyKey {
        tenant_id: app.tenant,
        subject: "helpdesk-1".into(),
        key: "k1".into(),
    };
    // The outcome is built from the events as the log placed them.
    let answer = |hash: u8| IdempotentAnswer {
        key: key.clone(),
        request_hash: vec![hash],
        build: Box::new(|placed: &[RecordedEvent]| CommandOutcome::Admin {
            version: placed.last().map_or(0, |e| e.version),
            position: placed.last().map_or(0, |e| e.position),
            method: None,
        }),
    };
    assert_eq!(store.idempotent_answer(&key).await.unwrap(), None);
    let stream = StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7()));
    let appended = store
        .append(stream, 0, vec![offboarded()], Some(answer(7)))
        .await
        .unwrap();
    let built = CommandOutcome::Admin {
        version: 1,
        position: 1,
        method: None,
    };
    assert_eq!(appended.answer, Some(built.clone()));
    let kept = store.idempotent_answer(&key).await.unwrap().unwrap();
    assert_eq!((kept.request_hash, kept.outcome), (vec![7], built));

    // The same key again, on another stream: refused, and the append with it left nothing.
    let other = StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7()));
    let err = store
        .append(other, 0, vec![offboarded()], Some(answer(8)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::IdempotencyRace), "{err}");
    assert_eq!(store.head().await.unwrap(), 1);
    assert_eq!(
        store
            .idempotent_answer(&key)
            .await
            .unwrap()
            .unwrap()
            .request_hash,
        vec![7]
    );
}

crate::on_both_backends!(an_idempotency_record_is_kept_with_its_append_and_read_back_as_built);
