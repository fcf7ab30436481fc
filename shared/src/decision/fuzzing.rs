//! Harnesses the fuzz targets call (`fuzz/fuzz_targets/{path,header_set}.rs`), kept here so that
//! each target is one line and the properties they check live beside the code they check.

use super::config::PolicyConfig;
use super::outcome::Outcome;
use super::credentials::fold_parameter;
use super::path::{canonical_path, folded_spellings};
use super::{Engine, RequestInput};
use crate::identity::{StaticIdentity, StaticIdentityConfig};

/// Canonicalises arbitrary bytes as a `:path`: never panics, and what it returns is canonical
/// (a fixed point) and free of everything the canonical form excludes.
pub fn path(data: &[u8]) {
    let Ok(path) = canonical_path(data) else { return };
    assert!(path.starts_with('/'), "{path:?}");
    for forbidden in ["//", "/./", "/../", ";", "\\", "#", "?", "%2F", "%5C", "%25", "%3B"] {
        assert!(!path.contains(forbidden), "{path:?} holds {forbidden:?}");
    }
    assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{path:?}");
    assert_eq!(canonical_path(path.as_bytes()).as_deref(), Ok(&*path), "not a fixed point");
    // Folded spellings: distinct from the path and each other, lowercase, rooted, no longer
    // than the path, and with the path's trailing `/` (or its absence).
    let spellings = folded_spellings(&path);
    for (i, spelling) in spellings.iter().enumerate() {
        assert!(spelling.starts_with('/') && spelling.len() <= path.len(), "{path:?} → {spelling:?}");
        assert!(!spelling.bytes().any(|b| b.is_ascii_uppercase()), "{path:?} → {spelling:?}");
        assert_eq!(spelling.ends_with('/'), path.ends_with('/'), "{path:?} → {spelling:?}");
        assert!(*spelling != *path && !spellings[..i].contains(spelling), "{path:?}: {spellings:?}");
    }
    // A parameter name folds to letters and digits only, whatever the bytes.
    if let Some(folded) = fold_parameter(data) {
        assert!(folded.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{folded:?}");
    }
}

const POLICY: &str = r#"{
    "certificate_source": {"kind": "nginx_escaped", "header": "ssl-client-cert"},
    "trusted_proxies": ["10.0.0.0/8"],
    "default_mode": "bearer",
    "strip_headers": ["x-remote-user"],
    "credential_carriers": {"query_parameters": ["token"], "headers": ["x-access-token"], "cookies": ["session"]},
    "token": {"audiences": ["aud"]},
    "routes": [
        {"path": "/mtls/*", "mode": "mtls"},
        {"path": "/Exact/*", "mode": "mtls", "path_matching": "exact"},
        {"path": "/optional/*", "mode": "bearer_plus_mtls_optional", "sender_binding_required_paths": ["/optional/bound/*"]},
        {"path": "/required/*", "mode": "bearer_plus_mtls_required"}
    ]
}"#;

/// Runs the decision over a header set read from arbitrary bytes (`name:value` per line; the
/// first line is `:path`). Never panics, and decides the same whatever the case or `_`/`-`
/// spelling of the names, as NGINX may pass them.
pub fn header_set(data: &[u8]) {
    let headers = parse_headers(data);
    let respelled: Vec<(String, Vec<u8>)> = headers.iter().map(|(n, v)| (respell(n), v.clone())).collect();
    let first = decide(&headers);
    let second = decide(&respelled);
    assert_eq!(first.reason(), second.reason(), "the decision changed with the names' spelling");
    if let (Outcome::Allow { set: a, .. }, Outcome::Allow { set: b, .. }) = (&first, &second) {
        assert_eq!(a, b);
    }
}

fn decide(headers: &[(String, Vec<u8>)]) -> Outcome {
    let config: Result<PolicyConfig, _> = serde_json::from_str(POLICY);
    let Ok(mut engine) = config.map_err(|e| e.to_string()).and_then(|c| Engine::new(c).map_err(|e| e.to_string())) else {
        panic!("the fixed policy is refused");
    };
    let identity = StaticIdentity::from_config(StaticIdentityConfig::default(), 1).ok();
    let headers = super::header_refs(headers);
    let request = RequestInput { headers: &headers, peer: Some([10, 1, 2, 3].into()), now: 1_800_000_000, ..Default::default() };
    engine.evaluate(&request, identity.as_ref().map(|i| i as &dyn crate::identity::IdentityData))
}

fn parse_headers(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut lines = data.split(|b| *b == b'\n');
    let mut headers = vec![(":path".to_string(), lines.next().unwrap_or_default().to_vec())];
    for line in lines.take(64) {
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(at) => (line.get(..at).unwrap_or_default(), line.get(at + 1..).unwrap_or_default()),
            None => (line, &[][..]),
        };
        headers.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    headers
}

/// Another spelling of a header name: case flipped letter by letter, `-` and `_` swapped.
fn respell(name: &str) -> String {
    if name.starts_with(':') {
        return name.to_ascii_uppercase();
    }
    name.chars()
        .enumerate()
        .map(|(i, c)| match c {
            '-' => '_',
            '_' => '-',
            c if i % 2 == 0 => c.to_ascii_uppercase(),
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_harnesses_hold_on_a_few_inputs() {
        for input in [&b"/a/../b"[..], b"//x", b"/%2e%2E/", b"/a;b", b"", b"/%C3%A9"] {
            path(input);
        }
        for input in [
            &b"/mtls/x\nssl-client-cert:junk"[..],
            b"/public\nauthorization:Bearer a.b.c\nx_dm_user_id:root",
            b"/optional/bound/x\nAuthorization:Bearer x\nSSL_Client_Cert:%%",
            b"/a%2fb",
        ] {
            header_set(input);
        }
    }
}
