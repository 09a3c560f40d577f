//! Projection storage on the embedded store: batches that fold the log into the projection's
//! tables and move the checkpoint in one transaction, and the queries that read them.

use super::{SqliteStore, i64_of, read_log, u64_of, uuid_at};
use crate::domain::DomainEvent;
use crate::domain::{AdminId, AdminState, TenantId, TenantState, Verdict};
use crate::events::RecordedEvent;
use crate::fold::admins::{AdminKey, AdminRow, VerdictChanges, verdict_for};
use crate::keys::Keyring;
use crate::store::StoreError;
use crate::store::projections::{
    Batch, BatchFold, Folded, Load, Loaded, Projected, Projection, Tables,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use std::collections::HashMap;

impl SqliteStore {
    /// Folds the next `limit` events into `projection` and moves its checkpoint, in one
    /// transaction.
    pub async fn project_batch(
        &self,
        projection: Projection,
        limit: u32,
    ) -> Result<Projected, StoreError> {
        let keys = self.keyring().await?;
        self.run(move |c| project_batch(c, &keys, projection, limit))
            .await
    }

    pub async fn checkpoint(&self, projection: Projection) -> Result<u64, StoreError> {
        self.run(move |c| checkpoint(c, projection)).await
    }

    pub async fn reset_projection(&self, projection: Projection) -> Result<(), StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for table in Tables::LIVE.of(projection) {
                tx.execute_batch(&format!("DELETE FROM {table}"))?;
            }
            tx.execute(
                "UPDATE projection_checkpoints SET position = 0 WHERE name = ?1",
                [projection.name()],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn contact_view(
        &self,
        tenant: TenantId,
        admin: AdminId,
    ) -> Result<(u64, Option<AdminState>), StoreError> {
        self.run(move |c| {
            // One read transaction: the checkpoint and the row come from the same snapshot.
            let tx = c.transaction()?;
            let position = checkpoint(&tx, Projection::Admins)?;
            let state: Option<String> = tx
                .query_row(
                    "SELECT state FROM admin_views WHERE tenant_id = ?1 AND admin_id = ?2",
                    params![tenant.to_string(), admin.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok((
                position,
                state.map(|s| serde_json::from_str(&s)).transpose()?,
            ))
        })
        .await
    }

    pub async fn eligibility(
        &self,
        tenant: TenantId,
        admin: AdminId,
    ) -> Result<(u64, Verdict), StoreError> {
        self.run(move |c| {
            let tx = c.transaction()?;
            let position = checkpoint(&tx, Projection::Admins)?;
            let verdict: Option<String> = tx
                .query_row(
                    "SELECT verdict FROM admin_views WHERE tenant_id = ?1 AND admin_id = ?2",
                    params![tenant.to_string(), admin.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            let verdict = match verdict {
                Some(v) => serde_json::from_str(&v)?,
                None => {
                    let tenant_state = load_tenant(&tx, Tables::LIVE, tenant)?.unwrap_or_default();
                    verdict_for(&tenant_state, &AdminState::default())
                }
            };
            Ok((position, verdict))
        })
        .await
    }
}

pub(super) fn checkpoint(c: &Connection, projection: Projection) -> Result<u64, StoreError> {
    Ok(u64_of(c.query_row(
        "SELECT position FROM projection_checkpoints WHERE name = ?1",
        [projection.name()],
        |r| r.get(0),
    )?))
}

fn project_batch(
    c: &mut Connection,
    keys: &Keyring,
    projection: Projection,
    limit: u32,
) -> Result<Projected, StoreError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let cp = checkpoint(&tx, projection)?;
    let events = read_log(&tx, keys, cp, limit)?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Projected::idle(cp));
    };
    let changes = apply(&tx, projection, Tables::LIVE, &events)?;
    tx.execute(
        "UPDATE projection_checkpoints SET position = ?2 WHERE name = ?1",
        params![projection.name(), i64_of(last)],
    )?;
    tx.commit()?;
    if events
        .iter()
        .any(|e| matches!(e.event, DomainEvent::AdminErased { .. }))
    {
        // Every row that held the erased admin's values was rewritten by now (in log order),
        // its old content zeroed (`secure_delete`) in the pages the WAL holds: copy them into
        // the database file and empty the WAL, so no old page image keeps a value.
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    Ok(Projected {
        from: cp,
        batch: Batch {
            applied: events.len(),
            checkpoint: last,
        },
        changes,
    })
}

/// Folds `events` into `projection`'s rows in `tables`; what it wrote.
pub(super) fn apply(
    tx: &Transaction<'_>,
    projection: Projection,
    tables: Tables,
    events: &[RecordedEvent],
) -> Result<VerdictChanges, StoreError> {
    match projection {
        Projection::Admins => apply_admins(tx, tables, events),
    }
}

fn load_tenant(
    tx: &Connection,
    tables: Tables,
    tenant: TenantId,
) -> Result<Option<TenantState>, StoreError> {
    let state: Option<String> = tx
        .query_row(
            &format!("SELECT state FROM {} WHERE tenant_id = ?1", tables.tenants),
            [tenant.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(state.map(|s| serde_json::from_str(&s)).transpose()?)
}

fn admin_row(row: &Row<'_>) -> Result<(AdminKey, AdminRow), StoreError> {
    let key = (
        TenantId::from_uuid(uuid_at(row, 0)?),
        AdminId::from_uuid(uuid_at(row, 1)?),
    );
    let entry = AdminRow {
        state: serde_json::from_str(&row.get::<_, String>(2)?)?,
        verdict: serde_json::from_str(&row.get::<_, String>(3)?)?,
        changed_position: u64_of(row.get(4)?),
    };
    Ok((key, entry))
}

/// Folds `events` into the admin rows in `tables` ([`BatchFold`]): loads, folds, saves.
fn apply_admins(
    tx: &Transaction<'_>,
    tables: Tables,
    events: &[RecordedEvent],
) -> Result<VerdictChanges, StoreError> {
    let (batch, load) = BatchFold::plan(events, HashMap::new());
    let folded = batch.fold(load_rows(tx, tables, &load)?);
    save_rows(tx, tables, &folded)?;
    Ok(folded.finish().0)
}

/// The rows of `load`.
fn load_rows(tx: &Transaction<'_>, tables: Tables, load: &Load) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded::default();
    for t in &load.tenants {
        if let Some(state) = load_tenant(tx, tables, *t)? {
            loaded.tenants.insert(*t, state);
        }
    }
    let columns = format!(
        "SELECT tenant_id, admin_id, state, verdict, changed_position FROM {}",
        tables.admins
    );
    let mut one =
        tx.prepare_cached(&format!("{columns} WHERE tenant_id = ?1 AND admin_id = ?2"))?;
    for (t, a) in &load.admins {
        let mut rows = one.query(params![t.to_string(), a.to_string()])?;
        if let Some(row) = rows.next()? {
            let (key, entry) = admin_row(row)?;
            loaded.admins.insert(key, entry);
        }
    }
    let mut all = tx.prepare_cached(&format!("{columns} WHERE tenant_id = ?1"))?;
    for t in &load.all_admins_of {
        let mut rows = all.query([t.to_string()])?;
        while let Some(row) = rows.next()? {
            let (key, entry) = admin_row(row)?;
            loaded.admins.insert(key, entry);
        }
    }
    Ok(loaded)
}

/// Upserts the rows a batch folded.
fn save_rows(tx: &Transaction<'_>, tables: Tables, folded: &Folded) -> Result<(), StoreError> {
    let (tenants, admins) = folded.rows();
    let mut save_tenant = tx.prepare_cached(&format!(
        "INSERT INTO {} (tenant_id, state) VALUES (?1, ?2)
         ON CONFLICT (tenant_id) DO UPDATE SET state = excluded.state",
        tables.tenants
    ))?;
    for (t, state) in tenants {
        save_tenant.execute(params![t.to_string(), serde_json::to_string(state)?])?;
    }
    let mut save_admin = tx.prepare_cached(&format!(
        "INSERT INTO {} (tenant_id, admin_id, state, verdict, changed_position)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant_id, admin_id) DO UPDATE
         SET state = excluded.state, verdict = excluded.verdict,
             changed_position = excluded.changed_position",
        tables.admins
    ))?;
    for ((t, a), e) in admins {
        save_admin.execute(params![
            t.to_string(),
            a.to_string(),
            serde_json::to_string(&e.state)?,
            serde_json::to_string(&e.verdict)?,
            i64_of(e.changed_position),
        ])?;
    }
    Ok(())
}
