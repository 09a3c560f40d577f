//! Projection storage on PostgreSQL: batches that fold the log into the projection's tables and
//! move the checkpoint in the same transaction (exactly-once), and the queries that read them.

use super::known_rows::KnownRows;
use super::{
    BEGIN_WITHOUT_FLUSH, KEYED_COLUMNS, KEYED_JOIN, Param, PgStore, decode_keyed_row,
    rolled_back_on_error, to_i64, to_u64,
};
use crate::domain::{AdminId, AdminState, TenantId, TenantState, Verdict};
use crate::events::RecordedEvent;
use crate::fold::admins::VerdictChanges;
use crate::fold::admins::{self, AdminKey, AdminRow, verdict_for};
use crate::keys::Keyring;
use crate::store::StoreError;
use crate::store::projections::{
    Batch, BatchFold, Folded, Load, Loaded, Projected, Projection, Tables,
};
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use tokio_postgres::types::Json;
use uuid::Uuid;

fn admin_key(row: &tokio_postgres::Row) -> AdminKey {
    (
        TenantId::from_uuid(row.get("tenant_id")),
        AdminId::from_uuid(row.get("admin_id")),
    )
}

impl PgStore {
    /// Folds the next `limit` events after the projection's checkpoint into its tables and
    /// moves the checkpoint, in one transaction. The checkpoint row is locked first, so two
    /// replicas running the same projection take turns and never apply an event twice.
    #[tracing::instrument(skip(self), level = "debug", fields(projection = projection.name()))]
    pub async fn project_batch(
        &self,
        projection: Projection,
        limit: u32,
    ) -> Result<Projected, StoreError> {
        let client = self.pool().get().await?;
        // Idle runners poll: look without a transaction or a row lock first.
        let peek = client
            .prepare_cached(
                "SELECT c.position, h.position FROM projection_checkpoints c, log_head h
                 WHERE c.name = $1",
            )
            .await?;
        let row = client.query_one(&peek, &[&projection.name()]).await?;
        let (seen, head) = (to_u64(row.get(0)), to_u64(row.get(1)));
        if seen >= head {
            return Ok(Projected::idle(seen));
        }
        let keys = self.keyring().await?;
        rolled_back_on_error(
            &client,
            project_in(&client, &keys, projection, limit, self.known_rows()).await,
        )
        .await
    }

    /// Empties the projection's tables and sets its checkpoint to 0, in one transaction, so
    /// that the runner rebuilds it from the start of the log.
    pub async fn reset_projection(&self, projection: Projection) -> Result<(), StoreError> {
        let mut client = self.pool().get().await?;
        let tx = client.transaction().await?;
        // Lock the checkpoint first: a batch in flight finishes before the tables are emptied.
        tx.execute(
            "SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE",
            &[&projection.name()],
        )
        .await?;
        tx.batch_execute(&format!(
            "TRUNCATE {}",
            Tables::LIVE.of(projection).join(", ")
        ))
        .await?;
        tx.execute(
            "UPDATE projection_checkpoints SET position = 0 WHERE name = $1",
            &[&projection.name()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The projection's checkpoint: every event up to it is reflected in its tables.
    pub async fn checkpoint(&self, projection: Projection) -> Result<u64, StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached("SELECT position FROM projection_checkpoints WHERE name = $1")
            .await?;
        Ok(to_u64(
            client.query_one(&stmt, &[&projection.name()]).await?.get(0),
        ))
    }

    /// An admin's contact view and the checkpoint it reflects, read in one snapshot.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn contact_view(
        &self,
        tenant: TenantId,
        admin: AdminId,
    ) -> Result<(u64, Option<AdminState>), StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT c.position, v.state FROM projection_checkpoints c
                 LEFT JOIN admin_views v ON v.tenant_id = $1 AND v.admin_id = $2
                 WHERE c.name = 'admins'",
            )
            .await?;
        let row = client
            .query_one(&stmt, &[&tenant.as_uuid(), &admin.as_uuid()])
            .await?;
        let state = row.try_get::<_, Option<Json<AdminState>>>(1)?.map(|j| j.0);
        Ok((to_u64(row.get(0)), state))
    }

    /// An admin's eligibility verdict and the checkpoint it reflects, read in one snapshot.
    #[tracing::instrument(skip(self), level = "debug")]
    pub async fn eligibility(
        &self,
        tenant: TenantId,
        admin: AdminId,
    ) -> Result<(u64, Verdict), StoreError> {
        let client = self.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT c.position, a.verdict, t.state FROM projection_checkpoints c
                 LEFT JOIN admin_views a ON a.tenant_id = $1 AND a.admin_id = $2
                 LEFT JOIN tenant_views t ON t.tenant_id = $1
                 WHERE c.name = 'admins'",
            )
            .await?;
        let row = client
            .query_one(&stmt, &[&tenant.as_uuid(), &admin.as_uuid()])
            .await?;
        let verdict = match row.try_get::<_, Option<Json<Verdict>>>(1)? {
            Some(v) => v.0,
            None => {
                // No event of this admin yet: the verdict of an empty state under the tenant.
                let tenant: TenantState = row
                    .try_get::<_, Option<Json<TenantState>>>(2)?
                    .map(|j| j.0)
                    .unwrap_or_default();
                verdict_for(&tenant, &AdminState::default())
            }
        };
        Ok((to_u64(row.get(0)), verdict))
    }
}

/// One batch in one transaction, in four round trips: `BEGIN`, the checkpoint's row lock and
/// the events after it, pipelined; the rows the batch needs; the rows it writes; the checkpoint
/// and `COMMIT`, pipelined. The caller rolls back on an error.
async fn project_in(
    client: &deadpool_postgres::Client,
    keys: &Keyring,
    projection: Projection,
    limit: u32,
    known: &KnownRows,
) -> Result<Projected, StoreError> {
    let name = projection.name();
    let lock = client
        .prepare_cached("SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .await?;
    // Runs after the lock statement: it reads the checkpoint the lock holds.
    let read = client
        .prepare_cached(&format!(
            "SELECT {KEYED_COLUMNS} FROM events e {KEYED_JOIN}
             WHERE e.position > (SELECT position FROM projection_checkpoints WHERE name = $1)
             ORDER BY e.position LIMIT $2"
        ))
        .await?;
    let save = client
        .prepare_cached("UPDATE projection_checkpoints SET position = $2 WHERE name = $1")
        .await?;
    // A projection's rows and checkpoint commit together, so a commit lost in a crash is
    // simply projected again: it need not wait for the WAL flush.
    let limit = i64::from(limit);
    let lock_params: [&Param; 1] = [&name];
    let read_params: [&Param; 2] = [&name, &limit];
    let (_, locked, rows) = tokio::try_join!(
        client.batch_execute(BEGIN_WITHOUT_FLUSH),
        client.query_one(&lock, &lock_params),
        client.query(&read, &read_params),
    )?;
    let checkpoint = to_u64(locked.get(0));
    let events = rows
        .iter()
        .map(|r| decode_keyed_row(keys, r, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(last) = events.last().map(|e| e.position) else {
        client.batch_execute("COMMIT").await?;
        return Ok(Projected::idle(checkpoint));
    };
    let known_rows = known.take(checkpoint, &admins::needs(&events).admins);
    let (changes, written) = apply_admins(client, Tables::LIVE, &events, known_rows).await?;
    let last_position = to_i64(last);
    let save_params: [&Param; 2] = [&name, &last_position];
    let (saved, committed) = tokio::join!(
        client.execute(&save, &save_params),
        client.batch_execute("COMMIT"),
    );
    saved.and(committed)?;
    known.keep(checkpoint, last, written);
    Ok(Projected {
        from: checkpoint,
        batch: Batch {
            applied: events.len(),
            checkpoint: last,
        },
        changes,
    })
}

/// Folds `events` into `projection`'s rows in `tables`; what it wrote.
pub(super) async fn apply(
    tx: &impl GenericClient,
    projection: Projection,
    tables: Tables,
    events: &[RecordedEvent],
) -> Result<VerdictChanges, StoreError> {
    match projection {
        Projection::Admins => {
            let (changes, _) = apply_admins(tx, tables, events, HashMap::new()).await?;
            Ok(changes)
        }
    }
}

/// Folds `events` into the admin rows in `tables` ([`BatchFold`]): loads what the batch
/// needs but the rows it knows already (`known`), folds, and saves. Returns what it wrote: the
/// verdict changes, and every row.
async fn apply_admins(
    tx: &impl GenericClient,
    tables: Tables,
    events: &[RecordedEvent],
    known: HashMap<AdminKey, AdminRow>,
) -> Result<(VerdictChanges, HashMap<AdminKey, AdminRow>), StoreError> {
    let (batch, load) = BatchFold::plan(events, known);
    let folded = batch.fold(load_rows(tx, tables, &load).await?);
    save_rows(tx, tables, &folded).await?;
    Ok(folded.finish())
}

/// The rows of `load`, both reads in one round trip. An admin of a tenant whose settings
/// changed may come twice (`UNION ALL`: no comparison of the rows' `json` to drop it); both
/// rows are the same.
async fn load_rows(
    tx: &impl GenericClient,
    tables: Tables,
    load: &Load,
) -> Result<Loaded, StoreError> {
    let load_tenants = tx
        .prepare_cached(&format!(
            "SELECT tenant_id, state FROM {} WHERE tenant_id = ANY($1)",
            tables.tenants
        ))
        .await?;
    // LATERAL with OFFSET 0: a primary-key lookup per admin whatever the plan. As a plain
    // join, the generic plan of this prepared statement scans the table.
    let load_admins = tx
        .prepare_cached(&format!(
            "SELECT e.tenant_id, e.admin_id, e.state, e.verdict, e.changed_position
             FROM unnest($1::uuid[], $2::uuid[]) AS k(tenant_id, admin_id)
             CROSS JOIN LATERAL (SELECT * FROM {admins} e
                                 WHERE e.tenant_id = k.tenant_id AND e.admin_id = k.admin_id
                                 OFFSET 0) e
             UNION ALL
             SELECT e.tenant_id, e.admin_id, e.state, e.verdict, e.changed_position
             FROM {admins} e WHERE e.tenant_id = ANY($3)",
            admins = tables.admins
        ))
        .await?;
    let tenants: Vec<Uuid> = load.tenants.iter().map(TenantId::as_uuid).collect();
    let (ts, as_): (Vec<Uuid>, Vec<Uuid>) = load
        .admins
        .iter()
        .map(|(t, a)| (t.as_uuid(), a.as_uuid()))
        .unzip();
    let all_of: Vec<Uuid> = load.all_admins_of.iter().map(TenantId::as_uuid).collect();
    let tenant_params: [&Param; 1] = [&tenants];
    let admin_params: [&Param; 3] = [&ts, &as_, &all_of];
    let (tenant_rows, admin_rows) = tokio::try_join!(
        tx.query(&load_tenants, &tenant_params),
        tx.query(&load_admins, &admin_params),
    )?;
    let mut loaded = Loaded::default();
    for row in tenant_rows {
        loaded.tenants.insert(
            TenantId::from_uuid(row.get("tenant_id")),
            row.try_get::<_, Json<TenantState>>("state")?.0,
        );
    }
    for row in admin_rows {
        loaded.admins.insert(
            admin_key(&row),
            AdminRow {
                state: row.try_get::<_, Json<AdminState>>("state")?.0,
                verdict: row.try_get::<_, Json<Verdict>>("verdict")?.0,
                changed_position: to_u64(row.get("changed_position")),
            },
        );
    }
    Ok(loaded)
}

/// Upserts the rows a batch folded.
async fn save_rows(
    tx: &impl GenericClient,
    tables: Tables,
    folded: &Folded,
) -> Result<(), StoreError> {
    let (tenants, admins) = folded.rows();
    if !tenants.is_empty() {
        let (ids, states): (Vec<Uuid>, Vec<Json<&TenantState>>) =
            tenants.iter().map(|(t, s)| (t.as_uuid(), Json(*s))).unzip();
        let save = tx
            .prepare_cached(&format!(
                "INSERT INTO {} (tenant_id, state)
                 SELECT * FROM unnest($1::uuid[], $2::json[])
                 ON CONFLICT (tenant_id) DO UPDATE SET state = excluded.state",
                tables.tenants
            ))
            .await?;
        tx.execute(&save, &[&ids, &states]).await?;
    }
    let (mut ts, mut as_, mut states, mut verdicts, mut changed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((t, a), e) in admins {
        ts.push(t.as_uuid());
        as_.push(a.as_uuid());
        states.push(Json(&e.state));
        verdicts.push(Json(&e.verdict));
        changed.push(to_i64(e.changed_position));
    }
    if !ts.is_empty() {
        let save = tx
            .prepare_cached(&format!(
                "INSERT INTO {} (tenant_id, admin_id, state, verdict, changed_position)
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::json[], $4::json[], $5::bigint[])
                 ON CONFLICT (tenant_id, admin_id) DO UPDATE
                 SET state = excluded.state, verdict = excluded.verdict,
                     changed_position = excluded.changed_position",
                tables.admins
            ))
            .await?;
        tx.execute(&save, &[&ts, &as_, &states, &verdicts, &changed])
            .await?;
    }
    Ok(())
}
