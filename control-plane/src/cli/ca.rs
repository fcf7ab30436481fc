//! `certbind ca`: issuing certificate authorities and their revocation policy (platform).

use super::storage::stored;
use crate::db::{self, Actor, Db};
use anyhow::Context;
use certbind_shared::certificate::KeyIdentifier;
use clap::Subcommand;
use std::path::PathBuf;

/// A CA's revocation policy as flags.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// Refuse the CA's certificates while no fresh CRL is held (the default).
    #[arg(long, conflicts_with = "no_require_fresh_crl")]
    pub require_fresh_crl: bool,
    /// Do not require a fresh CRL (revoked serials still refuse).
    #[arg(long)]
    pub no_require_fresh_crl: bool,
    /// Seconds after nextUpdate a CRL still counts as fresh (default 86400).
    #[arg(long, value_name = "SECONDS")]
    pub grace: Option<i64>,
    /// Accept the CA's certificates when no fresh CRL is held although one is required.
    #[arg(long, conflicts_with = "fail_closed")]
    pub fail_open: bool,
    /// Refuse them (the default).
    #[arg(long)]
    pub fail_closed: bool,
    /// An http:// CRL distribution point (repeatable; replaces the list).
    #[arg(long = "crl-url", value_name = "URL")]
    pub crl_urls: Vec<String>,
    /// Fetch from no distribution point.
    #[arg(long, conflicts_with = "crl_urls")]
    pub no_crl_urls: bool,
}

impl PolicyArgs {
    fn update(self) -> crate::domain::ca::PolicyUpdate {
        let flag = |yes: bool, no: bool| (yes || no).then_some(yes);
        crate::domain::ca::PolicyUpdate {
            require_fresh_crl: flag(self.require_fresh_crl, self.no_require_fresh_crl),
            grace_period_seconds: self.grace,
            fail_open: flag(self.fail_open, self.fail_closed),
            crl_urls: if self.no_crl_urls { Some(Vec::new()) } else { (!self.crl_urls.is_empty()).then_some(self.crl_urls) },
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Register a CA by its certificate (PEM); prints its key id.
    Add {
        #[arg(long, value_name = "FILE")]
        pem: PathBuf,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// List CAs: key id, subject, CRL number, entries, freshness.
    List,
    /// Change a CA's revocation policy.
    Policy {
        key_id: String,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Remove a CA and the revocations its CRL brought.
    Remove { key_id: String },
}

pub async fn run(db: &Db, command: CaCommand) -> anyhow::Result<()> {
    let actor = Actor::service("cli");
    match command {
        CaCommand::Add { pem, policy } => {
            let text = std::fs::read_to_string(&pem).with_context(|| format!("--pem: cannot read {}", pem.display()))?;
            let new = crate::domain::ca::checked_new_ca(&text, policy.update())?;
            let committed = db::cas::register(db, &actor, new).await.map_err(stored)?;
            println!("{}", committed.value.key_id);
        }
        CaCommand::List => {
            for ca in db::cas::all(db).await.map_err(stored)? {
                let (number, entries, status) = match &ca.crl {
                    Some(crl) => (crl.crl_number.clone(), crl.entries.to_string(), crl.status),
                    None => ("-".into(), "-".into(), "no CRL"),
                };
                println!("{}\t{}\t{number}\t{entries}\t{status}", ca.key_id, ca.subject_dn);
            }
        }
        CaCommand::Policy { key_id, policy } => {
            let key = KeyIdentifier::from_hex(&key_id).with_context(|| format!("{key_id:?} is not a key id (hex)"))?;
            let update = crate::domain::ca::checked_policy(policy.update())?;
            if update == crate::domain::ca::PolicyUpdate::default() {
                anyhow::bail!("give at least one policy flag");
            }
            db::cas::update_policy(db, &actor, &key.to_hex(), update).await.map_err(stored)?;
        }
        CaCommand::Remove { key_id } => {
            let key = KeyIdentifier::from_hex(&key_id).with_context(|| format!("{key_id:?} is not a key id (hex)"))?;
            let removed = db::cas::delete(db, &actor, &key.to_hex()).await.map_err(stored)?;
            println!("removed CA {} ({})", removed.value.key_id, removed.value.subject_dn);
        }
    }
    Ok(())
}
