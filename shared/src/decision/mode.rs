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
/// Patterns are written in the canonical form requests are matched in (see
/// [`super::path`]), so that no pattern can name a spelling no request ever has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    prefix: bool,
}

impl PathPattern {
    /// Parses `pattern`; with `fold` (case-insensitive paths) it is lowercased, as request
    /// paths are.
    pub fn parse(pattern: &str, fold: bool) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("path pattern {pattern:?} must start with '/'"));
        }
        let (stem, prefix) = match pattern.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (pattern, false),
        };
        if stem.contains('*') {
            return Err(format!("path pattern {pattern:?} may hold one trailing '*' only"));
        }
        if stem.contains('?') {
            return Err(format!("path pattern {pattern:?} may not hold a query"));
        }
        let canonical = super::path::canonical_path(stem.as_bytes())
            .map_err(|e| format!("path pattern {pattern:?} is not a path requests can have: {e}"))?;
        if canonical != stem {
            return Err(format!("path pattern {pattern:?} is not in canonical form; write {canonical:?}"));
        }
        let text = if fold { stem.to_ascii_lowercase() } else { stem.to_string() };
        Ok(PathPattern { text, prefix })
    }

    /// Whether the canonical `path` matches.
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
            assert_eq!(PathPattern::parse(pattern, false).unwrap().matches(path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["admin", "/a*b", "/a/**", "//admin/*", "/a/../admin/*", "/%61dmin", "/admin;x/*", "/admin?x", "/a%2fb"] {
            assert!(PathPattern::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn folded_patterns_match_folded_paths() {
        let pattern = PathPattern::parse("/Admin/*", true).unwrap();
        assert!(pattern.matches("/admin/x"));
        assert!(!PathPattern::parse("/Admin/*", false).unwrap().matches("/admin/x"));
    }
}
