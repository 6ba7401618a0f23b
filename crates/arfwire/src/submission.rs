//! What both commands do with one input: choose its receive time, describe its intake, parse
//! it, and turn a refusal by the intake into a parser-style rejection.

use std::time::SystemTime;

use arfwire_events::{Channel, Intake};
use arfwire_intake::Origin;
use arfwire_parse::{Limits, Outcome, ParseOptions, RejectReason, Rejection};
use chrono::{DateTime, Utc};

/// The receive time of a submission: the one given on the command line, else the file's
/// modification time, else now.
pub(crate) fn received_at(
    given: Option<DateTime<Utc>>,
    modified: Option<SystemTime>,
) -> DateTime<Utc> {
    given
        .or_else(|| modified.map(DateTime::<Utc>::from))
        .unwrap_or_else(Utc::now)
}

fn channel(origin: &Origin) -> Channel {
    match origin {
        Origin::File { .. } => Channel::File,
        Origin::Maildir { .. } => Channel::Maildir,
        Origin::Mbox { .. } => Channel::Mbox,
    }
}

/// The intake facts of bytes read from `origin`.
pub(crate) fn intake(origin: &Origin, raw: &[u8], received_at: DateTime<Utc>) -> Intake {
    Intake::new(raw, channel(origin), received_at).with_file(
        origin.path().to_string_lossy().into_owned(),
        origin.mbox_index(),
    )
}

/// Parse one submission received at `received_at`.
pub(crate) fn parse(raw: &[u8], received_at: DateTime<Utc>) -> Outcome {
    let options = ParseOptions {
        limits: Limits::default(),
        received_at_unix: Some(received_at.timestamp()),
    };
    arfwire_parse::parse(raw, &options)
}

/// An input the intake refused as too large, as the parser would have refused it, with
/// intake facts naming its bytes by the digest the intake computed while streaming them.
pub(crate) fn too_large(
    origin: &Origin,
    size: u64,
    limit: u64,
    sha256: [u8; 32],
    received_at: DateTime<Utc>,
) -> (Outcome, Intake) {
    let mut intake = intake(origin, &[], received_at);
    intake.raw_sha256 = hex(&sha256);
    intake.raw_size = size;
    let outcome = Outcome::Rejected(Rejection {
        reason: RejectReason::TooLarge,
        detail: format!("submission is {size} bytes; the limit is {limit} bytes"),
        diagnostics: Vec::new(),
    });
    (outcome, intake)
}

/// Lower-case hex, as the intake's `raw_sha256` is written.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_large_intake_carries_the_streamed_digest_and_size() {
        let origin = Origin::Mbox {
            path: "big.mbox".into(),
            index: 4,
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("valid time");
        // The digest of the empty input, so the expected hex is well known.
        let (outcome, intake) = too_large(&origin, 99, 10, empty_sha256(), at);
        assert_eq!(
            intake.raw_sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(intake.raw_size, 99);
        assert_eq!(intake.channel, Channel::Mbox);
        assert_eq!(intake.mbox_index, Some(4));
        assert_eq!(intake.file_path.as_deref(), Some("big.mbox"));
        assert!(matches!(
            outcome,
            Outcome::Rejected(Rejection {
                reason: RejectReason::TooLarge,
                ..
            })
        ));
    }

    fn empty_sha256() -> [u8; 32] {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex digit pair");
        }
        out
    }

    #[test]
    fn the_given_receive_time_wins_then_the_modification_time() {
        let given = DateTime::from_timestamp(1_000, 0).expect("valid time");
        let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000);
        assert_eq!(received_at(Some(given), Some(modified)), given);
        assert_eq!(received_at(None, Some(modified)).timestamp(), 2_000);
        let now = received_at(None, None);
        assert!((Utc::now() - now).num_seconds().abs() < 60);
    }
}
