//! Configuration: built-in defaults, then a TOML file (`--config certbind.toml` or
//! `CERTBIND_CONFIG`), then environment variables (`CERTBIND_*`, `DATABASE_URL`), then
//! command-line flags. Every bad setting is an error that names the setting and where it
//! came from; unknown keys in the file are errors too, so a typo never silently does nothing.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! database_url = "sqlite://certbind.db"     # or postgres://user:pass@host/db
//! db_max_connections = 16
//! db_acquire_timeout_seconds = 10           # a request's wait for a connection: with the
//!                                            # database unreachable, how soon it answers 503
//! max_body_bytes = 65536
//! max_long_poll_seconds = 55
//!
//! [signer]                                   # absent: snapshots are not signed or served
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "certbind"
//! key_label = "certbind-snapshot"
//! pin_file = "/run/secrets/hsm-pin"          # or pin = "…", or CERTBIND_PKCS11_PIN
//!
//! [snapshot]
//! validity_seconds = 86400
//! resign_after_seconds = 43200              # default: half the validity
//!
//! [quotas]                                   # per org; CERTBIND_QUOTA_<NAME> in the environment
//! issuers = 32
//! jwks_bytes = 1048576
//! blocklist_entries = 100000
//! mapping_rules = 1000
//! thumbprint_mappings = 100000
//! constraints = 1000
//!
//! [crl]                                      # CERTBIND_CRL_<NAME> in the environment
//! max_bytes = 268435456                      # one CRL's DER; PEM may be 4/3 of it
//! max_entries = 8000000                      # revoked entries in one CRL
//! fetch = true                               # poll the CAs' distribution points
//! fetch_min_interval_seconds = 60            # also the first retry after a failure
//! fetch_max_interval_seconds = 3600
//! fetch_timeout_seconds = 60
//! ```

use crate::state::{Limits, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_LONG_POLL};
use crate::db::{Backend, DbOptions, Quotas, DEFAULT_DATABASE_URL};
use crate::revocation::poller::PollerSettings;
use certbind_shared::crl::CrlLimits;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_TOKEN_LABEL: &str = "certbind";
pub const DEFAULT_KEY_LABEL: &str = "certbind-snapshot";
/// A day: long enough to ride out a control-plane outage overnight, short enough that a
/// proxy cut off from the control plane stops trusting stale data the same day.
pub const DEFAULT_SNAPSHOT_VALIDITY_SECS: u64 = 24 * 3600;
/// Smallest body limit accepted: a bind request with its fields needs about 1 KiB.
const MIN_BODY_BYTES: usize = 1024;
/// Largest body limit accepted: the API takes small JSON documents, never files.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A setting that could not be used: which one, from where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting as the user spelled it: `listen` (file), `CERTBIND_LISTEN`, `--listen`.
    pub setting: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration: {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.into(), problem: problem.into() }
}

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    db_max_connections: Option<u32>,
    db_acquire_timeout_seconds: Option<u64>,
    max_body_bytes: Option<usize>,
    max_long_poll_seconds: Option<u64>,
    signer: Option<FileSigner>,
    snapshot: Option<FileSnapshot>,
    quotas: Option<FileQuotas>,
    crl: Option<FileCrl>,
    tls: Option<FileTls>,
    plain_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    certificate_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
}

/// The HTTPS listener's files (see [`crate::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server certificate, then its chain.
    pub certificate_file: PathBuf,
    /// PEM: its private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    /// PEM: the CAs whose client certificates every connection must present; `None`: none asked.
    pub client_ca_file: Option<PathBuf>,
}

/// How `certbind serve` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listener {
    Https(TlsSettings),
    /// Asked for explicitly (`--plain-http`, `plain_http = true`, `CERTBIND_PLAIN_HTTP`).
    PlainHttp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCrl {
    max_bytes: Option<usize>,
    max_entries: Option<usize>,
    fetch: Option<bool>,
    fetch_min_interval_seconds: Option<u64>,
    fetch_max_interval_seconds: Option<u64>,
    fetch_timeout_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQuotas {
    issuers: Option<u64>,
    jwks_bytes: Option<u64>,
    blocklist_entries: Option<u64>,
    mapping_rules: Option<u64>,
    thumbprint_mappings: Option<u64>,
    constraints: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSigner {
    module: Option<PathBuf>,
    token_label: Option<String>,
    key_label: Option<String>,
    pin: Option<String>,
    pin_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSnapshot {
    validity_seconds: Option<u64>,
    resign_after_seconds: Option<u64>,
}

/// Where the snapshot signing key lives.
#[derive(Clone, PartialEq, Eq)]
pub struct SignerConfig {
    /// Path of the PKCS#11 module (`libsofthsm2.so`, `libyubihsm_pkcs11.so`, …).
    pub module: PathBuf,
    pub token_label: String,
    pub key_label: String,
    /// The user PIN. Never printed.
    pub pin: String,
}

impl std::fmt::Debug for SignerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerConfig")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &"***")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_long_poll: Duration,
    /// `None` when no PKCS#11 module is configured.
    pub signer: Option<SignerConfig>,
    pub snapshot_validity: Duration,
    /// When an unchanged snapshot is signed again; `None`: half the validity.
    pub snapshot_resign_after: Option<Duration>,
    /// What one org may hold of each kind of rule.
    pub quotas: Quotas,
    /// Caps of one CRL.
    pub crl: CrlLimits,
    /// The CRL poller's schedule; `None`: distribution points are not fetched.
    pub crl_fetch: Option<PollerSettings>,
    /// HTTPS or plain HTTP; `None` when neither is configured, which `serve` refuses.
    pub listener: Option<Listener>,
}

/// Flags given on the command line, which win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    /// `--plain-http`.
    pub plain_http: bool,
}

impl Config {
    /// Loads from the process environment and an optional file.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_from(file, &|name| std::env::var(name).ok(), overrides)
    }

    /// Loads with `env` standing in for the environment (so tests need not change it).
    pub fn load_from(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let file_path = file.map(Path::to_path_buf).or_else(|| env("CERTBIND_CONFIG").map(PathBuf::from));
        let from_file = match &file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let file_name = file_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let in_file = |key: &str| format!("{file_name}: {key}");

        // listen
        let (listen_text, listen_setting) = if let Some(l) = &overrides.listen {
            (l.clone(), "--listen".to_string())
        } else if let Some(l) = env("CERTBIND_LISTEN") {
            (l, "CERTBIND_LISTEN".to_string())
        } else if let Some(l) = &from_file.listen {
            (l.clone(), in_file("listen"))
        } else {
            (DEFAULT_LISTEN.to_string(), "listen (default)".to_string())
        };
        let listen: SocketAddr = listen_text
            .trim()
            .parse()
            .map_err(|_| err(listen_setting, format!("{listen_text:?} is not an address and port such as 127.0.0.1:8080")))?;

        // database
        let (database_url, db_setting) = if let Some(u) = env("CERTBIND_DATABASE_URL") {
            (u, "CERTBIND_DATABASE_URL".to_string())
        } else if let Some(u) = env("DATABASE_URL") {
            (u, "DATABASE_URL".to_string())
        } else if let Some(u) = &from_file.database_url {
            (u.clone(), in_file("database_url"))
        } else {
            (DEFAULT_DATABASE_URL.to_string(), "database_url (default)".to_string())
        };
        let database_url = database_url.trim().to_string();
        if Backend::of_url(&database_url).is_none() {
            return Err(err(
                db_setting,
                format!(
                    "{:?} is not a database URL this service speaks: use sqlite://FILE or postgres://USER@HOST/DB",
                    crate::db::redact_url(&database_url)
                ),
            ));
        }

        let db_max_connections = number(env, "CERTBIND_DB_MAX_CONNECTIONS", from_file.db_max_connections, &in_file("db_max_connections"))?
            .unwrap_or(16);
        if !(1..=1000).contains(&db_max_connections) {
            return Err(err(setting_of(env, "CERTBIND_DB_MAX_CONNECTIONS", &in_file("db_max_connections")), "must be between 1 and 1000"));
        }
        let db_acquire_timeout = number(
            env,
            "CERTBIND_DB_ACQUIRE_TIMEOUT_SECONDS",
            from_file.db_acquire_timeout_seconds,
            &in_file("db_acquire_timeout_seconds"),
        )?
        .unwrap_or(crate::db::DEFAULT_ACQUIRE_TIMEOUT.as_secs());
        if !(1..=600).contains(&db_acquire_timeout) {
            return Err(err(
                setting_of(env, "CERTBIND_DB_ACQUIRE_TIMEOUT_SECONDS", &in_file("db_acquire_timeout_seconds")),
                "must be between 1 and 600",
            ));
        }
        let db_acquire_timeout = Duration::from_secs(db_acquire_timeout);
        let max_body_bytes = number(env, "CERTBIND_MAX_BODY_BYTES", from_file.max_body_bytes, &in_file("max_body_bytes"))?
            .unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if !(MIN_BODY_BYTES..=MAX_BODY_BYTES).contains(&max_body_bytes) {
            return Err(err(
                setting_of(env, "CERTBIND_MAX_BODY_BYTES", &in_file("max_body_bytes")),
                format!("must be between {MIN_BODY_BYTES} and {MAX_BODY_BYTES}"),
            ));
        }
        let max_long_poll = number(env, "CERTBIND_MAX_LONG_POLL_SECONDS", from_file.max_long_poll_seconds, &in_file("max_long_poll_seconds"))?
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_MAX_LONG_POLL);
        if max_long_poll > Duration::from_secs(3600) {
            return Err(err(setting_of(env, "CERTBIND_MAX_LONG_POLL_SECONDS", &in_file("max_long_poll_seconds")), "must be at most 3600"));
        }

        let file_snapshot = from_file.snapshot.unwrap_or_default();
        let validity = number(env, "CERTBIND_SNAPSHOT_VALIDITY_SECONDS", file_snapshot.validity_seconds, &in_file("snapshot.validity_seconds"))?
            .unwrap_or(DEFAULT_SNAPSHOT_VALIDITY_SECS);
        if !(60..=90 * 24 * 3600).contains(&validity) {
            return Err(err(
                setting_of(env, "CERTBIND_SNAPSHOT_VALIDITY_SECONDS", &in_file("snapshot.validity_seconds")),
                "must be between 60 seconds and 90 days",
            ));
        }

        let resign_after = number(env, "CERTBIND_SNAPSHOT_RESIGN_AFTER_SECONDS", file_snapshot.resign_after_seconds, &in_file("snapshot.resign_after_seconds"))?;
        if resign_after.is_some_and(|r| r == 0 || r >= validity) {
            return Err(err(
                setting_of(env, "CERTBIND_SNAPSHOT_RESIGN_AFTER_SECONDS", &in_file("snapshot.resign_after_seconds")),
                "must be at least 1 second and less than the snapshot validity",
            ));
        }

        let signer = signer_config(env, from_file.signer, &in_file)?;

        let file_quotas = from_file.quotas.unwrap_or_default();
        let defaults = Quotas::default();
        let quota = |var: &str, from_file: Option<u64>, key: &str, default: u64| -> Result<u64, ConfigError> {
            Ok(number(env, var, from_file, &in_file(key))?.unwrap_or(default))
        };
        let quotas = Quotas {
            issuers: quota("CERTBIND_QUOTA_ISSUERS", file_quotas.issuers, "quotas.issuers", defaults.issuers)?,
            jwks_bytes: quota("CERTBIND_QUOTA_JWKS_BYTES", file_quotas.jwks_bytes, "quotas.jwks_bytes", defaults.jwks_bytes)?,
            blocklist_entries: quota(
                "CERTBIND_QUOTA_BLOCKLIST_ENTRIES",
                file_quotas.blocklist_entries,
                "quotas.blocklist_entries",
                defaults.blocklist_entries,
            )?,
            mapping_rules: quota(
                "CERTBIND_QUOTA_MAPPING_RULES",
                file_quotas.mapping_rules,
                "quotas.mapping_rules",
                defaults.mapping_rules,
            )?,
            thumbprint_mappings: quota(
                "CERTBIND_QUOTA_THUMBPRINT_MAPPINGS",
                file_quotas.thumbprint_mappings,
                "quotas.thumbprint_mappings",
                defaults.thumbprint_mappings,
            )?,
            constraints: quota("CERTBIND_QUOTA_CONSTRAINTS", file_quotas.constraints, "quotas.constraints", defaults.constraints)?,
        };

        let file_crl = from_file.crl.unwrap_or_default();
        let crl_defaults = CrlLimits::default();
        let crl = CrlLimits {
            max_der_bytes: number(env, "CERTBIND_CRL_MAX_BYTES", file_crl.max_bytes, &in_file("crl.max_bytes"))?
                .unwrap_or(crl_defaults.max_der_bytes),
            max_entries: number(env, "CERTBIND_CRL_MAX_ENTRIES", file_crl.max_entries, &in_file("crl.max_entries"))?
                .unwrap_or(crl_defaults.max_entries),
        };
        // A CRL of under 1 KiB is only an empty one; 4 GiB is past what one request should hold.
        if !(1024..=4 * 1024 * 1024 * 1024).contains(&crl.max_der_bytes) {
            return Err(err(setting_of(env, "CERTBIND_CRL_MAX_BYTES", &in_file("crl.max_bytes")), "must be between 1024 and 4294967296"));
        }
        if crl.max_entries == 0 {
            return Err(err(setting_of(env, "CERTBIND_CRL_MAX_ENTRIES", &in_file("crl.max_entries")), "must be at least 1"));
        }
        let fetch = boolean(env, "CERTBIND_CRL_FETCH")?.or(file_crl.fetch).unwrap_or(true);
        let poller_defaults = PollerSettings::default();
        let seconds = |var: &str, from_file: Option<u64>, key: &str, default: Duration| -> Result<Duration, ConfigError> {
            let value = number(env, var, from_file, &in_file(key))?.map_or(default, Duration::from_secs);
            if value.is_zero() || value > Duration::from_secs(7 * 86_400) {
                return Err(err(setting_of(env, var, &in_file(key)), "must be between 1 and 604800 seconds"));
            }
            Ok(value)
        };
        let crl_fetch = PollerSettings {
            min_interval: seconds(
                "CERTBIND_CRL_FETCH_MIN_INTERVAL_SECONDS",
                file_crl.fetch_min_interval_seconds,
                "crl.fetch_min_interval_seconds",
                poller_defaults.min_interval,
            )?,
            max_interval: seconds(
                "CERTBIND_CRL_FETCH_MAX_INTERVAL_SECONDS",
                file_crl.fetch_max_interval_seconds,
                "crl.fetch_max_interval_seconds",
                poller_defaults.max_interval,
            )?,
            timeout: seconds("CERTBIND_CRL_FETCH_TIMEOUT_SECONDS", file_crl.fetch_timeout_seconds, "crl.fetch_timeout_seconds", poller_defaults.timeout)?,
            limits: crl,
            ..poller_defaults
        };

        Ok(Config {
            listen,
            database_url,
            db_max_connections,
            db_acquire_timeout,
            max_body_bytes,
            max_long_poll,
            signer,
            snapshot_validity: Duration::from_secs(validity),
            snapshot_resign_after: resign_after.map(Duration::from_secs),
            quotas,
            crl,
            crl_fetch: fetch.then_some(crl_fetch),
            listener: listener(env, from_file.tls, from_file.plain_http, overrides.plain_http, &in_file)?,
        })
    }

    pub fn db_options(&self) -> DbOptions {
        let mut options = DbOptions::new(self.database_url.clone());
        options.max_connections = self.db_max_connections;
        options.acquire_timeout = self.db_acquire_timeout;
        options.quotas = self.quotas;
        options
    }

    pub fn limits(&self) -> Limits {
        Limits { max_body_bytes: self.max_body_bytes, max_long_poll: self.max_long_poll, crl: self.crl }
    }

    /// The signer settings, or an error saying how to give them (for commands that sign).
    pub fn require_signer(&self) -> Result<&SignerConfig, ConfigError> {
        self.signer.as_ref().ok_or_else(|| {
            err("signer.module", "no PKCS#11 module configured: set [signer] module in the config file or CERTBIND_PKCS11_MODULE")
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let name = path.display().to_string();
    let content = std::fs::read_to_string(path).map_err(|e| err(&name, format!("cannot read the config file: {e}")))?;
    toml::from_str(&content).map_err(|e| err(&name, format!("not a valid config file: {}", e.to_string().trim())))
}

fn setting_of(env: &dyn Fn(&str) -> Option<String>, var: &str, file_setting: &str) -> String {
    if env(var).is_some() { var.to_string() } else { file_setting.to_string() }
}

/// A number from the environment (which wins) or the file.
fn number<T: std::str::FromStr + Copy>(
    env: &dyn Fn(&str) -> Option<String>,
    var: &str,
    from_file: Option<T>,
    _file_setting: &str,
) -> Result<Option<T>, ConfigError> {
    match env(var) {
        Some(text) => text
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| err(var, format!("{text:?} is not a whole number in range"))),
        None => Ok(from_file),
    }
}

/// A true/false environment variable, if set.
fn boolean(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<bool>, ConfigError> {
    match env(var) {
        None => Ok(None),
        Some(v) => match v.trim() {
            "1" | "true" | "yes" => Ok(Some(true)),
            "0" | "false" | "no" => Ok(Some(false)),
            _ => Err(err(var, "must be true or false")),
        },
    }
}

/// HTTPS when a certificate and key are given (environment over file, file by file), plain
/// HTTP when asked for; both is a contradiction, refused.
fn listener(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<FileTls>,
    file_plain_http: Option<bool>,
    flag_plain_http: bool,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Option<Listener>, ConfigError> {
    let file = file.unwrap_or_default();
    let path = |var: &str, from_file: Option<PathBuf>| env(var).map(PathBuf::from).or(from_file);
    let certificate_file = path("CERTBIND_TLS_CERTIFICATE_FILE", file.certificate_file);
    let key_file = path("CERTBIND_TLS_KEY_FILE", file.key_file);
    let client_ca_file = path("CERTBIND_TLS_CLIENT_CA_FILE", file.client_ca_file);
    let plain_http = flag_plain_http || boolean(env, "CERTBIND_PLAIN_HTTP")?.or(file_plain_http).unwrap_or(false);
    let tls = match (certificate_file, key_file) {
        (Some(certificate_file), Some(key_file)) => Some(TlsSettings { certificate_file, key_file, client_ca_file }),
        (Some(_), None) => return Err(err(setting_of(env, "CERTBIND_TLS_KEY_FILE", &in_file("tls.key_file")), "is required with a certificate file")),
        (None, Some(_)) => {
            return Err(err(setting_of(env, "CERTBIND_TLS_CERTIFICATE_FILE", &in_file("tls.certificate_file")), "is required with a key file"))
        }
        (None, None) if client_ca_file.is_some() => {
            return Err(err(setting_of(env, "CERTBIND_TLS_CLIENT_CA_FILE", &in_file("tls.client_ca_file")), "needs tls.certificate_file and tls.key_file"))
        }
        (None, None) => None,
    };
    match (tls, plain_http) {
        (Some(_), true) => {
            let setting = if flag_plain_http { "--plain-http".to_string() } else { setting_of(env, "CERTBIND_PLAIN_HTTP", &in_file("plain_http")) };
            Err(err(setting, "plain HTTP was asked for and a TLS certificate is configured: choose one"))
        }
        (Some(tls), false) => Ok(Some(Listener::Https(tls))),
        (None, true) => Ok(Some(Listener::PlainHttp)),
        (None, false) => Ok(None),
    }
}

fn signer_config(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<FileSigner>,
    in_file: &dyn Fn(&str) -> String,
) -> Result<Option<SignerConfig>, ConfigError> {
    let file = file.unwrap_or_default();
    let (module, module_setting) = match (env("CERTBIND_PKCS11_MODULE"), file.module) {
        (Some(m), _) => (PathBuf::from(m), "CERTBIND_PKCS11_MODULE".to_string()),
        (None, Some(m)) => (m, in_file("signer.module")),
        (None, None) => return Ok(None),
    };
    if !module.is_file() {
        return Err(err(module_setting, format!("PKCS#11 module {} does not exist or is not a file", module.display())));
    }
    let token_label = env("CERTBIND_PKCS11_TOKEN_LABEL").or(file.token_label).unwrap_or_else(|| DEFAULT_TOKEN_LABEL.into());
    let key_label = env("CERTBIND_PKCS11_KEY_LABEL").or(file.key_label).unwrap_or_else(|| DEFAULT_KEY_LABEL.into());
    if token_label.trim().is_empty() {
        return Err(err(setting_of(env, "CERTBIND_PKCS11_TOKEN_LABEL", &in_file("signer.token_label")), "must not be empty"));
    }
    if key_label.trim().is_empty() {
        return Err(err(setting_of(env, "CERTBIND_PKCS11_KEY_LABEL", &in_file("signer.key_label")), "must not be empty"));
    }
    let pin = match (env("CERTBIND_PKCS11_PIN"), file.pin, file.pin_file) {
        (Some(pin), _, _) => pin,
        (None, Some(pin), None) => pin,
        (None, None, Some(path)) => std::fs::read_to_string(&path)
            .map(|p| p.trim_end_matches(['\r', '\n']).to_string())
            .map_err(|e| err(in_file("signer.pin_file"), format!("cannot read {}: {e}", path.display())))?,
        (None, Some(_), Some(_)) => return Err(err(in_file("signer.pin"), "give pin or pin_file, not both")),
        (None, None, None) => {
            return Err(err("CERTBIND_PKCS11_PIN", "the token's user PIN is required: set CERTBIND_PKCS11_PIN, or signer.pin_file in the config file"))
        }
    };
    if pin.is_empty() {
        return Err(err("CERTBIND_PKCS11_PIN", "the PIN must not be empty"));
    }
    Ok(Some(SignerConfig { module, token_label, key_label, pin }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], file: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_from(file, &|name| vars.get(name).cloned(), &Overrides::default())
    }

    #[test]
    fn nothing_configured_means_sqlite_on_localhost() {
        let config = load(&[], None).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.signer, None);
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    }

    #[test]
    fn https_needs_a_certificate_and_its_key_and_plain_http_is_asked_for() {
        assert_eq!(load(&[], None).unwrap().listener, None);
        let https = load(&[("CERTBIND_TLS_CERTIFICATE_FILE", "/etc/c.pem"), ("CERTBIND_TLS_KEY_FILE", "/etc/k.pem")], None).unwrap();
        assert_eq!(
            https.listener,
            Some(Listener::Https(TlsSettings {
                certificate_file: "/etc/c.pem".into(),
                key_file: "/etc/k.pem".into(),
                client_ca_file: None
            }))
        );
        assert_eq!(load(&[("CERTBIND_PLAIN_HTTP", "true")], None).unwrap().listener, Some(Listener::PlainHttp));
        let flag = Overrides { listen: None, plain_http: true };
        assert_eq!(Config::load_from(None, &|_| None, &flag).unwrap().listener, Some(Listener::PlainHttp));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certbind.toml");
        std::fs::write(&path, "[tls]\ncertificate_file = \"c.pem\"\nclient_ca_file = \"proxies.pem\"\n").unwrap();
        assert!(load(&[], Some(&path)).unwrap_err().setting.ends_with("tls.key_file"));
        std::fs::write(&path, "[tls]\nclient_ca_file = \"proxies.pem\"\n").unwrap();
        assert!(load(&[], Some(&path)).unwrap_err().setting.ends_with("tls.client_ca_file"));
        std::fs::write(&path, "plain_http = true\n[tls]\ncertificate_file = \"c.pem\"\nkey_file = \"k.pem\"\n").unwrap();
        assert!(load(&[], Some(&path)).unwrap_err().setting.ends_with(": plain_http"));
        assert_eq!(load(&[("CERTBIND_PLAIN_HTTP", "maybe")], None).unwrap_err().setting, "CERTBIND_PLAIN_HTTP");
    }

    #[test]
    fn bad_settings_name_themselves() {
        assert_eq!(load(&[("CERTBIND_LISTEN", "localhost")], None).unwrap_err().setting, "CERTBIND_LISTEN");
        assert_eq!(load(&[("DATABASE_URL", "mysql://x")], None).unwrap_err().setting, "DATABASE_URL");
        assert_eq!(load(&[("CERTBIND_MAX_BODY_BYTES", "lots")], None).unwrap_err().setting, "CERTBIND_MAX_BODY_BYTES");
        assert_eq!(load(&[("CERTBIND_MAX_BODY_BYTES", "10")], None).unwrap_err().setting, "CERTBIND_MAX_BODY_BYTES");
        assert_eq!(
            load(&[("CERTBIND_PKCS11_MODULE", "/nonexistent/libsofthsm2.so")], None).unwrap_err().setting,
            "CERTBIND_PKCS11_MODULE"
        );
    }

    #[test]
    fn the_environment_wins_over_the_file_and_flags_over_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certbind.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\ndatabase_url = \"sqlite://from-file.db\"\n").unwrap();
        let config = load(&[("DATABASE_URL", "postgres://u@h/db")], Some(&path)).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.database_url, "postgres://u@h/db");
        let overrides = Overrides { listen: Some("127.0.0.1:9100".into()), plain_http: false };
        let config = Config::load_from(Some(&path), &|_| None, &overrides).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.database_url, "sqlite://from-file.db");
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certbind.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let e = load(&[], Some(&path)).unwrap_err();
        assert!(e.problem.contains("lisen"), "{e}");
        std::fs::write(&path, "listen = \"nowhere\"\n").unwrap();
        assert_eq!(load(&[], Some(&path)).unwrap_err().setting, format!("{}: listen", path.display()));
        let missing = dir.path().join("absent.toml");
        assert_eq!(load(&[], Some(&missing)).unwrap_err().setting, missing.display().to_string());
    }

    #[test]
    fn a_signer_needs_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("libfake.so");
        std::fs::write(&module, b"").unwrap();
        let module = module.to_str().unwrap();
        assert_eq!(load(&[("CERTBIND_PKCS11_MODULE", module)], None).unwrap_err().setting, "CERTBIND_PKCS11_PIN");
        let config = load(&[("CERTBIND_PKCS11_MODULE", module), ("CERTBIND_PKCS11_PIN", "1234")], None).unwrap();
        let signer = config.signer.unwrap();
        assert_eq!(signer.token_label, DEFAULT_TOKEN_LABEL);
        assert_eq!(signer.pin, "1234");
        assert!(!format!("{signer:?}").contains("1234"));
    }
}
