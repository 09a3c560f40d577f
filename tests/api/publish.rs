//! Live events: the JetStream relay, eligibility over NATS and Server-Sent Events, against a
//! private `nats-server -js` that each test starts (and stops) itself.

use crate::support::nats::PrivateNats;
use crate::support::{
    Backend, Options, TestApp, each, fresh_database, read_sse, read_sse_named, spawn_app_with,
    spawn_backend, spawn_on,
};
use async_nats::jetstream;
use prost::Message;
use recovery_info::domain::DomainEvent;
use recovery_info::events::{RecordedEvent, pb};
use recovery_info::http::auth::Role;
use recovery_info::publish::PublisherConfig;
use recovery_info::store::EventLog;
use recovery_info::store::postgres::publisher::{LOCK_KEY, lock_holder};
use reqwest::Method;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};
use uuid::Uuid;

fn publisher(nats: &PrivateNats) -> PublisherConfig {
    PublisherConfig {
        ack_timeout: Duration::from_secs(2),
        poll_interval: Duration::from_millis(200),
        leader_retry: Duration::from_millis(300),
        ..PublisherConfig::new(nats.url())
    }
}

async fn spawn_publishing(nats: &PrivateNats) -> TestApp {
    spawn_app_with(Options {
        publisher: Some(publisher(nats)),
        ..Options::default()
    })
    .await
}

async fn js(nats: &PrivateNats) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.unwrap())
}

/// One stored message of the stream.
pub struct Stored {
    subject: String,
    msg_id: String,
    payload: bytes::Bytes,
}

/// Every message of `RECOVERY_EVENTS`, in stream order.
async fn stream_messages(js: &jetstream::Context) -> Vec<Stored> {
    // A request can go unanswered for a while (a NATS restarting, a cluster electing the
    // stream's leader): the whole read is tried again, for up to half a minute.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match read_stream(js).await {
            Ok(messages) => return messages,
            Err(e) => assert!(Instant::now() < deadline, "cannot read the stream: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stream's messages, or what stopped the read (no stream yet: none).
async fn read_stream(js: &jetstream::Context) -> Result<Vec<Stored>, String> {
    let Ok(mut stream) = js.get_stream("RECOVERY_EVENTS").await else {
        return Ok(Vec::new());
    };
    let last = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream
            .get_raw_message(seq)
            .await
            .map_err(|e| e.to_string())?;
        out.push(Stored {
            subject: m.subject.to_string(),
            msg_id: m
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            payload: m.payload,
        });
    }
    Ok(out)
}

pub fn events_of(messages: &[Stored]) -> Vec<(String, RecordedEvent)> {
    messages
        .iter()
        .filter(|m| m.subject.contains(".events."))
        .map(|m| {
            (
                m.subject.clone(),
                RecordedEvent::decode(&m.payload).unwrap(),
            )
        })
        .collect()
}

/// Waits until the stream holds an event message for every position up to the log's head.
async fn wait_published(app: &TestApp, js: &jetstream::Context, timeout: Duration) -> Vec<Stored> {
    let head = app.store().head().await.unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        let messages = stream_messages(js).await;
        let published = events_of(&messages).len() as u64;
        if published >= head {
            // A moment more: a duplicate would show up now.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return stream_messages(js).await;
        }
        assert!(
            Instant::now() < deadline,
            "only {published} of {head} events published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every event up to the head is published, checks that the stream holds each
/// exactly once and in order, and returns its messages.
pub async fn published_exactly_once(
    app: &TestApp,
    js: &jetstream::Context,
    timeout: Duration,
) -> Vec<Stored> {
    let messages = wait_published(app, js, timeout).await;
    assert_exactly_once_in_order(&messages, app.store().head().await.unwrap());
    messages
}

/// Every position exactly once, in log order, and each admin's versions 1, 2, 3, …
fn assert_exactly_once_in_order(messages: &[Stored], head: u64) {
    let events = events_of(messages);
    let positions: Vec<u64> = events.iter().map(|(_, e)| e.position).collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "once each, in order"
    );
    let mut versions: HashMap<String, u64> = HashMap::new();
    for (_, e) in &events {
        let v = versions.entry(e.stream.to_string()).or_default();
        assert_eq!(e.version, *v + 1, "per-stream order");
        *v = e.version;
    }
    let ids: HashSet<&str> = messages.iter().map(|m| m.msg_id.as_str()).collect();
    assert_eq!(ids.len(), messages.len(), "no message id twice");
}

#[tokio::test]
async fn every_event_type_is_published_on_its_subject_and_decodes_masked() {
    let nats = PrivateNats::start().await;
    let app = spawn_publishing(&nats).await;
    let admin = Uuid::now_v7();
    let phone = app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    assert_eq!(
        app.change(admin, &phone, "+45 31 12 34 99").await.status(),
        200
    );
    let r = app
        .put_settings(
            json!({"domains": ["contoso.com"], "reset_policy": {"name": "any_two_methods"}}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let other = Uuid::now_v7();
    let office = app
        .add_ok(other, "office_phone", "+1 425 555 0100 x123")
        .await;
    assert_eq!(app.remove(other, &office).await.status(), 200);
    let r = app
        .send(
            Method::POST,
            &app.admin_path(admin, "/offboard"),
            &app.admin_token(),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);

    let js = js(&nats).await;
    let messages = published_exactly_once(&app, &js, Duration::from_secs(10)).await;

    let mut types = HashSet::new();
    for (m, (subject, e)) in messages
        .iter()
        .filter(|m| m.subject.contains(".events."))
        .zip(events_of(&messages))
    {
        let admin_token = e
            .stream
            .admin()
            .map_or("tenant".to_owned(), |a| a.to_string());
        assert_eq!(
            subject,
            format!(
                "recovery.v1.events.{}.{admin_token}.{}",
                app.tenant,
                e.type_name()
            )
        );
        assert_eq!(
            m.msg_id,
            e.event_id.to_string(),
            "Nats-Msg-Id is the event id"
        );
        types.insert(e.type_name());
        let text = format!("{:?}", e.event);
        for raw in ["4520123456", "4531123499", "jane@", "4255550100"] {
            assert!(!text.contains(raw), "masked by default: {text}");
        }
        if let DomainEvent::MethodAdded { value, .. } = &e.event
            && value.contains('@')
        {
            assert_eq!(value, "j•••@example.com");
        }
    }
    assert_eq!(types.len(), 6, "every event type: {types:?}");

    // Eligibility changes: decodable, on their subject, the last one of `admin` is the
    // offboarding (nothing usable any more).
    let changes: Vec<pb::EligibilityChanged> = messages
        .iter()
        .filter(|m| m.subject == format!("recovery.v1.eligibility.{}.{admin}", app.tenant))
        .map(|m| pb::EligibilityChanged::decode(m.payload.clone()).unwrap())
        .collect();
    assert!(changes.len() >= 4, "{changes:?}");
    let eligible_at: Vec<bool> = changes
        .iter()
        .map(|c| c.verdict.as_ref().unwrap().eligible)
        .collect();
    assert_eq!(eligible_at.first(), Some(&false));
    assert!(eligible_at.contains(&true));
    let last = changes.last().unwrap().verdict.clone().unwrap();
    assert!(!last.eligible && last.usable_methods.is_empty());
    assert!(changes.windows(2).all(|w| w[0].position < w[1].position));
}

/// The relay's eligibility fold is bounded: dropped at its capacity (here, before every round),
/// it loads the touched admins' history again, and the stream holds exactly the messages of one
/// fold of the whole log — including a tenant's settings change, which re-evaluates every admin
/// of the tenant.
#[tokio::test]
async fn the_relay_publishes_the_same_messages_when_its_fold_is_dropped_every_round() {
    let nats = PrivateNats::start().await;
    let app = spawn_app_with(Options {
        publisher: Some(PublisherConfig {
            warm_capacity: 1,
            // Rounds of two events, and so a window of eight publishes awaiting their PubAck:
            // the settings change's round (two events, six eligibility changes) fills it, which
            // once left the relay waiting for ever on the next round's first publish.
            batch_size: 2,
            ..publisher(&nats)
        }),
        ..Options::default()
    })
    .await;
    let admins: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut phones = Vec::new();
    for (i, a) in admins.iter().enumerate() {
        phones.push(
            app.add_ok(*a, "mobile_phone", &format!("+45 20 12 34 5{i}"))
                .await,
        );
        app.add_ok(*a, "email", &format!("admin{i}@contoso.com"))
            .await;
    }
    // Emails in the tenant's own domain stop being usable for every admin at once.
    let r = app
        .put_settings(
            json!({"domains": ["contoso.com"], "reset_policy": {"name": "any_two_methods"}}),
        )
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for (i, a) in admins.iter().enumerate() {
        let r = app
            .change(*a, &phones[i], &format!("+45 20 12 34 6{i}"))
            .await;
        assert_eq!(r.status(), 200);
    }
    // A newcomer after the settings change, in a round of its own: its first event has no
    // history of its own, but its verdict still depends on the tenant's settings, which a
    // round that starts with an empty fold must load (its verdict names the tenant's policy
    // and what that one misses).
    let js = js(&nats).await;
    published_exactly_once(&app, &js, Duration::from_secs(10)).await;
    let newcomer = Uuid::now_v7();
    app.add_ok(newcomer, "mobile_phone", "+45 20 12 34 70")
        .await;
    let messages = published_exactly_once(&app, &js, Duration::from_secs(10)).await;
    let log = app.store().read_log(0, 1000).await.unwrap();
    let expected = recovery_info::publish::messages::build(
        "recovery.v1",
        false,
        &mut Default::default(),
        &log,
    );
    let expected: Vec<_> = expected
        .iter()
        .map(|m| (m.subject.as_str(), m.msg_id.as_str(), &m.payload))
        .collect();
    let published: Vec<_> = messages
        .iter()
        .map(|m| (m.subject.as_str(), m.msg_id.as_str(), &m.payload))
        .collect();
    assert_eq!(published, expected);
    // Not vacuous: the domains event changed all three admins' verdicts, in a round whose
    // fold started empty.
    let domains = log
        .iter()
        .find(|e| matches!(e.event, DomainEvent::TenantDomainsSet { .. }))
        .unwrap();
    let changed = messages
        .iter()
        .filter(|m| {
            m.msg_id
                .starts_with(&format!("{}.eligibility.", domains.event_id))
        })
        .count();
    assert_eq!(changed, admins.len());
    // And it was dropped indeed (a counter on /metrics).
    let metrics = app.metrics().await;
    let drops: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("recovery_publisher_fold_drops_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(drops >= 1.0, "{metrics}");
}

/// An existing stream keeps what the operator set on it (limits, an extra subject); the relay
/// brings only the settings it owns to its configuration (its subjects, the duplicate window).
#[tokio::test]
async fn the_relay_keeps_the_operators_stream_settings_and_sets_its_own() {
    let nats = PrivateNats::start().await;
    let js = js(&nats).await;
    let month = Duration::from_secs(30 * 24 * 3600);
    js.create_stream(jetstream::stream::Config {
        name: "RECOVERY_EVENTS".into(),
        subjects: vec!["recovery.v1.events.>".into(), "archive.>".into()],
        max_age: month,
        max_bytes: 1 << 30,
        duplicate_window: Duration::from_secs(60),
        ..Default::default()
    })
    .await
    .unwrap();
    let app = spawn_publishing(&nats).await;
    // Its eligibility change goes to a subject the stream did not have.
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    let messages = published_exactly_once(&app, &js, Duration::from_secs(10)).await;
    assert!(messages.iter().any(|m| m.subject.contains(".eligibility.")));
    let mut stream = js.get_stream("RECOVERY_EVENTS").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!((config.max_age, config.max_bytes), (month, 1 << 30));
    assert_eq!(config.duplicate_window, publisher(&nats).duplicate_window);
    let mut subjects = config.subjects.clone();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "archive.>",
            "recovery.v1.eligibility.>",
            "recovery.v1.events.>"
        ]
    );
}

#[tokio::test]
async fn events_are_published_exactly_once_in_order_across_a_nats_restart_and_a_lost_checkpoint() {
    let mut nats = PrivateNats::start().await;
    let app = spawn_publishing(&nats).await;
    let admins: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let phones = [
        "+45 20 12 34 50",
        "+45 20 12 34 51",
        "+45 20 12 34 52",
        "+45 20 12 34 53",
    ];
    let mut methods = HashMap::new();
    for a in &admins {
        methods.insert(*a, app.add_ok(*a, "mobile_phone", phones[0]).await);
    }
    let churn = |round: usize| {
        let app = &app;
        let methods = &methods;
        let admins = &admins;
        async move {
            for a in admins {
                let r = app.change(*a, &methods[a], phones[round % 4]).await;
                assert_eq!(r.status(), 200);
            }
        }
    };
    for round in 1..4 {
        churn(round).await;
    }
    nats.stop();
    // NATS is down: commands still succeed.
    for round in 4..8 {
        churn(round).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.resume().await;
    for round in 8..10 {
        churn(round).await;
    }
    let js = js(&nats).await;
    published_exactly_once(&app, &js, Duration::from_secs(30)).await;

    // A crash between PubAck and checkpoint: the new process starts from an old checkpoint and
    // must not publish anything twice.
    let url = app.database_url();
    app.server.stop().await.unwrap();
    crate::support::pg_client(&url)
        .await
        .execute("UPDATE publisher_checkpoints SET position = 2", &[])
        .await
        .unwrap();
    let app = spawn_on(
        url,
        Options {
            publisher: Some(publisher(&nats)),
            ..Options::default()
        },
    )
    .await;
    let more = Uuid::now_v7();
    app.add_ok(more, "email", "late@example.com").await;
    published_exactly_once(&app, &js, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_second_replica_takes_over_publishing_when_the_leader_dies() {
    let nats = PrivateNats::start().await;
    let first = spawn_publishing(&nats).await;
    let admin = Uuid::now_v7();
    first.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let js = js(&nats).await;
    wait_published(&first, &js, Duration::from_secs(10)).await;
    // The first replica leads; the second one waits for the lock.
    let mut second = spawn_on(
        first.database_url(),
        Options {
            publisher: Some(publisher(&nats)),
            ..Options::default()
        },
    )
    .await;
    second.tenant = first.tenant;
    second.add_ok(admin, "email", "jane@example.com").await;
    wait_published(&second, &js, Duration::from_secs(10)).await;
    first.server.stop().await.unwrap();
    let started = Instant::now();
    second
        .add_ok(Uuid::now_v7(), "email", "joe@example.com")
        .await;
    let messages = wait_published(&second, &js, Duration::from_secs(10)).await;
    eprintln!("takeover after the leader stopped: {:?}", started.elapsed());
    assert_exactly_once_in_order(&messages, second.store().head().await.unwrap());
}

/// The pid of the session holding publisher `name`'s lock in the database of `client`.
async fn leader_pid(client: &tokio_postgres::Client, name: &str) -> Option<i32> {
    lock_holder(client, name).await.unwrap().map(|h| h.pid)
}

#[tokio::test]
async fn a_replica_takes_over_from_a_leader_that_hangs_with_its_session_up() {
    let nats = PrivateNats::start().await;
    let url = fresh_database().await;
    // A hung leader: its session holds the lock and stays connected, but nothing runs on it.
    let hung = crate::support::pg_client(&url).await;
    let config = PublisherConfig {
        lease: Duration::from_secs(1),
        ..publisher(&nats)
    };
    let locked: bool = hung
        .query_one(
            &format!("SELECT pg_try_advisory_lock({LOCK_KEY})"),
            &[&config.stream_name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(locked);
    let app = spawn_on(
        url,
        Options {
            publisher: Some(config),
            ..Options::default()
        },
    )
    .await;
    let started = Instant::now();
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    let js = js(&nats).await;
    let messages = wait_published(&app, &js, Duration::from_secs(15)).await;
    eprintln!("takeover from a hung leader: {:?}", started.elapsed());
    assert_exactly_once_in_order(&messages, app.store().head().await.unwrap());
    assert!(
        hung.simple_query("SELECT 1").await.is_err(),
        "the hung leader's session was ended"
    );
}

#[tokio::test]
async fn a_leader_that_publishes_and_idles_keeps_renewing_its_lease() {
    let nats = PrivateNats::start().await;
    // Renewed every 375 ms by a relay that polls every 200 ms when idle: a lease long enough
    // that a loaded machine does not make the working leader look hung.
    let config = PublisherConfig {
        lease: Duration::from_millis(1500),
        ..publisher(&nats)
    };
    let first = spawn_app_with(Options {
        publisher: Some(config.clone()),
        ..Options::default()
    })
    .await;
    let admin = Uuid::now_v7();
    first.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let js = js(&nats).await;
    wait_published(&first, &js, Duration::from_secs(10)).await;
    let db = crate::support::pg_client(&first.database_url()).await;
    let leader = leader_pid(&db, &config.stream_name).await;
    assert!(leader.is_some());
    // A second replica that would take over from a leader silent for longer than the lease.
    let mut second = spawn_on(
        first.database_url(),
        Options {
            publisher: Some(config.clone()),
            ..Options::default()
        },
    )
    .await;
    second.tenant = first.tenant;
    // Idle for several leases, then busy, then idle again: the leader stays.
    tokio::time::sleep(config.lease * 2).await;
    for value in ["a@example.com", "b@example.com", "c@example.com"] {
        second.add_ok(Uuid::now_v7(), "email", value).await;
    }
    wait_published(&second, &js, Duration::from_secs(10)).await;
    tokio::time::sleep(config.lease * 2).await;
    assert_eq!(
        leader_pid(&db, &config.stream_name).await,
        leader,
        "the leader lost its lease while working"
    );
}

async fn server_sent_events_resume_after_last_event_id_without_nats(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    app.add_ok(admin, "office_phone", "+1 425 555 0100").await;
    let url = app.url("/events/stream");
    let token = app.token("board", &[Role::Dashboard]);

    let r = app
        .client
        .get(&url)
        .bearer_auth(app.token("me", &[Role::SelfService]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let mut r = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let backlog = read_sse(&mut r, 2, Duration::from_secs(5)).await;
    let ids: Vec<u64> = backlog.iter().map(|e| e.0.parse().unwrap()).collect();
    assert_eq!(ids, vec![2, 3]);
    assert_eq!(backlog[0].1["data"]["value"], "j•••@example.com", "masked");

    // Live: a new commit arrives on the open stream.
    let started = Instant::now();
    app.add_ok(admin, "alternate_phone", "+45 20 12 34 57")
        .await;
    let live = read_sse(&mut r, 1, Duration::from_secs(5)).await;
    eprintln!("commit → SSE client: {:?}", started.elapsed());
    assert_eq!(live[0].0, "4");
    assert_eq!(live[0].1["type"], "MethodAdded");

    // Another tenant's events do not leak in; the resumed stream starts after the given id.
    let mut r = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    let resumed = read_sse(&mut r, 1, Duration::from_secs(5)).await;
    assert_eq!(resumed[0].0, "4");
    let bad = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("last-event-id", "x")
        .send()
        .await
        .unwrap();
    crate::support::assert_problem(bad, 400, "invalid_last_event_id").await;
}

/// A `Last-Event-ID` past the log's head (a restored database) is refused with a code the
/// client acts on, instead of silently skipping every event up to it.
async fn a_last_event_id_beyond_the_log_is_a_conflict(backend: Backend) {
    let app = spawn_backend(backend).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    let url = app.url("/events/stream");
    let token = app.token("board", &[Role::Dashboard]);
    let beyond = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("last-event-id", "3")
        .send()
        .await
        .unwrap();
    crate::support::assert_problem(beyond, 409, "last_event_id_beyond_log").await;
    // The head itself is fine: the stream waits for what follows it.
    let mut at_head = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(at_head.status(), 200);
    app.add_ok(admin, "office_phone", "+1 425 555 0100").await;
    let next = read_sse(&mut at_head, 1, Duration::from_secs(5)).await;
    assert_eq!(next[0].0, "3");
}

/// `event:` lines carry the type; `type=` and `admin_id=` narrow the stream in back-fill and
/// live; unknown parameters are refused; a dashboard does not see auditors' reveals.
async fn the_stream_names_its_events_and_filters_by_type_and_admin(backend: Backend) {
    let app = spawn_backend(backend).await;
    let (jane, john) = (Uuid::now_v7(), Uuid::now_v7());
    app.add_ok(jane, "mobile_phone", "+45 20 12 34 56").await; // 1
    let johns = app.add_ok(john, "mobile_phone", "+45 20 12 34 57").await; // 2
    let board = app.token("board", &[Role::Dashboard]);
    let auditor = app.token("auditor-1", &[Role::Auditor]);
    let open = |query: &str, token: &str| {
        app.client
            .get(app.url(&format!("/events/stream{query}")))
            .bearer_auth(token)
            .send()
    };
    for (query, detail) in [
        ("?admin=x", "admin"),
        ("?admin_id=nope", "admin_id"),
        ("?type=MethodEdited", "MethodEdited"),
    ] {
        let r = open(query, &board).await.unwrap();
        let body = crate::support::assert_problem(r, 400, "invalid_query").await;
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }

    let mut all = open("", &board).await.unwrap();
    let mut janes = open(&format!("?admin_id={jane}"), &board).await.unwrap();
    let mut removals = open("?type=MethodRemoved,MethodChanged", &board)
        .await
        .unwrap();
    let mut audited = open("", &auditor).await.unwrap();
    let first = read_sse_named(&mut all, 2, Duration::from_secs(5)).await;
    assert_eq!(first[0].0, "MethodAdded");
    assert_eq!(first[1].1, "2");
    let back = read_sse_named(&mut janes, 1, Duration::from_secs(5)).await;
    assert_eq!(
        (back[0].1.as_str(), back[0].2["admin_id"].clone()),
        ("1", json!(jane.to_string()))
    );

    // A reveal (position 3), then live events of both admins.
    let revealed = app
        .client
        .get(app.admin_path(john, "/history?reveal=true"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(revealed.status(), 200);
    let r = app.change(john, &johns, "+45 20 12 34 58").await;
    assert_eq!(r.status(), 200); // 4
    app.add_ok(jane, "email", "jane@example.com").await; // 5

    let seen = read_sse_named(&mut audited, 5, Duration::from_secs(5)).await;
    let names: Vec<&str> = seen.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "MethodAdded",
            "MethodAdded",
            "PiiRevealed",
            "MethodChanged",
            "MethodAdded"
        ]
    );
    // The dashboard skips the reveal: its next two are 4 and 5.
    let live = read_sse_named(&mut all, 2, Duration::from_secs(5)).await;
    assert_eq!(
        (live[0].0.as_str(), live[0].1.as_str()),
        ("MethodChanged", "4")
    );
    assert_eq!(live[1].1, "5");
    let live = read_sse_named(&mut janes, 1, Duration::from_secs(5)).await;
    assert_eq!(
        (live[0].0.as_str(), live[0].1.as_str()),
        ("MethodAdded", "5")
    );
    let live = read_sse_named(&mut removals, 1, Duration::from_secs(5)).await;
    assert_eq!(
        (live[0].0.as_str(), live[0].1.as_str()),
        ("MethodChanged", "4")
    );
}

/// `include=eligibility`: every verdict an event changed follows it (one per admin for a policy
/// change), folded from the start of the log whatever the resume point; a position's `id:` is on
/// its last message; `admin_id=` and `type=EligibilityChanged` narrow them.
async fn the_stream_carries_eligibility_changes_when_asked(backend: Backend) {
    let app = spawn_backend(backend).await;
    let (jane, john) = (Uuid::now_v7(), Uuid::now_v7());
    app.add_ok(jane, "mobile_phone", "+45 20 12 34 56").await; // 1
    app.add_ok(john, "mobile_phone", "+45 20 12 34 57").await; // 2
    app.add_ok(jane, "email", "jane@example.com").await; // 3
    let board = app.token("board", &[Role::Dashboard]);
    let open = |query: String, last: Option<&'static str>| {
        let mut request = app
            .client
            .get(app.url(&format!("/events/stream{query}")))
            .bearer_auth(&board);
        if let Some(id) = last {
            request = request.header("last-event-id", id);
        }
        request.send()
    };
    for (query, detail) in [
        ("?include=everything", "everything"),
        ("?type=EligibilityChanged", "include=eligibility"),
    ] {
        let r = open(query.to_string(), None).await.unwrap();
        let body = crate::support::assert_problem(r, 400, "invalid_query").await;
        assert!(body["detail"].as_str().unwrap().contains(detail), "{body}");
    }
    let names = |seen: &[(String, String, serde_json::Value)]| -> Vec<(String, String)> {
        seen.iter().map(|e| (e.0.clone(), e.1.clone())).collect()
    };
    let pairs = |want: &[(&str, &str)]| -> Vec<(String, String)> {
        want.iter()
            .map(|(n, i)| (n.to_string(), i.to_string()))
            .collect()
    };

    let mut all = open("?include=eligibility".into(), None).await.unwrap();
    let mut resumed = open("?include=eligibility".into(), Some("2"))
        .await
        .unwrap();
    let mut johns = open(format!("?include=eligibility&admin_id={john}"), None)
        .await
        .unwrap();
    let mut verdicts = open("?include=eligibility&type=EligibilityChanged".into(), None)
        .await
        .unwrap();
    let seen = read_sse_named(&mut all, 6, Duration::from_secs(5)).await;
    assert_eq!(
        names(&seen),
        pairs(&[
            ("MethodAdded", ""),
            ("EligibilityChanged", "1"),
            ("MethodAdded", ""),
            ("EligibilityChanged", "2"),
            ("MethodAdded", ""),
            ("EligibilityChanged", "3"),
        ])
    );
    let first = &seen[1].2;
    assert_eq!(first["admin_id"], json!(jane.to_string()));
    assert_eq!(first["position"], json!(1));
    assert_eq!(first["event_id"], seen[0].2["event_id"]);
    assert_eq!(first["eligible"], json!(false));
    assert_eq!(first["missing"], json!(["email"]));
    assert_eq!(
        first["usable_methods"][0]["masked_value"],
        json!("+45 •• •• •• 56")
    );
    // The resumed stream starts after 2 yet knows jane's phone of position 1.
    let after_two = read_sse_named(&mut resumed, 2, Duration::from_secs(5)).await;
    assert_eq!(
        names(&after_two),
        pairs(&[("MethodAdded", ""), ("EligibilityChanged", "3")])
    );
    let janes = &after_two[1].2;
    assert_eq!(janes["eligible"], json!(true), "{janes}");
    assert_eq!(janes["usable_methods"].as_array().unwrap().len(), 2);
    assert_eq!(
        janes, &seen[5].2,
        "a resume sees the verdict of a full replay"
    );

    // A policy change re-evaluates both admins: one change each, the id on the last.
    app.put_settings_ok(json!({"reset_policy": {"name": "any_two_methods"}}))
        .await; // 4
    let live = read_sse_named(&mut all, 3, Duration::from_secs(5)).await;
    assert_eq!(
        names(&live),
        pairs(&[
            ("ResetPolicySet", ""),
            ("EligibilityChanged", ""),
            ("EligibilityChanged", "4"),
        ])
    );
    let mut changed: Vec<String> = live[1..]
        .iter()
        .map(|e| e.2["admin_id"].as_str().unwrap().to_owned())
        .collect();
    changed.sort();
    let mut both = vec![jane.to_string(), john.to_string()];
    both.sort();
    assert_eq!(changed, both);
    assert!(
        live[1..]
            .iter()
            .all(|e| e.2["policy"] == json!("any_two_methods"))
    );
    assert!(live[1..].iter().all(|e| e.2["position"] == json!(4)));

    let seen = read_sse_named(&mut johns, 3, Duration::from_secs(5)).await;
    assert_eq!(
        names(&seen),
        pairs(&[
            ("MethodAdded", ""),
            ("EligibilityChanged", "2"),
            ("EligibilityChanged", "4"),
        ])
    );
    assert!(
        seen[1..]
            .iter()
            .all(|e| e.2["admin_id"] == json!(john.to_string()))
    );
    let seen = read_sse_named(&mut verdicts, 5, Duration::from_secs(5)).await;
    assert_eq!(
        names(&seen),
        pairs(&[
            ("EligibilityChanged", "1"),
            ("EligibilityChanged", "2"),
            ("EligibilityChanged", "3"),
            ("EligibilityChanged", ""),
            ("EligibilityChanged", "4"),
        ])
    );
}

/// The users of `deploy/nats/authorization.conf`: the service publishes, manages its stream and
/// answers the eligibility query as `recovery-info`; a `dashboard` reads events live and asks the
/// query. Each is refused what it has no business doing.
#[tokio::test]
async fn the_services_nats_user_may_do_its_work_and_no_more() {
    let nats = PrivateNats::start_with_authorization(&[
        ("RECOVERY_NATS_PASSWORD", "service-secret"),
        ("DASHBOARD_NATS_PASSWORD", "dashboard-secret"),
    ])
    .await;
    let url =
        |user: &str, password: &str| format!("nats://{user}:{password}@127.0.0.1:{}", nats.port);
    // The test's own clients log in with options (the library ignores a URL's credentials);
    // refusals show as requests that get no answer, so their timeout is short.
    let login = |user: &str, password: &str| {
        async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
            .request_timeout(Some(Duration::from_secs(1)))
            .connect(nats.url())
    };
    assert!(
        login("dashboard", "wrong").await.is_err(),
        "a wrong password is refused"
    );
    let app = spawn_app_with(Options {
        publisher: Some(PublisherConfig {
            nats_url: url("recovery-info", "service-secret"),
            ..publisher(&nats)
        }),
        ..Options::default()
    })
    .await;
    let service = jetstream::new(login("recovery-info", "service-secret").await.unwrap());
    let dashboard = login("dashboard", "dashboard-secret").await.unwrap();
    // All tenants' events: nats-server holds back denied subjects (the audit ones) from a
    // subscription wider than the deny, not from a narrower one (`events.<tenant>.>`).
    let mut live = dashboard.subscribe("recovery.v1.events.>").await.unwrap();
    dashboard.flush().await.unwrap();

    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    published_exactly_once(&app, &service, Duration::from_secs(10)).await;
    let first = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut live))
        .await
        .expect("the dashboard receives the events live")
        .unwrap();
    assert!(first.subject.ends_with(".MethodAdded"), "{}", first.subject);
    // An auditor's reveal (position 3) is published, but not to the dashboard's subscription.
    let auditor = app.token("auditor-1", &[Role::Auditor]);
    let revealed = app
        .client
        .get(app.admin_path(admin, "/history?reveal=true"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(revealed.status(), 200);
    app.add_ok(admin, "office_phone", "+1 425 555 0100").await; // 4
    for want in [".MethodAdded", ".MethodAdded"] {
        let next =
            tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut live))
                .await
                .expect("the dashboard receives the events live")
                .unwrap();
        assert!(
            next.subject.ends_with(want) && !next.subject.contains(".audit."),
            "{}",
            next.subject
        );
    }

    // The dashboard asks the eligibility query.
    let request = pb::EligibilityRequest {
        tenant_id: app.tenant.to_string(),
        admin_id: admin.to_string(),
        min_position: Some(2),
    };
    let reply = dashboard
        .request(
            "recovery.v1.rpc.eligibility",
            request.encode_to_vec().into(),
        )
        .await
        .expect("the dashboard may ask the eligibility query");
    assert!(
        pb::EligibilityReply::decode(reply.payload)
            .unwrap()
            .verdict
            .unwrap()
            .eligible
    );

    // What the dashboard may not do: publish an event, change or delete the stream.
    let short = |client: async_nats::Client| {
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(1))
            .build(client)
    };
    let as_dashboard = short(dashboard.clone());
    let forged = as_dashboard
        .publish(
            format!("recovery.v1.events.{}.{admin}.MethodRemoved", app.tenant),
            "forged".into(),
        )
        .await;
    let acked = match forged {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!acked, "a dashboard's event must not be stored");
    assert!(as_dashboard.delete_stream("RECOVERY_EVENTS").await.is_err());
    // Nor may the service touch any other stream, or delete its own.
    let as_service = short(login("recovery-info", "service-secret").await.unwrap());
    assert!(
        as_service
            .create_stream(jetstream::stream::Config {
                name: "OTHER".into(),
                subjects: vec!["other.>".into()],
                ..Default::default()
            })
            .await
            .is_err()
    );
    assert!(as_service.delete_stream("RECOVERY_EVENTS").await.is_err());
    // The stream holds the service's events and nothing else.
    let messages = published_exactly_once(&app, &service, Duration::from_secs(10)).await;
    assert!(messages.iter().all(|m| m.payload.as_ref() != b"forged"));
}

/// A NATS that requires TLS: the service publishes to it over TLS, verifying its certificate
/// against the CA it is given (`NATS_CA`); without that CA, `watch` refuses the server.
#[tokio::test]
async fn events_reach_a_nats_that_requires_tls_through_a_certificate_the_service_verifies() {
    let nats = PrivateNats::start_with_config(
        |dir| {
            crate::support::certificates(dir);
            format!(
                "tls {{ cert_file: {:?}, key_file: {:?} }}",
                dir.join("server.pem"),
                dir.join("server.key")
            )
        },
        &[],
    )
    .await;
    let ca = nats.dir.join("ca.pem");
    let url = format!("tls://127.0.0.1:{}", nats.port);
    let app = spawn_app_with(Options {
        publisher: Some(PublisherConfig {
            nats_url: url.clone(),
            ca_file: Some(ca.clone()),
            ..publisher(&nats)
        }),
        ..Options::default()
    })
    .await;
    app.add_ok(Uuid::now_v7(), "mobile_phone", "+45 20 12 34 56")
        .await;
    let js = jetstream::new(
        async_nats::ConnectOptions::new()
            .add_root_certificates(ca.clone())
            .connect(&url)
            .await
            .unwrap(),
    );
    let messages = published_exactly_once(&app, &js, Duration::from_secs(10)).await;
    assert!(!messages.is_empty());

    // Not vacuous: the server does not take a plain client, and without the CA the
    // certificate is refused.
    let plain = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(format!("nats://127.0.0.1:{}", nats.port))
        .await;
    assert!(
        plain.is_err(),
        "a client that cannot verify the server is refused"
    );
    let watch = std::process::Command::new(env!("CARGO_BIN_EXE_recovery-info"))
        .args(["watch", "--tenant", &app.tenant.to_string(), "--count", "1"])
        .env("NATS_URL", &url)
        .env_remove("NATS_CA")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert!(!watch.status.success(), "{stderr}");
    assert!(stderr.contains("recovery-info: error:"), "{stderr}");
    let watch = std::process::Command::new(env!("CARGO_BIN_EXE_recovery-info"))
        .args(["watch", "--tenant", &app.tenant.to_string(), "--count", "1"])
        .env("NATS_URL", &url)
        .env("NATS_CA", &ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // With the CA it subscribes and prints the next event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.add_ok(Uuid::now_v7(), "email", "jane@example.com")
        .await;
    let out = tokio::task::spawn_blocking(move || watch.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("MethodAdded"));
}

#[tokio::test]
async fn eligibility_over_nats_answers_as_http_does() {
    let nats = PrivateNats::start().await;
    let app = spawn_publishing(&nats).await;
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    app.add_ok(admin, "email", "jane@example.com").await;
    let head = app.store().head().await.unwrap();
    let http = app.eligibility(admin).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let request = pb::EligibilityRequest {
        tenant_id: app.tenant.to_string(),
        admin_id: admin.to_string(),
        min_position: Some(head),
    };
    let reply = client
        .request(
            "recovery.v1.rpc.eligibility",
            request.encode_to_vec().into(),
        )
        .await
        .unwrap();
    assert!(
        reply
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Service-Error"))
            .is_none()
    );
    let reply = pb::EligibilityReply::decode(reply.payload).unwrap();
    let verdict = reply.verdict.unwrap();
    assert_eq!(verdict.eligible, http["eligible"].as_bool().unwrap());
    assert_eq!(verdict.policy, http["policy"]);
    assert_eq!(json!(verdict.missing), http["missing"]);
    let masked: Vec<&str> = verdict
        .usable_methods
        .iter()
        .map(|m| m.masked_value.as_str())
        .collect();
    let http_masked = each(&http, "usable_methods", "masked_value");
    assert_eq!(masked, http_masked);
    let ids: Vec<String> = verdict
        .usable_methods
        .iter()
        .map(|m| m.id.clone())
        .collect();
    let http_ids: Vec<String> = http["usable_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, http_ids);
    assert_eq!(reply.position, http["position"].as_u64().unwrap());

    // Errors carry the HTTP code and status.
    let beyond = pb::EligibilityRequest {
        min_position: Some(head + 100),
        ..request
    };
    let reply = client
        .request("recovery.v1.rpc.eligibility", beyond.encode_to_vec().into())
        .await
        .unwrap();
    let headers = reply.headers.unwrap();
    assert_eq!(
        headers.get("Nats-Service-Error").unwrap().as_str(),
        "position_beyond_log"
    );
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "400"
    );
    let r = app
        .send(
            Method::GET,
            &app.admin_path(
                admin,
                &format!("/reset-eligibility?min_position={}", head + 100),
            ),
            &app.all_roles(),
            None,
        )
        .await;
    crate::support::assert_problem(r, 400, "position_beyond_log").await;
}

#[tokio::test]
async fn commit_to_subscriber_latency_and_publish_rate() {
    let nats = PrivateNats::start().await;
    let app = spawn_publishing(&nats).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut sub = client
        .subscribe(format!("recovery.v1.events.{}.>", app.tenant))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let admin = Uuid::now_v7();
        let started = Instant::now();
        let r = app
            .add(
                admin,
                "mobile_phone",
                &format!("+45 20 12 34 {:02}", 10 + i),
            )
            .await;
        let committed = started.elapsed();
        assert_eq!(r.status(), 201);
        let m = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub))
            .await
            .expect("event in time")
            .unwrap();
        assert!(m.subject.contains(&admin.to_string()));
        // Upper bound of commit → subscriber: from the request's start, minus nothing.
        latencies.push((started.elapsed(), committed));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "request start → subscriber: median {:?} (HTTP answer itself {:?}), max {:?}",
        median.0,
        median.1,
        latencies.last().unwrap().0
    );
    assert!(median.0 < Duration::from_millis(250), "{latencies:?}");

    // Publish rate: a backlog written without a publisher, then published by a new replica.
    let db = fresh_database().await;
    let writer = spawn_on(db.clone(), Options::default()).await;
    let n = 300;
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = writer.client.clone();
        let url = writer.admin_path(Uuid::now_v7(), "/methods");
        let token = writer.admin_token();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"kind": "email", "value": format!("u{i}@example.com")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let other_nats = PrivateNats::start().await;
    let started = Instant::now();
    let publishing = spawn_on(
        db,
        Options {
            publisher: Some(publisher(&other_nats)),
            ..Options::default()
        },
    )
    .await;
    let js = js(&other_nats).await;
    let messages = wait_published(&publishing, &js, Duration::from_secs(60)).await;
    let elapsed = started.elapsed().saturating_sub(Duration::from_millis(300));
    eprintln!(
        "published a backlog of {n} events ({} messages with eligibility) in {elapsed:?}: {:.0} messages/s",
        messages.len(),
        messages.len() as f64 / elapsed.as_secs_f64()
    );
    assert_exactly_once_in_order(&messages, n);
}

#[tokio::test]
async fn watch_prints_one_decoded_line_per_event_and_eligibility_change() {
    let nats = PrivateNats::start().await;
    let app = spawn_publishing(&nats).await;
    let tenant = app.tenant.to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_recovery-info"))
        .env("RUST_LOG", "warn")
        .args([
            "watch",
            "--nats-url",
            &nats.url(),
            "--tenant",
            &tenant,
            "--count",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The subscriptions are in place once it says so on stderr.
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut line)
        .await
        .unwrap();
    assert!(line.starts_with("watching tenant"), "{line}");
    let admin = Uuid::now_v7();
    app.add_ok(admin, "mobile_phone", "+45 20 12 34 56").await;
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("watch exits after two messages")
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("1 MethodAdded") && lines[0].contains("+45 •• •• •• 56"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("1 EligibilityChanged") && lines[1].contains("missing=[email]"),
        "{text}"
    );
}

/// A NATS outage, in the binary with its default log filter: one WARN when publishing stops,
/// one INFO with the backlog when it resumes, and none of the NATS client's reconnect lines.
#[tokio::test]
async fn a_nats_outage_logs_one_warning_when_publishing_stops_and_one_line_when_it_resumes() {
    use recovery_info::http::auth::JwtKeys;
    use std::io::BufRead;
    let mut nats = PrivateNats::start().await;
    let database = fresh_database().await;
    let log = std::env::temp_dir().join(format!("ri_outage_{}.log", Uuid::new_v4().simple()));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_recovery-info"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "off",
        ])
        .env_remove("RUST_LOG")
        .env_remove("RECOVERY_DATA_DIR")
        .env("DATABASE_URL", &database)
        .env("NATS_URL", nats.url())
        .env("RECOVERY_JWT_SECRET", crate::support::SECRET)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("recovery-info listening on ")
        .unwrap_or_else(|| panic!("banner {first:?}"))
        .to_owned();
    std::thread::spawn(move || lines.for_each(drop));
    let tenant = Uuid::now_v7();
    let token = JwtKeys::new(crate::support::SECRET.as_bytes())
        .mint(tenant, "helpdesk-1", &[Role::AuthenticationAdmin], 600)
        .unwrap();
    let client = reqwest::Client::new();
    let add = |n: usize| {
        client
            .post(format!(
                "{base}/v1/tenants/{tenant}/admins/{}/methods",
                Uuid::now_v7()
            ))
            .bearer_auth(&token)
            .json(&json!({"kind": "mobile_phone", "value": format!("+45 20 12 34 {:02}", n)}))
            .send()
    };
    assert_eq!(add(0).await.unwrap().status(), 201);
    let logged = |needle: &str| logged_in(&std::fs::read_to_string(&log).unwrap(), needle);
    let deadline = Instant::now() + Duration::from_secs(20);
    while logged("publishing from position").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nats.stop();
    for n in 1..6 {
        assert_eq!(
            add(n).await.unwrap().status(),
            201,
            "commands go on without NATS"
        );
    }
    // Several failed rounds (the backoff grows to 2 s), then NATS comes back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    nats.resume().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while logged("publishing resumed").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let stopped = logged_in(&text, "publishing stopped");
    let resumed = logged_in(&text, "publishing resumed");
    assert_eq!(stopped.len(), 1, "{text}");
    assert!(stopped[0].contains("WARN"), "{text}");
    assert_eq!(resumed.len(), 1, "{text}");
    assert!(
        resumed[0].contains("INFO") && resumed[0].contains("backlog_events="),
        "{text}"
    );
    assert!(
        !text.contains("async_nats"),
        "the client library's lines stay out: {text}"
    );
}

fn logged_in(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

crate::on_both_backends!(
    server_sent_events_resume_after_last_event_id_without_nats,
    a_last_event_id_beyond_the_log_is_a_conflict,
    the_stream_names_its_events_and_filters_by_type_and_admin,
    the_stream_carries_eligibility_changes_when_asked,
);
