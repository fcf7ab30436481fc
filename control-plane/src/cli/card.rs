//! `certbind card`: card bindings (smart_card_links).

use super::storage::{find_org, find_user, stored};
use crate::db::{self, Actor, Db};
use certbind_shared::clock;
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// Bind the certificate in a PEM file to a user; prints its fingerprint.
    Bind {
        /// The org, by id or name.
        #[arg(long)]
        org: String,
        /// The user, by id or name.
        #[arg(long)]
        user: String,
        /// The card's certificate (PEM, one certificate).
        #[arg(long, value_name = "FILE")]
        pem: PathBuf,
        #[arg(long)]
        label: Option<String>,
    },
}

pub async fn run(db: &Db, command: CardCommand) -> anyhow::Result<()> {
    let CardCommand::Bind { org, user, pem, label } = command;
    bind(db, &org, &user, &pem, label).await
}

async fn bind(db: &Db, org: &str, user: &str, pem: &std::path::Path, label: Option<String>) -> anyhow::Result<()> {
    let org = find_org(db, org).await?;
    let user = find_user(db, &org, user).await?;
    let text = std::fs::read_to_string(pem).with_context(|| format!("--pem: cannot read {}", pem.display()))?;
    let given = crate::domain::binding::GivenBinding::of_certificate(user.id.clone(), text, label);
    let card = crate::domain::binding::checked_binding(given, clock::now_seconds())?;
    let committed = db::smartcards::bind(db, &Actor::cli(org.id.clone()), card).await.map_err(stored)?;
    println!("{}", committed.value.fingerprint);
    // What was read from the card, for the person binding it; stdout keeps only the
    // fingerprint, which scripts capture.
    if let Some(facts) = &committed.value.facts {
        eprint!("{}", describe_card(facts));
    }
    Ok(())
}

/// The facts of a card as the command line shows them, one `name: value` line each.
pub fn describe_card(facts: &certbind_shared::certificate::CardFacts) -> String {
    let list = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(", ") };
    let mut out = format!("certificate type: {}\n", facts.certificate_type.as_str());
    out += &format!("UPN: {}\nemail: {}\nURI: {}\n", list(&facts.upns), list(&facts.emails), list(&facts.uris));
    out += &format!("card UUID: {}\n", facts.card_uuid.as_deref().unwrap_or("-"));
    match &facts.fascn {
        Some(f) => {
            out += &format!(
                "FASC-N: {} (agency {}, system {}, credential {}, series {}, issue {}, PI {}, OC {}, OI {}, POA {})\n",
                f.digits,
                f.agency_code,
                f.system_code,
                f.credential_number,
                f.credential_series,
                f.individual_credential_issue,
                f.person_identifier,
                f.organizational_category,
                f.organizational_identifier,
                f.association_category
            );
        }
        None => out += "FASC-N: -\n",
    }
    out += &format!("policies: {}\nEKUs: {}\n", list(&facts.policy_oids), list(&facts.extended_key_usages));
    let key = match &facts.public_key {
        Some(key) => {
            let mut text = key.algorithm.clone();
            if let Some(curve) = &key.curve {
                text += &format!(" {curve}");
            }
            if let Some(bits) = key.bits {
                text += &format!(" {bits} bits");
            }
            text
        }
        None => "-".to_owned(),
    };
    out += &format!("key: {key}\n");
    out
}
