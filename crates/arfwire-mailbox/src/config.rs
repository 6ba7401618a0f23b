//! The configuration of the Maildir watcher and the IMAP poller.
//!
//! Both are plain serde types (`deny_unknown_fields`, so a misspelt key is an error rather
//! than a silently ignored setting). Durations are written in seconds and may be fractional
//! (`poll_interval_secs = 0.5`). Secrets are named by environment variable
//! (`password_env = "ARFWIRE_IMAP_PASSWORD"`) and print as `[REDACTED]` in `Debug` output.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::error::ConfigError;

/// The largest message read from a mailbox by default: the intake crate's cap, which is the
/// parser's default message limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = arfwire_intake::DEFAULT_MAX_FILE_BYTES;

/// The longest an IMAP `IDLE` may run before it is re-issued: RFC 2177 asks clients to end
/// it at least every 29 minutes, because servers may log out a client idle for 30.
pub const MAX_IDLE_RENEW: Duration = Duration::from_secs(29 * 60);

/// A secret value. Its `Debug` and `Display` print `[REDACTED]`; [`Secret::expose`] is the
/// only way to the text.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where the Maildir watcher reads and what it does with a message once the log has it.
///
/// ```toml
/// path = "/srv/mail/junk"            # the Maildir: holds cur/, new/ and tmp/
/// include_cur = false                # also take cur/ messages without the S flag
/// processed = "/srv/mail/junk/.Done" # optional: move here instead of to cur/
/// poll_interval_secs = 5
/// retry_min_secs = 1
/// retry_max_secs = 300
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MaildirConfig {
    /// The Maildir folder: the directory holding `cur/`, `new/` and `tmp/`. It must exist.
    pub path: PathBuf,
    /// Also submit messages in `cur/` that lack the `S` (seen) flag: a mail client or an
    /// earlier consumer may have moved them out of `new/` without anyone reading them. Off by
    /// default: only `new/` is read.
    #[serde(default)]
    pub include_cur: bool,
    /// Another Maildir folder that submitted messages are moved into (its `cur/`, with the
    /// `S` flag), instead of this folder's own `cur/`. Created if missing. It must be on the
    /// same file system as `path`, because the move is a `rename`.
    #[serde(default)]
    pub processed: Option<PathBuf>,
    /// How often the folder is scanned for new messages.
    #[serde(
        rename = "poll_interval_secs",
        default = "default_maildir_poll",
        deserialize_with = "seconds"
    )]
    pub poll_interval: Duration,
    /// The first wait after the log refused a submission; it doubles on each further refusal.
    #[serde(
        rename = "retry_min_secs",
        default = "default_retry_min",
        deserialize_with = "seconds"
    )]
    pub retry_min: Duration,
    /// The longest wait between retries.
    #[serde(
        rename = "retry_max_secs",
        default = "default_retry_max",
        deserialize_with = "seconds"
    )]
    pub retry_max: Duration,
    /// Files larger than this are not read; they stay where they are, with an error logged.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
}

impl MaildirConfig {
    /// The defaults for the Maildir at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        MaildirConfig {
            path: path.into(),
            include_cur: false,
            processed: None,
            poll_interval: default_maildir_poll(),
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            max_message_bytes: default_max_message_bytes(),
        }
    }

    /// Check the values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("poll_interval_secs", self.poll_interval)?;
        retry_range(self.retry_min, self.retry_max)?;
        if self.max_message_bytes == 0 {
            return Err(ConfigError::invalid("max_message_bytes", "must be above 0"));
        }
        Ok(())
    }
}

/// How the IMAP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS, port 993 by default). The default.
    #[default]
    Implicit,
    /// Plain connection upgraded with `STARTTLS` before logging in (port 143 by default).
    Starttls,
    /// No TLS at all (port 143 by default). The password crosses the network in clear: only
    /// for a server on the same host or in tests.
    None,
}

/// What the IMAP poller does with a message once the log has it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
pub enum Disposition {
    /// Move it to another mailbox: `UID MOVE` when the server offers `MOVE` (RFC 6851),
    /// otherwise `UID COPY`, `\Deleted` and `UID EXPUNGE` (the last only with `UIDPLUS`; a
    /// server without it keeps the copy flagged `\Deleted` until someone expunges).
    Move {
        /// The mailbox, as the server names it (modified UTF-7 for non-ASCII names).
        /// Created when missing.
        mailbox: String,
    },
    /// Set a flag and leave the message where it is: a system flag such as `\Seen`, or a
    /// keyword such as `$ArfwireProcessed`.
    Flag {
        /// The flag.
        flag: String,
    },
}

/// Where the IMAP poller reads and what it does with a message once the log has it.
///
/// ```toml
/// host = "imap.example.net"
/// username = "junk@example.net"
/// password_env = "ARFWIRE_IMAP_PASSWORD"
/// mailbox = "INBOX"
/// state_file = "/var/lib/arfwire/imap-junk.json"
/// on_success = { action = "move", mailbox = "Processed" }
/// # on_success = { action = "flag", flag = "$ArfwireProcessed" }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ImapConfig {
    /// The server's host name (or address).
    pub host: String,
    /// The port; 993 for implicit TLS, 143 otherwise, when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is secured. Implicit TLS by default.
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of CA certificates to trust instead of the system's trust store, e.g. for
    /// a server with a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from `host`.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// The login name.
    pub username: String,
    /// The environment variable that holds the password. Exactly one of `password_env` and
    /// `password` must be set.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The password itself, for local runs and tests; prefer `password_env`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// The mailbox to read. `INBOX` by default.
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// What happens to a message once the log has it.
    pub on_success: Disposition,
    /// Where the poller keeps the mailbox's `UIDVALIDITY` and the last UID it finished
    /// (JSON, replaced atomically). Its directory must exist. One file per poller.
    pub state_file: PathBuf,
    /// Wait for new mail with `IDLE` when the server offers it (on by default); otherwise
    /// poll every `poll_interval_secs`.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// How long one `IDLE` may run before it is ended and re-issued; at most 29 minutes.
    #[serde(
        rename = "idle_renew_secs",
        default = "default_idle_renew",
        deserialize_with = "seconds"
    )]
    pub idle_renew: Duration,
    /// How often the mailbox is checked when `IDLE` is not used.
    #[serde(
        rename = "poll_interval_secs",
        default = "default_imap_poll",
        deserialize_with = "seconds"
    )]
    pub poll_interval: Duration,
    /// The first wait after a failure (connection, server or log); it doubles on each
    /// further failure.
    #[serde(
        rename = "retry_min_secs",
        default = "default_retry_min",
        deserialize_with = "seconds"
    )]
    pub retry_min: Duration,
    /// The longest wait between retries.
    #[serde(
        rename = "retry_max_secs",
        default = "default_retry_max",
        deserialize_with = "seconds"
    )]
    pub retry_max: Duration,
    /// The longest wait for the TCP connection, the TLS handshake, and each command's reply.
    #[serde(
        rename = "timeout_secs",
        default = "default_timeout",
        deserialize_with = "seconds"
    )]
    pub timeout: Duration,
    /// Messages larger than this (by `RFC822.SIZE`) are not fetched; they stay in the mailbox
    /// untouched, with an error logged, and the poller moves on.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// How many messages one `UID FETCH` asks for at most.
    #[serde(default = "default_fetch_batch")]
    pub fetch_batch: usize,
    /// How many bytes (by `RFC822.SIZE`) one `UID FETCH` asks for at most; a single larger
    /// message is still fetched on its own.
    #[serde(default = "default_fetch_batch_bytes")]
    pub fetch_batch_bytes: u64,
}

impl ImapConfig {
    /// A configuration with the defaults, a password from the environment variable
    /// `password_env`, and the given required fields.
    pub fn new(
        host: impl Into<String>,
        username: impl Into<String>,
        password_env: impl Into<String>,
        on_success: Disposition,
        state_file: impl Into<PathBuf>,
    ) -> Self {
        ImapConfig {
            host: host.into(),
            port: None,
            tls: TlsMode::default(),
            ca_file: None,
            tls_server_name: None,
            username: username.into(),
            password_env: Some(password_env.into()),
            password: None,
            mailbox: default_mailbox(),
            on_success,
            state_file: state_file.into(),
            idle: true,
            idle_renew: default_idle_renew(),
            poll_interval: default_imap_poll(),
            retry_min: default_retry_min(),
            retry_max: default_retry_max(),
            timeout: default_timeout(),
            max_message_bytes: default_max_message_bytes(),
            fetch_batch: default_fetch_batch(),
            fetch_batch_bytes: default_fetch_batch_bytes(),
        }
    }

    /// The port connected to.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        })
    }

    /// Check the values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.host.trim().is_empty() {
            return Err(ConfigError::invalid("host", "is empty"));
        }
        if self.username.is_empty() {
            return Err(ConfigError::invalid("username", "is empty"));
        }
        match (&self.password_env, &self.password) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "password_env",
                    "set either password_env or password, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    "password_env",
                    "set password_env (or password)",
                ));
            }
            (Some(name), None) if name.is_empty() => {
                return Err(ConfigError::invalid("password_env", "is empty"));
            }
            _ => {}
        }
        if self.mailbox.is_empty() {
            return Err(ConfigError::invalid("mailbox", "is empty"));
        }
        match &self.on_success {
            Disposition::Move { mailbox } => {
                if mailbox.is_empty() {
                    return Err(ConfigError::invalid("on_success.mailbox", "is empty"));
                }
                if *mailbox == self.mailbox {
                    return Err(ConfigError::invalid(
                        "on_success.mailbox",
                        "is the mailbox being read",
                    ));
                }
            }
            Disposition::Flag { flag } => check_flag(flag)?,
        }
        if self.port == Some(0) {
            return Err(ConfigError::invalid("port", "must be above 0"));
        }
        if self.idle_renew.is_zero() || self.idle_renew > MAX_IDLE_RENEW {
            return Err(ConfigError::invalid(
                "idle_renew_secs",
                "must be above 0 and at most 1740 (29 minutes)",
            ));
        }
        positive("poll_interval_secs", self.poll_interval)?;
        positive("timeout_secs", self.timeout)?;
        retry_range(self.retry_min, self.retry_max)?;
        if self.max_message_bytes == 0 {
            return Err(ConfigError::invalid("max_message_bytes", "must be above 0"));
        }
        if self.fetch_batch == 0 {
            return Err(ConfigError::invalid("fetch_batch", "must be above 0"));
        }
        if self.fetch_batch_bytes == 0 {
            return Err(ConfigError::invalid("fetch_batch_bytes", "must be above 0"));
        }
        Ok(())
    }

    /// The password: read from the environment variable, or the inline value.
    pub fn resolve_password(&self) -> Result<Secret, ConfigError> {
        if let Some(password) = &self.password {
            return Ok(password.clone());
        }
        let name = self
            .password_env
            .as_deref()
            .ok_or_else(|| ConfigError::invalid("password_env", "set password_env"))?;
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Err(ConfigError::MissingSecret {
                variable: name.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::invalid(
                "password_env",
                "the variable's value is not valid UTF-8",
            )),
        }
    }
}

/// A flag the poller may set: `\Seen`, `\Flagged`, `\Answered` or `\Draft`, or a keyword (an
/// IMAP atom that does not begin with `\`). `\Deleted` is refused: use a move instead.
fn check_flag(flag: &str) -> Result<(), ConfigError> {
    const SYSTEM: [&str; 4] = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft"];
    if flag.starts_with('\\') {
        if SYSTEM
            .iter()
            .any(|system| system.eq_ignore_ascii_case(flag))
        {
            return Ok(());
        }
        return Err(ConfigError::invalid(
            "on_success.flag",
            "a system flag must be one of \\Seen, \\Flagged, \\Answered, \\Draft",
        ));
    }
    let atom_char = |c: char| {
        c.is_ascii_graphic() && !matches!(c, '(' | ')' | '{' | '%' | '*' | '"' | '\\' | ']')
    };
    if flag.is_empty() || !flag.chars().all(atom_char) {
        return Err(ConfigError::invalid(
            "on_success.flag",
            "a keyword must be a non-empty IMAP atom (no spaces, brackets, quotes, % or *)",
        ));
    }
    Ok(())
}

fn positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(field, "must be above 0"));
    }
    Ok(())
}

fn retry_range(min: Duration, max: Duration) -> Result<(), ConfigError> {
    positive("retry_min_secs", min)?;
    if max < min {
        return Err(ConfigError::invalid(
            "retry_max_secs",
            "must be at least retry_min_secs",
        ));
    }
    Ok(())
}

/// A number of seconds, fractional allowed.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| D::Error::custom("expected a non-negative, finite number of seconds"))
}

fn default_true() -> bool {
    true
}

fn default_mailbox() -> String {
    "INBOX".to_owned()
}

fn default_maildir_poll() -> Duration {
    Duration::from_secs(5)
}

fn default_imap_poll() -> Duration {
    Duration::from_secs(60)
}

fn default_idle_renew() -> Duration {
    Duration::from_secs(25 * 60)
}

fn default_retry_min() -> Duration {
    Duration::from_secs(1)
}

fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

fn default_max_message_bytes() -> u64 {
    DEFAULT_MAX_MESSAGE_BYTES
}

fn default_fetch_batch() -> usize {
    20
}

fn default_fetch_batch_bytes() -> u64 {
    32 * 1024 * 1024
}
