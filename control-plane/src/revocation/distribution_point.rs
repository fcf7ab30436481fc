//! Which CRL distribution points the control plane fetches: a CA's registration, its
//! certificate's own points, and the poller all hold URLs to these rules.

/// Longest distribution point URL accepted: real ones are under 100 bytes.
pub const MAX_CRL_URL_BYTES: usize = 2048;
/// Most distribution points per CA: CAs list one to three.
pub const MAX_CRL_URLS: usize = 8;

/// Whether the poller fetches `url`: `Err` says why not (LDAP, https, no host, credentials…).
pub fn check_crl_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_CRL_URL_BYTES {
        return Err(format!("is longer than {MAX_CRL_URL_BYTES} bytes"));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ldap:") || lower.starts_with("ldaps:") {
        return Err(format!(
            "{url:?} is an LDAP distribution point, which certbind does not fetch: give the CA's http:// \
             distribution point, or upload its CRLs (POST /api/v1/admin/crls)"
        ));
    }
    if lower.starts_with("https:") {
        return Err(format!(
            "{url:?}: https distribution points are not fetched (a CRL is signed by its CA, so TLS adds nothing; \
             RFC 5280 publishes CRLs over http): give the http:// URL, or upload its CRLs"
        ));
    }
    let target = HttpTarget::parse(url)?;
    drop(target);
    Ok(())
}

/// An `http://host[:port]/path` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HttpTarget {
    pub(super) host: String,
    pub(super) port: u16,
    /// Path and query, starting with `/`.
    pub(super) path: String,
}

impl HttpTarget {
    pub(super) fn parse(url: &str) -> Result<HttpTarget, String> {
        let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")).and(url.get(7..)) else {
            return Err(format!("{url:?} is not an http:// URL"));
        };
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("{url:?} contains spaces or control characters"));
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(format!("{url:?} carries credentials; a CRL distribution point needs none"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| format!("{url:?} has a bad port"))?;
                (host, port)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{url:?} names no host"));
        }
        Ok(HttpTarget { host: host.to_string(), port, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_plain_http_with_a_host() {
        assert_eq!(
            HttpTarget::parse("http://crl.disa.mil/crl/DODIDCA_59.crl"),
            Ok(HttpTarget { host: "crl.disa.mil".into(), port: 80, path: "/crl/DODIDCA_59.crl".into() })
        );
        assert_eq!(
            HttpTarget::parse("HTTP://127.0.0.1:8099?x=1"),
            Ok(HttpTarget { host: "127.0.0.1".into(), port: 8099, path: "/?x=1".into() })
        );
        assert!(check_crl_url("ldap://crl.disa.mil/cn=DOD").unwrap_err().contains("LDAP distribution point"));
        assert!(check_crl_url("https://crl.example/a.crl").unwrap_err().contains("https"));
        assert!(check_crl_url("http://user:pw@crl.example/a.crl").unwrap_err().contains("credentials"));
        assert!(check_crl_url("http:///a.crl").unwrap_err().contains("no host"));
        assert!(check_crl_url("http://h:99999/a").unwrap_err().contains("port"));
        assert!(check_crl_url("http://h/a b").unwrap_err().contains("spaces"));
        assert!(check_crl_url("ftp://h/a").unwrap_err().contains("not an http"));
        assert!(check_crl_url(&format!("http://h/{}", "a".repeat(MAX_CRL_URL_BYTES))).unwrap_err().contains("longer"));
    }
}
