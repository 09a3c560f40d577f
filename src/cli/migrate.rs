//! `migrate`: applies the store's migrations and exits.

use super::args::StoreArgs;
use crate::store::Maintenance;
use crate::store::Store;

/// Runs `migrate`: how many migrations it applied, on stdout.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let store = Store::open(&args.store_config()).await?;
    let applied = store.migrate().await?;
    println!("migrations applied: {applied}");
    let (streams, events) = store.seal_legacy_values().await?;
    if events > 0 {
        println!(
            "sealed the values of {events} events of {streams} streams written before values \
             were sealed; their chains were re-anchored (see `audit verify`)"
        );
    }
    Ok(())
}
