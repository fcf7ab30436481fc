//! The `certbind` command line: one file per command group, each defining its subcommands
//! and running them over the domain and storage, as the admin API does.

mod ca;
mod card;
mod crl;
mod issuer;
mod key;
mod org;
mod serve;
mod snapshot;
mod storage;
mod token;
mod user;

pub use ca::{CaCommand, PolicyArgs};
pub use card::{describe_card, CardCommand};
pub use crl::CrlCommand;
pub use issuer::IssuerCommand;
pub use key::KeyCommand;
pub use org::OrgCommand;
pub use serve::serve;
pub use snapshot::SnapshotCommand;
pub use token::TokenCommand;
pub use user::UserCommand;

use crate::config::{Config, Overrides};
use crate::db::Db;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

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
        Command::Key { command } => key::run(&config, command).await,
        Command::Snapshot { command } => snapshot::run(&config, command).await,
        command => {
            let db = Db::open(&config.db_options()).await?;
            let result = on_database(&db, &config, command).await;
            db.close().await;
            result
        }
    }
}

/// The commands that run on the database (opened and migrated for them, closed after).
async fn on_database(db: &Db, config: &Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate => {
            println!("database schema is up to date ({})", db.backend().name());
            Ok(())
        }
        Command::Org { command } => org::run(db, command).await,
        Command::User { command } => user::run(db, command).await,
        Command::Token { command } => token::run(db, command).await,
        Command::Card { command } => card::run(db, command).await,
        Command::Issuer { command } => issuer::run(db, command).await,
        Command::Ca { command } => ca::run(db, command).await,
        Command::Crl { command } => crl::run(db, config, command).await,
        Command::Serve { .. } | Command::Key { .. } | Command::Snapshot { .. } => {
            anyhow::bail!("this command opens what it needs itself, not only the database")
        }
    }
}
