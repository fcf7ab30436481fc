//! `certbind crl`: certificate revocation lists.

use crate::config::Config;
use crate::db::{Actor, Db};
use certbind_shared::clock;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Verify a CRL file (DER or PEM) against its registered CA and store it, as an upload
    /// does.
    Load { file: PathBuf },
}

pub async fn run(db: &Db, config: &Config, command: CrlCommand) -> anyhow::Result<()> {
    let CrlCommand::Load { file } = command;
    load(db, config, &file).await
}

async fn load(db: &Db, config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let now = clock::now_seconds();
    let source = crate::revocation::CrlSource::Upload;
    let committed = crate::revocation::ingest(db, &Actor::service("cli"), bytes, source, config.crl, now)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let i = committed.value;
    if i.changed {
        println!("CA {}: CRL number {} stored, {} added, {} removed", i.ca.key_id, i.crl_number, i.added, i.removed);
    } else {
        println!("CA {}: CRL number {} is the one held; nothing changed", i.ca.key_id, i.crl_number);
    }
    Ok(())
}
