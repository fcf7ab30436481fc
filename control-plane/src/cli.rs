//! The `certbind` command line.

use crate::app::app;
use crate::config::{Config, Listener, Overrides};
use crate::state::AppState;
use crate::db::{self, Actor, Db};
use crate::signer::pkcs11::{Pkcs11Settings, Pkcs11Signer};
use crate::signer::{public_key_json, Signer};
use crate::snapshot::{build_from_database, NoSnapshots, SnapshotService, StoreService, StoreSettings};
use anyhow::Context;
use certbind_shared::certificate::KeyIdentifier;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(name = "certbind", version, about = "certbind control plane: smart-card bindings, the admin API and signed identity snapshots")]
pub struct Cli {
    /// Configuration file (TOML). Also CERTBIND_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API over HTTPS (`[tls]` in the configuration), or plain HTTP with
    /// --plain-http (migrates the database first).
    Serve {
        /// Address and port to listen on [default: 127.0.0.1:8080]. Port 0 picks a free one.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Serve plain HTTP, without TLS: only behind a TLS hop of your own, or for development.
        /// Also CERTBIND_PLAIN_HTTP=true or `plain_http = true`.
        #[arg(long)]
        plain_http: bool,
    },
    /// Create or update the database schema, then exit.
    Migrate,
    /// Orgs: the unit of isolation.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Users, each in one org.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Admin API tokens and proxy credentials.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Card bindings (smart_card_links).
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// Trusted bearer-token issuers.
    Issuer {
        #[command(subcommand)]
        command: IssuerCommand,
    },
    /// Issuing certificate authorities and their revocation policy (platform).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Certificate revocation lists.
    Crl {
        #[command(subcommand)]
        command: CrlCommand,
    },
    /// The snapshot signing key in the PKCS#11 token.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Signed identity snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum CrlCommand {
    /// Verify a CRL file (DER or PEM) against its registered CA and store it, as an upload
    /// does.
    Load { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create the ECDSA P-256 signing key pair inside the token, unless it exists.
    Init,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Build, sign and write the current snapshot to FILE (for sites with no path to the
    /// control plane).
    Export { file: PathBuf },
}

/// Parses the command line, runs it, and turns errors into a message and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let overrides = match &cli.command {
        Command::Serve { listen, plain_http } => Overrides { listen: listen.clone(), plain_http: *plain_http },
        _ => Overrides::default(),
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => {
            let db = Db::open(&config.db_options()).await?;
            println!("database schema is up to date ({})", db.backend().name());
            db.close().await;
            Ok(())
        }
        Command::Org { command } => {
            let db = Db::open(&config.db_options()).await?;
            match command {
                OrgCommand::Create { name } => {
                    let name = crate::domain::text::org_name(&name)?;
                    let org = db::orgs::create(&db, None, &name).await.map_err(stored)?;
                    println!("{}", org.id);
                }
                OrgCommand::List => {
                    let mut cursor: Option<String> = None;
                    loop {
                        let page = db::orgs::list(&db, cursor.as_deref(), db::MAX_PAGE).await.map_err(stored)?;
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
                    let found = find_org(&db, org).await?;
                    let actor = Actor::cli(found.id.clone());
                    // Run here, not through a server: a running control plane picks the change
                    // up from the snapshot log, as it does every command-line change.
                    let (verb, result) = match command {
                        OrgCommand::Disable { .. } => ("disabled", db::orgs::set_enabled(&db, &actor, &found.id, false).await),
                        OrgCommand::Enable { .. } => ("enabled", db::orgs::set_enabled(&db, &actor, &found.id, true).await),
                        _ => ("deleted", db::orgs::delete(&db, &actor, &found.id).await),
                    };
                    let committed = result.map_err(stored)?;
                    println!("{verb} org {} ({})", committed.value.id, committed.value.name);
                }
                OrgCommand::AssignDomain { org, domain } => {
                    let org = find_org(&db, &org).await?;
                    let domain = crate::domain::text::canonical_domain("domain", &domain)?;
                    db::domains::assign(&db, &Actor::cli(org.id.clone()), &org.id, &domain).await.map_err(stored)?;
                }
                OrgCommand::UnassignDomain { org, domain } => {
                    let org = find_org(&db, &org).await?;
                    let domain = crate::domain::text::canonical_domain("domain", &domain)?;
                    db::domains::unassign(&db, &Actor::cli(org.id.clone()), &org.id, &domain).await.map_err(stored)?;
                }
                OrgCommand::Domains { org } => {
                    let org = find_org(&db, &org).await?;
                    for assigned in db::domains::list(&db, &org.id).await.map_err(stored)? {
                        println!("{}", assigned.domain);
                    }
                }
                OrgCommand::CardAuthentication { org, setting } => {
                    let org = find_org(&db, &org).await?;
                    let allow = setting == "allow";
                    let org = db::orgs::set_allow_card_authentication(&db, &Actor::cli(org.id.clone()), &org.id, allow)
                        .await
                        .map_err(stored)?;
                    let verb = if org.allow_card_authentication { "allows" } else { "refuses" };
                    println!("org {} ({}) {verb} Card Authentication certificates", org.id, org.name);
                }
            }
            db.close().await;
            Ok(())
        }
        Command::User { command: UserCommand::Create { org, email, name } } => {
            let db = Db::open(&config.db_options()).await?;
            let org = find_org(&db, &org).await?;
            let name = crate::domain::text::user_name(&name)?;
            let user = db::users::create(&db, &Actor::cli(org.id), &name, email.as_deref()).await.map_err(stored)?;
            println!("{}", user.id);
            db.close().await;
            Ok(())
        }
        Command::Token { command } => {
            let db = Db::open(&config.db_options()).await?;
            let result = token_command(&db, command).await;
            db.close().await;
            result
        }
        Command::Card { command: CardCommand::Bind { org, user, pem, label } } => {
            let db = Db::open(&config.db_options()).await?;
            let result = card_bind(&db, &org, &user, &pem, label).await;
            db.close().await;
            result
        }
        Command::Issuer { command: IssuerCommand::Add { org, platform, issuer, jwks, audiences } } => {
            let db = Db::open(&config.db_options()).await?;
            let result = issuer_add(&db, org.as_deref(), platform, &issuer, &jwks, audiences).await;
            db.close().await;
            result
        }
        Command::Ca { command } => {
            let db = Db::open(&config.db_options()).await?;
            let result = ca_command(&db, command).await;
            db.close().await;
            result
        }
        Command::Crl { command: CrlCommand::Load { file } } => {
            let db = Db::open(&config.db_options()).await?;
            let result = crl_load(&db, &config, &file).await;
            db.close().await;
            result
        }
        Command::Key { command: KeyCommand::Init } => key_init(&config).await,
        Command::Snapshot { command: SnapshotCommand::Export { file } } => snapshot_export(&config, &file).await,
    }
}

/// Turns a storage error into a command-line error.
fn stored(e: db::DbError) -> anyhow::Error {
    match e {
        db::DbError::Database(inner) => anyhow::Error::new(inner).context("database"),
        other => anyhow::anyhow!("{other}"),
    }
}

async fn find_org(db: &Db, id_or_name: &str) -> anyhow::Result<db::Org> {
    db::orgs::find(db, id_or_name)
        .await
        .map_err(stored)?
        .with_context(|| format!("--org: no org with id or name {id_or_name:?} (create it with `certbind org create NAME`)"))
}

async fn token_command(db: &Db, command: TokenCommand) -> anyhow::Result<()> {
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

async fn find_user(db: &Db, org: &db::Org, id_or_name: &str) -> anyhow::Result<db::User> {
    if let Some(user) = db::users::get(db, &org.id, id_or_name).await.map_err(stored)? {
        return Ok(user);
    }
    db::users::find_by_name(db, &org.id, id_or_name)
        .await
        .map_err(stored)?
        .with_context(|| format!("--user: no user with id or name {id_or_name:?} in org {:?}", org.name))
}

async fn card_bind(db: &Db, org: &str, user: &str, pem: &std::path::Path, label: Option<String>) -> anyhow::Result<()> {
    let org = find_org(db, org).await?;
    let user = find_user(db, &org, user).await?;
    let text = std::fs::read_to_string(pem).with_context(|| format!("--pem: cannot read {}", pem.display()))?;
    let given = crate::domain::binding::GivenBinding::of_certificate(user.id.clone(), text, label);
    let card = crate::domain::binding::checked_binding(given, crate::time::now_epoch())?;
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

async fn issuer_add(
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

async fn ca_command(db: &Db, command: CaCommand) -> anyhow::Result<()> {
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

async fn crl_load(db: &Db, config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let now = crate::time::now_epoch();
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

/// Opens the signing key named by the configuration (blocking PKCS#11 calls off the runtime).
async fn open_signer(config: &Config) -> anyhow::Result<Arc<dyn Signer>> {
    let settings = Pkcs11Settings::from(config.require_signer()?);
    let signer = tokio::task::spawn_blocking(move || Pkcs11Signer::open(&settings))
        .await
        .context("the PKCS#11 task failed")?
        .context("signer: cannot open the snapshot signing key (has `certbind key init` been run?)")?;
    Ok(Arc::new(signer))
}

fn store_settings(config: &Config) -> StoreSettings {
    StoreSettings { resign_after: config.snapshot_resign_after, ..StoreSettings::with_validity(config.snapshot_validity) }
}

/// The snapshot service for this configuration: none without a signer.
async fn snapshot_service(config: &Config, db: &Db) -> anyhow::Result<Arc<dyn SnapshotService>> {
    if config.signer.is_none() {
        tracing::warn!("no PKCS#11 signer configured: the admin API runs, snapshots are not served");
        return Ok(Arc::new(NoSnapshots::default()));
    }
    let signer = open_signer(config).await?;
    tracing::info!(key_id = signer.key_id(), "signing snapshots");
    let service = StoreService::start(db.clone(), signer, store_settings(config)).await?;
    Ok(service)
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener_kind = config.listener.clone().context(
        "configuration: no TLS certificate: set [tls] certificate_file and key_file (or CERTBIND_TLS_CERTIFICATE_FILE and \
         CERTBIND_TLS_KEY_FILE), or pass --plain-http to serve without TLS",
    )?;
    let db = Db::open(&config.db_options()).await?;
    let snapshots = snapshot_service(&config, &db).await?;
    let state = AppState::new(db.clone(), snapshots, config.limits());
    let poller = config.crl_fetch.clone().map(|settings| {
        crate::revocation::poller::spawn(db.clone(), state.snapshots.clone(), state.crl.clone(), settings)
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen: cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listen: no local address")?;
    let tls = match &listener_kind {
        Listener::Https(settings) => Some(crate::tls::TlsServer::new(settings)?),
        Listener::PlainHttp => None,
    };
    let scheme = match &tls {
        Some(_) => "https",
        None => {
            tracing::warn!(
                "serving plain HTTP (--plain-http): admin tokens and proxy credentials cross the network unencrypted; \
                 configure [tls] unless a TLS hop of your own is in front"
            );
            "http"
        }
    };
    tracing::info!(%addr, database = db.backend().name(), scheme, "certbind control plane listening");
    // A line on stdout, so scripts and tests that ask for port 0 learn the port.
    println!("certbind listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();
    match tls {
        Some(tls) => tls.serve(listener, app(state), shutdown_signal()).await?,
        None => {
            // With the peer's address, which failed authentications are logged with.
            let service = app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await.context("serving HTTP")?;
        }
    }
    if let Some(poller) = poller {
        poller.abort();
    }
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

async fn key_init(config: &Config) -> anyhow::Result<()> {
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

async fn snapshot_export(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
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
