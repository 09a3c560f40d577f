//! `replay`: rebuilds projections beside the live ones and swaps them in
//! ([`crate::projections::replay`]).

use super::args::StoreArgs;
use crate::projections::replay::{DEFAULT_BATCH, replay};
use crate::store::Maintenance;
use crate::store::Store;
use crate::store::projections::Projection;
use clap::{Args, ValueEnum};

/// Which projections to rebuild. `contact_view` and `eligibility`, the two projections that
/// were merged into `admins`, still name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    #[value(name = "admins", alias = "contact_view", alias = "eligibility")]
    Admins,
    #[value(name = "all")]
    All,
}

impl Which {
    /// The projections chosen.
    pub fn projections(self) -> Vec<Projection> {
        match self {
            Which::Admins => vec![Projection::Admins],
            Which::All => Projection::ALL.to_vec(),
        }
    }
}

/// `replay` options.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The projection to rebuild.
    #[arg(long, default_value = "all")]
    pub projection: Which,
    /// Events folded per transaction while catching up.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch_size: u32,
}

/// Runs the `replay` command.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.store.store_config()).await?;
    store.schema_is_current().await?;
    let projections = args.projection.projections();
    let done = replay(&store, &projections, args.batch_size).await?;
    let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
    println!(
        "rebuilt {}: {} events, swapped in at position {} ({:.0} events/s)",
        names.join(", "),
        done.events,
        done.checkpoint,
        done.rate
    );
    Ok(())
}
