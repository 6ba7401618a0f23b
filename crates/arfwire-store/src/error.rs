//! The store's one error type.

use std::fmt;

use arfwire_attribution::directory::InvalidDirectory;

use crate::import::DirectoryFormat;

/// A problem on one line of a CSV import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvIssue {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CsvIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Every problem found in a CSV import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvIssues(pub Vec<CsvIssue>);

/// How many CSV problems `Display` prints before summarising.
const CSV_ISSUES_SHOWN: usize = 50;

impl fmt::Display for CsvIssues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problems", self.0.len())?;
        for issue in self.0.iter().take(CSV_ISSUES_SHOWN) {
            write!(f, "\n  {issue}")?;
        }
        if self.0.len() > CSV_ISSUES_SHOWN {
            write!(f, "\n  ... and {} more", self.0.len() - CSV_ISSUES_SHOWN)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database or the connection to it failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The directory (imported, merged or stored) breaks a directory rule.
    #[error("{0}")]
    InvalidDirectory(#[from] InvalidDirectory),
    /// A TOML or JSON directory file does not parse.
    #[error("{format} directory does not parse: {message}")]
    Parse {
        /// The format that was expected.
        format: DirectoryFormat,
        /// The parser's message, with its position.
        message: String,
    },
    /// A CSV directory file has problems; each names its line.
    #[error("CSV directory has {0}")]
    Csv(CsvIssues),
    /// The file name does not tell the format.
    #[error("cannot tell the directory format of {path:?}: expected a .csv, .json or .toml file")]
    UnknownFormat {
        /// The file.
        path: String,
    },
    /// A directory file could not be read.
    #[error("cannot read {path:?}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A stored value the code does not understand (the schema should have prevented it).
    #[error("stored directory data is not understood: {0}")]
    Corrupt(String),
}

/// SQLSTATEs worth retrying: serialisation failures, deadlocks, lock timeouts, shutdowns,
/// connection failures and resource exhaustion.
fn retryable_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "57014"
    ) || code.starts_with("08")
        || code.starts_with("53")
}

fn retryable_sqlx(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|c| retryable_sqlstate(&c)),
        _ => false,
    }
}

impl StoreError {
    /// Could the same call succeed if tried again later (the server was down or busy, a
    /// transaction lost a race)? Data and input problems are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database(error) => retryable_sqlx(error),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(error)) => {
                retryable_sqlx(error)
            }
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
            ),
            StoreError::Migrate(_)
            | StoreError::InvalidDirectory(_)
            | StoreError::Parse { .. }
            | StoreError::Csv(_)
            | StoreError::UnknownFormat { .. }
            | StoreError::Corrupt(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_kinds() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_retryable());
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(StoreError::Database(sqlx::Error::Io(refused)).is_retryable());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_retryable());
        assert!(!StoreError::Corrupt("x".into()).is_retryable());
        assert!(!StoreError::Csv(CsvIssues(Vec::new())).is_retryable());
        assert!(retryable_sqlstate("40001"));
        assert!(retryable_sqlstate("08006"));
        assert!(!retryable_sqlstate("23505"));
    }

    #[test]
    fn csv_issues_name_lines() {
        let issues = CsvIssues(vec![CsvIssue {
            line: 7,
            message: "unknown kind \"domian\"".into(),
        }]);
        let text = StoreError::Csv(issues).to_string();
        assert!(text.contains("line 7: unknown kind"), "{text}");
    }
}
