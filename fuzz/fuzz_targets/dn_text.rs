//! A distinguished name typed by a person (the control plane's issuer DNs): the text parser
//! must never panic, what it renders must parse back to itself, and so must its display form.
#![no_main]

use certbind_shared::certificate::dn::{canonical_dn, display_dn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rendered) = canonical_dn(text) {
        assert_eq!(canonical_dn(&rendered).as_deref(), Ok(rendered.as_str()));
        assert_eq!(canonical_dn(&display_dn(&rendered)).as_deref(), Ok(rendered.as_str()));
    }
});
