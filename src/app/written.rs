//! What this process's own commands left each admin with, exact at the command's position: the
//! answer to "eligibility after my own command" before the projection has folded it.
//!
//! **What it saves.** The reset flow asks for an admin's eligibility right after changing the
//! admin's security info, with the command's position as `min_position`. The projection folds
//! the command a moment later, and until then the query would wait for it (a look at the log's
//! head, then at the checkpoint, then the batch). The command already holds what the answer is
//! made of.
//!
//! **Why it is exact.** A command that appended events ending at position `P` decided on the
//! admin's state and the tenant's settings, and the append checked both: the admin's stream was
//! at the version decided on, and the tenant's stream at the version its settings were folded
//! from (the guard). So the admin's state after the command is the fold of the admin's stream up
//! to `P` (any later event of the stream comes after `P`), and the settings are the tenant's at
//! `P`. The verdict of the two, by the projection's own function (`verdict_for`), is the verdict
//! the projection holds for the admin once it has folded `P`. An answer from here reports `P`:
//! never below the position asked, and used only while the projection has not reached it (the
//! test `eligibility_after_own_command_is_the_projections_answer` compares the two).
//!
//! Bounded: beyond [`CAPACITY`] admins it forgets them all and starts again.

use crate::domain::{AdminId, AdminState, TenantId, TenantState, Verdict};
use crate::fold::admins::verdict_for;
use std::collections::HashMap;
use std::sync::Mutex;

/// Admins whose last command's states are kept, at most (emptied when full).
const CAPACITY: usize = 100_000;

/// See the module documentation.
#[derive(Default)]
pub(super) struct Written(Mutex<HashMap<(TenantId, AdminId), Exact>>);

/// An admin's state and the tenant's settings, both exact at `position`.
struct Exact {
    position: u64,
    admin: AdminState,
    tenant: TenantState,
}

impl Written {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<(TenantId, AdminId), Exact>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps what a command on the admin's stream appended up to `position` left: the admin's
    /// state after it and the tenant's settings it was decided (and guarded) on.
    pub(super) fn record(
        &self,
        (tenant_id, admin_id): (TenantId, AdminId),
        position: u64,
        admin: AdminState,
        tenant: &TenantState,
    ) {
        let mut states = self.states();
        if states.len() >= CAPACITY {
            states.clear();
        }
        let slot = states.entry((tenant_id, admin_id));
        let exact = Exact {
            position,
            admin,
            tenant: tenant.clone(),
        };
        match slot {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                // Commands on a stream take turns, but keep the newest whatever the order.
                if o.get().position < position {
                    o.insert(exact);
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(exact);
            }
        }
    }

    /// The admin's verdict at the position of this process's last command on the admin, when
    /// that position is at least `min_position`.
    pub(super) fn verdict(
        &self,
        tenant: TenantId,
        admin: AdminId,
        min_position: u64,
    ) -> Option<(u64, Verdict)> {
        let states = self.states();
        let exact = states.get(&(tenant, admin))?;
        (exact.position >= min_position)
            .then(|| (exact.position, verdict_for(&exact.tenant, &exact.admin)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn only_a_position_at_least_the_one_asked_answers_and_the_newest_is_kept() {
        let key = (
            TenantId::from_uuid(Uuid::now_v7()),
            AdminId::from_uuid(Uuid::now_v7()),
        );
        let written = Written::default();
        assert!(written.verdict(key.0, key.1, 1).is_none());
        let settings = TenantState::default();
        written.record(key, 7, AdminState::default(), &settings);
        assert_eq!(written.verdict(key.0, key.1, 7).map(|v| v.0), Some(7));
        assert_eq!(written.verdict(key.0, key.1, 3).map(|v| v.0), Some(7));
        assert!(written.verdict(key.0, key.1, 8).is_none());
        // An older position arriving late does not replace the newer one.
        written.record(key, 5, AdminState::default(), &settings);
        assert_eq!(written.verdict(key.0, key.1, 6).map(|v| v.0), Some(7));
        written.record(key, 9, AdminState::default(), &settings);
        assert_eq!(written.verdict(key.0, key.1, 8).map(|v| v.0), Some(9));
    }
}
