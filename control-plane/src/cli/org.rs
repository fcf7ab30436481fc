//! `certbind org`: orgs, the unit of isolation, and the domains assigned to them.

use super::storage::{find_org, stored};
use crate::db::{self, Actor, Db};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an org; prints its id.
    Create { name: String },
    /// List orgs: id, name and, when disabled, `disabled`.
    List,
    /// Disable an org: its admin tokens are refused and the filter refuses its certificates.
    Disable {
        /// The org, by id or name.
        org: String,
    },
    /// Enable a disabled org again.
    Enable {
        /// The org, by id or name.
        org: String,
    },
    /// Delete a disabled org and everything it owns (its audit log stays).
    Delete {
        /// The org, by id or name.
        org: String,
    },
    /// Assign a domain to an org: its admins may then create SAN mapping rules for it and
    /// its subdomains.
    AssignDomain {
        /// The org, by id or name.
        #[arg(long)]
        org: String,
        domain: String,
    },
    /// Take a domain back from an org (its SAN rules stay).
    UnassignDomain {
        /// The org, by id or name.
        #[arg(long)]
        org: String,
        domain: String,
    },
    /// List the domains assigned to an org.
    Domains {
        /// The org, by id or name.
        #[arg(long)]
        org: String,
    },
    /// Let an org bind PIV Card Authentication certificates (`allow`), or stop it (`refuse`,
    /// the default); the filter still admits them only on routes that allow them.
    CardAuthentication {
        /// The org, by id or name.
        #[arg(long)]
        org: String,
        #[arg(value_parser = ["allow", "refuse"])]
        setting: String,
    },
}

pub async fn run(db: &Db, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name } => {
            let name = crate::domain::text::org_name(&name)?;
            let org = db::orgs::create(db, None, &name).await.map_err(stored)?;
            println!("{}", org.id);
        }
        OrgCommand::List => {
            let mut cursor: Option<String> = None;
            loop {
                let page = db::orgs::list(db, cursor.as_deref(), db::MAX_PAGE).await.map_err(stored)?;
                for org in &page.items {
                    if org.enabled {
                        println!("{}\t{}", org.id, org.name);
                    } else {
                        println!("{}\t{}\tdisabled", org.id, org.name);
                    }
                }
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        OrgCommand::Disable { ref org } | OrgCommand::Enable { ref org } | OrgCommand::Delete { ref org } => {
            let found = find_org(db, org).await?;
            let actor = Actor::cli(found.id.clone());
            // Run here, not through a server: a running control plane picks the change
            // up from the snapshot log, as it does every command-line change.
            let (verb, result) = match command {
                OrgCommand::Disable { .. } => ("disabled", db::orgs::set_enabled(db, &actor, &found.id, false).await),
                OrgCommand::Enable { .. } => ("enabled", db::orgs::set_enabled(db, &actor, &found.id, true).await),
                _ => ("deleted", db::orgs::delete(db, &actor, &found.id).await),
            };
            let committed = result.map_err(stored)?;
            println!("{verb} org {} ({})", committed.value.id, committed.value.name);
        }
        OrgCommand::AssignDomain { org, domain } => {
            let org = find_org(db, &org).await?;
            let domain = crate::domain::text::canonical_domain("domain", &domain)?;
            db::domains::assign(db, &Actor::cli(org.id.clone()), &org.id, &domain).await.map_err(stored)?;
        }
        OrgCommand::UnassignDomain { org, domain } => {
            let org = find_org(db, &org).await?;
            let domain = crate::domain::text::canonical_domain("domain", &domain)?;
            db::domains::unassign(db, &Actor::cli(org.id.clone()), &org.id, &domain).await.map_err(stored)?;
        }
        OrgCommand::Domains { org } => {
            let org = find_org(db, &org).await?;
            for assigned in db::domains::list(db, &org.id).await.map_err(stored)? {
                println!("{}", assigned.domain);
            }
        }
        OrgCommand::CardAuthentication { org, setting } => {
            let org = find_org(db, &org).await?;
            let allow = setting == "allow";
            let org = db::orgs::set_allow_card_authentication(db, &Actor::cli(org.id.clone()), &org.id, allow)
                .await
                .map_err(stored)?;
            let verb = if org.allow_card_authentication { "allows" } else { "refuses" };
            println!("org {} ({}) {verb} Card Authentication certificates", org.id, org.name);
        }
    }
    Ok(())
}
