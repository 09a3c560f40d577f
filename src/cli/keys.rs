//! `keys status`: the key-encryption keys and the data keys each wraps (KEK rotation:
//! docs/privacy.md).

use super::args::StoreArgs;
use crate::store::{Maintenance, Store};
use clap::Subcommand;

/// `keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// The KEKs configured, the active one, and how many data keys each wraps; an old KEK can
    /// leave the KEK file once it wraps none.
    Status(StoreArgs),
}

/// Runs `keys …`.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    let KeysCommand::Status(args) = command;
    let store = Store::open(&args.store_config()).await?;
    store.schema_is_current().await?;
    let keyring = store.keyring().await?;
    let wrapper = keyring.wrapper();
    let counts = store.data_key_counts().await?;
    let count = |id: Option<&str>| {
        counts
            .iter()
            .find(|(k, _)| k.as_deref() == id)
            .map_or(0, |(_, n)| *n)
    };
    for id in wrapper.ids() {
        let active = if id == wrapper.active_id() {
            " (active)"
        } else {
            ""
        };
        println!("kek {id}{active}: {} data keys", count(Some(&id)));
    }
    println!("erased: {} data keys destroyed", count(None));
    Ok(())
}
