//! Which addresses in a submission are complainants', and how records are pseudonymised.
//!
//! A complainant is the person who received the reported message and complained about it.
//! Their addresses are:
//!
//! * the feedback report's `Original-Rcpt-To` and `Removal-Recipient` (and extension fields
//!   naming a recipient, such as `Redacted-Address`);
//! * the reported message's recipient fields: `To`, `Cc`, `Bcc`, `Delivered-To`,
//!   `X-HmXmrOriginalRecipient`, `X-Original-To`, `Envelope-To`, ... (see
//!   [`RECIPIENT_FIELDS`]) and the `for` clause of its `Received` fields;
//! * when a person reported (a forward, pasted headers, a redirect): the submission's own
//!   `From` and `Resent-From`, and the envelope sender; when a feedback report was sent from
//!   one of the addresses above, its `From` too.
//!
//! Records carry these only as tokens ([`crate::Pseudonymizer`]); every other string in the
//! record is searched for them as well (a subject that names the recipient, a feedback field).
//! `Received` and provider header values are tokenised wholesale (every address in them), and
//! attribution evidence text is masked (see [`crate::AttributionV1`]).

use std::collections::HashMap;

use arfwire_parse::{ReportKind, ReportedItem, SubmissionHeader};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::intake::Intake;
use crate::pseudonym::{Pseudonymizer, addresses_in, normalise, replace_known};
use crate::v1::{AbuseEventV1, MailboxV1, RejectedV1};

/// Header fields of a reported message that name its recipients (lower case).
pub const RECIPIENT_FIELDS: &[&str] = &[
    "to",
    "cc",
    "bcc",
    "delivered-to",
    "x-hmxmroriginalrecipient",
    "x-original-to",
    "x-original-recipient",
    "original-recipient",
    "envelope-to",
    "x-envelope-to",
    "x-rcpt-to",
    "x-apparently-to",
    "apparently-to",
    "resent-to",
    "resent-cc",
    "x-ms-exchange-organization-originalenveloperecipients",
    "x-forwarded-to",
    "x-delivered-to",
];

/// Feedback-report field names whose values are complainant addresses (lower case).
const FEEDBACK_RECIPIENT_FIELDS: &[&str] =
    &["original-rcpt-to", "removal-recipient", "redacted-address"];

/// Most complainant tokens listed on one event.
pub const MAX_COMPLAINANT_TOKENS: usize = 100;

/// Kinds of report a person makes by hand (as opposed to a feedback-loop operator).
pub fn reported_by_a_person(kind: ReportKind) -> bool {
    matches!(
        kind,
        ReportKind::ForwardAttachment
            | ReportKind::ForwardInline
            | ReportKind::HeadersOnly
            | ReportKind::Redirect
    )
}

/// The addresses named after `for` in one `Received` value (up to the `;` that starts the date).
fn received_for(received: &str) -> Vec<&str> {
    let lower = received.to_ascii_lowercase();
    let mut out = Vec::new();
    let bytes = lower.as_bytes();
    let mut from = 0;
    while let Some(rel) = lower[from..].find("for") {
        let at = from + rel;
        from = at + 3;
        let before_ok = at == 0 || bytes[at - 1].is_ascii_whitespace() || bytes[at - 1] == b'(';
        let after_ok = bytes.get(at + 3).is_some_and(|b| b.is_ascii_whitespace());
        if !(before_ok && after_ok) {
            continue;
        }
        let rest = &received[at + 3..];
        let clause = rest.split(';').next().unwrap_or(rest);
        out.extend(addresses_in(clause));
    }
    out
}

/// Complainant addresses in order of discovery, each once (by normalised form).
#[derive(Debug, Default)]
struct Found {
    order: Vec<String>,
}

impl Found {
    fn add(&mut self, address: &str) {
        let normal = normalise(address);
        if normal.is_empty() || self.order.contains(&normal) {
            return;
        }
        self.order.push(normal);
    }

    fn contains(&self, address: &str) -> bool {
        self.order.contains(&normalise(address))
    }
}

fn add_all(found: &mut Found, value: &str) {
    for a in addresses_in(value) {
        found.add(a);
    }
}

/// A complainant field's value as published: every address in it replaced by its pseudonym
/// (a plain address becomes exactly its token); a value without an address (`redacted`,
/// `<>`, a bare local part) stays as written: there is nothing to correlate on.
fn complainant_value(value: &str, p: &Pseudonymizer) -> String {
    p.tokenise_all(value).into_owned()
}

fn submission_person_addresses(envelope: &SubmissionHeader, intake: &Intake, found: &mut Found) {
    if let Some(from) = &envelope.from {
        found.add(&from.address);
    }
    if let Some(resent) = &envelope.resent_from {
        found.add(&resent.address);
    }
    if let Some(mail_from) = intake.mail_from.as_deref().filter(|m| !m.is_empty()) {
        found.add(mail_from);
    }
}

/// Every complainant address of one reported message, normalised, in order.
fn item_addresses(
    kind: ReportKind,
    envelope: &SubmissionHeader,
    item: &ReportedItem,
    intake: &Intake,
) -> Found {
    let mut found = Found::default();
    if let Some(feedback) = &item.feedback {
        for value in feedback
            .original_rcpt_to
            .iter()
            .chain(&feedback.removal_recipient)
        {
            add_all(&mut found, value);
        }
        for (name, values) in &feedback.extensions {
            let lower = name.to_ascii_lowercase();
            if FEEDBACK_RECIPIENT_FIELDS.contains(&lower.as_str())
                || lower.contains("rcpt")
                || lower.contains("recipient")
            {
                for value in values {
                    add_all(&mut found, value);
                }
            }
        }
    }
    for field in &item.message.fields {
        let lower = field.name.to_ascii_lowercase();
        if RECIPIENT_FIELDS.contains(&lower.as_str()) {
            for a in addresses_in(&field.value) {
                found.add(a);
            }
        }
    }
    for received in &item.message.received {
        for a in received_for(received) {
            found.add(a);
        }
    }
    // The abuse mailbox's own addresses (the envelope recipients of the submission) name
    // us, not a complainant: a redirected message's To is junk@ itself.
    if let Some(ours) = &intake.rcpt_to {
        let ours: Vec<String> = ours.iter().map(|r| normalise(r)).collect();
        found.order.retain(|a| !ours.contains(a));
    }
    if reported_by_a_person(kind) {
        submission_person_addresses(envelope, intake, &mut found);
    } else {
        // A feedback report sent by the complainant themselves (a mail client's "report
        // spam" button that writes ARF).
        let from_is_complainant = envelope
            .from
            .as_ref()
            .is_some_and(|f| found.contains(&f.address));
        if from_is_complainant {
            submission_person_addresses(envelope, intake, &mut found);
        }
    }
    found
}

/// Every complainant address in a parse outcome, normalised (lower case), each once: the
/// addresses [`crate::derive_with`] replaces with tokens. For rejections, the submission's
/// `From`, `Resent-From` and envelope sender.
pub fn complainant_addresses(outcome: &arfwire_parse::Outcome, intake: &Intake) -> Vec<String> {
    use arfwire_parse::Outcome;
    let mut found = Found::default();
    match outcome {
        Outcome::Report(submission) => {
            for item in &submission.reports {
                for a in item_addresses(submission.kind, &submission.envelope, item, intake).order {
                    found.add(&a);
                }
            }
            if submission.reports.is_empty() {
                submission_person_addresses(&submission.envelope, intake, &mut found);
            }
        }
        Outcome::NotReport(not_report) => {
            submission_person_addresses(&not_report.envelope, intake, &mut found);
        }
        Outcome::Rejected(_) => {
            if let Some(mail_from) = intake.mail_from.as_deref().filter(|m| !m.is_empty()) {
                found.add(mail_from);
            }
        }
    }
    found.order
}

/// The replacement table (normalised address → token) and the tokens in order.
fn table(p: &Pseudonymizer, found: &Found) -> (HashMap<String, String>, Vec<String>) {
    let mut map = HashMap::with_capacity(found.order.len());
    let mut tokens = Vec::with_capacity(found.order.len());
    for address in &found.order {
        let token = p.token(address);
        if !tokens.contains(&token) {
            tokens.push(token.clone());
        }
        map.insert(address.clone(), token);
    }
    tokens.truncate(MAX_COMPLAINANT_TOKENS);
    (map, tokens)
}

/// Replace known addresses in every string value (not in object keys) of a record.
fn replace_everywhere<T: Serialize + DeserializeOwned>(
    record: T,
    known: &HashMap<String, String>,
) -> T {
    fn walk(value: &mut serde_json::Value, known: &HashMap<String, String>) {
        match value {
            serde_json::Value::String(text) => {
                if let std::borrow::Cow::Owned(replaced) = replace_known(text, known) {
                    *text = replaced;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, known)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| walk(v, known)),
            _ => {}
        }
    }
    if known.is_empty() || !may_contain_known(&record, known) {
        return record;
    }
    // Our own records always make the round trip (the contract tests run every corpus
    // record through it); falling back to the unreplaced record would leak addresses.
    let mut value = serde_json::to_value(&record).expect("a v1 record serialises to JSON");
    walk(&mut value, known);
    serde_json::from_value(value).expect("a v1 record reads back from its own JSON")
}

/// Whether any string of `record` may hold one of the `known` addresses: a quick test on
/// the record's JSON text that spares the round trip through `serde_json::Value` when
/// nothing is left to replace (the usual case: the fields known to hold complainant
/// addresses were replaced already).
///
/// It never answers `false` wrongly. A span that normalises to a known address `k` is, once
/// lower-cased, `k` itself; when `k` is ASCII without characters JSON escapes (quote,
/// backslash, controls), the span's characters appear unescaped in the JSON text and
/// lower-casing the whole text maps them char by char, so the lower-cased text contains
/// `k`. For any other `k` the answer is `true` and the full walk runs.
fn may_contain_known<T: Serialize>(record: &T, known: &HashMap<String, String>) -> bool {
    let plain = |k: &String| {
        k.bytes()
            .all(|b| b.is_ascii() && !b.is_ascii_control() && b != b'"' && b != b'\\')
    };
    if !known.keys().all(plain) {
        return true;
    }
    let Ok(text) = serde_json::to_string(record) else {
        return true;
    };
    let lower = text.to_lowercase();
    known.keys().any(|k| lower.contains(k.as_str()))
}

/// RFC 6591 canonicalised header and body fields are base64 of the signed message: decode,
/// replace every address with its token, encode again. Text that is not base64 has its
/// addresses replaced as it is.
fn tokenise_base64(value: &str, p: &Pseudonymizer) -> String {
    use base64::Engine as _;
    let engine = &base64::engine::general_purpose::STANDARD;
    let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
    match engine.decode(compact.as_bytes()) {
        Ok(bytes) => {
            if !bytes.contains(&b'@') {
                return value.to_owned();
            }
            let text = String::from_utf8_lossy(&bytes);
            engine.encode(p.tokenise_all(&text).as_bytes())
        }
        Err(_) => p.tokenise_all(value).into_owned(),
    }
}

fn pseudonymise_mailbox(mailbox: &mut MailboxV1, p: &Pseudonymizer) {
    mailbox.address = p.token(&mailbox.address);
    mailbox.name = None;
}

/// Pseudonymise one event derived from `item` (see the module documentation).
pub(crate) fn pseudonymise_event(
    mut event: AbuseEventV1,
    kind: ReportKind,
    envelope: &SubmissionHeader,
    item: &ReportedItem,
    intake: &Intake,
    p: &Pseudonymizer,
) -> AbuseEventV1 {
    let found = item_addresses(kind, envelope, item, intake);
    let (known, tokens) = table(p, &found);

    if let Some(feedback) = event.feedback.as_mut() {
        for value in feedback
            .original_rcpt_to
            .iter_mut()
            .chain(feedback.removal_recipient.iter_mut())
        {
            *value = complainant_value(value, p);
        }
        for value in [
            &mut feedback.dkim_canonicalized_header,
            &mut feedback.dkim_canonicalized_body,
        ]
        .into_iter()
        .flatten()
        {
            *value = tokenise_base64(value, p);
        }
        for field in &mut feedback.fields {
            let lower = field.name.to_ascii_lowercase();
            if FEEDBACK_RECIPIENT_FIELDS.contains(&lower.as_str()) {
                field.value = complainant_value(&field.value, p);
                field.raw = complainant_value(&field.raw, p);
            } else if lower == "dkim-canonicalized-header" || lower == "dkim-canonicalized-body" {
                field.value = tokenise_base64(&field.value, p);
                field.raw.clone_from(&field.value);
            }
        }
    }
    let person = reported_by_a_person(kind);
    if let Some(from) = event.reporter.from.as_mut()
        && (person || found.contains(&from.address))
    {
        pseudonymise_mailbox(from, p);
    }
    if let Some(mail_from) = event.intake.mail_from.as_mut()
        && !mail_from.is_empty()
        && (person || found.contains(mail_from))
    {
        *mail_from = p.token(mail_from);
    }
    let message = &mut event.reported_message;
    for received in &mut message.received {
        if let std::borrow::Cow::Owned(t) = p.tokenise_all(received) {
            *received = t;
        }
    }
    for header in &mut message.provider_headers {
        if let std::borrow::Cow::Owned(t) = p.tokenise_all(&header.value) {
            header.value = t;
        }
    }
    let mut event = replace_everywhere(event, &known);
    event.complainant_tokens = tokens;
    event
}

/// Pseudonymise a rejection record: the submission's `From` (address and display name),
/// `Resent-From` and envelope sender, wherever they appear.
pub(crate) fn pseudonymise_rejection(
    mut record: RejectedV1,
    envelope: Option<&SubmissionHeader>,
    p: &Pseudonymizer,
) -> RejectedV1 {
    let mut found = Found::default();
    match envelope {
        Some(envelope) => submission_person_addresses(envelope, &record.intake, &mut found),
        None => {
            if let Some(m) = record.intake.mail_from.as_deref().filter(|m| !m.is_empty()) {
                found.add(m);
            }
        }
    }
    let (known, _) = table(p, &found);
    if let Some(from) = record.reporter.as_mut().and_then(|r| r.from.as_mut()) {
        pseudonymise_mailbox(from, p);
    }
    if let Some(mail_from) = record.intake.mail_from.as_mut()
        && !mail_from.is_empty()
    {
        *mail_from = p.token(mail_from);
    }
    replace_everywhere(record, &known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_for_clauses() {
        assert_eq!(
            received_for(
                "from a (a [192.0.2.1]) by b with ESMTP id X for <v@example.org>; Mon, 1 Jan"
            ),
            ["v@example.org"]
        );
        assert_eq!(
            received_for("from a by b\tfor\tw@example.net"),
            ["w@example.net"]
        );
        assert!(received_for("from formal.example by b").is_empty());
    }

    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        subject: String,
        notes: Vec<String>,
    }

    /// The quick test never skips a record the full walk would change.
    #[test]
    fn the_quick_test_never_misses_a_replacement() {
        let p = Pseudonymizer::development();
        let cases: &[(&str, &str)] = &[
            (
                "victim@example.org",
                "Re: mail for VICTIM@Example.ORG today",
            ),
            ("victim@example.org", "<victim@example.org>"),
            // U+212A KELVIN SIGN lower-cases to an ASCII k.
            ("kim@example.org", "for \u{212A}im@example.org"),
            ("\"a b\"@example.org", "quoted \"a b\"@example.org here"),
            ("a\\b@example.org", "odd a\\b@example.org"),
            ("\u{e9}lise@example.org", "\u{c9}LISE@example.org"),
            ("nobody@example.org", "nothing to see"),
            ("victim@example.org", "victim@example.net is someone else"),
        ];
        for (address, text) in cases {
            let mut found = Found::default();
            found.add(address);
            let (known, _) = table(&p, &found);
            let record = Sample {
                subject: (*text).to_owned(),
                notes: vec!["x@y.example".to_owned(), (*text).to_owned()],
            };
            let mut value = serde_json::to_value(&record).unwrap();
            fn changes(value: &mut serde_json::Value, known: &HashMap<String, String>) -> bool {
                match value {
                    serde_json::Value::String(text) => {
                        matches!(replace_known(text, known), std::borrow::Cow::Owned(_))
                    }
                    serde_json::Value::Array(items) => items.iter_mut().any(|v| changes(v, known)),
                    serde_json::Value::Object(map) => map.values_mut().any(|v| changes(v, known)),
                    _ => false,
                }
            }
            let would_change = changes(&mut value, &known);
            if would_change {
                assert!(
                    may_contain_known(&record, &known),
                    "{address:?} in {text:?} would be missed"
                );
                assert_ne!(replace_everywhere(record.clone(), &known), record);
            } else {
                assert_eq!(replace_everywhere(record.clone(), &known), record);
            }
        }
    }
}
