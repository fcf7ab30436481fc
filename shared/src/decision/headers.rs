//! Which request headers speak for identity, compared the way every hop might read them.
//!
//! Envoy lowercases header names, but NGINX with ngx_wasm_module passes them as the client
//! wrote them, and WSGI, CGI and PHP read `x_dm_user_id` as `HTTP_X_DM_USER_ID`, the same
//! variable as `x-dm-user-id`. So names are compared after folding ASCII case and mapping `_`
//! to `-`: every look-alike spelling of an identity header is that header.

use super::config_error::ConfigError;

/// One request header as the proxy handed it over: the name (any case) and the value's bytes,
/// both borrowed from the proxy's serialized header map.
pub type RequestHeader<'a> = (&'a str, &'a [u8]);

/// Borrowed views of owned headers (tests, fuzzing, callers that build their own).
pub fn header_refs(owned: &[(String, Vec<u8>)]) -> Vec<RequestHeader<'_>> {
    owned.iter().map(|(name, value)| (name.as_str(), value.as_slice())).collect()
}

/// Name prefixes (folded) that identity and client-certificate headers use: this project's
/// own `x-dm-` space, Envoy's XFCC, and the spellings other proxies and platforms use for the
/// client certificate and its parts (nginx, HAProxy, Traefik, RFC 9440, AWS ALB mTLS, Azure
/// App Service). All are removed from every request, whatever the configured source.
pub const IDENTITY_HEADER_PREFIXES: &[&str] = &[
    super::outcome::header::TRUSTED_PREFIX,
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-forwarded-ssl-client-",
    "ssl-client-",
    "x-ssl-",
    "x-tls-client-",
    "x-client-cert",
    "x-client-ssl-",
    "x-client-verify",
    "x-client-dn",
    "x-client-s-dn",
    "x-client-i-dn",
    "client-cert",
    "x-amzn-mtls-clientcert",
    "x-arr-clientcert",
];

/// Name prefixes (folded) of headers that make an upstream serve another URL than the one the
/// filter judged: IIS and Symfony read `X-Original-URL` / `X-Rewrite-URL`, Traefik and
/// oauth2-proxy set `X-Forwarded-Uri`, Spring, ASP.NET Core and Traefik honour
/// `X-Forwarded-Prefix`, others their `-Path` and `-URI` spellings, and Envoy writes
/// `X-Envoy-Original-Path`. A client's are removed from every request, like certificate headers.
pub const URL_OVERRIDE_HEADER_PREFIXES: &[&str] = &[
    "x-original-url",
    "x-original-uri",
    "x-original-path",
    "x-rewrite-url",
    "x-rewrite-uri",
    "x-forwarded-uri",
    "x-forwarded-url",
    "x-forwarded-path",
    "x-forwarded-prefix",
    "x-envoy-original-path",
    "x-envoy-original-url",
];

/// Whole names (folded) removed as well.
pub const IDENTITY_HEADER_NAMES: &[&str] = &["xfcc"];

/// The folded form of one name byte: ASCII lowercase, `_` as `-`.
fn fold(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

/// Whether `name` equals `folded` (already folded) once folded itself.
pub fn folded_eq(name: &str, folded: &str) -> bool {
    name.len() == folded.len() && name.bytes().zip(folded.bytes()).all(|(a, b)| fold(a) == b)
}

/// `name` folded.
pub fn fold_name(name: &str) -> String {
    name.bytes().map(|b| char::from(fold(b))).collect()
}

/// A header name an operator configured: HTTP token characters only, returned folded.
pub fn configured_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(ConfigError::new(field, format!("{name:?} is not a valid header name")));
    }
    Ok(fold_name(name))
}

/// The headers removed from every request: the built-in identity and URL-override headers, the
/// configured source and signature headers, and the operator's own additions (exact names, or prefixes
/// written with a trailing `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripList {
    names: Vec<String>,
    prefixes: Vec<String>,
    /// Every name and prefix, byte by folded byte: a request header is judged in one walk
    /// along its name, however many entries there are (most of them start `x-`, as do most
    /// request headers, so comparing with each in turn costs a request hundreds of steps).
    trie: Vec<TrieNode>,
}

/// One node of [`StripList`]'s trie: the folded bytes that continue it, and whether a name or
/// a prefix ends here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TrieNode {
    next: Vec<(u8, usize)>,
    name_ends: bool,
    prefix_ends: bool,
}

impl StripList {
    /// The built-in list plus `extra` (each validated, `field[i]` naming a bad one) plus
    /// `always` (names the policy itself reads, already folded).
    pub fn new(field: &str, extra: &[String], always: &[&str]) -> Result<Self, ConfigError> {
        let mut list = StripList {
            names: IDENTITY_HEADER_NAMES.iter().map(|n| (*n).to_owned()).collect(),
            prefixes: IDENTITY_HEADER_PREFIXES.iter().chain(URL_OVERRIDE_HEADER_PREFIXES).map(|p| (*p).to_owned()).collect(),
            trie: vec![TrieNode::default()],
        };
        list.names.extend(always.iter().map(|n| (*n).to_owned()));
        for (i, entry) in extra.iter().enumerate() {
            let field = format!("{field}[{i}]");
            match entry.strip_suffix('*') {
                Some(stem) => list.prefixes.push(configured_name(&field, stem)?),
                None => list.names.push(configured_name(&field, entry)?),
            }
        }
        // Every name and prefix is non-empty (a bare `*` is refused as an empty name), and
        // folded already.
        let entries: Vec<(String, bool)> =
            list.names.iter().map(|n| (n.clone(), false)).chain(list.prefixes.iter().map(|p| (p.clone(), true))).collect();
        for (text, prefix) in entries {
            let end = list.grow(&text);
            if let Some(node) = list.trie.get_mut(end) {
                if prefix {
                    node.prefix_ends = true;
                } else {
                    node.name_ends = true;
                }
            }
        }
        Ok(list)
    }

    /// The trie node `text` (folded) ends at, made as needed.
    fn grow(&mut self, text: &str) -> usize {
        let mut at = 0;
        for byte in text.bytes() {
            let found = self.trie.get(at).and_then(|node| node.next.iter().find(|(b, _)| *b == byte)).map(|&(_, i)| i);
            at = match found {
                Some(i) => i,
                None => {
                    let i = self.trie.len();
                    self.trie.push(TrieNode::default());
                    if let Some(node) = self.trie.get_mut(at) {
                        node.next.push((byte, i));
                    }
                    i
                }
            };
        }
        at
    }

    /// Whether an inbound header named `name` (any case, `_` or `-`) must not reach the
    /// upstream: it is a listed name, or starts with a listed prefix, once folded.
    pub fn strips(&self, name: &str) -> bool {
        let mut at = 0;
        for byte in name.bytes() {
            let Some(node) = self.trie.get(at) else { return false };
            if node.prefix_ends {
                return true;
            }
            let byte = fold(byte);
            match node.next.iter().find(|(b, _)| *b == byte) {
                Some(&(_, next)) => at = next,
                None => return false,
            }
        }
        self.trie.get(at).is_some_and(|node| node.name_ends || node.prefix_ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_and_underscores() {
        assert!(folded_eq("X-DM-User-Id", "x-dm-user-id"));
        assert!(folded_eq("x_dm_user_id", "x-dm-user-id"));
        assert!(folded_eq("X_Dm-USER_id", "x-dm-user-id"));
        assert!(!folded_eq("x-dm-user-id2", "x-dm-user-id"));
        assert!(!folded_eq("x-dm-user", "x-dm-user-id"));
        assert_eq!(fold_name("X_Forwarded-Client_CERT"), "x-forwarded-client-cert");
    }

    #[test]
    fn the_trie_judges_every_name_as_comparing_it_with_each_entry_would() {
        let extra = ["a".to_owned(), "ab*".to_owned(), "x-forwarded-pro".to_owned(), "x*".to_owned()];
        for extra in [&extra[..], &[][..]] {
            let list = StripList::new("strip_headers", extra, &["my-cert"]).unwrap();
            let by_each = |name: &str| {
                list.prefixes.iter().any(|p| name.len() >= p.len() && folded_eq(&name[..p.len()], p))
                    || list.names.iter().any(|n| folded_eq(name, n))
            };
            let mut names: Vec<String> = list.names.iter().chain(&list.prefixes).cloned().collect();
            for entry in names.clone() {
                for cut in 0..=entry.len() {
                    names.push(entry[..cut].to_owned());
                    names.push(format!("{}Z", &entry[..cut]));
                    names.push(entry[..cut].to_uppercase().replace('-', "_"));
                }
            }
            names.extend(["", "x", "x-", "A", "AB", "abc", "x-forwarded-proto", "x-forwarded-pro", "host", "x-request-id"].map(String::from));
            for name in &names {
                assert_eq!(list.strips(name), by_each(name), "{name:?} with {extra:?}");
            }
        }
    }

    #[test]
    fn the_built_in_list_covers_other_proxies_spellings() {
        let list = StripList::new("strip_headers", &[], &["my-cert"]).unwrap();
        for name in [
            "x-dm-user-id",
            "X-DM-Principal",
            "x_dm_org_id",
            "X-Forwarded-Client-Cert",
            "x_forwarded_client_cert",
            "x-forwarded-client-cert-chain",
            "X-Forwarded-Tls-Client-Cert-Info",
            "ssl-client-cert",
            "SSL_CLIENT_S_DN",
            "ssl-client-verify",
            "x-ssl-client-cert",
            "X-SSL-Cert",
            "x-ssl-subject",
            "x-client-cert",
            "X-Client-Certificate",
            "x-client-verify",
            "x-client-dn",
            "client-cert",
            "Client-Cert-Chain",
            "x-amzn-mtls-clientcert-leaf",
            "X-ARR-ClientCert",
            "x-tls-client-cert",
            "xfcc",
            "My_Cert",
            "X-Original-URL",
            "x_original_url",
            "X-Original-Uri",
            "x-rewrite-url",
            "X-Forwarded-Uri",
            "x-forwarded-url",
            "X-Forwarded-Prefix",
            "x_forwarded_prefix",
            "X-Forwarded-Path",
            "x-envoy-original-path",
        ] {
            assert!(list.strips(name), "{name}");
        }
        for name in [
            "authorization",
            "x-client-id",
            "x-request-id",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-original",
            "content-type",
            "x-dmz",
            "clientcert",
        ] {
            assert!(!list.strips(name), "{name}");
        }
    }

    #[test]
    fn operators_add_names_and_prefixes() {
        let extra = vec!["X-Remote-User".to_owned(), "x-auth-*".to_owned()];
        let list = StripList::new("strip_headers", &extra, &[]).unwrap();
        assert!(list.strips("x_remote_user"));
        assert!(list.strips("X-Auth-Request-Email"));
        assert!(!list.strips("x-remote-user-agent"));
        assert!(!list.strips(""));
        assert_eq!(StripList::new("strip_headers", &["*".to_owned()], &[]).unwrap_err().field, "strip_headers[0]");
        let bad = vec!["ok".to_owned(), "bad name".to_owned()];
        assert_eq!(StripList::new("policy.strip_headers", &bad, &[]).unwrap_err().field, "policy.strip_headers[1]");
    }
}
