//! The plugin configuration: the route policy, and the identity data to decide with.

use certbind_shared::decision::config::{ConfigError, PolicyConfig};
use certbind_shared::decision::Engine;
use certbind_shared::identity::{StaticIdentity, StaticIdentityConfig};
use serde::Deserialize;

/// Largest plugin configuration accepted: inline identity data is meant for small static
/// deployments; a large population belongs in the signed snapshot.
pub const MAX_PLUGIN_CONFIG_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub policy: PolicyConfig,
    /// Identity data given inline: bindings, blocklist, mappings, token issuers.
    #[serde(default)]
    pub identity: Option<StaticIdentityConfig>,
}

/// A configuration, validated and ready.
pub struct Configured {
    pub engine: Engine,
    pub identity: Option<StaticIdentity>,
}

pub fn parse(bytes: &[u8]) -> Result<Configured, ConfigError> {
    if bytes.len() > MAX_PLUGIN_CONFIG_BYTES {
        return Err(ConfigError::new(
            "configuration",
            format!("{} bytes, more than the {MAX_PLUGIN_CONFIG_BYTES}-byte limit", bytes.len()),
        ));
    }
    let config: FilterConfig =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::new("configuration", e.to_string()))?;
    let engine = Engine::new(config.policy).map_err(|e| ConfigError::new(format!("policy.{}", e.field), e.problem))?;
    let identity = match config.identity {
        None => None,
        Some(identity) => Some(
            StaticIdentity::from_config(identity, 1).map_err(|e| ConfigError::new(e.field, e.problem))?,
        ),
    };
    Ok(Configured { engine, identity })
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

    #[test]
    fn errors_name_the_field_at_fault() {
        let cases = [
            (r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"this_proxy"},"default_mode":"mtls"}}"#, "accepted"),
            (r#"{"policy":{"certificate_source":{"kind":"xfcc","trust":"trusted_proxies"},"default_mode":"mtls"}}"#, "policy.trusted_proxies"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"bearer"}}"#, "policy.token.audiences"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","trusted_proxies":["10.0.0.1/8"]}}"#, "policy.trusted_proxies[0]"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","routes":[{"path":"admin","mode":"mtls"}]}}"#, "policy.routes[0].path"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","binding_required_paths":["/x"]}}"#, "policy.binding_required_paths"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls"},"identity":{"blocklist":["nope"]}}"#, "identity.blocklist[0]"),
            (r#"{"policy":{"certificate_source":{"kind":"connection"},"default_mode":"mtls","surprise":1}}"#, "configuration"),
        ];
        for (json, field) in cases {
            assert_eq!(field_of(json), field, "{json}");
        }
    }
}
