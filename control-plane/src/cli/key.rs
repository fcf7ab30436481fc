//! `certbind key`: the snapshot signing key in the PKCS#11 token, and opening it.

use crate::config::Config;
use crate::signer::pkcs11::{Pkcs11Settings, Pkcs11Signer};
use crate::signer::{public_key_json, Signer};
use anyhow::Context;
use clap::Subcommand;
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create the ECDSA P-256 signing key pair inside the token, unless it exists.
    Init,
}

pub async fn run(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    let KeyCommand::Init = command;
    init(config).await
}

/// Opens the signing key named by the configuration (blocking PKCS#11 calls off the runtime).
pub async fn open_signer(config: &Config) -> anyhow::Result<Arc<dyn Signer>> {
    let settings = Pkcs11Settings::from(config.require_signer()?);
    let signer = tokio::task::spawn_blocking(move || Pkcs11Signer::open(&settings))
        .await
        .context("the PKCS#11 task failed")?
        .context("signer: cannot open the snapshot signing key (has `certbind key init` been run?)")?;
    Ok(Arc::new(signer))
}

async fn init(config: &Config) -> anyhow::Result<()> {
    let settings = Pkcs11Settings::from(config.require_signer()?);
    let label = settings.key_label.clone();
    let (signer, created) = tokio::task::spawn_blocking(move || Pkcs11Signer::init_key(&settings))
        .await
        .context("the PKCS#11 task failed")?
        .context("key init")?;
    let verb = if created { "created" } else { "already present:" };
    eprintln!("snapshot signing key {label:?} {verb} key id {}", signer.key_id());
    // The public key, for filters to pin.
    println!("{}", serde_json::to_string_pretty(&public_key_json(&signer)).context("encoding the public key")?);
    Ok(())
}
