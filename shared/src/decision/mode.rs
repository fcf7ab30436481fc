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

    /// Whether every path `later` matches is matched by this pattern too: a route with
    /// `later` listed after this one could never be chosen.
    pub fn covers(&self, later: &PathPattern) -> bool {
        (self.prefix || !later.prefix) && self.matches(&later.text)
    }

    /// Whether the canonical `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        if !self.prefix {
            // `/api/execute/` names the same resource as `/api/execute` to most upstreams
            // (Express, Spring ≤ 5, Rails): an exact pattern covers both spellings.
            return path == self.text
                || (!self.text.ends_with('/') && path.strip_prefix(self.text.as_str()) == Some("/"));
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
            ("/health", "/health/", true),
            ("/health", "/health//", false),
            ("/health", "/health/x", false),
            ("/health/", "/health", false),
            ("/*", "/anything", true),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(PathPattern::parse(pattern, false).unwrap().matches(path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn an_earlier_pattern_covers_a_later_one_only_if_it_matches_all_it_does() {
        let cases = [
            ("/api/*", "/api/admin/*", true),
            ("/api*", "/api/admin/*", true),
            ("/admin/*", "/admin*", true),
            ("/admin*", "/admin/*", true),
            ("/api/*", "/api/execute", true),
            ("/api/execute", "/api/execute/", true),
            ("/a/b/*", "/a/*", false),
            ("/api/execute", "/api/*", false),
            ("/api/admin/*", "/api/*", false),
            ("/adm*", "/admin/*", false),
        ];
        for (earlier, later, expected) in cases {
            let (earlier_pattern, later_pattern) =
                (PathPattern::parse(earlier, false).unwrap(), PathPattern::parse(later, false).unwrap());
            assert_eq!(earlier_pattern.covers(&later_pattern), expected, "{earlier} before {later}");
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
