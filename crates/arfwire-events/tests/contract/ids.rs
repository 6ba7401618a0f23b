//! Ids are deterministic, distinct, valid UUIDs, and pinned to golden values so the
//! derivation can never change silently.

use std::collections::BTreeSet;

use arfwire_events::{Channel, Intake, event_id, rejection_id, submission_id};
use uuid::Uuid;

use crate::support::received_at;

/// The submission of the golden values: these exact bytes.
const GOLDEN_INPUT: &[u8] = b"From: reporter@example.net\r\nSubject: spam\r\n\r\nbody\r\n";

fn golden_sha256() -> String {
    Intake::new(GOLDEN_INPUT, Channel::File, received_at()).raw_sha256
}

#[test]
fn golden_values_are_pinned() {
    // Changing any of these breaks every consumer's de-duplication: never update them.
    // They were computed independently of this crate from the documented derivation.
    let sha = golden_sha256();
    assert_eq!(
        sha,
        "3c8502541ff9aa79ecf26e07b130f1c424f262a03ee96f3eee6312459bd0e70d"
    );
    assert_eq!(event_id(&sha, 0), "f2b37e9b-b1e4-811f-80d4-c7a8d92738eb");
    assert_eq!(event_id(&sha, 1), "3ae8727e-85f9-8e84-928e-dcca268d3af0");
    assert_eq!(submission_id(&sha), "887947d2-23f3-8bdc-941a-08bc1c0203fb");
    assert_eq!(rejection_id(&sha), "8f9a4475-1eaf-860b-903e-786de46017a0");
}

#[test]
fn ids_are_deterministic() {
    let sha = golden_sha256();
    assert_eq!(event_id(&sha, 7), event_id(&sha, 7));
    assert_eq!(submission_id(&sha), submission_id(&sha));
    assert_eq!(rejection_id(&sha), rejection_id(&sha));
    // The hex is read case-insensitively and trimmed.
    assert_eq!(event_id(&sha.to_ascii_uppercase(), 7), event_id(&sha, 7));
    assert_eq!(event_id(&format!(" {sha}\n"), 7), event_id(&sha, 7));
}

#[test]
fn ids_are_distinct() {
    let sha = golden_sha256();
    let other = Intake::new(b"other bytes", Channel::File, received_at()).raw_sha256;
    let mut seen = BTreeSet::new();
    for index in 0..1_000 {
        assert!(seen.insert(event_id(&sha, index)), "index {index} repeats");
    }
    for id in [
        submission_id(&sha),
        rejection_id(&sha),
        event_id(&other, 0),
        submission_id(&other),
        rejection_id(&other),
    ] {
        assert!(seen.insert(id.clone()), "{id} repeats");
    }
}

#[test]
fn ids_are_version_8_uuids() {
    let sha = golden_sha256();
    for id in [
        event_id(&sha, 0),
        event_id(&sha, 99),
        submission_id(&sha),
        rejection_id(&sha),
    ] {
        let uuid = Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(uuid.get_version_num(), 8, "{id}");
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        assert_eq!(
            uuid.hyphenated().to_string(),
            id,
            "{id} is not lower-case hyphenated"
        );
    }
}

#[test]
fn ids_do_not_depend_on_intake_facts() {
    let at = received_at();
    let a = Intake::new(GOLDEN_INPUT, Channel::File, at).with_file("a.eml", None);
    let b = Intake::new(GOLDEN_INPUT, Channel::Mbox, at + chrono::Duration::days(3))
        .with_file("spool/b.mbox", Some(9));
    let outcome = arfwire_parse::parse(GOLDEN_INPUT, &Default::default());
    let ids = |intake: &Intake| -> Vec<String> {
        arfwire_events::derive(&outcome, intake)
            .iter()
            .map(|o| o.event_id().to_owned())
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
}
