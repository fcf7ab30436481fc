//! `certbind user`: users, each in one org.

use super::storage::{find_org, stored};
use crate::db::{self, Actor, Db};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints its id.
    Create {
        /// The org, by id or name.
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: Option<String>,
        name: String,
    },
}

pub async fn run(db: &Db, command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Create { org, email, name } = command;
    let org = find_org(db, &org).await?;
    let name = crate::domain::text::user_name(&name)?;
    let user = db::users::create(db, &Actor::cli(org.id), &name, email.as_deref()).await.map_err(stored)?;
    println!("{}", user.id);
    Ok(())
}
