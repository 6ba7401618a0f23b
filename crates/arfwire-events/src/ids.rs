//! Deterministic identifiers: the same submission bytes give the same ids, forever.
//!
//! Every id is a UUID in the version 8 (custom) layout of RFC 9562, made from a SHA-256
//! digest over a domain-separation prefix and the submission's SHA-256:
//!
//! ```text
//! name   = "<prefix>:" + raw_sha256_hex (64 lower-case hex digits) [+ ":" + index in decimal]
//! digest = SHA-256(UTF-8 bytes of name)
//! bytes  = digest[0..16]
//! bytes[6] = (bytes[6] & 0x0f) | 0x80      -- version 8
//! bytes[8] = (bytes[8] & 0x3f) | 0x80      -- RFC 9562 variant
//! id     = bytes as a lower-case hyphenated UUID string
//! ```
//!
//! | id | prefix | index |
//! |---|---|---|
//! | `event_id` | `arfwire.event-id.v1` | the reported message's zero-based index |
//! | `submission_id` | `arfwire.submission-id.v1` | none |
//! | `rejection_id` | `arfwire.rejection-id.v1` | none |
//!
//! The `v1` in a prefix is the version of the id scheme, not of the event schema: a later
//! event schema keeps these ids so that consumers can correlate across versions.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Domain-separation prefix for event ids.
pub const EVENT_ID_PREFIX: &str = "arfwire.event-id.v1";
/// Domain-separation prefix for submission ids.
pub const SUBMISSION_ID_PREFIX: &str = "arfwire.submission-id.v1";
/// Domain-separation prefix for rejection ids.
pub const REJECTION_ID_PREFIX: &str = "arfwire.rejection-id.v1";

/// Lower-case hex of some bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Lower-case hex SHA-256 of some bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The UUID (version 8 layout) for a name: the first 16 bytes of its SHA-256, with the
/// version and variant bits set.
fn uuid_v8_for(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // `new_v8` sets the version nibble (byte 6) to 8 and the variant bits (byte 8) to 0b10.
    Uuid::new_v8(bytes)
        .hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// The submission's hex SHA-256 as the id scheme reads it: trimmed, ASCII lower case.
fn normalise_hex(raw_sha256_hex: &str) -> String {
    raw_sha256_hex.trim().to_ascii_lowercase()
}

/// The id of the reported message at `index` (zero-based) of the submission whose SHA-256
/// is `raw_sha256_hex`: a UUID (version 8 layout) over
/// `"arfwire.event-id.v1:" + raw_sha256_hex + ":" + index`. See the module docs.
pub fn event_id(raw_sha256_hex: &str, index: usize) -> String {
    uuid_v8_for(&format!(
        "{EVENT_ID_PREFIX}:{}:{index}",
        normalise_hex(raw_sha256_hex)
    ))
}

/// The id of a submission: a UUID (version 8 layout) over
/// `"arfwire.submission-id.v1:" + raw_sha256_hex`. Shared by every event and the rejection
/// record a submission yields, so consumers can group them.
pub fn submission_id(raw_sha256_hex: &str) -> String {
    uuid_v8_for(&format!(
        "{SUBMISSION_ID_PREFIX}:{}",
        normalise_hex(raw_sha256_hex)
    ))
}

/// The id of the rejection record of a submission: a UUID (version 8 layout) over
/// `"arfwire.rejection-id.v1:" + raw_sha256_hex`.
pub fn rejection_id(raw_sha256_hex: &str) -> String {
    uuid_v8_for(&format!(
        "{REJECTION_ID_PREFIX}:{}",
        normalise_hex(raw_sha256_hex)
    ))
}
