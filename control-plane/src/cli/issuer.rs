//! `certbind issuer`: trusted bearer-token issuers.

use super::storage::{find_org, stored};
use crate::db::{self, Actor, Db};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum IssuerCommand {
    /// Trust a bearer-token issuer with the keys in a JWKS file, for one org or the platform.
    Add {
        /// The org that trusts it, by id or name.
        #[arg(long, required_unless_present = "platform", conflicts_with = "platform")]
        org: Option<String>,
        /// Every org: a platform registration.
        #[arg(long)]
        platform: bool,
        /// The exact `iss` of its tokens.
        #[arg(long)]
        issuer: String,
        /// The issuer's JSON Web Key Set.
        #[arg(long, value_name = "FILE")]
        jwks: PathBuf,
        /// An audience its tokens must carry (repeatable; none: the deployment's audiences).
        #[arg(long = "audience")]
        audiences: Vec<String>,
    },
}

pub async fn run(db: &Db, command: IssuerCommand) -> anyhow::Result<()> {
    let IssuerCommand::Add { org, platform, issuer, jwks, audiences } = command;
    add(db, org.as_deref(), platform, &issuer, &jwks, audiences).await
}

async fn add(
    db: &Db,
    org: Option<&str>,
    platform: bool,
    issuer: &str,
    jwks: &std::path::Path,
    audiences: Vec<String>,
) -> anyhow::Result<()> {
    let (owner, actor) = match (platform, org) {
        (true, _) => (crate::domain::Owner::Platform, Actor::service("cli")),
        (false, Some(org)) => {
            let org = find_org(db, org).await?;
            (crate::domain::Owner::Org(org.id.clone()), Actor::cli(org.id))
        }
        (false, None) => anyhow::bail!("give --org ORG or --platform"),
    };
    let text = std::fs::read_to_string(jwks).with_context(|| format!("--jwks: cannot read {}", jwks.display()))?;
    let jwks: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("--jwks: {} is not JSON", jwks.display()))?;
    let issuer = crate::domain::issuer::checked_issuer(&owner, issuer, &jwks)?;
    let audiences = crate::domain::issuer::checked_audiences((!audiences.is_empty()).then_some(audiences))?;
    let committed = db::issuers::create(db, &actor, owner, &issuer, audiences, jwks).await.map_err(stored)?;
    println!("{}", committed.value.id);
    Ok(())
}
