//! Schema migrations: plain SQL files under `migrations/postgres/`, applied in order, each in
//! its own transaction, under an advisory lock so that replicas starting together do not race.

use crate::store::StoreError;
use deadpool_postgres::Object;

/// `(version, name, sql)` of every migration this build knows.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "event_log",
        include_str!("../../../migrations/postgres/0001_event_log.sql"),
    ),
    (
        2,
        "publisher",
        include_str!("../../../migrations/postgres/0002_publisher.sql"),
    ),
    (
        3,
        "json_documents",
        include_str!("../../../migrations/postgres/0003_json_documents.sql"),
    ),
    (
        4,
        "server_keys",
        include_str!("../../../migrations/postgres/0004_server_keys.sql"),
    ),
    (
        5,
        "one_admin_projection",
        include_str!("../../../migrations/postgres/0005_one_admin_projection.sql"),
    ),
    (
        6,
        "data_keys",
        include_str!("../../../migrations/postgres/0006_data_keys.sql"),
    ),
    (
        7,
        "reveal_index",
        include_str!("../../../migrations/postgres/0007_reveal_index.sql"),
    ),
    (
        8,
        "merkle_tree",
        include_str!("../../../migrations/postgres/0008_merkle_tree.sql"),
    ),
    (
        9,
        "notifications",
        include_str!("../../../migrations/postgres/0009_notifications.sql"),
    ),
];

/// The newest migration this build knows.
fn known() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The version the database's schema is at; `None` before the first migration (no table).
async fn schema_version(client: &Object) -> Result<Option<i32>, StoreError> {
    let row = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await?;
    Ok(Some(row.get(0)))
}

/// Fails unless the database's schema is the one this build knows (without migrating it).
pub async fn check(client: &Object) -> Result<(), StoreError> {
    StoreError::check_schema(schema_version(client).await?.unwrap_or(0), known())
}

/// An arbitrary constant key for `pg_advisory_lock` while migrating.
const MIGRATION_LOCK: i64 = 0x7265_636f_7665_7279; // "recovery"

/// Brings the schema up to date; returns how many migrations were applied.
pub async fn run(client: &mut Object) -> Result<usize, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply_pending(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn apply_pending(client: &mut Object) -> Result<usize, StoreError> {
    // Created under the lock, and only when missing (`CREATE TABLE IF NOT EXISTS` before the
    // lock raced between replicas, and logged a notice at every start).
    let current = match schema_version(client).await? {
        Some(version) => version,
        None => {
            client
                .batch_execute(
                    "CREATE TABLE schema_migrations (
                         version    integer     PRIMARY KEY,
                         name       text        NOT NULL,
                         applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await?;
            0
        }
    };
    let known = known();
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
        applied += 1;
    }
    Ok(applied)
}
