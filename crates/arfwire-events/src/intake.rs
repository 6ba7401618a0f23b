//! How a submission reached arfwire: the `intake` object of every event and rejection.

use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::convert::clean;
use crate::ids::{hex, sha256_hex};

/// The channel a submission arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A single file given on the command line or found in a directory.
    File,
    /// A message file in a Maildir (`cur/` or `new/`).
    Maildir,
    /// One message of an mbox file.
    Mbox,
    /// Delivered over LMTP.
    Lmtp,
    /// Received over SMTP.
    Smtp,
    /// Fetched from an IMAP mailbox.
    Imap,
}

impl Channel {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::File => "file",
            Channel::Maildir => "maildir",
            Channel::Mbox => "mbox",
            Channel::Lmtp => "lmtp",
            Channel::Smtp => "smtp",
            Channel::Imap => "imap",
        }
    }

    /// Every channel, in wire order.
    pub const ALL: [Channel; 6] = [
        Channel::File,
        Channel::Maildir,
        Channel::Mbox,
        Channel::Lmtp,
        Channel::Smtp,
        Channel::Imap,
    ];
}

/// How and when a submission arrived, and which bytes it was. Shared, unchanged, by every
/// event and by the rejection record a submission yields.
///
/// Every field is always serialised; facts a channel does not have are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intake {
    /// The channel it arrived on.
    pub channel: Channel,
    /// When arfwire received it: RFC 3339, UTC, millisecond precision
    /// (`2024-05-01T12:00:00.000Z`).
    pub received_at: String,
    /// SHA-256 of the raw submission bytes, 64 lower-case hex digits. Every id is derived
    /// from it.
    pub raw_sha256: String,
    /// Size of the raw submission in bytes.
    pub raw_size: u64,
    /// The path of the file it was read from (`file`, `maildir`, `mbox`), as given.
    pub file_path: Option<String>,
    /// Zero-based position of the message within its mbox file (`mbox` only).
    pub mbox_index: Option<u64>,
    /// The SMTP/LMTP envelope sender (`MAIL FROM`), angle brackets removed; an empty
    /// string is the null reverse-path `<>`. `null` when the channel has no envelope.
    pub mail_from: Option<String>,
    /// The SMTP/LMTP envelope recipients (`RCPT TO`), angle brackets removed, in order.
    /// `null` when the channel has no envelope.
    pub rcpt_to: Option<Vec<String>>,
    /// The IP address of the peer that delivered it (`lmtp`, `smtp`). `null` otherwise.
    pub peer_ip: Option<IpAddr>,
}

impl Intake {
    /// The intake of `raw`, received on `channel` at `received_at`: hashes and measures the
    /// bytes. File and envelope facts start out `null`; add them with [`Intake::with_file`]
    /// and [`Intake::with_envelope`].
    pub fn new(raw: &[u8], channel: Channel, received_at: DateTime<Utc>) -> Self {
        Intake {
            channel,
            received_at: received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            raw_sha256: sha256_hex(raw),
            raw_size: u64::try_from(raw.len()).unwrap_or(u64::MAX),
            file_path: None,
            mbox_index: None,
            mail_from: None,
            rcpt_to: None,
            peer_ip: None,
        }
    }

    /// The intake of a submission known only by its digest and size, for input that was
    /// streamed and refused without being held in memory (too large). Same as
    /// [`Intake::new`] otherwise.
    pub fn from_digest(
        raw_sha256: [u8; 32],
        raw_size: u64,
        channel: Channel,
        received_at: DateTime<Utc>,
    ) -> Self {
        Intake {
            raw_sha256: hex(&raw_sha256),
            raw_size,
            ..Intake::new(&[], channel, received_at)
        }
    }

    /// Record the file the submission was read from and, for mbox, its zero-based position
    /// in the file.
    pub fn with_file(mut self, path: impl Into<String>, mbox_index: Option<u64>) -> Self {
        self.file_path = Some(clean(&path.into()));
        self.mbox_index = mbox_index;
        self
    }

    /// Record the SMTP/LMTP envelope and the delivering peer. `mail_from` is the reverse
    /// path without angle brackets (`Some("")` for `<>`).
    pub fn with_envelope(
        mut self,
        mail_from: Option<String>,
        rcpt_to: Vec<String>,
        peer_ip: Option<IpAddr>,
    ) -> Self {
        self.mail_from = mail_from.as_deref().map(clean);
        self.rcpt_to = Some(rcpt_to.iter().map(|r| clean(r)).collect());
        self.peer_ip = peer_ip.map(|ip| ip.to_canonical());
        self
    }
}
