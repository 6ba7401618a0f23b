//! The raw submission that every intake channel (LMTP/SMTP front door, Maildir watcher, IMAP
//! poller, file backfill) hands to the durable log, and the [`Submitter`] interface it hands
//! it through.
//!
//! The contract that makes "nothing lost" hold: an intake channel acknowledges a submission
//! to its source (a `250` reply, moving a Maildir file out of `new/`, flagging an IMAP
//! message) **only after** [`Submitter::submit`] returned `Ok`, which means the bytes are
//! durable (for Kafka: acknowledged by all in-sync replicas through an idempotent producer).
//! An `Err` is always safe to retry; the source keeps the message.

use std::future::Future;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Which channel a submission came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// An LMTP session (RFC 2033), e.g. from the provider's MTA.
    Lmtp,
    /// A direct SMTP session.
    Smtp,
    /// A Maildir folder.
    Maildir,
    /// An IMAP mailbox.
    Imap,
    /// A file or mbox (backfill).
    File,
}

impl Channel {
    /// Stable identifier, as in the events' `intake.channel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Lmtp => "lmtp",
            Channel::Smtp => "smtp",
            Channel::Maildir => "maildir",
            Channel::Imap => "imap",
            Channel::File => "file",
        }
    }

    /// Parse [`Channel::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "lmtp" => Channel::Lmtp,
            "smtp" => Channel::Smtp,
            "maildir" => Channel::Maildir,
            "imap" => Channel::Imap,
            "file" => Channel::File,
            _ => return None,
        })
    }
}

/// The SMTP envelope, when the channel has one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// `MAIL FROM` address (empty for the null reverse-path).
    pub mail_from: Option<String>,
    /// Accepted `RCPT TO` addresses, in order.
    pub rcpt_to: Vec<String>,
    /// The connecting client's IP.
    pub peer_ip: Option<IpAddr>,
    /// The client's HELO/EHLO/LHLO name.
    pub helo: Option<String>,
}

/// One submission, byte-exact as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSubmission {
    /// The message bytes exactly as received (dot-unstuffed for SMTP/LMTP).
    pub bytes: Vec<u8>,
    /// Channel.
    pub channel: Channel,
    /// When we received it.
    pub received_at: DateTime<Utc>,
    /// SMTP envelope, for the SMTP and LMTP channels.
    pub envelope: Envelope,
    /// Where it came from, for mailbox and file channels (path, `mailbox/uid`).
    pub source: Option<String>,
}

impl RawSubmission {
    /// A submission received at `received_at` (the caller reads the clock).
    pub fn new(bytes: Vec<u8>, channel: Channel, received_at: DateTime<Utc>) -> Self {
        RawSubmission {
            bytes,
            channel,
            received_at,
            envelope: Envelope::default(),
            source: None,
        }
    }

    /// Lower-case hex SHA-256 of the bytes: the submission's identity everywhere.
    pub fn sha256_hex(&self) -> String {
        sha256_hex(&self.bytes)
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Why a submission was not made durable. Always safe to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// The log is unavailable or did not acknowledge in time: try again later (SMTP 451).
    Unavailable(String),
    /// The submission is larger than the log accepts (SMTP 552).
    TooLarge(String),
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::Unavailable(why) => write!(f, "the durable log is unavailable: {why}"),
            SubmitError::TooLarge(why) => write!(f, "the submission is too large: {why}"),
        }
    }
}

impl std::error::Error for SubmitError {}

/// Makes submissions durable. Implemented by the Kafka producer (and by test doubles).
pub trait Submitter: Send + Sync {
    /// Return `Ok` only once the submission is durable.
    fn submit(
        &self,
        submission: RawSubmission,
    ) -> impl Future<Output = Result<(), SubmitError>> + Send;
}
