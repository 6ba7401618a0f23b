//! The front door's configuration.

use std::net::SocketAddr;

use serde::Deserialize;

/// One MiB.
const MIB: u64 = 1024 * 1024;

/// Configuration of the LMTP/SMTP front door.
///
/// Every field except `listen`, `hostname` and `recipients` has a default; unknown fields are
/// an error, so a misspelt limit is noticed at startup instead of silently falling back to the
/// default. [`LmtpConfig::validate`] checks the values (the server calls it).
///
/// ```toml
/// listen = "127.0.0.1:2424"
/// protocol = "lmtp"
/// hostname = "ingest.provider.example"
/// recipients = ["junk@provider.example", "abuse@provider.example"]
/// max_message_bytes = 26214400
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmtpConfig {
    /// Socket address to listen on, e.g. `127.0.0.1:2424`. LMTP belongs on a trusted local
    /// channel (RFC 2033 §5: never on port 25).
    pub listen: SocketAddr,

    /// `lmtp` (the default: `LHLO`, one reply per recipient after the data) or `smtp`
    /// (`EHLO`/`HELO`, a single reply after the data).
    #[serde(default)]
    pub protocol: Protocol,

    /// The host name this server calls itself in the greeting and in the `LHLO`/`EHLO` reply.
    /// Printable ASCII without spaces, at most 255 bytes.
    pub hostname: String,

    /// The only recipients accepted, as plain `local@domain` addresses (for example
    /// `junk@provider.example`). `RCPT TO` must name one of them exactly, compared without
    /// regard to ASCII case; everything else is refused with `550 5.1.1` (no relaying).
    pub recipients: Vec<String>,

    /// Largest message accepted, in bytes after dot-unstuffing; advertised as `SIZE`. A larger
    /// `SIZE=` at `MAIL FROM` is refused with `552 5.3.4`, and larger content is read to its
    /// end, discarded and refused with `552 5.3.4`. Default 25 MiB.
    #[serde(default = "defaults::max_message_bytes")]
    pub max_message_bytes: u64,

    /// Most recipients in one transaction; further `RCPT TO` get `452 4.5.3`. Default 100.
    #[serde(default = "defaults::max_recipients")]
    pub max_recipients: usize,

    /// Longest command line, in bytes including the CRLF; a longer line is discarded and
    /// answered `500 5.5.6`. At least 512 (RFC 5321 §4.5.3.1.4). Default 2048.
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,

    /// Error replies (4xx/5xx) to one session's commands after which the session is closed
    /// with `421 4.7.0`. Default 20.
    #[serde(default = "defaults::max_errors")]
    pub max_errors: u32,

    /// `NOOP`, `RSET`, `VRFY`, `HELP` and unrecognised commands one session may send before
    /// it is closed with `421 4.7.0`. Default 100.
    #[serde(default = "defaults::max_junk_commands")]
    pub max_junk_commands: u32,

    /// How long to wait before sending the greeting, in milliseconds. A client that sends
    /// anything before the greeting (an "early talker") is answered `554 5.5.0` and
    /// disconnected. With 0 (the default) only bytes that arrived before the connection was
    /// picked up are caught; a pause of a few hundred milliseconds catches more.
    #[serde(default)]
    pub greeting_delay_ms: u64,

    /// How long a session may wait for the next command, in milliseconds; then `421 4.4.2` and
    /// the connection is closed. Also bounds each write of replies. Default 60 000.
    #[serde(default = "defaults::command_timeout_ms")]
    pub command_timeout_ms: u64,

    /// How long a session may go without receiving a byte of message content, in
    /// milliseconds; then `421 4.4.2`. Default 300 000.
    #[serde(default = "defaults::data_timeout_ms")]
    pub data_timeout_ms: u64,

    /// Longest lifetime of one session, in milliseconds; then `421 4.4.2`. Default 600 000.
    #[serde(default = "defaults::session_timeout_ms")]
    pub session_timeout_ms: u64,

    /// How long to wait for the durable submit of one message, in milliseconds; past it the
    /// message is answered `451 4.3.0` (the client retries). Default 30 000.
    #[serde(default = "defaults::submit_timeout_ms")]
    pub submit_timeout_ms: u64,

    /// After the shutdown signal, how long in-flight sessions may take to finish their current
    /// transaction, in milliseconds; sessions still open then are sent `421 4.3.2` and
    /// closed. Default 20 000.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,

    /// Most concurrent sessions; connections beyond it are answered `421 4.3.2` and closed.
    /// Default 1000.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,

    /// Most concurrent sessions from one client IP address; connections beyond it are answered
    /// `421 4.7.0` and closed. Default 20.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,

    /// What to do with a line that ends in a bare LF (no CR before it), in commands and in
    /// message content. Either way only `<CR><LF>.<CR><LF>` ends the message content.
    /// Default `reject`.
    #[serde(default)]
    pub bare_lf: BareLfPolicy,
}

/// The protocol spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// LMTP (RFC 2033): `LHLO`, one reply per accepted recipient after the data.
    #[default]
    Lmtp,
    /// ESMTP (RFC 5321): `EHLO` or `HELO`, one reply after the data.
    Smtp,
}

/// How lines ending in a bare LF are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLfPolicy {
    /// A command line ending in a bare LF is refused with `501 5.5.4`; a message containing
    /// one is read to its end and refused with `554 5.6.11` (nothing is stored).
    #[default]
    Reject,
    /// A bare LF is taken as CRLF: the command runs, and the stored content gets CRLF
    /// (Postfix's `smtpd_forbid_bare_newline = normalize`).
    Normalize,
}

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid LMTP configuration: {0}")]
pub struct ConfigError(String);

impl LmtpConfig {
    /// A configuration with the defaults for everything but the three required fields.
    pub fn new(listen: SocketAddr, hostname: impl Into<String>, recipients: Vec<String>) -> Self {
        LmtpConfig {
            listen,
            protocol: Protocol::default(),
            hostname: hostname.into(),
            recipients,
            max_message_bytes: defaults::max_message_bytes(),
            max_recipients: defaults::max_recipients(),
            max_line_bytes: defaults::max_line_bytes(),
            max_errors: defaults::max_errors(),
            max_junk_commands: defaults::max_junk_commands(),
            greeting_delay_ms: 0,
            command_timeout_ms: defaults::command_timeout_ms(),
            data_timeout_ms: defaults::data_timeout_ms(),
            session_timeout_ms: defaults::session_timeout_ms(),
            submit_timeout_ms: defaults::submit_timeout_ms(),
            shutdown_grace_ms: defaults::shutdown_grace_ms(),
            max_connections: defaults::max_connections(),
            max_connections_per_ip: defaults::max_connections_per_ip(),
            bare_lf: BareLfPolicy::default(),
        }
    }

    /// Check every value; the server refuses to start with an invalid configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: String| Err(ConfigError(what));
        if self.hostname.is_empty()
            || self.hostname.len() > 255
            || !self.hostname.bytes().all(|b| b.is_ascii_graphic())
        {
            return fail("`hostname` must be 1 to 255 printable ASCII bytes without spaces".into());
        }
        if self.recipients.is_empty() {
            return fail("`recipients` must name at least one address".into());
        }
        for recipient in &self.recipients {
            if !is_plain_address(recipient) {
                return fail(format!(
                    "recipient {recipient:?} is not a plain local@domain address \
                     (dot-atom local part, host-name domain)"
                ));
            }
        }
        if self.max_message_bytes == 0 || self.max_message_bytes > 1024 * MIB {
            return fail("`max_message_bytes` must be between 1 and 1 GiB".into());
        }
        if usize::try_from(self.max_message_bytes).is_err() {
            return fail("`max_message_bytes` does not fit this platform".into());
        }
        if self.max_recipients == 0 {
            return fail("`max_recipients` must be at least 1".into());
        }
        if !(512..=65536).contains(&self.max_line_bytes) {
            return fail("`max_line_bytes` must be between 512 and 65536".into());
        }
        if self.max_errors == 0 || self.max_junk_commands == 0 {
            return fail("`max_errors` and `max_junk_commands` must be at least 1".into());
        }
        for (name, value) in [
            ("command_timeout_ms", self.command_timeout_ms),
            ("data_timeout_ms", self.data_timeout_ms),
            ("session_timeout_ms", self.session_timeout_ms),
            ("submit_timeout_ms", self.submit_timeout_ms),
        ] {
            if value == 0 {
                return fail(format!("`{name}` must be at least 1"));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return fail(
                "`max_connections` and `max_connections_per_ip` must be at least 1".into(),
            );
        }
        Ok(())
    }

    /// The message size limit as a `usize` (validated to fit).
    pub(crate) fn max_message_len(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }
}

/// `local@domain` with a dot-atom local part (RFC 5321 `Dot-string`) and a host-name domain:
/// the only shape a configured recipient may have.
fn is_plain_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$&'*+-/=?^_`{|}~".contains(&b);
    let dot_string = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(atext));
    let host = !domain.is_empty()
        && domain.len() <= 255
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    dot_string && host
}

mod defaults {
    use super::MIB;

    pub(super) fn max_message_bytes() -> u64 {
        25 * MIB
    }
    pub(super) fn max_recipients() -> usize {
        100
    }
    pub(super) fn max_line_bytes() -> usize {
        2048
    }
    pub(super) fn max_errors() -> u32 {
        20
    }
    pub(super) fn max_junk_commands() -> u32 {
        100
    }
    pub(super) fn command_timeout_ms() -> u64 {
        60_000
    }
    pub(super) fn data_timeout_ms() -> u64 {
        300_000
    }
    pub(super) fn session_timeout_ms() -> u64 {
        600_000
    }
    pub(super) fn submit_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn shutdown_grace_ms() -> u64 {
        20_000
    }
    pub(super) fn max_connections() -> usize {
        1000
    }
    pub(super) fn max_connections_per_ip() -> usize {
        20
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses() {
        for good in [
            "junk@provider.example",
            "a.b+c@x-y.example",
            "abuse@localhost",
        ] {
            assert!(is_plain_address(good), "{good}");
        }
        for bad in [
            "junk",
            "@provider.example",
            "junk@",
            "junk@ours@evil",
            "\"junk\"@provider.example",
            "junk%evil@provider.example",
            "junk@provider.example.",
            "a..b@provider.example",
            "junk@-x.example",
            "junk@[127.0.0.1]",
            "jünk@provider.example",
        ] {
            assert!(!is_plain_address(bad), "{bad}");
        }
    }
}
