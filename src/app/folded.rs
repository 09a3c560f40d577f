//! The admin and tenant states this process's commands folded last, kept in memory.
//!
//! **What it saves.** A command decides on the state of its admin's stream and of its tenant's
//! settings. Folding them from the whole streams at every command would read every event of
//! both; with the states kept at their stream versions, the next command on the stream loads
//! only the events after those versions — usually none — and the first attempt of a command
//! skips the load altogether and decides on them (`App::admin_command`).
//!
//! **Why it is safe.** A state at a version is the fold of an immutable prefix of its stream,
//! so it never goes stale: what other writers appended since is in the events loaded after it,
//! and an append decided on a state that is not the stream's newest is refused by its expected
//! version (and by the guard on the tenant's version). Bounded: beyond [`CAPACITY`] streams it
//! forgets them all and starts again.
//!
//! **What a command left, exact at its position.** The reset flow asks for an admin's
//! eligibility right after changing the admin's security info, with the command's position as
//! `min_position`; the projection folds the command a moment later, and until then the query
//! would wait for it. A command that appended events ending at position `P` decided on the
//! admin's state and the tenant's settings, and the append checked both: the admin's stream was
//! at the version decided on, and the tenant's stream at the version its settings were folded
//! from (the guard). So the admin's state after the command is the fold of the admin's stream up
//! to `P` (any later event of the stream comes after `P`), and the tenant's state at that
//! version holds the settings at `P`. The admin's entry keeps `P` and that version
//! ([`Written`]); while the tenant's entry is still at that version, their verdict, by the
//! projection's own function (`verdict_for`), is the one the projection holds for the admin once
//! it has folded `P` (`FoldedStates::written_verdict`; the test
//! `eligibility_after_own_command_is_the_projections_answer` compares the two).

use crate::domain::{AdminState, StreamId, TenantState, Verdict};
use crate::fold::admins::verdict_for;
use std::collections::HashMap;
use std::sync::Mutex;

/// Streams whose folded state is kept, at most (emptied when full).
const CAPACITY: usize = 100_000;

/// See the module documentation.
#[derive(Default)]
pub(super) struct FoldedStates(Mutex<HashMap<StreamId, Folded>>);

#[derive(Clone)]
enum Folded {
    /// With where this process's last command on the admin left the state, if it did.
    Admin(AdminState, Option<Written>),
    Tenant(TenantState),
}

/// A state a command of this process left: exact at `position`, decided on the tenant's
/// settings at `tenant_version` (see the module documentation).
#[derive(Clone, Copy)]
struct Written {
    position: u64,
    tenant_version: u64,
}

impl FoldedStates {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Folded>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, stream: StreamId, state: Folded) {
        let mut states = self.states();
        if states.len() >= CAPACITY {
            states.clear();
        }
        states.insert(stream, state);
    }

    /// Keeps an admin's state for the stream's next command (a command's own mark stays while
    /// the state is at the version it left).
    pub(super) fn remember_admin(&self, stream: StreamId, state: AdminState) {
        let written = match self.states().get(&stream) {
            Some(Folded::Admin(kept, written)) if kept.version == state.version => *written,
            _ => None,
        };
        self.remember(stream, Folded::Admin(state, written));
    }

    /// Keeps the admin's state a command of this process left at `position`, decided on the
    /// tenant's settings at `tenant_version` (a later position already kept stays).
    pub(super) fn remember_written(
        &self,
        stream: StreamId,
        state: AdminState,
        position: u64,
        tenant_version: u64,
    ) {
        if let Some(Folded::Admin(_, Some(kept))) = self.states().get(&stream)
            && kept.position >= position
        {
            return;
        }
        let written = Written {
            position,
            tenant_version,
        };
        self.remember(stream, Folded::Admin(state, Some(written)));
    }

    /// Keeps a tenant's settings for the next commands of its admins.
    pub(super) fn remember_tenant(&self, stream: StreamId, state: TenantState) {
        self.remember(stream, Folded::Tenant(state));
    }

    /// The admin's and the tenant's states as this process last folded them, each if it has
    /// one (neither read from the store: other replicas may have appended since).
    pub(super) fn kept(
        &self,
        admin: StreamId,
        tenant: StreamId,
    ) -> (Option<AdminState>, Option<TenantState>) {
        let states = self.states();
        let admin = match states.get(&admin) {
            Some(Folded::Admin(s, _)) => Some(s.clone()),
            _ => None,
        };
        let tenant = match states.get(&tenant) {
            Some(Folded::Tenant(s)) => Some(s.clone()),
            _ => None,
        };
        (admin, tenant)
    }

    /// The admin's verdict at the position of this process's last command on the admin, when
    /// that position is at least `min_position` and the tenant's settings it was decided on are
    /// still the ones kept.
    pub(super) fn written_verdict(
        &self,
        admin: StreamId,
        tenant: StreamId,
        min_position: u64,
    ) -> Option<(u64, Verdict)> {
        let states = self.states();
        let Some(Folded::Admin(state, Some(written))) = states.get(&admin) else {
            return None;
        };
        match states.get(&tenant) {
            Some(Folded::Tenant(settings))
                if written.position >= min_position
                    && settings.version == written.tenant_version =>
            {
                Some((written.position, verdict_for(settings, state)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AdminId, TenantId};
    use uuid::Uuid;

    #[test]
    fn only_a_position_at_least_the_one_asked_answers_and_the_newest_is_kept() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let (admin, tenant) = (
            StreamId::Admin(t, AdminId::from_uuid(Uuid::now_v7())),
            StreamId::Tenant(t),
        );
        let folded = FoldedStates::default();
        folded.remember_tenant(tenant, TenantState::default());
        assert!(folded.written_verdict(admin, tenant, 1).is_none());
        folded.remember_written(admin, AdminState::default(), 7, 0);
        assert_eq!(
            folded.written_verdict(admin, tenant, 7).map(|v| v.0),
            Some(7)
        );
        assert_eq!(
            folded.written_verdict(admin, tenant, 3).map(|v| v.0),
            Some(7)
        );
        assert!(folded.written_verdict(admin, tenant, 8).is_none());
        // An older position arriving late does not replace the newer one.
        folded.remember_written(admin, AdminState::default(), 5, 0);
        assert_eq!(
            folded.written_verdict(admin, tenant, 6).map(|v| v.0),
            Some(7)
        );
        folded.remember_written(admin, AdminState::default(), 9, 0);
        assert_eq!(
            folded.written_verdict(admin, tenant, 8).map(|v| v.0),
            Some(9)
        );
    }
}
