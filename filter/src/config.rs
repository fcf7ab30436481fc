//! The plugin configuration: the route policy, and where identity data comes from — the
//! signed snapshot (fetched from the control plane, or given signed in the configuration), or,
//! for development only, unsigned identity data written inline.

use certbind_shared::decision::config::{ConfigError, PolicyConfig};
use certbind_shared::decision::Engine;
use certbind_shared::encoding::base64_decode;
use certbind_shared::identity::{StaticIdentity, StaticIdentityConfig};
use certbind_shared::snapshot::{SnapshotVerifier, MAX_SNAPSHOT_BYTES};
use serde::Deserialize;

/// Largest plugin configuration accepted. A population of any size belongs in the snapshot the
/// filter fetches; the configuration carries policy, pinned keys and at most a small signed
/// snapshot for sites without a control plane.
pub const MAX_PLUGIN_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Longest long-poll a filter asks for: the control plane caps it at 55 s, and the callout's
/// timeout (this plus a margin) must stay below common idle timeouts.
pub const MAX_LONG_POLL_SECONDS: u32 = 55;

/// Most keys a configuration may pin: two (current and next) is the rotation case; a handful
/// covers overlapping rotations without turning verification into a search.
pub const MAX_PINNED_KEYS: usize = 8;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub policy: PolicyConfig,
    /// The signed identity snapshot and where to get it.
    #[serde(default)]
    pub snapshot: Option<SnapshotConfig>,
    /// Unsigned identity data written inline: for development and tests only.
    #[serde(default)]
    pub development_identity: Option<StaticIdentityConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Public keys that may sign snapshots: PEM `PUBLIC KEY` blocks or JWKs (as text). Several
    /// may be pinned at once, so a new signing key can be rolled out before it signs.
    pub pinned_keys: Vec<String>,
    /// The control plane to fetch from and follow.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneConfig>,
    /// The oldest snapshot accepted, as an age in seconds at the time it arrives: after a
    /// restart (when nothing is held), a replayed old snapshot is refused. Set it above the
    /// control plane's re-sign interval (half the snapshot validity by default). Unset: any
    /// unexpired snapshot.
    #[serde(default)]
    pub max_age_seconds: Option<u32>,
    /// A signed snapshot given in the configuration (`certbind snapshot export`, standard
    /// base64), for sites that cannot reach a control plane. Checked like a fetched one.
    #[serde(default)]
    pub signed_base64: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Envoy: the name of the cluster that reaches the control plane. NGINX with
    /// ngx_wasm_module: `host:port`.
    pub cluster: String,
    /// `:authority` of the fetch (the control plane's host and port).
    pub authority: String,
    /// Path of the snapshot resource.
    #[serde(default = "default_snapshot_path")]
    pub path: String,
    /// The proxy credential (`certbind token create --proxy`): it can read the snapshot and
    /// nothing else. Written here, it is printed by anything that shows the plugin
    /// configuration (Envoy's `/config_dump`): prefer `credential_env`.
    #[serde(default)]
    pub credential: Option<String>,
    /// The name of an environment variable of the plugin's VM that holds the proxy credential
    /// (Envoy: `vm_config.environment_variables.host_env_keys`, which passes the variable of
    /// the Envoy process without printing its value). Exactly one of this and `credential`.
    #[serde(default)]
    pub credential_env: Option<String>,
    /// How long the control plane may hold a fetch open waiting for a newer snapshot.
    /// 0: plain polling every `poll_interval_seconds`.
    #[serde(default = "default_long_poll")]
    pub long_poll_seconds: u32,
    /// Least time between two fetches; also the polling period without long-poll.
    #[serde(default = "default_poll_interval")]
    pub poll_interval_seconds: u32,
    /// Ask for deltas (a few hundred bytes per change) instead of whole snapshots.
    #[serde(default = "default_true")]
    pub deltas: bool,
}

fn default_snapshot_path() -> String {
    "/api/v1/snapshot".to_string()
}

fn default_long_poll() -> u32 {
    30
}

fn default_poll_interval() -> u32 {
    1
}

fn default_true() -> bool {
    true
}

/// Where identity data comes from, validated.
pub enum IdentitySource {
    Snapshot(SnapshotSettings),
    /// Unsigned inline data; the filter warns about it at start.
    Development(StaticIdentity),
}

/// The snapshot part of the configuration, validated.
pub struct SnapshotSettings {
    pub verifier: SnapshotVerifier,
    pub control_plane: Option<ControlPlane>,
    /// Decoded `signed_base64`, not yet verified (verification needs the clock).
    pub signed: Option<Vec<u8>>,
    /// Distinguishes this configuration's shared data from another plugin's in the same VM:
    /// a hash of the pinned keys and the control plane's address.
    pub namespace: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub credential: String,
    pub long_poll_seconds: u32,
    pub poll_interval_seconds: u32,
    pub deltas: bool,
}

/// A configuration, validated and ready.
pub struct Configured {
    pub engine: Engine,
    /// The policy the engine was built from: a host that decides on several threads builds
    /// one engine (with its own caches) per thread from it.
    pub policy: PolicyConfig,
    pub identity: IdentitySource,
}

fn text_member(field: &str, value: &str, what: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(field, format!("{what} is empty")));
    }
    if value.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(ConfigError::new(field, format!("{what} contains spaces or control characters")));
    }
    Ok(())
}

/// Longest environment variable name `credential_env` may give.
pub const MAX_ENV_NAME_BYTES: usize = 128;

/// Reads an environment variable of the plugin's VM: `std::env::var` in the filter (WASI
/// `environ_get`), a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

impl ControlPlaneConfig {
    /// The credential, from the configuration or from the VM's environment. Errors never
    /// carry the credential itself.
    fn credential(&self, env: EnvLookup<'_>) -> Result<String, ConfigError> {
        const AT: &str = "snapshot.control_plane";
        match (&self.credential, &self.credential_env) {
            (Some(credential), None) => {
                text_member(&format!("{AT}.credential"), credential, "credential")?;
                Ok(credential.clone())
            }
            (None, Some(name)) => {
                let field = format!("{AT}.credential_env");
                if name.is_empty()
                    || name.len() > MAX_ENV_NAME_BYTES
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(ConfigError::new(
                        field,
                        format!("an environment variable name: 1 to {MAX_ENV_NAME_BYTES} letters, digits and '_'"),
                    ));
                }
                let value = env(name).ok_or_else(|| {
                    ConfigError::new(
                        field.clone(),
                        format!(
                            "{name} is not set in the plugin's VM (Envoy: list it in \
                             vm_config.environment_variables.host_env_keys and set it for the Envoy process)"
                        ),
                    )
                })?;
                text_member(&field, &value, &format!("the credential in {name}"))?;
                Ok(value)
            }
            (Some(_), Some(_)) => Err(ConfigError::new(
                format!("{AT}.credential_env"),
                "give the credential or the environment variable that holds it, not both",
            )),
            (None, None) => Err(ConfigError::new(
                format!("{AT}.credential_env"),
                "name the environment variable that holds the proxy credential (or give it as credential)",
            )),
        }
    }

    fn validate(self, env: EnvLookup<'_>) -> Result<ControlPlane, ConfigError> {
        const AT: &str = "snapshot.control_plane";
        text_member(&format!("{AT}.cluster"), &self.cluster, "cluster")?;
        text_member(&format!("{AT}.authority"), &self.authority, "authority")?;
        let credential = self.credential(env)?;
        if !self.path.starts_with('/') || self.path.contains(['?', '#']) {
            return Err(ConfigError::new(format!("{AT}.path"), "must start with '/' and carry no query"));
        }
        text_member(&format!("{AT}.path"), &self.path, "path")?;
        if self.long_poll_seconds > MAX_LONG_POLL_SECONDS {
            return Err(ConfigError::new(
                format!("{AT}.long_poll_seconds"),
                format!("at most {MAX_LONG_POLL_SECONDS} (the control plane holds a poll no longer)"),
            ));
        }
        if self.poll_interval_seconds == 0 || self.poll_interval_seconds > 3600 {
            return Err(ConfigError::new(format!("{AT}.poll_interval_seconds"), "must be between 1 and 3600"));
        }
        Ok(ControlPlane {
            cluster: self.cluster,
            authority: self.authority,
            path: self.path,
            credential,
            long_poll_seconds: self.long_poll_seconds,
            poll_interval_seconds: self.poll_interval_seconds,
            deltas: self.deltas,
        })
    }
}

impl SnapshotConfig {
    fn validate(self, env: EnvLookup<'_>) -> Result<SnapshotSettings, ConfigError> {
        if self.pinned_keys.is_empty() {
            return Err(ConfigError::new("snapshot.pinned_keys", "pin at least one public key"));
        }
        if self.pinned_keys.len() > MAX_PINNED_KEYS {
            return Err(ConfigError::new("snapshot.pinned_keys", format!("at most {MAX_PINNED_KEYS} keys")));
        }
        for (i, text) in self.pinned_keys.iter().enumerate() {
            SnapshotVerifier::from_key_texts(std::slice::from_ref(text))
                .map_err(|e| ConfigError::new(format!("snapshot.pinned_keys[{i}]"), e.to_string()))?;
        }
        if self.max_age_seconds == Some(0) {
            return Err(ConfigError::new("snapshot.max_age_seconds", "must be at least 1 (leave it out for no limit)"));
        }
        let verifier = SnapshotVerifier::from_key_texts(&self.pinned_keys)
            .map_err(|e| ConfigError::new("snapshot.pinned_keys", e.to_string()))?
            .with_max_age(self.max_age_seconds.map(i64::from));
        let control_plane = self.control_plane.map(|cp| cp.validate(env)).transpose()?;
        let signed = match self.signed_base64 {
            None => None,
            Some(text) => {
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                // Base64 grows data by 4/3: anything longer cannot decode to an accepted size.
                if compact.len() > MAX_SNAPSHOT_BYTES / 3 * 4 + 4 {
                    return Err(ConfigError::new("snapshot.signed_base64", "larger than any snapshot"));
                }
                let bytes = base64_decode(&compact)
                    .ok_or_else(|| ConfigError::new("snapshot.signed_base64", "not standard base64"))?;
                Some(bytes)
            }
        };
        if control_plane.is_none() && signed.is_none() {
            return Err(ConfigError::new(
                "snapshot",
                "give a control_plane to fetch from, or a signed snapshot in signed_base64",
            ));
        }
        let mut keys: Vec<&str> = verifier.keys().iter().map(|k| k.key_id()).collect();
        keys.sort_unstable();
        let mut identity = keys.join(",");
        if let Some(cp) = &control_plane {
            // The credential is a secret of this configuration: another plugin sharing the
            // proxy's shared data cannot even name these keys (defence in depth: what is read
            // there is verified anyway).
            identity.push_str(&format!("|{}|{}|{}|{}", cp.cluster, cp.authority, cp.path, cp.credential));
        }
        let namespace = certbind_shared::encoding::hex_lower(&sha256_prefix(identity.as_bytes()));
        Ok(SnapshotSettings { verifier, control_plane, signed, namespace })
    }
}

fn sha256_prefix(bytes: &[u8]) -> [u8; 8] {
    let digest = certbind_shared::fingerprint::Fingerprint::of_der(bytes);
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest.0[..8]);
    prefix
}

/// Parses and validates the plugin configuration. A refusal names the member at fault
/// (`policy.routes[2].mode`), as the documentation promises, never a line and column.
/// `credential_env` is read from the process (the VM's) environment.
pub fn parse(bytes: &[u8]) -> Result<Configured, ConfigError> {
    parse_with_env(bytes, &|name| std::env::var(name).ok())
}

/// [`parse`], reading environment variables through `env`.
pub fn parse_with_env(bytes: &[u8], env: EnvLookup<'_>) -> Result<Configured, ConfigError> {
    if bytes.len() > MAX_PLUGIN_CONFIG_BYTES {
        return Err(ConfigError::new(
            "configuration",
            format!("{} bytes, more than the {MAX_PLUGIN_CONFIG_BYTES}-byte limit", bytes.len()),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let config: FilterConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." { "configuration".to_string() } else { path };
        ConfigError::new(field, without_position(&e.into_inner().to_string()))
    })?;
    deserializer.end().map_err(|_| ConfigError::new("configuration", "trailing characters after the JSON object"))?;
    let policy = config.policy.clone();
    let engine = Engine::new(config.policy).map_err(|e| ConfigError::new(format!("policy.{}", e.field), e.problem))?;
    let identity = match (config.snapshot, config.development_identity) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                "development_identity",
                "give either a signed snapshot or development identity data, not both",
            ))
        }
        (Some(snapshot), None) => IdentitySource::Snapshot(snapshot.validate(env)?),
        (None, Some(identity)) => IdentitySource::Development(
            StaticIdentity::from_config(identity, 1)
                .map_err(|e| ConfigError::new(development_field(&e.field), e.problem))?,
        ),
        (None, None) => {
            return Err(ConfigError::new(
                "snapshot",
                "no identity source: configure the signed snapshot (or development_identity for tests)",
            ))
        }
    };
    Ok(Configured { engine, policy, identity })
}

/// The static identity names its members from `identity`; here they live under
/// `development_identity`.
fn development_field(field: &str) -> String {
    match field.strip_prefix("identity") {
        Some(rest) => format!("development_identity{rest}"),
        None => format!("development_identity.{field}"),
    }
}

/// serde_json appends " at line L column C"; the member path says where, so drop it.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(json: &str) -> String {
        match parse(json.as_bytes()) {
            Ok(_) => "accepted".into(),
            Err(e) => e.field,
        }
    }

    const KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEh4a7xDWS80NmdIiGFnWRnj1Td/Ki
ZA5SjvIMnQWactXFeLdGo5uJ3LVBjzWQGFH34r5pVEnaUTx2/urgFHVUBw==
-----END PUBLIC KEY-----
";

    fn with_snapshot(snapshot: &str) -> String {
        format!(
            r#"{{"policy":{{"certificate_source":{{"kind":"connection"}},"default_mode":"mtls"}},"snapshot":{snapshot}}}"#
        )
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let cp = format!(r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"cp","authority":"cp:8080","credential":"c"}}}}"#);
        let cases = [
            (r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"this_proxy"},"default_mode":"mtls"},"development_identity":{}}"#.to_string(), "accepted"),
            (with_snapshot(&cp), "accepted"),
            (r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"this_proxy"},"default_mode":"mtls"}}"#.to_string(), "snapshot"),
            (r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"trusted_proxies"},"default_mode":"mtls"},"development_identity":{}}"#.to_string(), "policy.trusted_proxies"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"bearer"},"development_identity":{}}"#.to_string(), "policy.token.audiences"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","trusted_proxies":["10.0.0.1/8"]},"development_identity":{}}"#.to_string(), "policy.trusted_proxies[0]"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","routes":[{"path":"/a","mode":"mtls"},{"path":"/b","mode":"mtls"},{"path":"/c","mode":"nope"}]},"development_identity":{}}"#.to_string(), "policy.routes[2].mode"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","surprise":1},"development_identity":{}}"#.to_string(), "policy.surprise"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls"},"development_identity":{"blocklist":["nope"]}}"#.to_string(), "development_identity.blocklist[0]"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls"},"identity":{}}"#.to_string(), "identity"),
            (with_snapshot(r#"{"pinned_keys":[]}"#), "snapshot.pinned_keys"),
            (with_snapshot(r#"{"pinned_keys":["not a key"],"signed_base64":""}"#), "snapshot.pinned_keys[0]"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}]}}"#)), "snapshot"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"signed_base64":"!!"}}"#)), "snapshot.signed_base64"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"max_age_seconds":0,"signed_base64":""}}"#)), "snapshot.max_age_seconds"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"","authority":"a","credential":"c"}}}}"#)), "snapshot.control_plane.cluster"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"cp","authority":"a","credential":"c","long_poll_seconds":600}}}}"#)), "snapshot.control_plane.long_poll_seconds"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"cp","authority":"a","credential":"c","path":"/x?y"}}}}"#)), "snapshot.control_plane.path"),
            (with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"cp","authority":"a","credential":"c","surprise":1}}}}"#)), "snapshot.control_plane.surprise"),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(&json), field, "{json}");
        }
    }

    #[test]
    fn the_credential_comes_from_the_configuration_or_the_vms_environment() {
        let secret = "cbp_s3cret";
        let env = |name: &str| match name {
            "CERTBIND_PROXY_CREDENTIAL" => Some(secret.to_string()),
            "WITH_SPACE" => Some("cbp_a b".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let configured = |control_plane: &str| {
            let json = with_snapshot(&format!(r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"cp","authority":"a",{control_plane}}}}}"#));
            match parse_with_env(json.as_bytes(), &env) {
                Ok(Configured { identity: IdentitySource::Snapshot(s), .. }) => Ok(s.control_plane.unwrap().credential),
                Ok(_) => panic!("snapshot expected"),
                Err(e) => Err((e.field, e.problem)),
            }
        };
        assert_eq!(configured(r#""credential_env":"CERTBIND_PROXY_CREDENTIAL""#), Ok(secret.to_string()));
        assert_eq!(configured(r#""credential":"cbp_inline""#), Ok("cbp_inline".to_string()));
        let at = "snapshot.control_plane.credential_env";
        for (member, says) in [
            (r#""credential_env":"UNSET""#, "UNSET is not set"),
            (r#""credential_env":"WITH_SPACE""#, "spaces or control characters"),
            (r#""credential_env":"EMPTY""#, "is empty"),
            (r#""credential_env":"A-B""#, "environment variable name"),
            (r#""credential_env":"""#, "environment variable name"),
            (r#""credential":"c","credential_env":"CERTBIND_PROXY_CREDENTIAL""#, "not both"),
            (r#""long_poll_seconds":1"#, "name the environment variable"),
        ] {
            let (field, problem) = configured(member).unwrap_err();
            assert_eq!(field, at, "{member}");
            assert!(problem.contains(says), "{member}: {problem}");
            // A refusal never repeats the credential it read.
            assert!(!problem.contains("cbp_"), "{member}: {problem}");
        }
    }

    #[test]
    fn errors_carry_no_line_and_column() {
        let json = r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"sometimes"},"development_identity":{}}"#;
        let err = parse(json.as_bytes()).err().unwrap();
        assert_eq!(err.field, "policy.default_mode");
        assert!(!err.problem.contains("line"), "{}", err.problem);
        assert!(err.problem.contains("sometimes"), "{}", err.problem);
    }

    #[test]
    fn namespaces_follow_the_keys_and_the_control_plane() {
        let settings = |authority: &str| {
            let json = with_snapshot(&format!(
                r#"{{"pinned_keys":[{KEY:?}],"control_plane":{{"cluster":"cp","authority":"{authority}","credential":"c"}}}}"#
            ));
            match parse(json.as_bytes()).unwrap().identity {
                IdentitySource::Snapshot(s) => s.namespace,
                IdentitySource::Development(_) => panic!("snapshot expected"),
            }
        };
        assert_eq!(settings("a:1"), settings("a:1"));
        assert_ne!(settings("a:1"), settings("b:1"));
        assert_eq!(settings("a:1").len(), 16);
    }
}
