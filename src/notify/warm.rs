//! The notifier's fold, kept across its batches: the tenants' notice settings and the states of
//! the admins whose notices need one, at the notifier's checkpoint.
//!
//! **What it saves.** A notice is decided on the tenant's settings and, for an addition, on the
//! admin's other methods just before the event. Read from the log at every batch, that is a
//! read of the whole stream of every admin and tenant the batch tells, and a stream grows with
//! every change: the 30 min soak's notifier read and decoded more of the log each minute, and
//! the service's memory grew with it (docs/benchmarks.md, "Soak"). Kept, a stream is read once,
//! the first time a batch needs it, and then folded forward with the batches.
//!
//! **Why it is safe.** What is held is the fold of every event up to the position `at`, in log
//! order, with the deciders' own `evolve`. A batch starts from the checkpoint it read; when that
//! is not `at` (another replica enqueued, or this batch failed), everything is dropped and read
//! again. It is dropped whole, too, when it holds [`CAPACITY`] streams.

use super::{before_state, tenant_before};
use crate::domain::{
    AdminState, NoticeSettings, StreamId, TenantState, admin_decider, tenant_decider,
};
use crate::events::RecordedEvent;
use std::collections::HashMap;
use std::mem::take;

/// Streams held at most (admins and tenants); beyond it, the fold is dropped and read again.
const CAPACITY: usize = 100_000;

/// See the module documentation.
#[derive(Default)]
pub struct Warm {
    /// The position everything held is exact at; `None`: nothing is held.
    at: Option<u64>,
    admins: HashMap<StreamId, AdminState>,
    tenants: HashMap<StreamId, TenantState>,
}

impl Warm {
    /// Starts a batch read after `from`: what is held stays only if it is exact there.
    pub(super) fn begin(&mut self, from: u64) {
        if self.at != Some(from) || self.admins.len() + self.tenants.len() >= CAPACITY {
            *self = Warm::default();
        }
        // Until the batch is stored, what is held is not exact at any checkpoint.
        self.at = None;
    }

    /// The streams of `wanted` not held yet.
    pub(super) fn missing(&self, wanted: impl IntoIterator<Item = StreamId>) -> Vec<StreamId> {
        let mut missing = Vec::new();
        for stream in wanted {
            let held = match stream {
                StreamId::Admin(..) => self.admins.contains_key(&stream),
                StreamId::Tenant(..) => self.tenants.contains_key(&stream),
                StreamId::Audit(..) => true,
            };
            if !held && !missing.contains(&stream) {
                missing.push(stream);
            }
        }
        missing
    }

    /// Holds `streams` (each read whole) folded up to `from`, the batch's start.
    pub(super) fn load(&mut self, streams: &HashMap<StreamId, Vec<RecordedEvent>>, from: u64) {
        for (stream, events) in streams {
            match stream {
                StreamId::Admin(..) => {
                    self.admins.insert(*stream, before_state(events, from + 1));
                }
                StreamId::Tenant(..) => {
                    self.tenants
                        .insert(*stream, tenant_before(events, from + 1));
                }
                StreamId::Audit(..) => {}
            }
        }
    }

    /// A stream that is not held reads as empty: only those asked for by [`Warm::missing`]
    /// and loaded are asked here.
    pub(super) fn admin(&self, stream: StreamId) -> AdminState {
        self.admins.get(&stream).cloned().unwrap_or_default()
    }

    /// The notice settings of `stream`'s tenant (the defaults if not held).
    pub(super) fn settings(&self, stream: StreamId) -> NoticeSettings {
        self.tenants
            .get(&StreamId::Tenant(stream.tenant()))
            .map(|t| t.notices.clone())
            .unwrap_or_default()
    }

    /// Folds the batch's next event into what is held of its stream.
    pub(super) fn apply(&mut self, event: &RecordedEvent) {
        match event.stream {
            StreamId::Admin(..) => {
                if let Some(state) = self.admins.get_mut(&event.stream) {
                    *state = admin_decider::evolve(take(state), &event.event, &event.meta());
                }
            }
            StreamId::Tenant(..) => {
                if let Some(state) = self.tenants.get_mut(&event.stream) {
                    *state = tenant_decider::evolve(take(state), &event.event, &event.meta());
                }
            }
            StreamId::Audit(..) => {}
        }
    }

    /// The batch was stored and the checkpoint moved to `to`: what is held is exact there.
    pub(super) fn stored(&mut self, to: u64) {
        self.at = Some(to);
    }
}
