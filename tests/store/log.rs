//! The log: appends are placed in a dense global order that a reader never skips, checked
//! against their stream's version and the guard they were decided on, and keep their
//! idempotency record in the same transaction.

use crate::support::{Backend, spawn_backend};
use futures::future::join_all;
use recovery_info::domain::{
    AdminId, CommandOutcome, DomainEvent, MethodId, MethodKind, StreamId, TenantId,
};
use recovery_info::events::{Actor, PendingEvent, RecordedEvent};
use recovery_info::store::{EventLog, IdempotencyKey, IdempotentAnswer, StoreError};
use std::time::Duration;
use uuid::Uuid;

fn pending(kind: MethodKind, value: String) -> PendingEvent {
    PendingEvent {
        event_id: Uuid::now_v7(),
        occurred_at: chrono::Utc::now(),
        actor: Actor {
            subject: "load".into(),
            roles: vec![],
            ..Actor::default()
        },
        correlation_id: Uuid::now_v7(),
        idempotency_key: None,
        event: DomainEvent::MethodAdded {
            method_id: MethodId::from_uuid(Uuid::now_v7()),
            kind,
            value,
        },
    }
}

async fn a_reader_of_the_global_log_never_skips_an_event_under_concurrent_writers(
    backend: Backend,
) {
    const WRITERS: u64 = 16;
    const EACH: u64 = 40;
    let app = spawn_backend(backend).await;
    let store = app.store().clone();
    let tenant = TenantId::from_uuid(app.tenant);

    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while (seen.len() as u64) < WRITERS * EACH && tokio::time::Instant::now() < deadline {
                let batch = store.read_log(after, 7).await.unwrap();
                for e in &batch {
                    seen.push(e.position);
                    after = e.position;
                }
                if batch.is_empty() {
                    tokio::task::yield_now().await;
                }
            }
            seen
        })
    };
    let writers = (0..WRITERS).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let stream = StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7()));
            for v in 0..EACH {
                // Kinds repeat, but the store does not decide: it only places events.
                let e = pending(MethodKind::Email, format!("w{w}-{v}@example.com"));
                store.append(stream, v, vec![e], None).await.unwrap();
            }
        })
    });
    for w in join_all(writers).await {
        w.unwrap();
    }
    let seen = reader.await.unwrap();
    let expected: Vec<u64> = (1..=WRITERS * EACH).collect();
    assert_eq!(
        seen, expected,
        "the reader saw every position exactly once, in order"
    );
}

/// Two appends on different streams under one idempotency key, at the same time (in one
/// group on PostgreSQL): exactly one lands, the other is told of the race and leaves nothing.
async fn one_idempotency_key_on_two_streams_at_once_lands_once(backend: Backend) {
    let app = spawn_backend(backend).await;
    let tenant = TenantId::from_uuid(app.tenant);
    let store = app.store();
    let answer = || IdempotentAnswer {
        key: IdempotencyKey {
            tenant_id: app.tenant,
            subject: "someone".into(),
            key: "one-key".into(),
        },
        request_hash: vec![1],
        build: Box::new(|_: &[RecordedEvent]| CommandOutcome::Admin {
            version: 1,
            position: 1,
            method: None,
        }),
    };
    let appends = (0..6).map(|i| {
        let stream = StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7()));
        store.append(
            stream,
            0,
            vec![pending(MethodKind::Email, format!("a{i}@example.com"))],
            Some(answer()),
        )
    });
    let outcomes = join_all(appends).await;
    let landed = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(landed, 1, "{outcomes:?}");
    for o in outcomes.iter().filter(|o| o.is_err()) {
        assert!(matches!(o, Err(StoreError::IdempotencyRace)), "{o:?}");
    }
    assert_eq!(store.head().await.unwrap(), 1);
    assert_eq!(store.read_log(0, 10).await.unwrap().len(), 1);
    // The connections went back to the pool clean: the next append works.
    store
        .append(
            StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7())),
            0,
            vec![pending(MethodKind::Email, "b@example.com".into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), 2);
}

/// An admin's command carries the tenant version it was decided on: once the tenant's settings
/// moved, the append is refused and leaves nothing, also when both are in one group.
async fn a_command_decided_on_stale_settings_is_refused_in_the_store(backend: Backend) {
    let app = spawn_backend(backend).await;
    let tenant = TenantId::from_uuid(app.tenant);
    let settings = StreamId::Tenant(tenant);
    let admin = || StreamId::Admin(tenant, AdminId::from_uuid(Uuid::now_v7()));
    let store = app.store();
    let email = |v: &str| vec![pending(MethodKind::Email, v.into())];
    store
        .append_guarded(
            admin(),
            0,
            Some((settings, 0)),
            email("a@example.com"),
            None,
        )
        .await
        .unwrap();
    let mut domains = pending(MethodKind::Email, String::new());
    domains.event = DomainEvent::TenantDomainsSet {
        domains: vec![recovery_info::domain::TenantDomain::parse("contoso.com").unwrap()],
    };
    // The settings change and a command decided before it, sent at once (one group on
    // PostgreSQL): the command lands only if it was sent first.
    let (set, guarded) = tokio::join!(
        store.append(settings, 0, vec![domains], None),
        store.append_guarded(
            admin(),
            0,
            Some((settings, 0)),
            email("b@example.com"),
            None
        ),
    );
    set.unwrap();
    let head = store.head().await.unwrap();
    match guarded {
        Ok(_) => assert_eq!(head, 3),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    StoreError::DecidedOnStale {
                        read_at: 0,
                        now_at: 1,
                        ..
                    }
                ),
                "{e}"
            );
            assert_eq!(head, 2);
        }
    }
    let err = store
        .append_guarded(
            admin(),
            0,
            Some((settings, 0)),
            email("c@example.com"),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::DecidedOnStale {
                read_at: 0,
                now_at: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "the refused append left nothing"
    );
    store
        .append_guarded(
            admin(),
            0,
            Some((settings, 1)),
            email("d@example.com"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), head + 1);
}

async fn a_stale_expected_version_is_a_conflict_in_the_store(backend: Backend) {
    let app = spawn_backend(backend).await;
    let stream = StreamId::Admin(
        TenantId::from_uuid(app.tenant),
        AdminId::from_uuid(Uuid::now_v7()),
    );
    let store = app.store();
    store
        .append(
            stream,
            0,
            vec![pending(MethodKind::Email, "a@example.com".into())],
            None,
        )
        .await
        .unwrap();
    let err = store
        .append(
            stream,
            0,
            vec![pending(MethodKind::Email, "b@example.com".into())],
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            recovery_info::store::StoreError::Conflict {
                expected: 0,
                actual: 1
            }
        ),
        "{err}"
    );
    assert_eq!(
        store.head().await.unwrap(),
        1,
        "the failed append left no hole and no event"
    );
    store
        .append(
            stream,
            1,
            vec![pending(MethodKind::Email, "c@example.com".into())],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .read_log(0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

crate::on_both_backends!(
    a_reader_of_the_global_log_never_skips_an_event_under_concurrent_writers,
    a_stale_expected_version_is_a_conflict_in_the_store,
    a_command_decided_on_stale_settings_is_refused_in_the_store,
    one_idempotency_key_on_two_streams_at_once_lands_once,
);
