//! PostgreSQL for the publisher: its checkpoint, the history its eligibility fold starts from,
//! leadership through an advisory lock on a dedicated connection, and LISTEN for the
//! `recovery_log` hint that migration 0002 sends on every append.

use super::tls::Tls;
use super::{
    BEGIN_WITHOUT_FLUSH, KEYED_COLUMNS, KEYED_JOIN, PgStore, rolled_back_on_error, to_i64, to_u64,
};
use crate::domain::{AdminId, StreamId, TenantId};
use crate::events::RecordedEvent;
use crate::store::StoreError;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use uuid::Uuid;

/// The channel of the append hint (see `migrations/postgres/0002_publisher.sql`).
pub const LOG_CHANNEL: &str = "recovery_log";

impl PgStore {
    /// The publisher `name`'s checkpoint: every event up to it was acknowledged by JetStream.
    /// A publisher seen for the first time starts at 0.
    pub async fn publisher_checkpoint(&self, name: &str) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO publisher_checkpoints (name, position) VALUES ($1, 0)
                 ON CONFLICT (name) DO UPDATE SET position = publisher_checkpoints.position
                 RETURNING position",
            )
            .await?;
        Ok(to_u64(client.query_one(&stmt, &[&name]).await?.get(0)))
    }

    /// Moves the publisher's checkpoint forward (never back: a stale leader cannot undo the
    /// progress of the current one).
    pub async fn save_publisher_checkpoint(
        &self,
        name: &str,
        position: u64,
    ) -> Result<(), StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE publisher_checkpoints SET position = greatest(position, $2) WHERE name = $1",
            )
            .await?;
        // Without waiting for the WAL flush, in one round trip: a checkpoint lost in a crash is
        // harmless, the relay resumes from the stream's own tip (see `publish::nats`).
        let position = to_i64(position);
        // `Param` would need a `'static` name.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&name, &position];
        let (begun, saved, committed) = tokio::join!(
            client.batch_execute(BEGIN_WITHOUT_FLUSH),
            client.execute(&stmt, &params),
            client.batch_execute("COMMIT"),
        );
        rolled_back_on_error(&client, begun.and(saved).and(committed)).await?;
        Ok(())
    }

    /// The events up to `up_to` that the eligibility fold needs before it folds a batch: the
    /// streams of `admins` and of their tenants, and every event of `tenants` (a tenant event
    /// re-evaluates every admin of the tenant). In log order.
    #[tracing::instrument(skip_all, level = "debug", fields(up_to, admins = admins.len(), tenants = tenants.len()))]
    pub async fn eligibility_history(
        &self,
        admins: &[(TenantId, AdminId)],
        tenants: &[TenantId],
        up_to: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut streams: Vec<String> = Vec::with_capacity(admins.len() * 2);
        for (t, a) in admins {
            streams.push(StreamId::Admin(*t, *a).to_string());
            streams.push(StreamId::Tenant(*t).to_string());
        }
        streams.sort();
        streams.dedup();
        let whole: Vec<Uuid> = tenants.iter().map(TenantId::as_uuid).collect();
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
                 WHERE e.position <= $1 AND (e.stream_id = ANY($2) OR e.tenant_id = ANY($3))
                 ORDER BY e.position"
            ))
            .await?;
        let rows = client
            .query(&stmt, &[&to_i64(up_to), &streams, &whole])
            .await?;
        self.decode_rows(rows).await
    }
}

/// TCP keepalives of the dedicated connections, on both ends: a peer that vanishes without
/// closing the connection (a host that lost power, a network partition) is noticed after
/// about idle + interval × probes = 25 s rather than the kernel's default of two hours. On
/// PostgreSQL's side that ends the dead leader's session and so releases its advisory lock for
/// the next replica; on ours it ends the leadership of a process cut off from PostgreSQL (its
/// late publishes are fenced by JetStream's expected sequence anyway).
const KEEPALIVE_IDLE_S: u64 = 10;
const KEEPALIVE_INTERVAL_S: u64 = 5;
const KEEPALIVE_PROBES: u32 = 3;

/// Where the dedicated connections (the publisher's lock, `LISTEN`) go: the database URL's
/// settings with the keepalives, and how they are secured. Parsed once, with the store's pool:
/// a standby publisher connects every second, and parsing means reading the TLS roots.
#[derive(Clone)]
pub struct DedicatedTarget {
    config: tokio_postgres::Config,
    tls: Tls,
}

impl DedicatedTarget {
    /// The target of settings already parsed, with the keepalives added.
    pub(super) fn with(mut config: tokio_postgres::Config, tls: Tls) -> Self {
        config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(KEEPALIVE_IDLE_S))
            .keepalives_interval(std::time::Duration::from_secs(KEEPALIVE_INTERVAL_S))
            .keepalives_retries(KEEPALIVE_PROBES);
        DedicatedTarget { config, tls }
    }
}

/// A dedicated PostgreSQL connection (outside the pool), driven by its own task. `alive` turns
/// `false` when the connection ends, and every notification bumps `notified`.
struct Dedicated {
    client: Client,
    alive: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Dedicated {
    async fn connect(
        target: &DedicatedTarget,
        notified: Option<watch::Sender<u64>>,
    ) -> Result<Self, StoreError> {
        let (alive_tx, alive) = watch::channel(true);
        let (client, task) = match &target.tls {
            Tls::Plain => {
                let (client, connection) = target.config.connect(NoTls).await?;
                (client, tokio::spawn(drive(connection, notified, alive_tx)))
            }
            Tls::Verified(tls) => {
                let (client, connection) = target.config.connect(tls.clone()).await?;
                (client, tokio::spawn(drive(connection, notified, alive_tx)))
            }
        };
        let dedicated = Dedicated {
            client,
            alive,
            task,
        };
        // PostgreSQL's end of the keepalives (ignored on a Unix socket, where a dead peer is
        // seen at once).
        dedicated
            .client
            .batch_execute(&format!(
                "SET tcp_keepalives_idle = {KEEPALIVE_IDLE_S};
                 SET tcp_keepalives_interval = {KEEPALIVE_INTERVAL_S};
                 SET tcp_keepalives_count = {KEEPALIVE_PROBES};"
            ))
            .await?;
        Ok(dedicated)
    }
}

/// Drives a dedicated connection until it ends: counts its notifications in `notified`, and
/// turns `alive` to `false` at the end.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notified: Option<watch::Sender<u64>>,
    alive: watch::Sender<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(_)) => {
                if let Some(n) = &notified {
                    n.send_modify(|c| *c = c.wrapping_add(1));
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "dedicated PostgreSQL connection failed");
                break;
            }
        }
    }
    alive.send_replace(false);
}

impl Drop for Dedicated {
    fn drop(&mut self) {
        // Closing the connection releases its session-level advisory locks and LISTENs.
        self.task.abort();
    }
}

/// Leadership of one publisher: a session-level advisory lock held on a dedicated connection.
/// PostgreSQL releases the lock when the session ends, so a leader that dies (process killed,
/// connection lost) hands over to the next replica that tries.
///
/// A leader that hangs while its process and connection live on would hold the lock for ever;
/// so leading is also a **lease**: the leader renews it ([`Leadership::renew`], a statement on
/// the lock's session) as its work goes round, and a replica that finds the lock's session idle
/// for longer than the lease ends that session (`pg_terminate_backend`), which frees the lock
/// for it to take. The lease is the session's own activity as PostgreSQL records it
/// (`pg_stat_activity.state_change`), so there is no clock but the server's, and nothing to
/// migrate. A leader ended this way sees its session gone before its next batch, and whatever
/// it still sends is refused by JetStream's expected sequence.
pub struct Leadership {
    conn: Dedicated,
}

/// The advisory-lock key of publisher `$1`, in SQL: `hashtext` maps the name onto the key
/// space; the prefix keeps it apart from the migration lock and any other user of advisory
/// locks.
pub const LOCK_KEY: &str = "hashtext('recovery-info publisher ' || $1)::bigint";

/// The session holding a publisher's lock.
#[derive(Debug)]
pub struct LockHolder {
    pub pid: i32,
    /// How long it has been idle since its last statement; `None` while it runs one (it is
    /// working), or when its activity is not visible to this role.
    pub idle_s: Option<f64>,
}

/// The session holding publisher `name`'s lock in this database, if any (a bigint key shows in
/// `pg_locks` as its high and low halves).
pub async fn lock_holder(client: &Client, name: &str) -> Result<Option<LockHolder>, StoreError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT a.pid, CASE WHEN a.state = 'idle' THEN
                            extract(epoch FROM clock_timestamp() - a.state_change)::float8 END
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.database = (SELECT oid FROM pg_database
                                     WHERE datname = current_database())
                   AND l.classid = (({LOCK_KEY} >> 32) & 4294967295)::oid
                   AND l.objid = ({LOCK_KEY} & 4294967295)::oid"
            ),
            &[&name],
        )
        .await?;
    Ok(row.map(|r| LockHolder {
        pid: r.get(0),
        idle_s: r.get(1),
    }))
}

impl Leadership {
    /// Tries once to become the leader of publisher `name`; `None` if another session leads.
    /// A leader whose lease ran out (its session idle for longer than `lease`) is ended on the
    /// way, so that the next try can succeed.
    pub async fn try_acquire(
        target: &DedicatedTarget,
        name: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Self>, StoreError> {
        let conn = Dedicated::connect(target, None).await?;
        let row = conn
            .client
            .query_one(
                &format!("SELECT pg_try_advisory_lock({LOCK_KEY})"),
                &[&name],
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(Some(Leadership { conn }));
        }
        // Only a session idle since its last statement is judged: one running a statement is
        // working.
        if let Some(LockHolder {
            pid,
            idle_s: Some(idle_s),
        }) = lock_holder(&conn.client, name).await?
            && idle_s > lease.as_secs_f64()
        {
            let ended: bool = conn
                .client
                .query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .await?
                .get(0);
            tracing::warn!(
                leader_pid = pid,
                idle_s,
                lease_s = lease.as_secs_f64(),
                ended,
                "the publisher's leader has not renewed its lease; ending its session to take over"
            );
            metrics::counter!("recovery_publisher_leases_broken_total").increment(1);
        }
        Ok(None)
    }
}

impl crate::store::PublisherLog for PgStore {
    type Lease = Leadership;

    async fn lead(
        &self,
        name: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Leadership>, StoreError> {
        Leadership::try_acquire(self.dedicated(), name, lease).await
    }

    async fn read_log(&self, after: u64, limit: u32) -> Result<Vec<RecordedEvent>, StoreError> {
        PgStore::read_log(self, after, limit).await
    }

    async fn head(&self) -> Result<u64, StoreError> {
        PgStore::head(self).await
    }

    async fn checkpoint(&self, name: &str) -> Result<u64, StoreError> {
        self.publisher_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), StoreError> {
        self.save_publisher_checkpoint(name, position).await
    }

    async fn fold_history(
        &self,
        admins: &[(TenantId, AdminId)],
        tenants: &[TenantId],
        up_to: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.eligibility_history(admins, tenants, up_to).await
    }
}

impl crate::store::Lease for Leadership {
    /// Whether the lock is still held (the session is alive), as this process last saw it.
    fn is_held(&self) -> bool {
        *self.conn.alive.borrow() && !self.conn.client.is_closed()
    }

    /// Renews the lease: a statement on the lock's session, which also proves the session is
    /// still there.
    async fn renew(&self) -> Result<(), StoreError> {
        self.conn.client.batch_execute("SELECT 1").await?;
        Ok(())
    }

    /// Resolves when the lock is lost.
    async fn lost(&self) {
        let mut alive = self.conn.alive.clone();
        let _ = alive.wait_for(|a| !*a).await;
    }
}

/// A `LISTEN recovery_log` session: `notified` is bumped on every append committed anywhere.
pub struct LogListener {
    conn: Dedicated,
}

impl LogListener {
    /// Connects and listens; notifications bump `notified`.
    pub async fn start(
        target: &DedicatedTarget,
        notified: watch::Sender<u64>,
    ) -> Result<Self, StoreError> {
        let conn = Dedicated::connect(target, Some(notified)).await?;
        conn.client
            .batch_execute(&format!("LISTEN {LOG_CHANNEL}"))
            .await?;
        Ok(LogListener { conn })
    }

    /// Resolves when the session ends (the caller reconnects).
    pub async fn closed(&self) {
        let mut alive = self.conn.alive.clone();
        let _ = alive.wait_for(|a| !*a).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Lease;
    use std::time::Duration;

    #[test]
    fn dedicated_connections_send_keepalives() {
        let config = target("postgres://u@h/db").config;
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(10));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.get_keepalives_retries(), Some(3));
    }

    /// PostgreSQL drops the session of a leader whose host vanished, and with it the lock,
    /// after its own keepalives: they are set on the very session that holds the lock.
    #[tokio::test]
    async fn postgresql_probes_the_leaders_session_with_keepalives() {
        let target = test_target();
        let name = format!("keepalive-test-{}", Uuid::new_v4());
        let leader = Leadership::try_acquire(&target, &name, LEASE)
            .await
            .unwrap()
            .unwrap();
        let mut settings = Vec::new();
        for setting in [
            "tcp_keepalives_idle",
            "tcp_keepalives_interval",
            "tcp_keepalives_count",
        ] {
            let row = leader
                .conn
                .client
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .unwrap();
            settings.push(row.get::<_, String>(0));
        }
        assert_eq!(settings, ["10", "5", "3"]);
        // And the lock is the leader's alone.
        assert!(
            Leadership::try_acquire(&target, &name, LEASE)
                .await
                .unwrap()
                .is_none()
        );
    }

    const LEASE: Duration = Duration::from_secs(60);

    /// The dedicated target of `url`, as the store builds it.
    fn target(url: &str) -> DedicatedTarget {
        let (config, tls) = crate::store::postgres::tls::parse(url).unwrap();
        DedicatedTarget::with(config, tls)
    }

    /// The test server's.
    fn test_target() -> DedicatedTarget {
        target(
            &std::env::var("TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
        )
    }

    /// A leader that renews its lease keeps the lock however long others try; one that stops
    /// renewing (hung, its session still up) loses it to the next replica after the lease.
    #[tokio::test]
    async fn a_leader_keeps_the_lock_while_it_renews_its_lease_and_loses_it_when_it_stops() {
        let target = test_target();
        let name = format!("lease-test-{}", Uuid::new_v4());
        // Long beside the 200 ms between renewals, so that a loaded machine does not make a
        // renewing leader look hung.
        let lease = Duration::from_secs(2);
        let leader = Leadership::try_acquire(&target, &name, lease)
            .await
            .unwrap()
            .unwrap();
        // Renewing every 200 ms for two leases: nobody takes over.
        let renewing = tokio::time::Instant::now();
        let mut renewed = renewing;
        while renewing.elapsed() < lease * 2 {
            leader.renew().await.unwrap();
            renewed = tokio::time::Instant::now();
            assert!(
                Leadership::try_acquire(&target, &name, lease)
                    .await
                    .unwrap()
                    .is_none(),
                "a renewing leader was replaced"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(leader.is_held());
        // Hung: no more renewals. The next replica ends the leader's session and leads.
        let successor = loop {
            if let Some(successor) = Leadership::try_acquire(&target, &name, lease)
                .await
                .unwrap()
            {
                break successor;
            }
            assert!(renewed.elapsed() < lease * 10, "the lease never ran out");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Measured from when the last renewal's answer came back, a little after PostgreSQL
        // saw the session go idle.
        assert!(
            renewed.elapsed() + Duration::from_millis(100) >= lease,
            "taken over {:?} after the last renewal, before the lease ran out",
            renewed.elapsed()
        );
        tokio::time::timeout(Duration::from_secs(5), leader.lost())
            .await
            .expect("the hung leader's session ended");
        assert!(!leader.is_held());
        assert!(successor.is_held());
        successor.renew().await.unwrap();
    }
}
