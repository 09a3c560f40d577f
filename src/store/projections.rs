//! The projection's vocabulary that both backends share: which projections there are, their
//! tables (live and shadow), what a batch did, and the plan and fold of a batch — what it must
//! load, and what it writes — around which a backend supplies only the SQL for the load and
//! the save.

use crate::domain::{TenantId, TenantState};
use crate::events::RecordedEvent;
use crate::fold::admins::{self, AdminFold, AdminKey, AdminRow, Needs, VerdictChanges};
use std::collections::HashMap;

/// The projections: checkpointed folds of the log whose rows and checkpoint change in one
/// transaction. One today: each admin's contact view and eligibility verdict
/// (`fold::admins`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Projection {
    Admins,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 1] = [Projection::Admins];

    /// The name of its checkpoint row (and its label in the metrics).
    pub fn name(self) -> &'static str {
        match self {
            Projection::Admins => "admins",
        }
    }
}

/// The tables a projection fold writes: the live ones, or the shadow ones that a replay builds
/// beside them and then swaps in (see `store::replay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tables {
    /// Each admin's contact view and verdict.
    pub admins: &'static str,
    /// Each tenant's settings, as the verdicts were folded under them.
    pub tenants: &'static str,
}

impl Tables {
    /// The tables the service reads.
    pub const LIVE: Tables = Tables {
        admins: "admin_views",
        tenants: "tenant_views",
    };
    /// The tables a replay rebuilds into before swapping them in.
    pub const SHADOW: Tables = Tables {
        admins: "admin_views_replay",
        tenants: "tenant_views_replay",
    };

    /// The tables of `projection`.
    pub fn of(self, projection: Projection) -> Vec<&'static str> {
        match projection {
            Projection::Admins => vec![self.tenants, self.admins],
        }
    }
}

/// The outcome of one batch of the live runner.
#[derive(Clone, Debug, PartialEq)]
pub struct Projected {
    /// The checkpoint before the batch, read under its lock (or by the idle peek).
    pub from: u64,
    pub batch: Batch,
    /// What the batch wrote, for the verdicts kept in memory.
    pub changes: VerdictChanges,
}

impl Projected {
    pub(super) fn idle(checkpoint: u64) -> Self {
        Projected {
            from: checkpoint,
            batch: Batch {
                applied: 0,
                checkpoint,
            },
            changes: VerdictChanges::default(),
        }
    }
}

/// The outcome of one projection batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch {
    pub applied: usize,
    pub checkpoint: u64,
}

/// The pairs `(live, shadow)` of table names of `projections`.
pub(crate) fn table_pairs(projections: &[Projection]) -> Vec<(&'static str, &'static str)> {
    projections
        .iter()
        .flat_map(|p| Tables::LIVE.of(*p).into_iter().zip(Tables::SHADOW.of(*p)))
        .collect()
}

/// The checkpoint names of `projections`.
pub(crate) fn names(projections: &[Projection]) -> Vec<&'static str> {
    projections.iter().map(|p| p.name()).collect()
}

/// One batch of the admin projection, backend-neutral: [`BatchFold::plan`] says what to load,
/// the backend loads it, [`BatchFold::fold`] folds the events, and the backend saves what
/// [`Folded::rows`] lists. A backend supplies only the SQL for the load and the save.
pub(crate) struct BatchFold<'e> {
    events: &'e [RecordedEvent],
    needs: Needs,
    fold: AdminFold,
}

/// The rows a batch reads before it folds.
#[derive(Debug, Default)]
pub(crate) struct Load {
    /// The settings of every tenant with an event in the batch.
    pub tenants: Vec<TenantId>,
    /// The rows of the admins with an event in the batch, but those the batch knows already
    /// and those whose first event here is their stream's first (they have no row).
    pub admins: Vec<AdminKey>,
    /// Every admin row of the tenants whose settings change: the change re-evaluates them.
    pub all_admins_of: Vec<TenantId>,
}

/// What a batch read.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub tenants: HashMap<TenantId, TenantState>,
    pub admins: HashMap<AdminKey, AdminRow>,
}

/// A folded batch: its rows to save, and what it changed.
pub(crate) struct Folded {
    needs: Needs,
    fold: AdminFold,
}

impl<'e> BatchFold<'e> {
    /// The batch of `events`, with the rows of admins it knows already (`known`: exact at the
    /// checkpoint the batch starts at, not read again), and what it must load.
    pub(crate) fn plan(
        events: &'e [RecordedEvent],
        known: HashMap<AdminKey, AdminRow>,
    ) -> (Self, Load) {
        let needs = admins::needs(events);
        let newcomers = admins::newcomers(events);
        let load = Load {
            tenants: needs.tenants.iter().copied().collect(),
            admins: needs
                .admins
                .iter()
                .filter(|k| !known.contains_key(*k) && !newcomers.contains(*k))
                .copied()
                .collect(),
            all_admins_of: needs.settings_changed.iter().copied().collect(),
        };
        let mut fold = AdminFold::default();
        fold.admins = known;
        (
            BatchFold {
                events,
                needs,
                fold,
            },
            load,
        )
    }

    /// Folds the events over the rows loaded.
    pub(crate) fn fold(mut self, loaded: Loaded) -> Folded {
        self.fold.tenants.extend(loaded.tenants);
        self.fold.admins.extend(loaded.admins);
        for event in self.events {
            self.fold.apply(event);
        }
        Folded {
            needs: self.needs,
            fold: self.fold,
        }
    }
}

impl Folded {
    /// The rows to save: the settings of the tenants whose settings changed, and every admin
    /// row the batch folded.
    pub(crate) fn rows(&self) -> (Vec<(TenantId, &TenantState)>, &HashMap<AdminKey, AdminRow>) {
        let tenants = self
            .needs
            .settings_changed
            .iter()
            .filter_map(|t| self.fold.tenants.get(t).map(|state| (*t, state)))
            .collect();
        (tenants, &self.fold.admins)
    }

    /// What the batch changed (for the verdicts kept in memory), and every admin row it wrote.
    pub(crate) fn finish(self) -> (VerdictChanges, HashMap<AdminKey, AdminRow>) {
        (self.fold.changes(&self.needs), self.fold.admins)
    }
}
