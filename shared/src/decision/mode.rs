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
    /// A verified bearer token everywhere; on `sender_binding_required_paths` also a certificate
    /// the token is bound to.
    BearerPlusMtlsOptional,
    /// Certificate, verified token, and the token's sender binding to it, always.
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

/// How a route's patterns meet a request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatching {
    /// Every spelling an upstream may route to the same handler matches: the canonical path
    /// and its folds ([`super::path::folded_spellings`]: ASCII case, trailing dots, a format
    /// suffix).
    #[default]
    Folded,
    /// Only the canonical path, as written: for upstreams known to route case-sensitively and
    /// without suffix or dot folding.
    Exact,
}

/// A path pattern: an exact path, or a prefix when it ends in `*` (`/admin/*`).
/// Prefix patterns match on segment boundaries, so `/admin/*` does not match `/administrator`.
/// Patterns are written in the canonical form requests are matched in (see
/// [`super::path`]), so that no pattern can name a spelling no request ever has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    /// `text` lowercased: what folded spellings, which are lowercase, are matched against.
    folded: String,
    prefix: bool,
}

impl PathPattern {
    /// Parses `pattern`, keeping it as written and lowercased.
    pub fn parse(pattern: &str) -> Result<Self, String> {
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
        Ok(PathPattern { text: stem.to_string(), folded: stem.to_ascii_lowercase(), prefix })
    }

    /// Whether every path `later` matches is matched by this pattern too: a route with
    /// `later` listed after this one could never be chosen. `folded` when both routes match
    /// folded spellings.
    pub fn covers(&self, later: &PathPattern, folded: bool) -> bool {
        (self.prefix || !later.prefix)
            && (self.matches(&later.text) || (folded && self.matches_folded(&later.folded)))
    }

    /// Whether the canonical `path` matches the pattern as written.
    pub fn matches(&self, path: &str) -> bool {
        Self::text_matches(&self.text, self.prefix, path)
    }

    /// Whether a folded (lowercase) spelling matches the lowercased pattern.
    pub fn matches_folded(&self, spelling: &str) -> bool {
        Self::text_matches(&self.folded, self.prefix, spelling)
    }

    fn text_matches(text: &str, prefix: bool, path: &str) -> bool {
        if !prefix {
            // `/api/execute/` names the same resource as `/api/execute` to most upstreams
            // (Express, Spring ≤ 5, Rails): an exact pattern covers both spellings.
            return path == text || (!text.ends_with('/') && path.strip_prefix(text) == Some("/"));
        }
        match path.strip_prefix(text) {
            None => path.len() + 1 == text.len() && text.starts_with(path) && text.ends_with('/'),
            Some(rest) => text.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
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
            assert_eq!(PathPattern::parse(pattern).unwrap().matches(path), expected, "{pattern} vs {path}");
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
                (PathPattern::parse(earlier).unwrap(), PathPattern::parse(later).unwrap());
            assert_eq!(earlier_pattern.covers(&later_pattern, false), expected, "{earlier} before {later}");
            assert_eq!(earlier_pattern.covers(&later_pattern, true), expected, "{earlier} before {later}, folded");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["admin", "/a*b", "/a/**", "//admin/*", "/a/../admin/*", "/%61dmin", "/admin;x/*", "/admin?x", "/a%2fb"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn folded_spellings_match_the_lowercased_pattern() {
        let pattern = PathPattern::parse("/Admin/*").unwrap();
        assert!(pattern.matches("/Admin/x"));
        assert!(!pattern.matches("/admin/x"));
        assert!(pattern.matches_folded("/admin/x"));
        assert!(!pattern.matches_folded("/Admin/x"));
        let (lower, upper) = (PathPattern::parse("/a/*").unwrap(), PathPattern::parse("/A/*").unwrap());
        assert!(lower.covers(&upper, true));
        assert!(!lower.covers(&upper, false));
    }
}
