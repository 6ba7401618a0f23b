//! The desk's one error type.

use arfwire_store::StoreError;

/// Everything that can go wrong in the desk.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// The database or the connection to it failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The store (migrations, connection) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record does not make sense (not JSON, an unknown schema, an id that is not a UUID).
    /// The consumer records it in `store_errors` and goes on.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// Kafka failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl DeskError {
    /// Could the same call succeed later (the database was unreachable or busy)? Malformed
    /// records and configuration mistakes are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeskError::Database(error) => retryable_sqlx(error),
            DeskError::Store(error) => error.is_retryable(),
            DeskError::Kafka(_) => true,
            DeskError::Malformed(_) | DeskError::Config(_) => false,
        }
    }

    /// Is this a problem of one record's data (so the record is skipped and recorded) rather
    /// than of the database or the connection?
    pub fn is_data_error(&self) -> bool {
        match self {
            DeskError::Malformed(_) => true,
            DeskError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                // Class 22 (data exception), 23 (integrity constraint violation) and 54
                // (program limit exceeded: an index entry too large). Other classes (a
                // missing table, a permission) are the system's, not the record's: they
                // stop the consumer rather than fill store_errors.
                code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
            }),
            DeskError::Database(
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Encode(_) | sqlx::Error::Decode(_),
            ) => true,
            _ => false,
        }
    }
}

fn retryable_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| retryable_code(&code)),
        _ => false,
    }
}

/// SQLSTATEs worth retrying: serialisation failures, deadlocks, lock timeouts, shutdowns,
/// connection failures and resource exhaustion.
fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57014"
    ) || code.starts_with("08")
        || code.starts_with("53")
}
