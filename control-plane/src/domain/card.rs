//! Which certificates an org may bind to its users, whoever asks (the admin API or the command
//! line): the rule lives here so both answer alike.

use certbind_shared::certificate::{CardFacts, CertificateType};

/// Why a certificate may not be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindRefusal {
    /// A PIV Card Authentication certificate in an org that does not allow Card Authentication.
    CardAuthentication,
}

impl BindRefusal {
    /// The request field at fault.
    pub fn field(self) -> &'static str {
        match self {
            BindRefusal::CardAuthentication => "certificate_pem",
        }
    }

    /// What is wrong and what to do instead, for the problem's `detail` and the command line.
    pub fn detail(self) -> &'static str {
        match self {
            BindRefusal::CardAuthentication => {
                "is a PIV Card Authentication certificate (the id-PIV-cardAuth extended key usage or a card-auth \
                 policy): its key answers without the PIN, so it proves the card is present, not its holder, and the \
                 filter refuses it unless a route allows Card Authentication. Bind the card's PIV Authentication \
                 certificate instead, or have a super-admin allow Card Authentication for the org"
            }
        }
    }
}

/// Whether a certificate with `facts` may be bound in an org that does (`org_allows_card_auth`)
/// or does not allow Card Authentication. A binding given by fields (`facts` unknown) is not
/// refused here: what it is cannot be told, and the filter still refuses a Card Authentication
/// certificate wherever a route does not allow it.
pub fn may_bind(facts: Option<&CardFacts>, org_allows_card_auth: bool) -> Result<(), BindRefusal> {
    match facts {
        Some(facts) if facts.certificate_type == CertificateType::CardAuthentication && !org_allows_card_auth => {
            Err(BindRefusal::CardAuthentication)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certbind_shared::certificate::CertificateFacts;

    fn card(name: &str) -> CardFacts {
        let path = format!("{}/../tests/pki/{name}.pem", env!("CARGO_MANIFEST_DIR"));
        CardFacts::of(&CertificateFacts::from_pem(&std::fs::read(path).unwrap()).unwrap())
    }

    #[test]
    fn card_authentication_needs_the_org_to_allow_it() {
        let card_auth = card("piv-card-auth");
        let piv_auth = card("piv-auth");
        assert_eq!(may_bind(Some(&card_auth), false), Err(BindRefusal::CardAuthentication));
        assert_eq!(may_bind(Some(&card_auth), true), Ok(()));
        assert_eq!(may_bind(Some(&piv_auth), false), Ok(()));
        assert_eq!(may_bind(None, false), Ok(()));
    }
}
