//! The embedded event store: SQLite (bundled) in a data directory, WAL journal, full sync.
//!
//! The zero-setup default when no `DATABASE_URL` is given. Same semantics as the PostgreSQL
//! store: expected-version appends, idempotency records in the append's transaction, a dense
//! gap-free global position, the hash chain, and projections checkpointed in the same
//! transaction as their rows. SQLite serialises writers itself (`BEGIN IMMEDIATE`), which is
//! the embedded equivalent of the global append lock. Every call runs on the blocking pool.

mod legacy;
mod notifications;
mod projections;
mod replay;
mod tree;

use crate::config::create_data_dir;
use crate::domain::StreamId;
use crate::events::{DecodeError, RecordedEvent};
use crate::keys::kek::{KekRing, KeyWrapper};
use crate::keys::{DataKey, Keyring, WrappedKey};
use crate::store::keys::{KekSource, check_wrapper, erases, key_row, open_event};
use crate::store::place::{Request, Tip, place};
use crate::store::{
    Append, Appended, BackendError, HistoryQuery, IdempotencyKey, NO_STATUS, StoreError,
    StoredAnswer,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Mutex;
use uuid::Uuid;

/// The database file inside the data directory.
pub const DB_FILE: &str = "recovery-info.sqlite3";

/// The files SQLite keeps beside the database in WAL mode.
const COMPANION_SUFFIXES: [&str; 2] = ["-wal", "-shm"];

/// `(version, name, sql)` of every embedded migration this build knows.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "event_log",
        include_str!("../../../migrations/sqlite/0001_event_log.sql"),
    ),
    (
        2,
        "write_probe",
        include_str!("../../../migrations/sqlite/0002_write_probe.sql"),
    ),
    (
        3,
        "server_keys",
        include_str!("../../../migrations/sqlite/0003_server_keys.sql"),
    ),
    (
        4,
        "one_admin_projection",
        include_str!("../../../migrations/sqlite/0004_one_admin_projection.sql"),
    ),
    (
        5,
        "data_keys",
        include_str!("../../../migrations/sqlite/0005_data_keys.sql"),
    ),
    (
        6,
        "reveal_index",
        include_str!("../../../migrations/sqlite/0006_reveal_index.sql"),
    ),
    (
        7,
        "merkle_tree",
        include_str!("../../../migrations/sqlite/0007_merkle_tree.sql"),
    ),
    (
        8,
        "notifications",
        include_str!("../../../migrations/sqlite/0008_notifications.sql"),
    ),
];

/// The embedded store.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    data_dir: PathBuf,
    /// Set when a call failed because the database could not be written or read (see
    /// [`is_unavailable`]); cleared by [`SqliteStore::ping`] once a write commits again.
    /// Changed only under the connection's lock, which orders it.
    failing: Arc<AtomicBool>,
    /// Where the KEKs come from, and the keyring once loaded (it needs the migrated schema).
    kek: KekSource,
    keyring: Arc<tokio::sync::OnceCell<Arc<Keyring>>>,
}

/// Whether SQLite failed because the database cannot be written or read now, rather than
/// refusing the statement: the disk is full, an I/O error (EFBIG past a file size limit is one),
/// a file or its file system became read-only or cannot be opened, or another process held
/// the lock past the busy timeout. Nothing of the transaction was committed, and a retry can
/// succeed once space is freed or the lock released: the API answers 503, not 500.
/// `SQLITE_LOCKED` is not among them: with one connection it means a statement of ours
/// conflicts with another of ours, a bug that a retry does not mend.
fn is_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DiskFull
                | SystemIoFailure
                | ReadOnly
                | CannotOpen
                | PermissionDenied
                | DatabaseBusy
                | FileLockingProtocolFailed
                | NoLargeFileSupport
        )
    )
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        BackendError::new("embedded database", is_unavailable(&e), e).into()
    }
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn uuid_at(row: &Row<'_>, idx: usize) -> Result<Uuid, StoreError> {
    let text: String = row.get(idx)?;
    Uuid::parse_str(&text).map_err(|_| DecodeError(format!("{text:?} is not a UUID")).into())
}

/// The columns of an event read with its admin's data-key row ([`KEYED_JOIN`]).
const KEYED_COLUMNS: &str = "e.payload, k.kek_id, k.wrapped, k.admin_id IS NOT NULL";

/// The join that reads an event's data-key row (see `store::keys`).
const KEYED_JOIN: &str =
    "LEFT JOIN data_keys k ON k.tenant_id = e.tenant_id AND k.admin_id = e.admin_id";

/// A row of [`KEYED_COLUMNS`], read from column `first` on.
type KeyedRow = (Vec<u8>, Option<String>, Option<Vec<u8>>, bool);

fn keyed_row(r: &Row<'_>, first: usize) -> rusqlite::Result<KeyedRow> {
    Ok((
        r.get(first)?,
        r.get(first + 1)?,
        r.get(first + 2)?,
        r.get(first + 3)?,
    ))
}

fn decode_rows(keys: &Keyring, rows: Vec<KeyedRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.into_iter()
        .map(|(payload, kek_id, wrapped, has)| {
            open_event(keys, &payload, key_row(has, kek_id, wrapped))
        })
        .collect()
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, with the KEK it keeps there.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(data_dir, KekSource::Generated).await
    }

    /// [`SqliteStore::open`] with the KEKs from `kek`.
    pub async fn open_with(data_dir: &Path, kek: KekSource) -> Result<Self, StoreError> {
        let dir = data_dir.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || open_connection(&dir))
            .await
            .map_err(|e| StoreError::Config(format!("cannot open the data directory: {e}")))??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            data_dir: data_dir.to_path_buf(),
            failing: Arc::new(AtomicBool::new(false)),
            kek,
            keyring: Default::default(),
        })
    }

    /// The keyring: the KEKs (the data directory's generated one by default) checked against
    /// the database (see `store::keys`), loaded at the first call after the schema is migrated.
    pub async fn keyring(&self) -> Result<Arc<Keyring>, StoreError> {
        self.keyring
            .get_or_try_init(|| async {
                let ring = match crate::store::keys::configured(&self.kek)? {
                    Some(ring) => ring,
                    None => {
                        let dir = self.data_dir.clone();
                        tokio::task::spawn_blocking(move || KekRing::in_data_dir(&dir))
                            .await
                            .map_err(|e| StoreError::Config(e.to_string()))??
                    }
                };
                let ring = self
                    .run(move |c| {
                        let stored: Vec<(String, Vec<u8>)> = c
                            .prepare("SELECT id, check_value FROM key_encryption_keys")?
                            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                            .collect::<Result<_, _>>()?;
                        let wrapping: Vec<String> = c
                            .prepare(
                                "SELECT DISTINCT kek_id FROM data_keys WHERE kek_id IS NOT NULL",
                            )?
                            .query_map([], |r| r.get(0))?
                            .collect::<Result<_, _>>()?;
                        for (id, check) in check_wrapper(&ring, &stored, &wrapping)? {
                            c.execute(
                                "INSERT INTO key_encryption_keys (id, check_value, created_at_ms)
                                 VALUES (?1, ?2, ?3)",
                                params![id, check, chrono::Utc::now().timestamp_millis()],
                            )?;
                        }
                        Ok(ring)
                    })
                    .await?;
                tracing::debug!(active = ring.active_id(), "key-encryption keys checked");
                Ok::<_, StoreError>(Arc::new(Keyring::new(Box::new(ring))))
            })
            .await
            .cloned()
    }

    /// Where the data lives.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs `f` with the connection on the blocking pool.
    ///
    /// The connection is taken before the blocking task is spawned, not inside it: callers
    /// wait for it as tasks, and at most one blocking thread works for the store at a time.
    /// Taken inside, every waiting call held a blocking thread of its own, parked on the lock;
    /// under load tokio grew its blocking pool towards its 512 threads and let them go again,
    /// and the process's memory rose and fell with them (the soak's embedded-store RSS,
    /// docs/benchmarks.md). A panic inside `f` rolls its transaction back as it unwinds and
    /// releases the lock: the connection stays consistent.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.clone().lock_owned().await;
        let failing = self.failing.clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&mut guard);
            if let Err(e) = &result
                && e.is_unavailable()
            {
                failing.store(true, Ordering::Relaxed);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Config(format!("embedded store task failed: {e}")))?
    }

    /// Sizes the connection's page cache for a service that runs for long: the store's working
    /// set (the last pages of the log, the index leaves of the admins' streams, the
    /// projections). SQLite's default (2 MiB) is smaller than that, and then every append reads
    /// its index pages back through the kernel: the 30 min soak grew slower as the file grew
    /// (docs/benchmarks.md, "Soak"). The memory is taken as pages are touched, up to the bound.
    /// The one-pass commands (`audit export`, `verify`, `replay`) read each page once and keep
    /// SQLite's default, which bounds their memory.
    pub async fn cache_for_serving(&self) -> Result<(), StoreError> {
        self.run(|c| {
            // A negative value is KiB.
            c.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
            Ok(())
        })
        .await
    }

    /// Applies pending migrations; returns how many ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        self.run(migrate).await
    }

    /// Fails unless the schema is the one this build knows.
    pub async fn schema_is_current(&self) -> Result<(), StoreError> {
        self.run(|c| {
            let found = schema_version(c)?.unwrap_or(0);
            StoreError::check_schema(found as i32, known_version() as i32)
        })
        .await
    }

    /// Checks the database answers and, once a call failed because the database could not be
    /// written or read, that a write commits again: readiness stays off while writes cannot
    /// succeed (a `SELECT 1` answers from a full disk), and comes back without a restart once
    /// they can. The probe write is one row of `write_probe`, and only while failing.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let failing = self.failing.clone();
        self.run(move |c| {
            if !failing.load(Ordering::Relaxed) {
                return Ok(c.query_row("SELECT 1", [], |_| Ok(()))?);
            }
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE write_probe SET probed_at_ms = ?1",
                [chrono::Utc::now().timestamp_millis()],
            )?;
            tx.commit()?;
            failing.store(false, Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    pub async fn server_key(&self, name: &'static str) -> Result<[u8; 32], StoreError> {
        let candidate = super::random_key()?;
        self.run(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO server_keys (name, key, created_at_ms) VALUES (?1, ?2, ?3)",
                params![
                    name,
                    candidate.as_slice(),
                    chrono::Utc::now().timestamp_millis()
                ],
            )?;
            let key: Vec<u8> =
                c.query_row("SELECT key FROM server_keys WHERE name = ?1", [name], |r| {
                    r.get(0)
                })?;
            super::key_of(name, &key)
        })
        .await
    }

    /// See `Maintenance::rewrap_data_keys`.
    pub async fn rewrap_data_keys(&self, limit: u32) -> Result<u64, StoreError> {
        let keys = self.keyring().await?;
        self.run(move |c| {
            let active = keys.wrapper().active_id().to_owned();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rows: Vec<(String, String, String, Vec<u8>)> = tx
                .prepare(
                    "SELECT tenant_id, admin_id, kek_id, wrapped FROM data_keys
                     WHERE kek_id IS NOT NULL AND kek_id <> ?1 LIMIT ?2",
                )?
                .query_map(params![active, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut moved = 0;
            for (t, a, kek_id, wrapped) in rows {
                let parse = |s: &str| {
                    Uuid::parse_str(s).map_err(|_| DecodeError(format!("{s:?} is not a UUID")))
                };
                let (tenant, admin) = (
                    crate::domain::TenantId::from_uuid(parse(&t)?),
                    crate::domain::AdminId::from_uuid(parse(&a)?),
                );
                let old = WrappedKey { kek_id, wrapped };
                if let Some(new) = keys.rewrap(tenant, admin, &old)? {
                    moved += tx.execute(
                        "UPDATE data_keys SET kek_id = ?3, wrapped = ?4
                         WHERE tenant_id = ?1 AND admin_id = ?2",
                        params![t, a, new.kek_id, new.wrapped],
                    )? as u64;
                }
            }
            tx.commit()?;
            Ok(moved)
        })
        .await
    }

    /// See `Maintenance::data_key_counts`.
    pub async fn data_key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        self.run(|c| {
            Ok(
                c.prepare(
                    "SELECT kek_id, count(*) FROM data_keys GROUP BY kek_id ORDER BY kek_id",
                )?
                .query_map([], |r| Ok((r.get(0)?, u64_of(r.get(1)?))))?
                .collect::<Result<_, _>>()?,
            )
        })
        .await
    }

    pub async fn head(&self) -> Result<u64, StoreError> {
        self.run(|c| {
            Ok(u64_of(c.query_row(
                "SELECT position FROM log_head",
                [],
                |r| r.get(0),
            )?))
        })
        .await
    }

    pub async fn load_streams(
        &self,
        streams: &[(StreamId, u64)],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let streams: Vec<(String, i64)> = streams
            .iter()
            .map(|(s, v)| (s.to_string(), i64_of(*v)))
            .collect();
        let keys = self.keyring().await?;
        self.run(move |c| {
            let mut payloads = Vec::new();
            let mut stmt = c.prepare_cached(&format!(
                "SELECT e.position, {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
                 WHERE e.stream_id = ?1 AND e.stream_version > ?2
                 ORDER BY e.stream_version"
            ))?;
            for (name, after) in &streams {
                let rows = stmt.query_map(params![name, after], |r| {
                    Ok((r.get::<_, i64>(0)?, keyed_row(r, 1)?))
                })?;
                for row in rows {
                    payloads.push(row?);
                }
            }
            payloads.sort_by_key(|(p, _)| *p);
            decode_rows(&keys, payloads.into_iter().map(|(_, p)| p).collect())
        })
        .await
    }

    pub async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        let keys = self.keyring().await?;
        self.run(move |c| read_log(c, &keys, after, limit)).await
    }

    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<RecordedEvent>, StoreError> {
        let q = query.clone();
        let keys = self.keyring().await?;
        self.run(move |c| {
            // An admin's history: their stream, and the reads of their values (`PiiRevealed`
            // rows index the admin read: `RecordedEvent::indexed_admin`).
            let scope = match q.admin {
                Some(_) => {
                    "(e.stream_id = ?1 OR (e.event_type = 'PiiRevealed' AND e.admin_id = ?7
                                          AND e.tenant_id = ?8))"
                }
                None => "e.tenant_id = ?1 AND ?7 IS NULL AND ?8 IS NULL",
            };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
                 WHERE {scope} AND e.position > ?2
                   AND (?3 IS NULL OR e.occurred_at_ms >= ?3)
                   AND (?4 IS NULL OR e.occurred_at_ms < ?4)
                   AND (?5 = '' OR instr(?5, ',' || e.event_type || ',') > 0)
                   AND (?9 IS NULL OR e.position <= ?9)
                 ORDER BY e.position LIMIT ?6"
            ))?;
            let types = if q.types.is_empty() {
                String::new()
            } else {
                format!(",{},", q.types.join(","))
            };
            let rows = stmt
                .query_map(
                    params![
                        q.scope_key(),
                        i64_of(q.after),
                        q.since.map(|t| t.timestamp_millis()),
                        q.until.map(|t| t.timestamp_millis()),
                        types,
                        q.limit,
                        q.admin.map(|a| a.to_string()),
                        q.admin.map(|_| q.tenant.to_string()),
                        q.upto.map(i64_of),
                    ],
                    |r| keyed_row(r, 0),
                )?
                .collect::<Result<Vec<_>, _>>()?;
            decode_rows(&keys, rows)
        })
        .await
    }

    pub async fn idempotent_answer(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let key = key.clone();
        self.run(move |c| {
            let row = c
                .query_row(
                    "SELECT request_hash, response FROM idempotency_keys
                     WHERE tenant_id = ?1 AND subject = ?2 AND key = ?3",
                    params![key.tenant_id.to_string(), key.subject, key.key],
                    |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            row.map(|(request_hash, outcome)| {
                Ok(StoredAnswer {
                    request_hash,
                    outcome: serde_json::from_str(&outcome)?,
                })
            })
            .transpose()
        })
        .await
    }

    /// Writes an append (see `EventLog::append_to`).
    pub async fn append_to(&self, append: Append) -> Result<Appended, StoreError> {
        let keys = self.keyring().await?;
        let appended = self.run(move |c| write_append(c, &keys, append)).await?;
        metrics::counter!("recovery_events_appended_total").increment(appended.events.len() as u64);
        Ok(appended)
    }
}

/// Refuses a store file that exists and cannot be written (SQLite would open it read-only, or
/// fail on its first write, and every write would fail while reads answer), and tightens one
/// that others may read to 0600, with a warning: it holds personal data. A missing file is
/// created by SQLite.
fn check_store_file(path: &Path) -> Result<(), StoreError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Config(format!(
                "cannot inspect the database file {}: {e}",
                path.display()
            )));
        }
    };
    let not_writable = |e: std::io::Error| {
        StoreError::Config(format!(
            "the database file {} is not writable: {e}",
            path.display()
        ))
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // access(2) rather than opening the file for writing: closing that descriptor would
        // release the locks SQLite holds on the file in this process.
        rustix::fs::access(path, rustix::fs::Access::WRITE_OK)
            .map_err(|e| not_writable(e.into()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => tracing::warn!(
                    path = %path.display(),
                    was = format!("{mode:o}"),
                    "the database file was readable by others; tightened to 0600"
                ),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    error = %e,
                    "the database file is readable by others and cannot be tightened"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    if meta.permissions().readonly() {
        return Err(not_writable(std::io::ErrorKind::PermissionDenied.into()));
    }
    Ok(())
}

/// Creates the empty database file readable by its owner only, if it does not exist: SQLite
/// gives its -wal and -shm the database file's mode, so they are the owner's only too.
fn create_database_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Config(format!(
            "cannot create the database file {}: {e}",
            path.display()
        ))),
    }
}

/// The bound on the serving connection's page cache, in KiB (`PRAGMA cache_size`).
const PAGE_CACHE_KIB: i64 = 64 * 1024;

fn open_connection(dir: &Path) -> Result<Connection, StoreError> {
    create_data_dir(dir).map_err(|e| {
        StoreError::Config(format!(
            "cannot create the data directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            StoreError::Config(format!(
                "the data directory {} is not writable: {e}",
                dir.display()
            ))
        })?;
    let db = dir.join(DB_FILE);
    check_store_file(&db)?;
    for suffix in COMPANION_SUFFIXES {
        let mut companion = db.clone().into_os_string();
        companion.push(suffix);
        check_store_file(Path::new(&companion))?;
    }
    create_database_file(&db)?;
    let conn = Connection::open(&db)?;
    // What the checks above cannot see (a file that turned read-only since): SQLite then
    // opened it read-only, and every write would fail.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(StoreError::Config(format!(
            "the database file {} is not writable: SQLite opened it read-only",
            db.display()
        )));
    }
    // WAL lets readers run beside the writer; FULL sync makes every commit durable (an
    // acknowledged command survives a power cut, not only a process crash).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten, not left in free pages: an erasure's destroyed data key
    // and deleted answers leave no bytes behind in the file (docs/privacy.md).
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// The newest migration this build knows.
fn known_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The version the store's schema is at; `None` before the first migration (no table).
fn schema_version(c: &Connection) -> Result<Option<i64>, StoreError> {
    let exists: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master
                        WHERE type = 'table' AND name = 'schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(c.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?))
}

fn migrate(c: &mut Connection) -> Result<usize, StoreError> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version       INTEGER PRIMARY KEY,
             name          TEXT    NOT NULL,
             applied_at_ms INTEGER NOT NULL)",
    )?;
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = schema_version(&tx)?.unwrap_or(0);
    let known = known_version();
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current as i32,
            known: known as i32,
        });
    }
    let mut applied = 0;
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![version, name, chrono::Utc::now().timestamp_millis()],
        )?;
        tracing::info!(version, name, "applied embedded migration");
        applied += 1;
    }
    tx.commit()?;
    Ok(applied)
}

pub(super) fn read_log(
    c: &Connection,
    keys: &Keyring,
    after: u64,
    limit: u32,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
         WHERE e.position > ?1 ORDER BY e.position LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![i64_of(after), limit], |r| keyed_row(r, 0))?
        .collect::<Result<Vec<_>, _>>()?;
    decode_rows(keys, rows)
}

/// The tip of a stream (the genesis for one without events).
fn stream_tip(tx: &rusqlite::Transaction<'_>, name: &str) -> Result<Tip, StoreError> {
    Ok(tx
        .query_row(
            "SELECT stream_version, hash FROM events WHERE stream_id = ?1
             ORDER BY stream_version DESC LIMIT 1",
            [name],
            |r| {
                Ok(Tip {
                    version: u64_of(r.get(0)?),
                    hash: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_else(Tip::genesis))
}

/// The data key that seals an admin's new events: the stored one, or a new one (their first
/// sealed event) with its wrapped form to insert; `None` once erased.
pub(super) fn data_key_for(
    tx: &rusqlite::Transaction<'_>,
    keys: &Keyring,
    stream: StreamId,
) -> Result<(Option<DataKey>, Option<WrappedKey>), StoreError> {
    let StreamId::Admin(t, a) = stream else {
        return Ok((None, None));
    };
    if let Some(key) = keys.remembered(t, a) {
        return Ok((Some(key), None));
    }
    let row: Option<(Option<String>, Option<Vec<u8>>)> = tx
        .query_row(
            "SELECT kek_id, wrapped FROM data_keys WHERE tenant_id = ?1 AND admin_id = ?2",
            params![t.to_string(), a.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row.map(|(k, w)| key_row(true, k, w).flatten()) {
        Some(Some(wrapped)) => (Some(keys.unwrap(t, a, &wrapped)?), None),
        Some(None) => (None, None),
        None => {
            let (key, wrapped) = keys.generate(t, a)?;
            (Some(key), Some(wrapped))
        }
    })
}

/// Stores a data key made by [`data_key_for`], in the transaction of its admin's events.
pub(super) fn insert_data_key(
    tx: &rusqlite::Transaction<'_>,
    tenant: crate::domain::TenantId,
    admin: crate::domain::AdminId,
    key: &WrappedKey,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO data_keys (tenant_id, admin_id, kek_id, wrapped, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            tenant.to_string(),
            admin.to_string(),
            key.kek_id,
            key.wrapped,
            chrono::Utc::now().timestamp_millis()
        ],
    )?;
    Ok(())
}

fn write_append(
    c: &mut Connection,
    keys: &Keyring,
    append: Append,
) -> Result<Appended, StoreError> {
    let Append {
        stream,
        expected,
        guard,
        events,
        answer,
    } = append;
    // IMMEDIATE takes the write lock now: the checks and the positions are decided under it,
    // like the PostgreSQL store's global append lock.
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut tips = HashMap::new();
    for s in std::iter::once(stream).chain(guard.map(|(s, _)| s)) {
        let name = s.to_string();
        let tip = stream_tip(&tx, &name)?;
        tips.insert(name, tip);
    }
    let head = u64_of(tx.query_row("SELECT position FROM log_head", [], |r| r.get(0))?);
    let (key, new_key) = data_key_for(&tx, keys, stream)?;
    let request = Request {
        stream,
        expected,
        guard,
        events: &events,
        key: key.as_ref(),
    };
    let (next, mut placed) = place(head, &mut tips, [request]);
    let placed = placed
        .pop()
        .unwrap_or_else(|| Err(StoreError::Config("an append was not placed".into())))?;
    let mut recorded = Vec::with_capacity(placed.len());
    if !placed.is_empty() {
        let name = stream.to_string();
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (position, stream_id, stream_version, event_id, event_type,
                                 tenant_id, admin_id, occurred_at_ms, payload, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for p in placed {
            let event = p.event;
            insert.execute(params![
                i64_of(event.position),
                name,
                i64_of(event.version),
                event.event_id.to_string(),
                event.type_name(),
                stream.tenant().to_string(),
                event.indexed_admin().map(|a| a.to_string()),
                event.occurred_at.timestamp_millis(),
                p.payload,
                p.prev_hash,
                p.hash,
            ])?;
            recorded.push(event);
        }
        drop(insert);
        tx.execute("UPDATE log_head SET position = ?1", [i64_of(next)])?;
        let now = chrono::Utc::now().timestamp_millis();
        if let (Some(new_key), StreamId::Admin(t, a)) = (&new_key, stream) {
            insert_data_key(&tx, t, a, new_key)?;
        }
        if let (true, StreamId::Admin(t, a)) = (erases(&events), stream) {
            // The crypto-shredding: the key goes, and with it every value sealed under it;
            // the admin's stored answers go too (they may show a value).
            tx.execute(
                "INSERT INTO data_keys (tenant_id, admin_id, created_at_ms, erased_at_ms)
                 VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (tenant_id, admin_id)
                 DO UPDATE SET kek_id = NULL, wrapped = NULL, erased_at_ms = ?3",
                params![t.to_string(), a.to_string(), now],
            )?;
            tx.execute(
                "DELETE FROM idempotency_keys WHERE tenant_id = ?1 AND admin_id = ?2",
                params![t.to_string(), a.to_string()],
            )?;
        }
    }
    let mut kept = None;
    if let Some(answer) = answer {
        let outcome = (answer.build)(&recorded);
        let k = &answer.key;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO idempotency_keys
                 (tenant_id, subject, key, request_hash, status, response, created_at_ms,
                  admin_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                k.tenant_id.to_string(),
                k.subject,
                k.key,
                answer.request_hash,
                NO_STATUS,
                serde_json::to_string(&outcome)?,
                chrono::Utc::now().timestamp_millis(),
                stream.admin().map(|a| a.to_string()),
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::IdempotencyRace);
        }
        kept = Some(outcome);
    }
    tx.commit()?;
    if let (Some(key), StreamId::Admin(t, a)) = (key, stream) {
        if erases(&events) {
            keys.forget(t, a);
        } else {
            keys.remember(t, a, key);
        }
    }
    Ok(Appended {
        events: recorded,
        answer: kept,
    })
}

impl SqliteStore {
    /// Up to `limit` raw rows after `after`, in position order.
    pub async fn raw_events(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::store::audit::RawEvent>, StoreError> {
        self.raw_rows(None, after, limit).await
    }

    /// See `AuditReads::tenant_raw_events`.
    pub async fn tenant_raw_events(
        &self,
        tenant: crate::domain::TenantId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::store::audit::RawEvent>, StoreError> {
        self.raw_rows(Some(tenant), after, limit).await
    }

    async fn raw_rows(
        &self,
        tenant: Option<crate::domain::TenantId>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<crate::store::audit::RawEvent>, StoreError> {
        self.run(move |c| {
            const COLUMNS: &str = "SELECT position, stream_id, stream_version, event_id,
                    event_type, tenant_id, admin_id, occurred_at_ms, payload, prev_hash, hash
                 FROM events";
            let row = |r: &Row<'_>| {
                Ok(crate::store::audit::RawEvent {
                    position: u64_of(r.get(0)?),
                    stream_id: r.get(1)?,
                    stream_version: u64_of(r.get(2)?),
                    event_id: r.get(3)?,
                    event_type: r.get(4)?,
                    tenant_id: r.get(5)?,
                    admin_id: r.get(6)?,
                    occurred_at_ms: r.get(7)?,
                    payload: r.get(8)?,
                    prev_hash: r.get(9)?,
                    hash: r.get(10)?,
                })
            };
            let rows = match tenant {
                None => c
                    .prepare_cached(&format!(
                        "{COLUMNS} WHERE position > ?1 ORDER BY position LIMIT ?2"
                    ))?
                    .query_map(params![i64_of(after), limit], row)?
                    .collect::<Result<Vec<_>, _>>()?,
                Some(tenant) => c
                    .prepare_cached(&format!(
                        "{COLUMNS} WHERE tenant_id = ?3 AND position > ?1 ORDER BY position
                         LIMIT ?2"
                    ))?
                    .query_map(
                        params![i64_of(after), limit, tenant.as_uuid().to_string()],
                        row,
                    )?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_serving_store_takes_the_large_page_cache() {
        let dir = std::env::temp_dir().join(format!("ri_cache_{}", uuid::Uuid::now_v7().simple()));
        let store = SqliteStore::open(&dir).await.unwrap();
        let cache = |store: &SqliteStore| {
            let store = store.clone();
            async move {
                store
                    .run(|c| Ok(c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))?))
                    .await
                    .unwrap()
            }
        };
        // A one-pass command keeps SQLite's default (-2000: about 2 MiB).
        assert!(cache(&store).await > -PAGE_CACHE_KIB);
        store.cache_for_serving().await.unwrap();
        assert_eq!(cache(&store).await, -PAGE_CACHE_KIB);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
