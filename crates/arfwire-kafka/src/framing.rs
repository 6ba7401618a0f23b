//! Framing of `abuse.raw.v1` records.
//!
//! * **value**: the submission bytes exactly as received, nothing added;
//! * **key**: the lower-case hex SHA-256 of the bytes, so identical re-deliveries land on
//!   one partition next to each other;
//! * **headers**: the intake facts, one UTF-8 header each (names in [`header`]):
//!
//! | header | value | presence |
//! |---|---|---|
//! | `arfwire-schema` | `arfwire.raw.v1` | always |
//! | `arfwire-channel` | `lmtp`, `smtp`, `maildir`, `imap`, `file` | always |
//! | `arfwire-received-at` | RFC 3339, UTC, `Z`, sub-second digits as needed | always |
//! | `arfwire-sha256` | 64 lower-case hex digits of the value's SHA-256 | always |
//! | `arfwire-mail-from` | `MAIL FROM` without angle brackets; empty for `<>` | when the envelope has one |
//! | `arfwire-rcpt-to` | one header per accepted recipient, in order | per recipient |
//! | `arfwire-peer-ip` | the client's IP address | when known |
//! | `arfwire-helo` | the client's HELO/EHLO/LHLO name | when known |
//! | `arfwire-source` | path or `mailbox/uid` of mailbox and file channels | when known |
//!
//! Header values never contain CR, LF or NUL: [`encode_raw`] refuses such values and
//! [`decode_raw`] refuses records that carry them. Decoding checks the SHA-256 header (and
//! the key, when present) against the value, so a record whose bytes were altered is never
//! processed under the wrong identity. Headers not named here are ignored, so later
//! versions can add facts without breaking older workers.
//!
//! The record timestamp is left to the producer (the send time): a backfill of old files
//! must not produce records that time-based retention deletes at once.

use std::net::IpAddr;

use arfwire_raw::{Channel, Envelope, RawSubmission, sha256_hex};
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// Value of the `arfwire-schema` header of raw records.
pub const RAW_SCHEMA: &str = "arfwire.raw.v1";

/// Header names of raw records (and of the DLQ records that carry them).
pub mod header {
    /// Framing version: [`super::RAW_SCHEMA`].
    pub const SCHEMA: &str = "arfwire-schema";
    /// Intake channel.
    pub const CHANNEL: &str = "arfwire-channel";
    /// Receive time, RFC 3339.
    pub const RECEIVED_AT: &str = "arfwire-received-at";
    /// SHA-256 of the value, lower-case hex.
    pub const SHA256: &str = "arfwire-sha256";
    /// Envelope sender.
    pub const MAIL_FROM: &str = "arfwire-mail-from";
    /// Envelope recipient, one header each.
    pub const RCPT_TO: &str = "arfwire-rcpt-to";
    /// Peer IP address.
    pub const PEER_IP: &str = "arfwire-peer-ip";
    /// HELO/EHLO/LHLO name.
    pub const HELO: &str = "arfwire-helo";
    /// Mailbox or file source.
    pub const SOURCE: &str = "arfwire-source";
    /// DLQ: the last processing error.
    pub const ERROR: &str = "arfwire-error";
    /// DLQ: how many processing attempts were made.
    pub const ATTEMPTS: &str = "arfwire-attempts";
    /// DLQ: when processing first failed, RFC 3339.
    pub const FIRST_FAILED_AT: &str = "arfwire-first-failed-at";
    /// DLQ: the raw topic the record was read from.
    pub const ORIGINAL_TOPIC: &str = "arfwire-original-topic";
    /// DLQ: the partition the record was read from.
    pub const ORIGINAL_PARTITION: &str = "arfwire-original-partition";
    /// DLQ: the offset the record was read from.
    pub const ORIGINAL_OFFSET: &str = "arfwire-original-offset";
}

/// One Kafka header. A `None` value is Kafka's null header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: Option<Vec<u8>>,
}

impl HeaderField {
    /// A header with a text value.
    pub fn text(key: impl Into<String>, value: impl Into<String>) -> Self {
        HeaderField {
            key: key.into(),
            value: Some(value.into().into_bytes()),
        }
    }
}

/// Copy the headers of a message, in order.
pub fn headers_of<M: Message>(message: &M) -> Vec<HeaderField> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| HeaderField {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Build librdkafka headers from a list.
pub fn to_owned_headers(fields: &[HeaderField]) -> OwnedHeaders {
    fields
        .iter()
        .fold(OwnedHeaders::new_with_capacity(fields.len()), |acc, h| {
            acc.insert(Header {
                key: &h.key,
                value: h.value.as_deref(),
            })
        })
}

/// A raw record ready to send: key, headers and the borrowed submission bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRaw<'a> {
    /// Record key: the SHA-256 of the bytes, lower-case hex.
    pub key: String,
    /// The intake facts as headers, in the order of the table in the module docs.
    pub headers: Vec<HeaderField>,
    /// Record value: the submission bytes.
    pub payload: &'a [u8],
}

impl EncodedRaw<'_> {
    /// The headers in librdkafka's form.
    pub fn owned_headers(&self) -> OwnedHeaders {
        to_owned_headers(&self.headers)
    }

    /// Bytes the record occupies, roughly as the broker counts them (value, key, headers).
    pub fn size(&self) -> usize {
        self.payload.len()
            + self.key.len()
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }
}

/// A submission whose intake facts cannot be written as headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot frame the submission: header {header} {reason}")]
pub struct EncodeError {
    /// The header concerned.
    pub header: &'static str,
    /// What is wrong with its value.
    pub reason: &'static str,
}

/// Frame a submission for the raw topic. Fails only when an intake fact contains CR, LF
/// or NUL, which a well-behaved intake channel never hands over.
pub fn encode_raw(submission: &RawSubmission) -> Result<EncodedRaw<'_>, EncodeError> {
    let sha256 = submission.sha256_hex();
    let mut headers = Vec::with_capacity(8 + submission.envelope.rcpt_to.len());
    let mut push = |name: &'static str, value: &str| -> Result<(), EncodeError> {
        check_value(value).map_err(|reason| EncodeError {
            header: name,
            reason,
        })?;
        headers.push(HeaderField::text(name, value));
        Ok(())
    };
    push(header::SCHEMA, RAW_SCHEMA)?;
    push(header::CHANNEL, submission.channel.as_str())?;
    push(
        header::RECEIVED_AT,
        &submission
            .received_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )?;
    push(header::SHA256, &sha256)?;
    let envelope = &submission.envelope;
    if let Some(mail_from) = &envelope.mail_from {
        push(header::MAIL_FROM, mail_from)?;
    }
    for rcpt in &envelope.rcpt_to {
        push(header::RCPT_TO, rcpt)?;
    }
    if let Some(ip) = envelope.peer_ip {
        push(header::PEER_IP, &ip.to_string())?;
    }
    if let Some(helo) = &envelope.helo {
        push(header::HELO, helo)?;
    }
    if let Some(source) = &submission.source {
        push(header::SOURCE, source)?;
    }
    Ok(EncodedRaw {
        key: sha256,
        headers,
        payload: &submission.bytes,
    })
}

/// Why a raw record could not be turned back into a submission. Such a record is not
/// retried: the worker sends it to the DLQ as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value (a tombstone).
    #[error("the record has no value")]
    MissingPayload,
    /// A required header is absent.
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// A header that may appear once appears several times.
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    /// A header value is not acceptable.
    #[error("header {header} is invalid: {reason}")]
    InvalidHeader {
        /// The header concerned.
        header: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The framing version is not one this release reads.
    #[error("unsupported raw schema {0:?}")]
    UnknownSchema(String),
    /// The value's SHA-256 differs from the `arfwire-sha256` header or from the key.
    #[error("the value's SHA-256 is {computed}, but the record claims {claimed}")]
    Sha256Mismatch {
        /// The digest the record claims.
        claimed: String,
        /// The digest of the value.
        computed: String,
    },
}

/// Read a raw record back. Verifies the schema header and the SHA-256 of the value.
pub fn decode_raw<M: Message>(message: &M) -> Result<RawSubmission, DecodeError> {
    let headers = headers_of(message);
    decode_raw_parts(message.key(), &headers, message.payload())
}

/// [`decode_raw`] on the parts of a record.
pub fn decode_raw_parts(
    key: Option<&[u8]>,
    headers: &[HeaderField],
    payload: Option<&[u8]>,
) -> Result<RawSubmission, DecodeError> {
    let payload = payload.ok_or(DecodeError::MissingPayload)?;
    let fields = Fields { headers };

    let schema = fields.required(header::SCHEMA)?;
    if schema != RAW_SCHEMA {
        return Err(DecodeError::UnknownSchema(schema.to_owned()));
    }
    let channel_text = fields.required(header::CHANNEL)?;
    let channel = Channel::parse(channel_text).ok_or_else(|| DecodeError::InvalidHeader {
        header: header::CHANNEL,
        reason: format!("unknown channel {channel_text:?}"),
    })?;
    let received_text = fields.required(header::RECEIVED_AT)?;
    let received_at = DateTime::parse_from_rfc3339(received_text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| DecodeError::InvalidHeader {
            header: header::RECEIVED_AT,
            reason: format!("not RFC 3339: {error}"),
        })?;
    let claimed = fields.required(header::SHA256)?;
    let computed = sha256_hex(payload);
    if claimed != computed {
        return Err(DecodeError::Sha256Mismatch {
            claimed: claimed.to_owned(),
            computed,
        });
    }
    if let Some(key) = key
        && key != computed.as_bytes()
    {
        return Err(DecodeError::Sha256Mismatch {
            claimed: String::from_utf8_lossy(key).into_owned(),
            computed,
        });
    }

    let peer_ip = fields
        .optional(header::PEER_IP)?
        .map(|text| {
            text.parse::<IpAddr>()
                .map_err(|error| DecodeError::InvalidHeader {
                    header: header::PEER_IP,
                    reason: format!("not an IP address: {error}"),
                })
        })
        .transpose()?;
    let envelope = Envelope {
        mail_from: fields.optional(header::MAIL_FROM)?.map(str::to_owned),
        rcpt_to: fields
            .all(header::RCPT_TO)?
            .into_iter()
            .map(str::to_owned)
            .collect(),
        peer_ip,
        helo: fields.optional(header::HELO)?.map(str::to_owned),
    };
    Ok(RawSubmission {
        bytes: payload.to_vec(),
        channel,
        received_at,
        envelope,
        source: fields.optional(header::SOURCE)?.map(str::to_owned),
    })
}

/// Header lookup with the value rules applied.
struct Fields<'a> {
    headers: &'a [HeaderField],
}

impl<'a> Fields<'a> {
    /// Every value of `name`, in order. A null value reads as empty text.
    fn all(&self, name: &'static str) -> Result<Vec<&'a str>, DecodeError> {
        self.headers
            .iter()
            .filter(|h| h.key == name)
            .map(|h| {
                let bytes = h.value.as_deref().unwrap_or_default();
                let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidHeader {
                    header: name,
                    reason: "not UTF-8".to_owned(),
                })?;
                check_value(text).map_err(|reason| DecodeError::InvalidHeader {
                    header: name,
                    reason: reason.to_owned(),
                })?;
                Ok(text)
            })
            .collect()
    }

    fn optional(&self, name: &'static str) -> Result<Option<&'a str>, DecodeError> {
        let values = self.all(name)?;
        match values.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(DecodeError::DuplicateHeader(name)),
        }
    }

    fn required(&self, name: &'static str) -> Result<&'a str, DecodeError> {
        self.optional(name)?.ok_or(DecodeError::MissingHeader(name))
    }
}

/// The rule for every header value arfwire writes or reads.
pub(crate) fn check_value(value: &str) -> Result<(), &'static str> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        Err("contains CR, LF or NUL")
    } else {
        Ok(())
    }
}

/// Replace CR, LF and NUL so that free text (an error message) fits in a header, and cut it
/// to at most `max` bytes on a character boundary.
pub(crate) fn header_safe_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for c in text.chars() {
        let c = if matches!(c, '\r' | '\n' | '\0') {
            ' '
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}
