//! What a domain rule says about a value it refuses: the field at fault and what to fix. The
//! API answers it as a 422 problem, the command line prints it; neither rule knows which.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub detail: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Invalid { field: field.into(), detail: detail.into() }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

impl std::error::Error for Invalid {}

pub type Checked<T> = Result<T, Invalid>;
