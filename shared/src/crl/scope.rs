//! Which certificates a CRL speaks of.

/// Which certificates a CRL covers, from its Issuing Distribution Point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlScope {
    /// Every certificate of the CA (no Issuing Distribution Point, or one without a limit).
    All,
    /// `onlyContainsUserCerts`: end-entity certificates only.
    UserCertificates,
    /// `onlyContainsCACerts`: an authority revocation list; it says nothing about users.
    CaCertificates,
}

impl CrlScope {
    /// What it covers, in words.
    pub fn name(self) -> &'static str {
        match self {
            CrlScope::All => "every certificate of its CA",
            CrlScope::UserCertificates => "end-entity certificates only",
            CrlScope::CaCertificates => "CA certificates only",
        }
    }
}
