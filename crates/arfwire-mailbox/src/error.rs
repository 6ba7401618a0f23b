//! The errors of this crate.
//!
//! Only errors that retrying cannot fix leave `run`: a bad configuration, a Maildir that is
//! not there, an unreadable IMAP state file. Everything else (a refusing log, a vanished file,
//! a dropped connection, a server error) is logged and retried with backoff inside `run`.

use std::io;
use std::path::PathBuf;

/// A configuration value is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field has a value that cannot work.
    #[error("invalid configuration: {field} {reason}")]
    Invalid {
        /// The field, as spelt in the configuration file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The environment variable that should hold a secret is unset or empty.
    #[error("the environment variable {variable} (named by password_env) is not set")]
    MissingSecret {
        /// The variable's name.
        variable: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Why the Maildir watcher could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaildirError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A folder is missing or cannot be prepared.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        cause: io::Error,
    },
    /// The Maildir and the `processed` folder are on different file systems, so a message
    /// cannot be moved between them with `rename`.
    #[error(
        "{} and {} are on different file systems; a processed folder must be on the Maildir's",
        maildir.display(),
        processed.display()
    )]
    CrossDevice {
        /// The Maildir.
        maildir: PathBuf,
        /// The processed folder.
        processed: PathBuf,
    },
}

/// Why the IMAP poller stopped, or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImapError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state file cannot be read, parsed or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// TLS cannot be set up (for example an unreadable `ca_file`).
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    /// The `async_imap` log target is enabled at trace level, where that crate writes every
    /// command it sends, the `LOGIN` command with the password included. The poller refuses
    /// to log in rather than leak the password.
    #[error(
        "trace logging of the async_imap crate is on and would write the IMAP password to the \
         log; lower that target's level"
    )]
    PasswordWouldBeLogged,
}

/// The IMAP state file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing failed.
    #[error("cannot {action} the IMAP state file {}: {cause}", path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        cause: io::Error,
    },
    /// The file is not a state file this version understands. Removing it makes the poller
    /// re-read the whole mailbox, which is safe: downstream drops the duplicates.
    #[error(
        "the IMAP state file {} is not valid ({reason}); remove it to re-read the mailbox \
         from the start (duplicates are dropped downstream)",
        path.display()
    )]
    Invalid {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
