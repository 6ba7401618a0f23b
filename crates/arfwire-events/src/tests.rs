//! Unit tests of the internals; the contract tests live in `tests/contract/`.

use arfwire_parse::ReportKind;
use chrono::{TimeZone, Utc};
use sha2::Digest as _;

use crate::convert::{clean, rfc3339};
use crate::ids::{hex, sha256_hex};
use crate::{Channel, ComplaintTypeSource, Intake, complaint_type};

#[test]
fn clean_replaces_nul_only() {
    assert_eq!(clean("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
    assert_eq!(clean("line\r\nnext\ttab"), "line\r\nnext\ttab");
    assert_eq!(clean(""), "");
}

#[test]
fn rfc3339_is_utc_with_z() {
    assert_eq!(rfc3339(Some(0)).as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(
        rfc3339(Some(1_281_348_000)).as_deref(),
        Some("2010-08-09T10:00:00Z")
    );
    assert_eq!(rfc3339(None), None);
    assert_eq!(rfc3339(Some(i64::MAX)), None);
}

#[test]
fn hex_is_lower_case() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn intake_new_measures_and_stamps() {
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let intake = Intake::new(b"abc", Channel::Mbox, at).with_file("spool/junk.mbox", Some(3));
    assert_eq!(intake.received_at, "2024-05-01T12:00:00.000Z");
    assert_eq!(
        intake.raw_sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(intake.raw_size, 3);
    assert_eq!(intake.file_path.as_deref(), Some("spool/junk.mbox"));
    assert_eq!(intake.mbox_index, Some(3));
    assert_eq!(intake.mail_from, None);
    assert_eq!(intake.rcpt_to, None);
    assert_eq!(intake.peer_ip, None);

    let lmtp = Intake::new(b"abc", Channel::Lmtp, at).with_envelope(
        Some(String::new()),
        vec!["junk@example.net".to_owned()],
        Some("::ffff:192.0.2.1".parse().unwrap()),
    );
    assert_eq!(lmtp.mail_from.as_deref(), Some(""));
    assert_eq!(lmtp.rcpt_to, Some(vec!["junk@example.net".to_owned()]));
    assert_eq!(lmtp.peer_ip, Some("192.0.2.1".parse().unwrap()));

    let digest: [u8; 32] = sha2::Sha256::digest(b"abc").into();
    let streamed =
        Intake::from_digest(digest, 3, Channel::Mbox, at).with_file("spool/junk.mbox", Some(3));
    assert_eq!(streamed, intake);
}

#[test]
fn complaint_type_prefers_feedback_type() {
    let mut feedback = arfwire_parse::FeedbackReport {
        feedback_type: Some("fraud".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        complaint_type(ReportKind::Arf, Some(&feedback)),
        ("fraud".to_owned(), ComplaintTypeSource::FeedbackType)
    );
    feedback.feedback_type = Some("  ".to_owned());
    assert_eq!(
        complaint_type(ReportKind::Arf, Some(&feedback)),
        ("abuse".to_owned(), ComplaintTypeSource::ImpliedByKind)
    );
    assert_eq!(
        complaint_type(ReportKind::AuthFailure, None),
        (
            "auth-failure".to_owned(),
            ComplaintTypeSource::ImpliedByKind
        )
    );
    assert_eq!(
        complaint_type(ReportKind::ForwardInline, None),
        ("abuse".to_owned(), ComplaintTypeSource::ImpliedByKind)
    );
}
