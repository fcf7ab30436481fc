//! What storage reports: the outcomes a caller can act on (nothing there, taken, refers to
//! something that is gone) apart from failures of the database itself. The HTTP edge maps
//! these to problem answers (`impl From<DbError> for ApiError`), the command line to messages.

use std::fmt;

#[derive(Debug)]
pub enum DbError {
    /// No such row in the caller's scope (or it went away while the change ran).
    NotFound(String),
    /// A row with the same key exists, or the change contradicts one that does.
    Conflict(String),
    /// A field names something that does not exist in the caller's scope: `field` is the
    /// request field at fault.
    Invalid { field: &'static str, detail: String },
    /// The caller may not make this change (e.g. a plain admin deleting a super-admin token).
    Forbidden(String),
    /// The change would take the org past one of its quotas (`db::Quotas`).
    QuotaExceeded(String),
    /// The database failed or refused in a way no request could have caused.
    Database(sqlx::Error),
}

pub type DbResult<T> = Result<T, DbError>;

impl DbError {
    pub fn not_found(what: impl Into<String>) -> Self {
        DbError::NotFound(what.into())
    }

    pub fn conflict(what: impl Into<String>) -> Self {
        DbError::Conflict(what.into())
    }

    pub fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        DbError::Invalid { field, detail: detail.into() }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::NotFound(d) | DbError::Conflict(d) | DbError::Forbidden(d) | DbError::QuotaExceeded(d) => f.write_str(d),
            DbError::Invalid { field, detail } => write!(f, "{field}: {detail}"),
            DbError::Database(e) => write!(f, "database: {e}"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Database(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether `e` says the database cannot be reached (down, restarting, connections lost or
/// all taken), rather than refusing this request: the request may succeed once it is back.
pub fn unreachable(e: &sqlx::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed | sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::TimedOut
        ),
        // PostgreSQL: connection exceptions (class 08), and the server shutting down or
        // starting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now).
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

/// SQLSTATE classes both backends report for races between writers.
const FOREIGN_KEY_VIOLATION: &str = "23503";
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";

/// What a database error means for the request that met it, when it means anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Race {
    /// A unique key was taken (by another writer, or before).
    Unique,
    /// A row this change refers to went away (or a row still refers to one it deletes).
    ForeignKey,
    /// The database gave up one of two conflicting transactions.
    Serialization,
}

/// Classifies a database error as one of the races writers can lose, on either backend.
pub fn race_of(e: &sqlx::Error) -> Option<Race> {
    let sqlx::Error::Database(d) = e else { return None };
    if d.is_unique_violation() {
        return Some(Race::Unique);
    }
    if d.is_foreign_key_violation() {
        return Some(Race::ForeignKey);
    }
    match d.code().as_deref() {
        Some(FOREIGN_KEY_VIOLATION) => Some(Race::ForeignKey),
        Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED) => Some(Race::Serialization),
        // SQLite: SQLITE_CONSTRAINT_FOREIGNKEY (787), SQLITE_CONSTRAINT_UNIQUE (2067) and
        // SQLITE_CONSTRAINT_PRIMARYKEY (1555), in case a driver reports only the number.
        Some("787") => Some(Race::ForeignKey),
        Some("2067" | "1555") => Some(Race::Unique),
        _ => None,
    }
}

impl From<sqlx::Error> for DbError {
    /// Errors no call site explained: a lost race still answers 409, never 500.
    fn from(e: sqlx::Error) -> Self {
        match race_of(&e) {
            Some(Race::Unique) => DbError::conflict("a row with the same key was written at the same time; nothing was changed"),
            Some(Race::ForeignKey) => {
                DbError::conflict("a row this change refers to was changed at the same time; nothing was changed")
            }
            Some(Race::Serialization) => {
                DbError::conflict("a concurrent change conflicted with this one; nothing was changed, try again")
            }
            None => DbError::Database(e),
        }
    }
}

/// Maps a race to `what` (e.g. a 409 naming the key), anything else as [`From`] does.
pub fn or_race(e: sqlx::Error, race: Race, what: impl FnOnce() -> DbError) -> DbError {
    if race_of(&e) == Some(race) {
        what()
    } else {
        DbError::from(e)
    }
}

/// A stored value that does not read back as what was written (a column's JSON, a blob, a
/// certificate): the database's error, not the caller's.
pub(super) fn decode_error(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_out_of_reach_is_told_from_a_refusal() {
        assert!(unreachable(&sqlx::Error::PoolTimedOut));
        assert!(unreachable(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))));
        assert!(unreachable(&sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))));
        assert!(!unreachable(&sqlx::Error::Io(std::io::Error::other("the CRL task failed"))));
        assert!(!unreachable(&sqlx::Error::RowNotFound));
    }
}
