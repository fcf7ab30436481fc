//! The path that route rules match on. A request's `:path` reaches the filter as the client
//! wrote it unless the proxy normalises it (Envoy does not by default), and the upstream may
//! resolve it differently from a plain string comparison: `//admin`, `/%61dmin`,
//! `/static/../admin` and `/ADMIN` are all `/admin` to some server. So routes match on one
//! canonical spelling, and spellings whose meaning depends on the upstream are refused:
//!
//! - the path part (before `?`) must be origin-form: `/` then visible ASCII;
//! - escapes of unreserved characters (RFC 3986 §2.3) are decoded, every other escape is kept
//!   with uppercase hex;
//! - empty segments are merged (`//` → `/`) and dot segments removed (RFC 3986 §5.2.4), after
//!   decoding, so `%2e%2e` is `..`;
//! - refused: `\` raw or encoded, an encoded `/`, `;` raw or encoded (path parameters, which
//!   servlet containers strip), `%25` (an upstream that decodes twice would see another
//!   path), an escape of a control byte (NUL included), escapes that do not decode to UTF-8,
//!   raw bytes outside visible ASCII, a `#` anywhere, a malformed escape.
//!
//! Canonicalising a canonical path changes nothing, so it is safe behind a proxy that already
//! normalises (`normalize_path`, `merge_slashes`).

use crate::encoding::hex_value;
use std::borrow::Cow;
use std::fmt;

/// Longest path part accepted. Envoy's whole request-header block defaults to 60 KiB; a path
/// of more than 8 KiB is an attack or a mistake.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Why a `:path` was refused. Each is answered with 400 `invalid_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// No `:path`, or more than one.
    Missing,
    Duplicate,
    /// Not `/`-rooted (`*`, a relative or absolute URI).
    NotOriginForm,
    TooLong { len: usize },
    /// A raw byte that is not visible ASCII, or a raw `\`.
    ForbiddenByte { at: usize },
    /// `#`: a request target carries no fragment (RFC 9112 §3.2).
    Fragment { at: usize },
    /// `;` or `%3B`: a path parameter.
    Parameter { at: usize },
    /// `%2F` or `%5C`: a separator the upstream may or may not split on.
    EncodedSeparator { at: usize },
    /// `%25`: a percent sign that a second decoding would turn into another escape.
    EncodedPercent { at: usize },
    /// An escape of a control byte (`%00`–`%1F`, `%7F`).
    EncodedControl { at: usize },
    /// `%` not followed by two hex digits.
    BadEscape { at: usize },
    /// The decoded bytes are not UTF-8 (overlong forms such as `%C0%AE` included).
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Missing => f.write_str("the request has no :path"),
            PathError::Duplicate => f.write_str("the request has more than one :path"),
            PathError::NotOriginForm => f.write_str("the path does not start with '/'"),
            PathError::TooLong { len } => write!(f, "the path is {len} bytes, more than {MAX_PATH_BYTES}"),
            PathError::ForbiddenByte { at } => write!(f, "forbidden byte in the path at byte {at}"),
            PathError::Fragment { at } => write!(f, "'#' in the request target at byte {at}"),
            PathError::Parameter { at } => write!(f, "path parameter (';') at byte {at}"),
            PathError::EncodedSeparator { at } => write!(f, "encoded '/' or '\\' at byte {at}"),
            PathError::EncodedPercent { at } => write!(f, "encoded '%' at byte {at}"),
            PathError::EncodedControl { at } => write!(f, "encoded control byte at byte {at}"),
            PathError::BadEscape { at } => write!(f, "malformed percent escape at byte {at}"),
            PathError::NotUtf8 => f.write_str("the decoded path is not UTF-8"),
        }
    }
}

impl std::error::Error for PathError {}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}


const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The part of a request target before its query: what routes match on.
fn split_query(target: &[u8]) -> &[u8] {
    let end = target.iter().position(|&b| b == b'?').unwrap_or(target.len());
    target.get(..end).unwrap_or(target)
}

/// The canonical spelling of `target`'s path part (the query is dropped). Borrowed when the
/// path was already canonical, which is the common case.
pub fn canonical_path(target: &[u8]) -> Result<Cow<'_, str>, PathError> {
    if let Some(at) = target.iter().position(|&b| b == b'#') {
        return Err(PathError::Fragment { at });
    }
    let path = split_query(target);
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong { len: path.len() });
    }
    if path.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // One pass to validate raw bytes and see whether anything needs rewriting.
    let mut needs_rewrite = false;
    let mut previous = 0u8;
    for (at, &byte) in path.iter().enumerate() {
        match byte {
            b';' => return Err(PathError::Parameter { at }),
            b'\\' => return Err(PathError::ForbiddenByte { at }),
            b'%' => needs_rewrite = true,
            b'/' if previous == b'/' => needs_rewrite = true,
            b'.' if previous == b'/' => needs_rewrite = true,
            0x21..=0x7e => {}
            _ => return Err(PathError::ForbiddenByte { at }),
        }
        previous = byte;
    }
    let text = std::str::from_utf8(path).map_err(|_| PathError::NotUtf8)?;
    if !needs_rewrite {
        return Ok(Cow::Borrowed(text));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// Decodes the escapes of unreserved characters, keeps the others with uppercase hex, and
/// refuses the escapes listed in the module documentation. Checks that the fully decoded
/// bytes are UTF-8.
fn decode_unreserved(path: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // The fully decoded bytes of the escapes above ASCII, to check they form UTF-8.
    let mut high = Vec::new();
    let mut pos = 0;
    while let Some(&byte) = path.get(pos) {
        if byte != b'%' {
            if !high.is_empty() {
                check_utf8(&mut high)?;
            }
            out.push(char::from(byte));
            pos += 1;
            continue;
        }
        let at = pos;
        let (Some(h), Some(l)) =
            (path.get(pos + 1).copied().and_then(hex_value), path.get(pos + 2).copied().and_then(hex_value))
        else {
            return Err(PathError::BadEscape { at });
        };
        let decoded = (h << 4) | l;
        pos += 3;
        match decoded {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator { at }),
            b';' => return Err(PathError::Parameter { at }),
            b'%' => return Err(PathError::EncodedPercent { at }),
            0x00..=0x1f | 0x7f => return Err(PathError::EncodedControl { at }),
            _ => {}
        }
        if decoded >= 0x80 {
            high.push(decoded);
        } else if !high.is_empty() {
            check_utf8(&mut high)?;
        }
        if is_unreserved(decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(decoded >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(decoded & 0x0f)]));
        }
    }
    if !high.is_empty() {
        check_utf8(&mut high)?;
    }
    Ok(out)
}

/// A run of escaped bytes above ASCII must be whole UTF-8 characters.
fn check_utf8(run: &mut Vec<u8>) -> Result<(), PathError> {
    let valid = std::str::from_utf8(run).is_ok();
    run.clear();
    if valid {
        Ok(())
    } else {
        Err(PathError::NotUtf8)
    }
}

/// Merges empty segments and removes `.` and `..` (RFC 3986 §5.2.4; `..` at the root stays at
/// the root). A path that ended in `/`, `.` or `..` keeps a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = false;
        match segment {
            "" | "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// The spellings of the canonical `path` that an upstream may route to the same handler as
/// `path` itself, besides `path`: each is lowercased (IIS, ASP.NET, Spring with a
/// case-insensitive matcher, any upstream on a case-insensitive file system), then
///
/// - with the trailing dots of every segment removed (`/api./execute.` is `/api/execute` to
///   IIS and to Windows file servers; a segment of dots only is kept), then
/// - with the format suffix of its last segment removed: everything from the first `.` after
///   the segment's first character (Rails' `(.:format)`, Spring's suffix pattern matching,
///   Django REST framework's format suffixes: `/api/execute.json`, `/api/execute.tar.gz`
///   → `/api/execute`; `/.well-known` keeps its leading dot).
///
/// Distinct and in that order; empty when `path` is lowercase with no dot to fold, which is
/// the common case and allocates nothing. Only ASCII letters are folded.
pub fn folded_spellings(path: &str) -> Vec<String> {
    let mut spellings: Vec<String> = Vec::new();
    let push = |spelling: String, spellings: &mut Vec<String>| {
        if spelling != path && !spellings.contains(&spelling) {
            spellings.push(spelling);
        }
    };
    let lower = if path.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(path.to_ascii_lowercase()) } else { Cow::Borrowed(path) };
    if !lower.contains('.') {
        if let Cow::Owned(lower) = lower {
            push(lower, &mut spellings);
        }
        return spellings;
    }
    let undotted = without_trailing_dots(&lower);
    let unsuffixed = without_format_suffix(&undotted);
    push(lower.into_owned(), &mut spellings);
    push(undotted, &mut spellings);
    push(unsuffixed, &mut spellings);
    spellings
}

/// Every segment without its trailing dots, unless it is dots only.
fn without_trailing_dots(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let trimmed = segment.trim_end_matches('.');
            if trimmed.is_empty() {
                segment
            } else {
                trimmed
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The last non-empty segment cut at its first `.` after its first character.
fn without_format_suffix(path: &str) -> String {
    let body = path.trim_end_matches('/');
    let start = body.rfind('/').map_or(0, |at| at + 1);
    let segment = body.get(start..).unwrap_or("");
    match segment.get(1..).and_then(|rest| rest.find('.')) {
        Some(dot) => {
            let cut = start + 1 + dot;
            format!("{}{}", path.get(..cut).unwrap_or(path), path.get(body.len()..).unwrap_or(""))
        }
        None => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(path: &str) -> Result<String, PathError> {
        canonical_path(path.as_bytes()).map(Cow::into_owned)
    }

    #[test]
    fn spellings_of_one_path_become_one() {
        let cases = [
            ("/admin/x", "/admin/x"),
            ("//admin/x", "/admin/x"),
            ("/admin//x", "/admin/x"),
            ("/%61dmin/x", "/admin/x"),
            ("/%61%64%6D%69%6e/x", "/admin/x"),
            ("/static/../admin/x", "/admin/x"),
            ("/a/%2e%2e/admin/x", "/admin/x"),
            ("/a/.%2E/admin/x", "/admin/x"),
            ("/./admin/./x", "/admin/x"),
            ("/../../admin/x", "/admin/x"),
            ("/admin/x/..", "/admin/"),
            ("/admin/x/.", "/admin/x/"),
            ("/admin/", "/admin/"),
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/admin/x?q=1", "/admin/x"),
            ("/admin/x?next=/../../etc", "/admin/x"),
            ("/a%7eb", "/a~b"),
            ("/a%20b", "/a%20b"),
            ("/a%2ab", "/a%2Ab"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/caf%c3%a9/", "/caf%C3%A9/"),
            ("/...", "/..."),
            ("/.hidden", "/.hidden"),
            ("/a..b/", "/a..b/"),
        ];
        for (raw, expected) in cases {
            assert_eq!(canonical(raw).as_deref(), Ok(expected), "{raw}");
            // Canonical paths are fixed points.
            assert_eq!(canonical(expected).as_deref(), Ok(expected), "{expected}");
        }
    }

    #[test]
    fn canonical_input_is_borrowed() {
        assert!(matches!(canonical_path(b"/admin/users/7?x=%2F").unwrap(), Cow::Borrowed("/admin/users/7")));
    }

    #[test]
    fn ambiguous_spellings_are_refused_with_their_reason() {
        let cases: [(&[u8], PathError); 22] = [
            (b"", PathError::NotOriginForm),
            (b"*", PathError::NotOriginForm),
            (b"admin/x", PathError::NotOriginForm),
            (b"http://a/admin", PathError::NotOriginForm),
            (b"?x", PathError::NotOriginForm),
            (b"/admin;a/x", PathError::Parameter { at: 6 }),
            (b"/admin%3ba/x", PathError::Parameter { at: 6 }),
            (b"/admin%2fx", PathError::EncodedSeparator { at: 6 }),
            (b"/admin%2Fx", PathError::EncodedSeparator { at: 6 }),
            (b"/admin%5cx", PathError::EncodedSeparator { at: 6 }),
            (b"/admin\\x", PathError::ForbiddenByte { at: 6 }),
            (b"/admin%00x", PathError::EncodedControl { at: 6 }),
            (b"/admin%0a", PathError::EncodedControl { at: 6 }),
            (b"/admin%7F", PathError::EncodedControl { at: 6 }),
            (b"/adm%2561n", PathError::EncodedPercent { at: 4 }),
            (b"/adm%6", PathError::BadEscape { at: 4 }),
            (b"/adm%zz", PathError::BadEscape { at: 4 }),
            (b"/adm\x80in", PathError::ForbiddenByte { at: 4 }),
            (b"/adm in", PathError::ForbiddenByte { at: 4 }),
            (b"/admin\0", PathError::ForbiddenByte { at: 6 }),
            (b"/admin#x", PathError::Fragment { at: 6 }),
            (b"/admin?a#x", PathError::Fragment { at: 8 }),
        ];
        for (raw, expected) in cases {
            assert_eq!(canonical_path(raw), Err(expected), "{:?}", String::from_utf8_lossy(raw));
        }
        for invalid_utf8 in ["/%C0%AE%C0%AE/", "/%80", "/%C3", "/%C3/x", "/%E2%82", "/%ED%A0%80", "/%F5%80%80%80"] {
            assert_eq!(canonical(invalid_utf8), Err(PathError::NotUtf8), "{invalid_utf8}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(canonical(&long), Err(PathError::TooLong { len: MAX_PATH_BYTES + 1 }));
    }

    #[test]
    fn spellings_fold_case_trailing_dots_and_format_suffixes() {
        let cases: [(&str, &[&str]); 14] = [
            ("/admin/x", &[]),
            ("/", &[]),
            ("/ADMIN/x", &["/admin/x"]),
            ("/api/execute.json", &["/api/execute"]),
            ("/api/execute.JSON", &["/api/execute.json", "/api/execute"]),
            ("/API/Execute.Json/", &["/api/execute.json/", "/api/execute/"]),
            ("/api/execute.", &["/api/execute"]),
            ("/api/execute...", &["/api/execute"]),
            ("/api./execute", &["/api/execute"]),
            ("/feed.xml.", &["/feed.xml", "/feed"]),
            ("/api/execute.tar.gz", &["/api/execute"]),
            ("/.well-known/x", &[]),
            ("/a/.hidden", &[]),
            ("/a/.../b.", &["/a/.../b"]),
        ];
        for (path, expected) in cases {
            assert_eq!(folded_spellings(path), expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{path}");
        }
    }
}
