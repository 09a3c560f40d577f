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

use crate::domain::{AdminState, StreamId, TenantState};
use std::collections::HashMap;
use std::sync::Mutex;

/// Streams whose folded state is kept, at most (emptied when full).
const CAPACITY: usize = 100_000;

/// See the module documentation.
#[derive(Default)]
pub(super) struct FoldedStates(Mutex<HashMap<StreamId, Folded>>);

#[derive(Clone)]
enum Folded {
    Admin(AdminState),
    Tenant(TenantState),
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

    /// Keeps an admin's state for the stream's next command.
    pub(super) fn remember_admin(&self, stream: StreamId, state: AdminState) {
        self.remember(stream, Folded::Admin(state));
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
            Some(Folded::Admin(s)) => Some(s.clone()),
            _ => None,
        };
        let tenant = match states.get(&tenant) {
            Some(Folded::Tenant(s)) => Some(s.clone()),
            _ => None,
        };
        (admin, tenant)
    }
}
