//! `derive`: one event per reported message, else exactly one rejection record.

use arfwire_events::{
    ComplaintTypeSource, DiagnosticScope, Output, RejectionCategory, derive, event_id,
    rejection_id, submission_id,
};
use arfwire_parse::{
    Code, Diagnostic, MessageSource, NotReport, NotReportReason, Outcome, RejectReason, Rejection,
    ReportFormat, ReportKind, ReportedItem, ReportedMessage, Submission, SubmissionHeader,
};

use crate::support::{Validators, received_at};

fn intake(raw: &[u8]) -> arfwire_events::Intake {
    arfwire_events::Intake::new(raw, arfwire_events::Channel::File, received_at())
}

fn item(index: usize) -> ReportedItem {
    ReportedItem {
        index,
        mime_path: format!("{}", index + 2),
        feedback: None,
        message: ReportedMessage {
            source: MessageSource::Rfc822Part,
            header_block: b"From: spammer@example.com\r\nSubject: win\0big".to_vec(),
            has_body: true,
            body_size: 12,
            fields: Vec::new(),
            received: Vec::new(),
            message_id: None,
            from: None,
            date: None,
            date_unix: None,
            subject: Some("win\0big".to_owned()),
            return_path: None,
            dkim_signatures: Vec::new(),
            provider_headers: Vec::new(),
        },
        claimed_source_ip: None,
        diagnostics: vec![Diagnostic::new(Code::NoReceivedFields, "no Received")],
    }
}

fn submission(n: usize) -> Submission {
    Submission {
        kind: ReportKind::ForwardAttachment,
        format: ReportFormat::Rfc822Attachment,
        envelope: SubmissionHeader::default(),
        reports: (0..n).map(item).collect(),
        diagnostics: vec![Diagnostic::new(Code::MboxFromLine, "mbox From line")],
    }
}

#[test]
fn a_report_yields_one_event_per_reported_message() {
    let raw = b"three reported messages";
    let intake = intake(raw);
    let validators = Validators::new();
    let outputs = derive(&Outcome::Report(submission(3)), &intake);
    assert_eq!(outputs.len(), 3);
    for (i, output) in outputs.iter().enumerate() {
        let Output::Event(event) = output else {
            panic!("record {i} is not an event");
        };
        assert_eq!(event.report_index, i as u64);
        assert_eq!(event.report_count, 3);
        assert_eq!(event.event_id, event_id(&intake.raw_sha256, i));
        assert_eq!(output.event_id(), event.event_id);
        assert_eq!(event.submission_id, submission_id(&intake.raw_sha256));
        assert_eq!(event.complaint_type, "abuse");
        assert_eq!(
            event.complaint_type_source,
            ComplaintTypeSource::ImpliedByKind
        );
        assert_eq!(event.attribution, None);
        // Submission diagnostics first, then the item's.
        let scopes: Vec<_> = event.diagnostics.iter().map(|d| d.scope).collect();
        assert_eq!(
            scopes,
            [DiagnosticScope::Submission, DiagnosticScope::Report]
        );
        // NUL is replaced in text, kept byte-for-byte in the header block.
        assert_eq!(
            event.reported_message.subject.as_deref(),
            Some("win\u{FFFD}big")
        );
        let json = output.to_json();
        assert_eq!(
            json["reported_message"]["sender_domain"],
            serde_json::Value::Null
        );
        let errors = validators.errors(output);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

#[test]
fn a_not_report_yields_one_rejection() {
    let raw = b"a bounce";
    let intake = intake(raw);
    let outcome = Outcome::NotReport(NotReport {
        reason: NotReportReason::Bounce,
        detail: "a delivery status notification\0".to_owned(),
        envelope: SubmissionHeader::default(),
        diagnostics: Vec::new(),
    });
    let outputs = derive(&outcome, &intake);
    let [Output::Rejected(record)] = outputs.as_slice() else {
        panic!("expected one rejection, got {outputs:?}");
    };
    assert_eq!(record.category, RejectionCategory::NotReport);
    assert_eq!(record.reason, "bounce");
    assert_eq!(record.detail, "a delivery status notification\u{FFFD}");
    assert_eq!(record.rejection_id, rejection_id(&intake.raw_sha256));
    assert_eq!(outputs[0].event_id(), record.rejection_id);
    assert!(record.reporter.is_some());
    let errors = Validators::new().errors(&outputs[0]);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn a_refusal_yields_one_rejection() {
    let raw = b"";
    let intake = intake(raw);
    let outcome = Outcome::Rejected(Rejection {
        reason: RejectReason::Empty,
        detail: "the submission is empty".to_owned(),
        diagnostics: Vec::new(),
    });
    let outputs = derive(&outcome, &intake);
    let [Output::Rejected(record)] = outputs.as_slice() else {
        panic!("expected one rejection, got {outputs:?}");
    };
    assert_eq!(record.category, RejectionCategory::Refused);
    assert_eq!(record.reason, "empty");
    assert_eq!(record.reporter, None);
    assert_eq!(record.structure, None);
    let errors = Validators::new().errors(&outputs[0]);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn a_report_without_messages_is_refused_not_lost() {
    let outputs = derive(&Outcome::Report(submission(0)), &intake(b"odd"));
    let [Output::Rejected(record)] = outputs.as_slice() else {
        panic!("expected one rejection, got {outputs:?}");
    };
    assert_eq!(record.category, RejectionCategory::Refused);
    assert_eq!(record.reason, "parser_failure");
    let errors = Validators::new().errors(&outputs[0]);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_real_parser_agrees() {
    for raw in [
        &b""[..],
        b"not mail at all",
        b"From: a@example.net\n\nhello\n",
    ] {
        let outcome = arfwire_parse::parse(raw, &Default::default());
        let outputs = derive(&outcome, &intake(raw));
        match &outcome {
            Outcome::Report(s) => assert_eq!(outputs.len(), s.reports.len()),
            _ => assert_eq!(outputs.len(), 1),
        }
    }
}

#[test]
fn json_line_is_one_line_in_schema_order() {
    let outputs = derive(&Outcome::Report(submission(1)), &intake(b"x"));
    let line = outputs[0].to_json_line();
    assert!(!line.contains('\n'));
    assert!(line.starts_with("{\"schema\":\"arfwire.abuse-event.v1\",\"event_id\":"));
}
