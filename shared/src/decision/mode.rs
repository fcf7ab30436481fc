//! The route's authentication mode, chosen by path rules. There is no fallback between modes:
//! a request gets exactly the mode of the first rule that matches its path.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A verified bearer token; certificates play no part.
    Bearer,
    /// Certificate identity only; tokens are not consulted.
    Mtls,
    /// A verified bearer token everywhere; on `binding_required_paths` also a certificate the
    /// token is bound to.
    BearerPlusMtlsOptional,
    /// Certificate, verified token, and binding between them, always.
    BearerPlusMtlsRequired,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bearer => "bearer",
            Mode::Mtls => "mtls",
            Mode::BearerPlusMtlsOptional => "bearer_plus_mtls_optional",
            Mode::BearerPlusMtlsRequired => "bearer_plus_mtls_required",
        }
    }
}

/// A path pattern: an exact path, or a prefix when it ends in `*` (`/admin/*`).
/// Prefix patterns match on segment boundaries, so `/admin/*` does not match `/administrator`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    prefix: bool,
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern {pattern:?} must start with '/'"));
        }
        match pattern.strip_suffix('*') {
            Some(stem) if stem.contains('*') => Err(format!("path pattern {pattern:?} may hold one trailing '*' only")),
            Some(stem) => Ok(PathPattern { text: stem.to_string(), prefix: true }),
            None if pattern.contains('*') => Err(format!("path pattern {pattern:?} may hold one trailing '*' only")),
            None => Ok(PathPattern { text: pattern.to_string(), prefix: false }),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        if !self.prefix {
            return path == self.text;
        }
        match path.strip_prefix(self.text.as_str()) {
            None => path.len() + 1 == self.text.len() && self.text.starts_with(path) && self.text.ends_with('/'),
            Some(rest) => self.text.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        }
    }
}

/// The part of `:path` that routes match on: no query or fragment.
pub fn route_path(raw: &str) -> &str {
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    raw.get(..end).unwrap_or(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_or_by_segment_prefix() {
        let cases = [
            ("/admin/*", "/admin/users", true),
            ("/admin/*", "/admin/", true),
            ("/admin/*", "/admin", true),
            ("/admin/*", "/administrator", false),
            ("/admin*", "/admin/x", true),
            ("/admin*", "/administrator", false),
            ("/health", "/health", true),
            ("/health", "/health/x", false),
            ("/*", "/anything", true),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(PathPattern::parse(pattern).unwrap().matches(path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(PathPattern::parse("admin").is_err());
        assert!(PathPattern::parse("/a*b").is_err());
        assert!(PathPattern::parse("/a/**").is_err());
    }

    #[test]
    fn route_path_drops_query() {
        assert_eq!(route_path("/a/b?x=1#f"), "/a/b");
        assert_eq!(route_path("/a#f"), "/a");
    }
}
