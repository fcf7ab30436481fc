//! The text rules every value a client or the command line writes meets: names and labels,
//! fingerprints, DNs and domains, each put in the one form storage and the snapshot hold.

use super::invalid::{Checked, Invalid};
use certbind_shared::certificate::dn::{parse_dn, DnText};
use certbind_shared::identity::normalize_serial;
use certbind_shared::Fingerprint;

/// Longest DN accepted. Real PIV/CAC DNs are 60–200 bytes; RFC 5280's attribute upper bounds
/// add up to well under 1 KiB for any DN a CA issues.
pub const MAX_DN_BYTES: usize = 1024;

/// A PEM certificate at the shared crate's DER cap, with line breaks, fits in 24 KiB; the
/// request body limit applies on top.
pub const MAX_PEM_TEXT_BYTES: usize = 24 * 1024;

/// RFC 1035: a domain name is at most 253 characters in text form.
pub const MAX_DOMAIN_BYTES: usize = 253;

/// Org names are shown to people and used on the command line.
pub const MAX_ORG_NAME_BYTES: usize = 200;
pub const MAX_USER_NAME_BYTES: usize = 200;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_BYTES: usize = 254;
/// Admin tokens' and proxy credentials' labels, for people.
pub const MAX_TOKEN_LABEL_BYTES: usize = 200;
/// Ids are carried in the snapshot, whose strings are at most 255 bytes.
pub const MAX_ID_BYTES: usize = 255;
/// RFC 5280 caps serials at 20 octets; 21 leaves room for the DER sign byte some CAs add.
pub const MAX_SERIAL_HEX_DIGITS: usize = 42;

pub fn org_name(text: &str) -> Checked<String> {
    required_text("name", text, MAX_ORG_NAME_BYTES)
}

pub fn user_name(text: &str) -> Checked<String> {
    required_text("name", text, MAX_USER_NAME_BYTES)
}

pub fn user_email(text: Option<&str>) -> Checked<Option<String>> {
    optional_text("email", text, MAX_EMAIL_BYTES)
}

/// An admin token's or proxy credential's label.
pub fn token_label(text: Option<&str>) -> Checked<Option<String>> {
    optional_text("label", text, MAX_TOKEN_LABEL_BYTES)
}

/// Required text: trimmed, non-empty, at most `max` bytes, no control characters.
pub fn required_text(field: &str, text: &str, max: usize) -> Checked<String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    optional_text(field, Some(text), max).map(|t| t.unwrap_or_default())
}

/// Optional text under the same rules; an empty string counts as absent.
pub fn optional_text(field: &str, text: Option<&str>, max: usize) -> Checked<Option<String>> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.len() > max {
        return Err(Invalid::new(field, format!("is {} bytes, more than the {max}-byte limit", text.len())));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(Some(text.to_string()))
}

/// A fingerprint in any accepted spelling.
pub fn fingerprint(field: &str, text: &str) -> Checked<Fingerprint> {
    Fingerprint::parse(text).map_err(|e| Invalid::new(field, e.to_string()))
}

/// A fingerprint in its canonical text form: a page cursor, which lists compare as text.
pub fn canonical_fingerprint(field: &str, text: &str) -> Checked<String> {
    fingerprint(field, text).map(|fp| fp.to_hex())
}

/// A DN as stored: parsed as people write it and put in the one RFC 4514 form the filter
/// renders from certificates (`certbind_shared::certificate::dn`); unreadable → refused.
pub fn canonical_dn(field: &str, text: &str) -> Checked<String> {
    Ok(dn_text(field, text)?.canonical())
}

/// The DN in `text`, within [`MAX_DN_BYTES`] in canonical form.
pub fn dn_text(field: &str, text: &str) -> Checked<DnText> {
    if text.len() > 4 * MAX_DN_BYTES {
        return Err(Invalid::new(field, format!("is longer than {} bytes", 4 * MAX_DN_BYTES)));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid::new(field, "must not contain control characters (escape them as \\XX)"));
    }
    let dn = parse_dn(text).map_err(|e| Invalid::new(field, format!("is not a distinguished name: {e}")))?;
    if dn.canonical().len() > MAX_DN_BYTES {
        return Err(Invalid::new(field, format!("is longer than {MAX_DN_BYTES} bytes")));
    }
    Ok(dn)
}

/// A domain as stored: lowercase, letters, digits, `-` and `.`, no empty labels.
pub fn canonical_domain(field: &str, text: &str) -> Checked<String> {
    let domain = required_text(field, text, MAX_DOMAIN_BYTES)?.to_ascii_lowercase();
    let valid_label = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-')
    };
    if !domain.split('.').all(valid_label) {
        return Err(Invalid::new(field, "must be a domain name such as example.mil"));
    }
    Ok(domain)
}

/// A serial as stored: lowercase hex, even length, no `0x` prefix, colons or spare leading
/// zero bytes (`0x00:12:AB` → `12ab`), matching what certificates' own serials look like.
pub fn canonical_serial(text: &str) -> Checked<String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").or_else(|| trimmed.strip_prefix("0X")).unwrap_or(trimmed);
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Invalid::new("serial", "must be hexadecimal (optionally 0x-prefixed or colon-separated)"));
    }
    let normalized = normalize_serial(&digits);
    if normalized.len() > MAX_SERIAL_HEX_DIGITS {
        return Err(Invalid::new("serial", format!("is longer than {MAX_SERIAL_HEX_DIGITS} hex digits (20 octets)")));
    }
    Ok(if normalized.len() % 2 == 1 { format!("0{normalized}") } else { normalized })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits_name_the_field() {
        assert_eq!(required_text("label", "  Primary CAC ", 20).unwrap(), "Primary CAC");
        assert_eq!(required_text("label", &"x".repeat(21), 20), Err(Invalid::new("label", "is 21 bytes, more than the 20-byte limit")));
        assert_eq!(required_text("label", " ", 20), Err(Invalid::new("label", "must not be empty")));
        assert_eq!(required_text("label", "a\u{0}b", 20), Err(Invalid::new("label", "must not contain control characters")));
        assert_eq!(optional_text("label", Some(""), 20).unwrap(), None);
    }

    #[test]
    fn domains_are_lowercased_and_checked() {
        assert_eq!(canonical_domain("domain", " Mail.Example.MIL ").unwrap(), "mail.example.mil");
        for bad in ["exa mple.mil", "example..mil", "-x.mil", "x.mil'; --", "@example.mil"] {
            assert_eq!(canonical_domain("domain", bad), Err(Invalid::new("domain", "must be a domain name such as example.mil")), "{bad}");
        }
        assert_eq!(canonical_domain("domain", ""), Err(Invalid::new("domain", "must not be empty")));
    }

    #[test]
    fn serials_are_stored_in_one_spelling() {
        assert_eq!(canonical_serial("0x12ABcdef").unwrap(), "12abcdef");
        assert_eq!(canonical_serial("00:0a:FF").unwrap(), "0aff");
        assert_eq!(canonical_serial("0").unwrap(), "00");
        for bad in ["", "0x", "12g4", "' OR 1=1 --", &"1".repeat(43)] {
            assert!(matches!(canonical_serial(bad), Err(Invalid { ref field, .. }) if field == "serial"), "{bad}");
        }
    }
}
