//! Distinguished names as RFC 4514 text: `format` renders a certificate's name from its DER
//! (what the filter reports and compares), `parse` reads one as people write it and renders
//! it the same way (what the control plane stores and compares), `display` names for people
//! what those two write as dotted OIDs (what answers and headers show, never compared).

mod display;
mod format;
mod parse;
#[cfg(test)]
mod tests;

pub(crate) use format::format_name;
pub use parse::{canonical_dn, display_dn, parse_dn, DnText, DnTextError, MAX_DN_ATTRIBUTES, MAX_DN_TEXT_BYTES};
