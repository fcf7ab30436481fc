//! Who a rule belongs to. Storage files rows under it, the snapshot keys rules by it, and the
//! API shows it; none of them defines it.

/// Whose rule something is: one org's, or the platform's (written only by super-admins,
/// applying to every certificate).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    Platform,
    Org(String),
}

impl Owner {
    /// The `org_id` column: `NULL` for the platform.
    pub fn org_id(&self) -> Option<&str> {
        match self {
            Owner::Platform => None,
            Owner::Org(id) => Some(id),
        }
    }

    /// The owner as the unique indexes spell it (`COALESCE(org_id, '')`), and as the audit
    /// log files platform changes.
    pub fn key(&self) -> &str {
        self.org_id().unwrap_or("")
    }

    pub fn from_column(org_id: Option<String>) -> Owner {
        match org_id {
            Some(id) => Owner::Org(id),
            None => Owner::Platform,
        }
    }

    pub fn is_platform(&self) -> bool {
        matches!(self, Owner::Platform)
    }

    /// The owner as the snapshot and the decision read it, borrowed.
    pub fn as_identity(&self) -> certbind_shared::identity::Owner<'_> {
        certbind_shared::identity::Owner::from_org_id(self.org_id())
    }
}

impl From<certbind_shared::identity::Owner<'_>> for Owner {
    fn from(owner: certbind_shared::identity::Owner<'_>) -> Self {
        match owner.org_id() {
            Some(id) => Owner::Org(id.to_owned()),
            None => Owner::Platform,
        }
    }
}

/// Serialized as two fields of the row it belongs to: `"scope": "org"|"platform"` and
/// `"org_id"` (`null` for the platform).
impl serde::Serialize for Owner {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("Owner", 2)?;
        fields.serialize_field("scope", if self.is_platform() { "platform" } else { "org" })?;
        fields.serialize_field("org_id", &self.org_id())?;
        fields.end()
    }
}
