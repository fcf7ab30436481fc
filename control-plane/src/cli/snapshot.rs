//! `certbind snapshot`: signed identity snapshots, written to a file.

use super::key::open_signer;
use crate::config::Config;
use crate::db::Db;
use crate::snapshot::{build_from_database, StoreSettings};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Build, sign and write the current snapshot to FILE (for sites with no path to the
    /// control plane).
    Export { file: PathBuf },
}

pub async fn run(config: &Config, command: SnapshotCommand) -> anyhow::Result<()> {
    let SnapshotCommand::Export { file } = command;
    export(config, &file).await
}

/// How often snapshots are re-signed and how long each is valid, as configured.
pub fn store_settings(config: &Config) -> StoreSettings {
    StoreSettings { resign_after: config.snapshot_resign_after, ..StoreSettings::with_validity(config.snapshot_validity) }
}

async fn export(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let signer = open_signer(config).await?;
    let db = Db::open(&config.db_options()).await?;
    let snapshot = build_from_database(&db, signer, store_settings(config)).await?;
    db.close().await;
    // Written beside the target and renamed, so a reader never sees half a snapshot.
    let tmp = file.with_extension("partial");
    // Private: the snapshot names every org's users and cards.
    crate::private_files::write(&tmp, snapshot.bytes())?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot write {}", file.display()))?;
    println!(
        "wrote snapshot version {} signed by key {} ({} bytes) to {}",
        snapshot.version(),
        snapshot.key_id(),
        snapshot.bytes().len(),
        file.display()
    );
    Ok(())
}
