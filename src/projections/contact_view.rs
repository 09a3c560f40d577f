//! The contact view: each admin's current methods, folded with the admin decider's `evolve`.

use crate::domain::{AdminId, AdminState, StreamId, TenantId, admin_decider};
use crate::events::RecordedEvent;
use std::collections::{BTreeSet, HashMap};

/// An admin, as the projections key it.
pub type AdminKey = (TenantId, AdminId);

/// Folds `event` into the views it touches. `views` must hold the current view of every admin
/// whose events are folded (absent means "no events yet").
pub fn apply(views: &mut HashMap<AdminKey, AdminState>, event: &RecordedEvent) {
    if let StreamId::Admin(t, a) = event.stream {
        let state = views.remove(&(t, a)).unwrap_or_default();
        views.insert(
            (t, a),
            admin_decider::evolve(state, &event.event, &event.meta()),
        );
    }
}

/// The admins whose views a batch of events touches (their rows must be loaded first).
pub fn touched(events: &[RecordedEvent]) -> BTreeSet<AdminKey> {
    events
        .iter()
        .filter_map(|e| match e.stream {
            StreamId::Admin(t, a) => Some((t, a)),
            StreamId::Tenant(_) | StreamId::Audit(_) => None,
        })
        .collect()
}
