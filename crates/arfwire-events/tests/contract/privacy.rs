//! Complainant privacy: no record carries a complainant address in clear; pseudonyms are
//! stable per key and listed on every event.

use std::path::Path;

use arfwire_events::{
    Channel, Intake, Output, Pseudonymizer, complainant_addresses, derive_with, is_token,
};

use crate::support::{corpus_dir, files_under, fixtures_dir, received_at};

fn derive_path(path: &Path, p: &Pseudonymizer) -> (Vec<String>, Vec<Output>) {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let at = received_at();
    let options = arfwire_parse::ParseOptions {
        received_at_unix: Some(at.timestamp()),
        ..Default::default()
    };
    let outcome = arfwire_parse::parse(&raw, &options);
    let intake = Intake::new(&raw, Channel::File, at).with_file("submission.eml", None);
    let addresses = complainant_addresses(&outcome, &intake);
    (addresses, derive_with(&outcome, &intake, p))
}

fn events(outputs: &[Output]) -> Vec<&arfwire_events::AbuseEventV1> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.as_ref()),
            Output::Rejected(_) => None,
        })
        .collect()
}

#[test]
fn no_record_of_the_corpus_or_fixtures_names_a_complainant() {
    let p = Pseudonymizer::development();
    let mut files = files_under(&corpus_dir());
    files.extend(files_under(&fixtures_dir()));
    files.retain(|f| {
        f.extension()
            .is_some_and(|e| e == "eml" || e == "txt" || e == "msg")
    });
    let mut checked_addresses = 0;
    let mut leaks = Vec::new();
    for path in &files {
        let (addresses, outputs) = derive_path(path, &p);
        let text: String = outputs
            .iter()
            .map(|o| o.to_json_line().to_lowercase())
            .collect::<Vec<_>>()
            .join("\n");
        for address in &addresses {
            checked_addresses += 1;
            // Word-bounded: "a@b.example" inside "xa@b.example" is another address.
            let found = text.match_indices(address.as_str()).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + address.len()..].chars().next();
                let boundary = |c: Option<char>| {
                    c.is_none_or(|c| !(c.is_alphanumeric() || "._%+-".contains(c)))
                };
                boundary(before) && boundary(after)
            });
            if found {
                leaks.push(format!("{}: {address}", path.display()));
            }
        }
        for event in events(&outputs) {
            assert!(
                event.complainant_tokens.iter().all(|t| is_token(t)),
                "{}: {:?}",
                path.display(),
                event.complainant_tokens
            );
        }
    }
    assert!(
        checked_addresses > 100,
        "only {checked_addresses} complainant addresses seen"
    );
    assert!(
        leaks.is_empty(),
        "addresses in clear:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn feedback_recipients_become_stable_tokens() {
    let path = fixtures_dir().join("arf/001-rfc5965-every-field.eml");
    let p = Pseudonymizer::development();
    let (_, outputs) = derive_path(&path, &p);
    let [event] = events(&outputs)[..] else {
        panic!("one event expected");
    };
    let feedback = event.feedback.as_ref().expect("feedback");
    let one = p.token("user.one@feedback.example.org");
    let two = p.token("user.two@feedback.example.org");
    assert_eq!(feedback.original_rcpt_to, [one.clone(), two.clone()]);
    assert!(event.complainant_tokens.starts_with(&[one.clone(), two]));
    let field = feedback
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case("Original-Rcpt-To"))
        .expect("field");
    let bracketed = format!("<{one}>");
    assert_eq!(
        (field.value.as_str(), field.raw.as_str()),
        (bracketed.as_str(), bracketed.as_str())
    );
    // The operator's own From is not a complainant's.
    let from = event.reporter.from.as_ref().expect("from");
    assert_eq!(from.address, "fbl@feedback.example.org");
    // Same key, same tokens; another key, other tokens.
    let (_, again) = derive_path(&path, &p);
    assert_eq!(outputs, again);
    let other = Pseudonymizer::new(&[9u8; 32]).unwrap();
    let (_, keyed) = derive_path(&path, &other);
    assert_ne!(
        events(&keyed)[0].complainant_tokens,
        event.complainant_tokens
    );
    // No raw header block on the wire.
    let json = outputs[0].to_json();
    assert!(
        json["reported_message"]
            .get("header_block_base64")
            .is_none()
    );
    assert_eq!(
        json["reported_message"]["header_block_sha256"]
            .as_str()
            .map(str::len),
        Some(64)
    );
}

#[test]
fn a_person_who_forwards_spam_is_a_token() {
    let path = fixtures_dir().join("forward/001-rfc822-attachment.eml");
    let p = Pseudonymizer::development();
    let (addresses, outputs) = derive_path(&path, &p);
    assert!(
        addresses.contains(&"robin.reporter@example.org".to_owned()),
        "{addresses:?}"
    );
    let [event] = events(&outputs)[..] else {
        panic!("one event expected");
    };
    let robin = p.token("robin.reporter@example.org");
    let from = event.reporter.from.as_ref().expect("from");
    assert_eq!(from.address, robin);
    assert_eq!(from.name, None);
    assert_eq!(from.domain.as_deref(), Some("example.org"));
    assert_eq!(event.complainant_tokens, std::slice::from_ref(&robin));
    assert!(
        event
            .reported_message
            .received
            .iter()
            .any(|r| r.contains(&format!("for <{robin}>"))),
        "{:?}",
        event.reported_message.received
    );
    // The spammer stays in clear: the desk needs the sender.
    let sender = event.reported_message.from.as_ref().expect("sender");
    assert!(!is_token(&sender.address), "{sender:?}");
}
