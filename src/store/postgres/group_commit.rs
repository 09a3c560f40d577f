//! Group commit for PostgreSQL appends.
//!
//! Appends are serialised by the global append lock (the `log_head` row, see the first
//! migration), so one append at a time holds it for its round trips and its WAL flush. To let
//! many concurrent commands share that cost, every append of this process goes through one
//! appender task: it takes all appends waiting at that moment and writes them in ONE
//! transaction — one lock, one read of the streams' tips, one `INSERT` of all events, one
//! `INSERT` of all idempotency records, one commit. Each append is still checked against its
//! own expected version (a stale one is answered `Conflict` and left out), positions stay
//! dense and in commit order, and each stream's hash chain is extended in order.
//!
//! If the group's transaction fails (say, a concurrent replica stored the same idempotency
//! key), it is rolled back and every append of the group is retried alone, so that one bad
//! append cannot fail the others.
//!
//! The appender remembers the tips (version and hash) of the streams it wrote or read, and the
//! head it left the log at. Every append of every replica takes the same lock and moves the
//! head, so when the head it finds under the lock is the head it left, no one else has appended
//! since and the tips it remembers are the tips in the table: it reads only the tips of streams
//! it does not know. When every tip a group needs is remembered, it does not even read the head
//! first: it sends the whole transaction in one round trip behind a statement that takes the
//! lock and fails unless the head is the remembered one, and starts over the careful way (and
//! stays careful for a few groups) when it fails. When the head has moved (another replica, or
//! a bulk load), it forgets the tips and reads them all. Any failure forgets them too.

use super::append::AppendJob;
use super::known_tips::{self, KnownTips};
use super::{Param, rolled_back_on_error, to_i64, to_u64};
use crate::domain::{AdminId, StreamId, TenantId};
use crate::keys::{DataKey, Keyring, WrappedKey};
use crate::store::keys::{erases, key_row};
use crate::store::place::{Request, Tip, place};
use crate::store::{Appended, NO_STATUS, StoreError};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::collections::HashMap;
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// The most appends written in one transaction.
const MAX_GROUP: usize = 256;

/// Starts the appender task; it ends when every sender is dropped.
pub(super) fn spawn(pool: Pool) -> mpsc::Sender<AppendJob> {
    let (tx, mut rx) = mpsc::channel::<AppendJob>(4 * MAX_GROUP);
    tokio::spawn(async move {
        let mut known = KnownTips::default();
        while let Some(first) = rx.recv().await {
            let mut jobs = vec![first];
            while jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            metrics::histogram!("recovery_append_group_size").record(jobs.len() as f64);
            run_group(&pool, jobs, &mut known).await;
        }
    });
    tx
}

async fn run_group(pool: &Pool, jobs: Vec<AppendJob>, known: &mut KnownTips) {
    match write(pool, &jobs, known).await {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, n = jobs.len(), "group append failed; retrying one by one");
            for job in jobs {
                let outcome = match write(pool, std::slice::from_ref(&job), known).await {
                    Ok(mut outcomes) => outcomes.pop().unwrap_or_else(|| {
                        Err(StoreError::Config("an append got no outcome".into()))
                    }),
                    Err(e) => Err(e),
                };
                let _ = job.reply.send(outcome);
            }
        }
    }
}

/// The columns of the events to insert, one array per column (for `unnest`).
#[derive(Default)]
struct EventRows {
    position: Vec<i64>,
    stream_id: Vec<String>,
    version: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<&'static str>,
    tenant_id: Vec<Uuid>,
    admin_id: Vec<Option<Uuid>>,
    occurred_at: Vec<DateTime<Utc>>,
    payload: Vec<Vec<u8>>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

/// The idempotency records to insert, one array per column.
#[derive(Default)]
struct AnswerRows {
    tenant_id: Vec<Uuid>,
    subject: Vec<String>,
    key: Vec<String>,
    request_hash: Vec<Vec<u8>>,
    status: Vec<i16>,
    response: Vec<serde_json::Value>,
    admin_id: Vec<Option<Uuid>>,
}

/// The data keys of a group's admin streams: the key that seals each job's events (`None` for
/// a tenant or audit stream, or an erased admin), and the keys made for admins without one,
/// to insert with the group.
struct GroupKeys {
    per_job: Vec<Option<DataKey>>,
    new: HashMap<(TenantId, AdminId), (DataKey, WrappedKey)>,
}

/// Finds the group's data keys: remembered, else read (one round trip, before the
/// transaction: a stored key never changes but to be destroyed, after which its admin's
/// stream takes no event), else made.
async fn group_keys(
    client: &deadpool_postgres::Client,
    keys: &Keyring,
    jobs: &[AppendJob],
) -> Result<GroupKeys, StoreError> {
    let mut found: HashMap<(TenantId, AdminId), Option<DataKey>> = HashMap::new();
    let mut missing: Vec<(TenantId, AdminId)> = Vec::new();
    for job in jobs {
        if let StreamId::Admin(t, a) = job.append.stream {
            if found.contains_key(&(t, a)) || missing.contains(&(t, a)) {
                continue;
            }
            match keys.remembered(t, a) {
                Some(key) => {
                    found.insert((t, a), Some(key));
                }
                None => missing.push((t, a)),
            }
        }
    }
    let mut new = HashMap::new();
    if !missing.is_empty() {
        let (tenants, admins): (Vec<Uuid>, Vec<Uuid>) = missing
            .iter()
            .map(|(t, a)| (t.as_uuid(), a.as_uuid()))
            .unzip();
        let read = client
            .prepare_cached(
                "SELECT k.tenant_id, k.admin_id, k.kek_id, k.wrapped
                 FROM unnest($1::uuid[], $2::uuid[]) AS m(t, a)
                 JOIN data_keys k ON k.tenant_id = m.t AND k.admin_id = m.a",
            )
            .await?;
        for r in client.query(&read, &[&tenants, &admins]).await? {
            let (t, a) = (TenantId::from_uuid(r.get(0)), AdminId::from_uuid(r.get(1)));
            let key = match key_row(true, r.get(2), r.get(3)).flatten() {
                Some(wrapped) => Some(keys.unwrap(t, a, &wrapped)?),
                None => None,
            };
            found.insert((t, a), key);
        }
        for (t, a) in missing {
            if let std::collections::hash_map::Entry::Vacant(slot) = found.entry((t, a)) {
                let (key, wrapped) = keys.generate(t, a)?;
                slot.insert(Some(key.clone()));
                new.insert((t, a), (key, wrapped));
            }
        }
    }
    let per_job = jobs
        .iter()
        .map(|job| match job.append.stream {
            StreamId::Admin(t, a) => found.get(&(t, a)).cloned().flatten(),
            _ => None,
        })
        .collect();
    Ok(GroupKeys { per_job, new })
}

/// Writes a group in one transaction; one outcome per job, in order.
///
/// One round trip when the appender remembers the head and every tip the group needs (the
/// usual case on a replica that appends alone): `BEGIN`, the lock with a check of the head,
/// the inserts, the head and `COMMIT`, pipelined. Otherwise, or when the check finds that the
/// head moved, two: `BEGIN`, the lock and the tips pipelined; then the inserts, the head and
/// `COMMIT`. A failing statement aborts the transaction, so the `COMMIT`
/// behind it only rolls back; on any error the connection is rolled back before it returns
/// to the pool.
async fn write(
    pool: &Pool,
    jobs: &[AppendJob],
    known: &mut KnownTips,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let client = pool.get().await?;
    let Some(keys) = jobs.first().map(|j| j.keys.clone()) else {
        return Ok(Vec::new());
    };
    let group = group_keys(&client, &keys, jobs).await?;
    let written = rolled_back_on_error(&client, write_in(&client, jobs, &group, known).await).await;
    match &written {
        Err(_) => known.forget(),
        Ok(outcomes) => {
            // Committed: the new keys are stored, the erased ones destroyed.
            for (job, outcome) in jobs.iter().zip(outcomes) {
                if let (Ok(_), StreamId::Admin(t, a)) = (outcome, job.append.stream) {
                    if erases(&job.append.events) {
                        keys.forget(t, a);
                    } else if let Some((key, _)) = group.new.get(&(t, a)) {
                        keys.remember(t, a, key.clone());
                    }
                }
            }
        }
    }
    written
}

/// The tips of the streams `names` (version 0 and the genesis hash for a stream without
/// events), read with `query`; nothing is sent for no names.
async fn read_tips(
    client: &deadpool_postgres::Client,
    query: &tokio_postgres::Statement,
    names: &[String],
) -> Result<HashMap<String, Tip>, tokio_postgres::Error> {
    let mut tips: HashMap<String, Tip> =
        names.iter().map(|n| (n.clone(), Tip::genesis())).collect();
    if !names.is_empty() {
        for r in client.query(query, &[&names]).await? {
            let tip = Tip {
                version: to_u64(r.get(1)),
                hash: r.get(2),
            };
            tips.insert(r.get(0), tip);
        }
    }
    Ok(tips)
}

/// What a group's write found: the outcomes, or that the head it assumed had moved.
enum Written {
    Done(Vec<Result<Appended, StoreError>>),
    /// The optimistic write found another head than the one remembered: nothing was written.
    HeadMoved,
}

async fn write_in(
    client: &deadpool_postgres::Client,
    jobs: &[AppendJob],
    group: &GroupKeys,
    known: &mut KnownTips,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    // The tips of the appended streams and of the guarded ones.
    let tip_names: Vec<String> = jobs
        .iter()
        .flat_map(|j| std::iter::once(j.append.stream).chain(j.append.guard.map(|(s, _)| s)))
        .map(|s| s.to_string())
        .collect();
    if let Some(head) = known.optimistic_head(&tip_names) {
        let tips = tip_names
            .iter()
            .filter_map(|n| known.tips.get(n).map(|t| (n.clone(), t.clone())))
            .collect();
        match place_and_write(client, jobs, group, head, tips, known, true).await? {
            Written::Done(outcomes) => {
                metrics::counter!("recovery_append_groups_total", "round_trips" => "1")
                    .increment(1);
                return Ok(outcomes);
            }
            Written::HeadMoved => {
                // Another replica (or a bulk load) appended since: rolled back, read it all.
                known.forget();
                known.doubt();
                metrics::counter!("recovery_append_head_moved_total").increment(1);
            }
        }
    }
    let lock = client
        .prepare_cached("SELECT position FROM log_head FOR UPDATE")
        .await?;
    // The newest event of each stream of the group. Sent right behind the lock statement
    // (pipelined): PostgreSQL runs it after the lock is granted, with a snapshot that sees
    // every append committed before ours.
    let tips_query = client
        .prepare_cached(
            // One backward index probe per stream (LIMIT 1), however long the stream is.
            "SELECT s.name, t.stream_version, t.hash FROM unnest($1::text[]) AS s(name)
             CROSS JOIN LATERAL (SELECT stream_version, hash FROM events
                                 WHERE stream_id = s.name
                                 ORDER BY stream_version DESC LIMIT 1) t",
        )
        .await?;
    // Only the tips not remembered are read with the lock; the rest are checked by the head.
    let unknown: Vec<String> = match known.head {
        Some(_) => tip_names
            .iter()
            .filter(|n| !known.tips.contains_key(*n))
            .cloned()
            .collect(),
        None => tip_names.clone(),
    };
    let (_, head, mut tips) = tokio::try_join!(
        client.batch_execute("BEGIN"),
        client.query_one(&lock, &[]),
        read_tips(client, &tips_query, &unknown),
    )?;
    let head = to_u64(head.get(0));
    let remembered: Vec<String> = tip_names
        .iter()
        .filter(|n| !tips.contains_key(*n))
        .cloned()
        .collect();
    if known.head == Some(head) {
        for name in remembered {
            if let Some(tip) = known.tips.get(&name) {
                tips.insert(name, tip.clone());
            }
        }
    } else {
        // Someone else appended since: what is remembered may be stale.
        known.forget();
        tips.extend(read_tips(client, &tips_query, &remembered).await?);
    }
    match place_and_write(client, jobs, group, head, tips, known, false).await? {
        Written::Done(outcomes) => {
            metrics::counter!("recovery_append_groups_total", "round_trips" => "2").increment(1);
            Ok(outcomes)
        }
        // Not asked for: the head was read under the lock.
        Written::HeadMoved => Err(StoreError::Config(
            "the log's head moved under its lock".into(),
        )),
    }
}

/// Places the group's events after `head` on the streams' `tips` ([`place`]), and writes them
/// with the head and the commit in one round trip.
///
/// `optimistic`: the transaction is not open yet, and `head` and `tips` are what this appender
/// remembers. The same round trip then also opens it and takes the lock with a statement that
/// fails unless the head is still `head` — no one appended since, so the remembered tips are
/// the table's — and everything behind it is rolled back when it fails ([`Written::HeadMoved`]).
async fn place_and_write(
    client: &deadpool_postgres::Client,
    jobs: &[AppendJob],
    group: &GroupKeys,
    head: u64,
    mut tips: HashMap<String, Tip>,
    known: &mut KnownTips,
    optimistic: bool,
) -> Result<Written, StoreError> {
    let requests = jobs.iter().zip(&group.per_job).map(|(job, key)| Request {
        stream: job.append.stream,
        expected: job.append.expected,
        guard: job.append.guard,
        events: &job.append.events,
        key: key.as_ref(),
    });
    let (next, placed) = place(head, &mut tips, requests);
    let mut rows = EventRows::default();
    let mut answers = AnswerRows::default();
    // The data keys made for this group's admins, and the admins it erases.
    let (mut key_tenants, mut key_admins, mut key_keks, mut key_wrapped) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::<Vec<u8>>::new());
    let (mut erased_tenants, mut erased_admins) = (Vec::new(), Vec::new());
    let mut outcomes = Vec::with_capacity(jobs.len());
    for (job, placed) in jobs.iter().zip(placed) {
        let placed = match placed {
            Ok(placed) => placed,
            Err(refused) => {
                outcomes.push(Err(refused));
                continue;
            }
        };
        let name = job.append.stream.to_string();
        if let StreamId::Admin(t, a) = job.append.stream {
            if let Some((_, wrapped)) = group.new.get(&(t, a))
                && !key_admins.contains(&a.as_uuid())
            {
                key_tenants.push(t.as_uuid());
                key_admins.push(a.as_uuid());
                key_keks.push(wrapped.kek_id.clone());
                key_wrapped.push(wrapped.wrapped.clone());
            }
            if !placed.is_empty() && erases(&job.append.events) {
                erased_tenants.push(t.as_uuid());
                erased_admins.push(a.as_uuid());
            }
        }
        let mut recorded = Vec::with_capacity(placed.len());
        for p in placed {
            let event = p.event;
            rows.position.push(to_i64(event.position));
            rows.stream_id.push(name.clone());
            rows.version.push(to_i64(event.version));
            rows.event_id.push(event.event_id);
            rows.event_type.push(event.type_name());
            rows.tenant_id.push(job.append.stream.tenant().as_uuid());
            rows.admin_id
                .push(event.indexed_admin().map(|a| a.as_uuid()));
            rows.occurred_at.push(event.occurred_at);
            rows.payload.push(p.payload);
            rows.prev_hash.push(p.prev_hash);
            rows.hash.push(p.hash);
            recorded.push(event);
        }
        let kept = match &job.append.answer {
            Some(answer) => {
                let outcome = (answer.build)(&recorded);
                answers.response.push(serde_json::to_value(&outcome)?);
                answers.tenant_id.push(answer.key.tenant_id);
                answers.subject.push(answer.key.subject.clone());
                answers.key.push(answer.key.key.clone());
                answers.request_hash.push(answer.request_hash.clone());
                answers.status.push(NO_STATUS);
                answers
                    .admin_id
                    .push(job.append.stream.admin().map(|a| a.as_uuid()));
                Some(outcome)
            }
            None => None,
        };
        outcomes.push(Ok(Appended {
            events: recorded,
            answer: kept,
        }));
    }

    // Fails (division by zero) unless the head is still the remembered one; FOR UPDATE takes
    // the append lock, and returns the row as the last holder of the lock committed it. Only
    // a guess sends it.
    let expect_head = if optimistic {
        Some(
            client
                .prepare_cached("SELECT 1 / (position = $1)::int FROM log_head FOR UPDATE")
                .await?,
        )
    } else {
        None
    };
    let insert_events = client
        .prepare_cached(
            "INSERT INTO events (position, stream_id, stream_version, event_id, event_type,
                                 tenant_id, admin_id, occurred_at, payload, prev_hash, hash)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[],
                                  $6::uuid[], $7::uuid[], $8::timestamptz[], $9::bytea[],
                                  $10::bytea[], $11::bytea[])",
        )
        .await?;
    let insert_answers = client
        .prepare_cached(
            "INSERT INTO idempotency_keys (tenant_id, subject, key, request_hash, status, response,
                                           admin_id)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::smallint[],
                                  $6::json[], $7::uuid[])",
        )
        .await?;
    let insert_keys = client
        .prepare_cached(
            "INSERT INTO data_keys (tenant_id, admin_id, kek_id, wrapped)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[])",
        )
        .await?;
    // The crypto-shredding: each erased admin's key goes (a tombstone row stays), and so do
    // their stored answers (they may show a value), before this group's answers are stored.
    let erase = client
        .prepare_cached(
            "WITH erased AS (
                 INSERT INTO data_keys (tenant_id, admin_id, erased_at)
                 SELECT t, a, now() FROM unnest($1::uuid[], $2::uuid[]) AS m(t, a)
                 ON CONFLICT (tenant_id, admin_id)
                 DO UPDATE SET kek_id = NULL, wrapped = NULL, erased_at = now()
                 RETURNING tenant_id, admin_id)
             DELETE FROM idempotency_keys i USING erased
             WHERE i.tenant_id = erased.tenant_id AND i.admin_id = erased.admin_id",
        )
        .await?;
    let move_head = client
        .prepare_cached("UPDATE log_head SET position = $1")
        .await?;
    let event_params: [&Param; 11] = [
        &rows.position,
        &rows.stream_id,
        &rows.version,
        &rows.event_id,
        &rows.event_type,
        &rows.tenant_id,
        &rows.admin_id,
        &rows.occurred_at,
        &rows.payload,
        &rows.prev_hash,
        &rows.hash,
    ];
    let answer_params: [&Param; 7] = [
        &answers.tenant_id,
        &answers.subject,
        &answers.key,
        &answers.request_hash,
        &answers.status,
        &answers.response,
        &answers.admin_id,
    ];
    let key_params: [&Param; 4] = [&key_tenants, &key_admins, &key_keks, &key_wrapped];
    let erase_params: [&Param; 2] = [&erased_tenants, &erased_admins];
    let old_head = to_i64(head);
    let new_head = to_i64(next);
    let head_params: [&Param; 1] = [&new_head];
    let expect_params: [&Param; 1] = [&old_head];
    // Up to six statements in one round trip (pipelined: each is sent when first polled, in
    // this order), the commit last. Every answer is awaited: the first error in statement
    // order is the cause, the later ones only say that the transaction was aborted.
    // A group without idempotency keys (the usual case) has no records to insert.
    let (opened, events, new_keys, erased, answers, head_moved, commit) = tokio::join!(
        async {
            match &expect_head {
                Some(expect_head) => {
                    let (begin, check) = tokio::join!(
                        client.batch_execute("BEGIN"),
                        client.query_one(expect_head, &expect_params),
                    );
                    begin.and(check.map(drop))
                }
                None => Ok(()),
            }
        },
        client.execute(&insert_events, &event_params),
        async {
            if key_admins.is_empty() {
                Ok(0)
            } else {
                client.execute(&insert_keys, &key_params).await
            }
        },
        async {
            if erased_admins.is_empty() {
                Ok(0)
            } else {
                client.execute(&erase, &erase_params).await
            }
        },
        async {
            if answers.tenant_id.is_empty() {
                Ok(0)
            } else {
                client.execute(&insert_answers, &answer_params).await
            }
        },
        client.execute(&move_head, &head_params),
        client.batch_execute("COMMIT"),
    );
    if let Err(e) = &opened
        && e.code() == Some(&SqlState::DIVISION_BY_ZERO)
    {
        // The COMMIT behind it only rolled back.
        return Ok(Written::HeadMoved);
    }
    let written = opened
        .and(events)
        .and(new_keys)
        .and(erased)
        .and(answers)
        .and(head_moved)
        .and(commit);
    if let Err(e) = written {
        let key_taken = e.as_db_error().is_some_and(|d| {
            *d.code() == SqlState::UNIQUE_VIOLATION && d.table() == Some("idempotency_keys")
        });
        // A concurrent request (another replica) stored one of these keys first.
        return Err(if key_taken {
            StoreError::IdempotencyRace
        } else {
            e.into()
        });
    }
    // Committed: these tips are the table's at the head this group leaves.
    if known.tips.len() + tips.len() > known_tips::TIPS_REMEMBERED {
        known.forget();
    }
    known.head = Some(next);
    known.tips.extend(tips);
    metrics::counter!("recovery_events_appended_total").increment(rows.position.len() as u64);
    Ok(Written::Done(outcomes))
}
