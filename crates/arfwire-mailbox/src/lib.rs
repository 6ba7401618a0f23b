//! Take mail from mailboxes and hand it to the durable log: a [`MaildirWatcher`] for a Maildir
//! folder and an [`ImapPoller`] for a hosted `junk@` mailbox.
//!
//! Both keep the rule that makes "nothing lost" hold: a message is handed to
//! [`Submitter::submit`](arfwire_raw::Submitter::submit), and **only after `Ok`** is it moved
//! or flagged at its source. Until then the source keeps it, and a failure at any point (the
//! log refusing, the process crashing, the connection dropping) leaves it to be submitted
//! again.
//!
//! "Again" means duplicates, which are safe: a message is submitted byte for byte (the Maildir
//! file as it is; the IMAP `BODY[]` as the server stores it), so a repeat has the same
//! SHA-256, hence the same submission and event ids, and downstream drops it.
//!
//! ```ignore
//! let watcher = MaildirWatcher::new(MaildirConfig::new("/srv/mail/junk"), submitter)?;
//! watcher.run(shutdown_signal()).await?;
//! ```

mod backoff;
mod config;
mod error;
mod imap;
mod maildir;

pub use config::{
    DEFAULT_MAX_MESSAGE_BYTES, Disposition, ImapConfig, MAX_IDLE_RENEW, MaildirConfig, Secret,
    TlsMode,
};
pub use error::{ConfigError, ImapError, MaildirError, StateError};
pub use imap::{ImapPoller, ImapState};
pub use maildir::{MaildirWatcher, ScanReport};
