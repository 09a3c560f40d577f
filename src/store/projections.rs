//! The projection's vocabulary that both backends share: which projections there are, their
//! tables (live and shadow), what a batch did, and the plan and fold of a batch — what it must
//! load, and what it writes — around which a backend supplies only the SQL for the load and
//! the save.

use crate::fold::admins::VerdictChanges;

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
