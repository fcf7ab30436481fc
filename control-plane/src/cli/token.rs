//! `certbind token`: admin API tokens and proxy credentials.

use super::storage::{find_org, stored};
use crate::db::{self, Actor, Db};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an admin token (--org) or a proxy credential (--proxy); prints the secret, which
    /// is shown only this once.
    Create {
        /// The org of an admin token, by id or name (a proxy credential belongs to no org:
        /// with --proxy it is accepted and ignored).
        #[arg(long, required_unless_present = "proxy")]
        org: Option<String>,
        /// The token may also manage orgs and platform rules.
        #[arg(long, conflicts_with = "proxy")]
        super_admin: bool,
        /// A proxy credential: it reads the snapshot and nothing else.
        #[arg(long)]
        proxy: bool,
        #[arg(long)]
        label: Option<String>,
    },
    /// List proxy credentials (--proxy) or an org's admin tokens (--org): id, label, last use.
    List {
        #[arg(long, required_unless_present = "org", conflicts_with = "org")]
        proxy: bool,
        /// The org whose admin tokens to list, by id or name.
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a proxy credential (--proxy) or an admin token of an org (--org) by id.
    Delete {
        #[arg(long, required_unless_present = "org", conflicts_with = "org")]
        proxy: bool,
        /// The org of the admin token, by id or name.
        #[arg(long)]
        org: Option<String>,
        id: String,
    },
}

pub async fn run(db: &Db, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { proxy: true, label, .. } => {
            let label = crate::domain::text::token_label(label.as_deref())?;
            let (_, secret) = db::proxies::create(db, &Actor::service("cli"), label.as_deref()).await.map_err(stored)?;
            println!("{secret}");
        }
        TokenCommand::Create { org, super_admin, label, proxy: false } => {
            let org = find_org(db, org.as_deref().unwrap_or_default()).await?;
            let label = crate::domain::text::token_label(label.as_deref())?;
            let (_, secret) = db::tokens::create(db, &Actor::cli(org.id.clone()), &org.id, super_admin, label.as_deref())
                .await
                .map_err(stored)?;
            println!("{secret}");
        }
        TokenCommand::List { org: Some(org), .. } => {
            let org = find_org(db, &org).await?;
            let mut cursor: Option<String> = None;
            loop {
                let page = db::tokens::list(db, &org.id, cursor.as_deref(), db::MAX_PAGE).await.map_err(stored)?;
                for token in &page.items {
                    println!(
                        "{}\t{}\t{}\t{}",
                        token.id,
                        if token.super_admin { "super-admin" } else { "admin" },
                        token.label.as_deref().unwrap_or("-"),
                        token.last_used_at.as_deref().unwrap_or("never used")
                    );
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        TokenCommand::List { org: None, .. } => {
            let mut cursor: Option<String> = None;
            loop {
                let page = db::proxies::list(db, cursor.as_deref(), db::MAX_PAGE).await.map_err(stored)?;
                for credential in &page.items {
                    println!(
                        "{}\t{}\t{}",
                        credential.id,
                        credential.label.as_deref().unwrap_or("-"),
                        credential.last_used_at.as_deref().unwrap_or("never used")
                    );
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        TokenCommand::Delete { org: Some(org), id, .. } => {
            let org = find_org(db, &org).await?;
            let token = db::tokens::delete_in(db, &Actor::cli(org.id.clone()), &org.id, &id).await.map_err(stored)?;
            println!("revoked admin token {}", token.id);
        }
        TokenCommand::Delete { org: None, id, .. } => {
            let credential = db::proxies::delete(db, &Actor::service("cli"), &id).await.map_err(stored)?;
            println!("revoked proxy credential {}", credential.id);
        }
    }
    Ok(())
}
