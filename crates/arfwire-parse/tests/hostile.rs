//! Hostile input: every shape of the reliability plan (H1-H12, H21) and the regressions found
//! while writing them. Inputs are generated here, never read from files.
//!
//! Each test asserts the outcome, never a duration: no panic leaves `parse`, no parse ends
//! as `ParserFailure` (a contained panic is still a bug), derived strings hold no NUL, and
//! the raw evidence (`header_block`) is the input's bytes wherever the input carried them
//! as they are.

use arfwire_parse::{
    Code, Diagnostic, FeedbackReport, Mailbox, Outcome, ParseOptions, RejectReason, ReportKind,
    ReportedItem, ReportedMessage, Severity, Submission, SubmissionHeader, parse,
};

// ---------------------------------------------------------------------------------------
// Checks

/// Parse with the default options, check the invariants every outcome must keep, and check
/// that a second parse gives the same outcome.
fn run(input: &[u8]) -> Outcome {
    let outcome = parse(input, &ParseOptions::default());
    check_outcome(&outcome);
    outcome
}

fn run_twice(input: &[u8]) -> Outcome {
    let outcome = run(input);
    assert_eq!(outcome, run(input), "two parses of the same bytes differ");
    outcome
}

fn no_nul(what: &str, s: &str) {
    assert!(!s.contains('\0'), "NUL in {what}: {s:?}");
}

fn check_opt(what: &str, s: &Option<String>) {
    if let Some(s) = s {
        no_nul(what, s);
    }
}

fn check_mailbox(what: &str, m: &Option<Mailbox>) {
    if let Some(m) = m {
        no_nul(what, &m.address);
        check_opt(what, &m.name);
        check_opt(what, &m.domain);
    }
}

fn check_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        no_nul("diagnostic", &d.message);
    }
}

fn check_envelope(e: &SubmissionHeader) {
    check_mailbox("envelope from", &e.from);
    check_mailbox("envelope resent-from", &e.resent_from);
    check_opt("envelope subject", &e.subject);
    check_opt("envelope message-id", &e.message_id);
    check_opt("envelope date", &e.date);
    check_opt("envelope content type", &e.content_type);
    check_opt("envelope report type", &e.report_type);
}

fn check_feedback(f: &FeedbackReport) {
    for s in [
        &f.feedback_type,
        &f.version,
        &f.user_agent,
        &f.arrival_date,
        &f.source_ip_raw,
        &f.original_envelope_id,
        &f.original_mail_from,
        &f.reporting_mta,
        &f.auth_failure,
        &f.delivery_result,
        &f.dkim_domain,
        &f.dkim_identity,
        &f.dkim_selector,
        &f.dkim_canonicalized_header,
        &f.dkim_canonicalized_body,
        &f.identity_alignment,
    ] {
        check_opt("feedback field", s);
    }
    for list in [
        &f.original_rcpt_to,
        &f.reported_domain,
        &f.reported_uri,
        &f.authentication_results,
        &f.spf_dns,
        &f.removal_recipient,
    ] {
        for s in list {
            no_nul("feedback list field", s);
        }
    }
    for (name, values) in &f.extensions {
        no_nul("feedback extension", name);
        for v in values {
            no_nul("feedback extension value", v);
        }
    }
    for field in &f.fields {
        no_nul("feedback field name", &field.name);
        no_nul("feedback field value", &field.value);
        no_nul("feedback field raw", &field.raw);
    }
}

fn check_message(m: &ReportedMessage) {
    for f in m.fields.iter().chain(&m.provider_headers) {
        no_nul("field name", &f.name);
        no_nul("field value", &f.value);
    }
    for r in &m.received {
        no_nul("received", r);
    }
    check_opt("message-id", &m.message_id);
    check_mailbox("from", &m.from);
    check_opt("date", &m.date);
    check_opt("subject", &m.subject);
    check_opt("return-path", &m.return_path);
    for sig in &m.dkim_signatures {
        check_opt("dkim", &sig.domain);
        check_opt("dkim", &sig.selector);
        check_opt("dkim", &sig.identity);
        check_opt("dkim", &sig.signature_prefix);
    }
}

fn check_item(item: &ReportedItem) {
    no_nul("mime path", &item.mime_path);
    if let Some(f) = &item.feedback {
        check_feedback(f);
    }
    check_message(&item.message);
    check_diagnostics(&item.diagnostics);
}

/// No parser failure, no NUL in any derived string.
fn check_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Rejected(r) => {
            assert_ne!(
                r.reason,
                RejectReason::ParserFailure,
                "the parser failed: {}",
                r.detail
            );
            no_nul("rejection detail", &r.detail);
            check_diagnostics(&r.diagnostics);
        }
        Outcome::NotReport(n) => {
            no_nul("detail", &n.detail);
            check_envelope(&n.envelope);
            check_diagnostics(&n.diagnostics);
        }
        Outcome::Report(s) => {
            assert!(!s.reports.is_empty());
            check_envelope(&s.envelope);
            check_diagnostics(&s.diagnostics);
            for item in &s.reports {
                check_item(item);
            }
        }
    }
}

#[track_caller]
fn expect_report(outcome: Outcome) -> Submission {
    match outcome {
        Outcome::Report(s) => s,
        other => panic!("expected a report, got {}", summary(&other)),
    }
}

#[track_caller]
fn expect_rejected(outcome: &Outcome, reason: RejectReason) -> String {
    match outcome {
        Outcome::Rejected(r) if r.reason == reason => r.detail.clone(),
        other => panic!("expected a {reason:?} rejection, got {}", summary(other)),
    }
}

fn summary(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Report(s) => format!("a {:?} report with {} items", s.kind, s.reports.len()),
        Outcome::NotReport(n) => format!("not a report ({:?})", n.reason),
        Outcome::Rejected(r) => format!("a {:?} rejection ({})", r.reason, r.detail),
    }
}

fn has_code(diags: &[Diagnostic], code: Code) -> bool {
    diags.iter().any(|d| d.code == code)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The header block of a message: its bytes up to, not including, the blank line.
fn header_block_of(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    &message[..end]
}

// ---------------------------------------------------------------------------------------
// Builders

const CRLF: &str = "\r\n";

/// A reported (spam) message with the given extra header lines and body.
fn spam_with(extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "Received: from mail.spam.example (mail.spam.example [192.0.2.1])\r\n\
         \tby mx.isp.example with ESMTP id 4Zx; Thu, 7 Mar 2024 13:59:00 +0000\r\n\
         From: Spam Sender <offers@spam.example>\r\n\
         To: victim@isp.example\r\n\
         Subject: You have won\r\n\
         Date: Thu, 7 Mar 2024 13:58:00 +0000\r\n\
         Message-ID: <spam-1@spam.example>\r\n\
         {extra_headers}\
         \r\n\
         {body}\r\n"
    )
    .into_bytes()
}

fn spam() -> Vec<u8> {
    spam_with("", "Claim your prize now.")
}

const FEEDBACK: &str = "Feedback-Type: abuse\r\n\
                        User-Agent: hostile-tests/1.0\r\n\
                        Version: 1\r\n\
                        Original-Mail-From: <offers@spam.example>\r\n\
                        Original-Rcpt-To: <victim@isp.example>\r\n\
                        Arrival-Date: Thu, 7 Mar 2024 13:59:00 +0000\r\n\
                        Source-IP: 192.0.2.1\r\n\
                        Reported-Domain: spam.example\r\n";

/// The header of an ARF report, up to and including the blank line.
fn arf_header(content_type: &str) -> String {
    format!(
        "From: Feedback Loop <fbl@isp.example>\r\n\
         To: abuse@spam.example\r\n\
         Subject: Abuse report\r\n\
         Date: Thu, 7 Mar 2024 14:00:00 +0000\r\n\
         Message-ID: <report-1@isp.example>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\n\
         \r\n"
    )
}

/// An RFC 5965 report: a text part, a feedback part with `feedback`, and `reported` as a
/// message/rfc822 part whose own header lines are `part_headers`.
fn arf_custom(content_type: &str, feedback: &str, part_headers: &str, reported: &[u8]) -> Vec<u8> {
    arf_typed(
        content_type,
        feedback,
        "message/rfc822",
        part_headers,
        reported,
    )
}

/// As [`arf_custom`], with the type of the third part given.
fn arf_typed(
    content_type: &str,
    feedback: &str,
    part_type: &str,
    part_headers: &str,
    reported: &[u8],
) -> Vec<u8> {
    let mut m = arf_header(content_type).into_bytes();
    m.extend_from_slice(
        b"--arf\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
          This is an email abuse report for a message received from 192.0.2.1.\r\n\r\n",
    );
    m.extend_from_slice(b"--arf\r\nContent-Type: message/feedback-report\r\n\r\n");
    m.extend_from_slice(feedback.as_bytes());
    m.extend_from_slice(format!("\r\n--arf\r\nContent-Type: {part_type}\r\n").as_bytes());
    m.extend_from_slice(part_headers.as_bytes());
    m.extend_from_slice(b"Content-Disposition: inline\r\n\r\n");
    m.extend_from_slice(reported);
    m.extend_from_slice(b"\r\n--arf--\r\n");
    m
}

const REPORT_TYPE: &str = "multipart/report; report-type=feedback-report; boundary=\"arf\"";

fn arf(reported: &[u8]) -> Vec<u8> {
    arf_custom(REPORT_TYPE, FEEDBACK, "", reported)
}

/// A report whose reported message travels transfer-encoded.
fn arf_encoded(encoding: &str, encoded_body: &[u8]) -> Vec<u8> {
    arf_custom(
        REPORT_TYPE,
        FEEDBACK,
        &format!("Content-Transfer-Encoding: {encoding}\r\n"),
        encoded_body,
    )
}

/// Base64 with 76-character lines joined by `eol`.
fn base64(data: &[u8], eol: &str) -> Vec<u8> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() / 3 * 4 + data.len() / 57 * eol.len() + 8);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.extend_from_slice(eol.as_bytes());
        }
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for j in 0..4 {
            if j <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * j)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// Quoted-printable: `=` escaped, everything else kept (lines are already short).
fn quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    for &b in data {
        if b == b'=' {
            out.extend_from_slice(b"=3D");
        } else {
            out.push(b);
        }
    }
    out
}

/// Wrap `inner` (a whole message) in a multipart/mixed forward with `fillers` empty parts
/// after it.
fn mixed_with_fillers(inner_part: &[u8], fillers: usize) -> Vec<u8> {
    let mut m = b"From: Reporter <reporter@isp.example>\r\n\
                  To: abuse@spam.example\r\n\
                  Subject: Fwd: report\r\n\
                  MIME-Version: 1.0\r\n\
                  Content-Type: multipart/mixed; boundary=\"w\"\r\n\r\n"
        .to_vec();
    m.extend_from_slice(b"--w\r\n");
    m.extend_from_slice(inner_part);
    m.extend_from_slice(b"\r\n");
    for _ in 0..fillers {
        m.extend_from_slice(b"--w\r\n\r\n");
    }
    m.extend_from_slice(b"--w--\r\n");
    m
}

/// The single report of an ARF submission, with its reported header block checked against
/// the bytes the reported message was built from.
#[track_caller]
fn single_arf_item(outcome: Outcome, reported: &[u8]) -> ReportedItem {
    let submission = expect_report(outcome);
    assert_eq!(submission.kind, ReportKind::Arf);
    assert_eq!(submission.reports.len(), 1);
    let item = submission.reports.into_iter().next().unwrap();
    assert!(item.feedback.is_some());
    assert_eq!(
        item.message.header_block,
        header_block_of(reported),
        "the reported header block is not the reported bytes"
    );
    item
}

// ---------------------------------------------------------------------------------------
// Baseline

#[test]
fn baseline_arf_is_a_clean_report() {
    let reported = spam();
    let input = arf(&reported);
    let item = single_arf_item(run_twice(&input), &reported);
    assert!(contains(&input, &item.message.header_block));
    assert_eq!(item.message.subject.as_deref(), Some("You have won"));
    assert_eq!(
        item.feedback.unwrap().source_ip,
        Some([192, 0, 2, 1].into())
    );
}

// ---------------------------------------------------------------------------------------
// H1: many parts, within the limit

/// Parts the wrapped ARF adds to the tree: the wrapper, the report container, its three
/// parts and the reported message's root.
const ARF_IN_WRAPPER_PARTS: usize = 6;

fn wrapped_arf_part() -> (Vec<u8>, Vec<u8>) {
    let reported = spam();
    let mut part = format!("Content-Type: {REPORT_TYPE}\r\n\r\n").into_bytes();
    let report = arf(&reported);
    let body_start = report.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    part.extend_from_slice(&report[body_start..]);
    (part, reported)
}

/// The limit is 10,000 parts in all, so an ARF in a forward with 9,994 empty parts beside it
/// (10,000 parts, ~80 KB) is processed. (An ARF with 10,000 extra parts would be 10,006
/// parts: over the limit; see the next test.)
#[test]
fn h1_ten_thousand_part_forward_of_an_arf_is_processed() {
    let (part, reported) = wrapped_arf_part();
    let input = mixed_with_fillers(&part, 10_000 - ARF_IN_WRAPPER_PARTS);
    let submission = expect_report(run(&input));
    assert_eq!(submission.envelope.n_parts, 10_000);
    assert_eq!(submission.kind, ReportKind::Arf);
    assert_eq!(submission.reports.len(), 1);
    let item = &submission.reports[0];
    assert_eq!(item.message.header_block, header_block_of(&reported));
    assert!(contains(&input, &item.message.header_block));
}

#[test]
fn h1_one_part_over_the_limit_is_rejected_after_parsing() {
    let (part, _) = wrapped_arf_part();
    let input = mixed_with_fillers(&part, 10_001 - ARF_IN_WRAPPER_PARTS);
    let detail = expect_rejected(&run(&input), RejectReason::TooManyParts);
    assert!(detail.contains("10001"), "{detail}");
}

// ---------------------------------------------------------------------------------------
// H2: millions of parts

#[test]
fn h2_two_and_a_half_million_parts_are_rejected_by_the_prescan() {
    let mut input = b"From: a@spam.example\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
                      Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        .to_vec();
    for _ in 0..2_500_000 {
        input.extend_from_slice(b"--b\r\n");
    }
    input.extend_from_slice(b"--b--\r\n");
    assert!(input.len() < 25 * 1024 * 1024);
    let detail = expect_rejected(&run(&input), RejectReason::TooManyParts);
    // The pre-scan's wording; the check on the parsed tree says "the submission has N".
    assert!(detail.starts_with("more than"), "{detail}");
}

/// mail-parser finds a boundary anywhere in a line, which the line-based pre-scan does not
/// count; the check on the parsed tree still rejects.
#[test]
fn h2_parts_opened_mid_line_are_rejected_after_parsing() {
    let mut input = b"From: a@spam.example\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
                      Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
        .to_vec();
    for _ in 0..20_000 {
        input.extend_from_slice(b"\r\nx--b\r\n");
    }
    input.extend_from_slice(b"\r\n--b--\r\n");
    expect_rejected(&run(&input), RejectReason::TooManyParts);
}

// ---------------------------------------------------------------------------------------
// H3: nesting

fn nested_multiparts(depth: usize) -> Vec<u8> {
    let mut m = b"From: a@spam.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n".to_vec();
    for i in 0..depth {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n")
                .as_bytes(),
        );
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for i in (0..depth).rev() {
        m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    m
}

#[test]
fn h3_hundred_thousand_nested_multiparts_are_rejected() {
    let input = nested_multiparts(100_000);
    assert!(input.len() > 6_000_000);
    let detail = expect_rejected(&run(&input), RejectReason::NestingTooDeep);
    assert!(detail.contains("containers"), "{detail}");
}

/// `levels` messages, each `Content-Type: message/rfc822` with the next as its body.
fn nested_messages(levels: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..levels {
        m.extend_from_slice(
            format!(
                "From: level{i}@fwd.example\r\nSubject: Fwd: level {i}\r\n\
                 MIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(&spam());
    m
}

/// `levels` forwards, each multipart/mixed with a note and the next as message/rfc822.
fn nested_forwards(levels: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for i in 0..levels {
        m.extend_from_slice(
            format!(
                "From: level{i}@fwd.example\r\nSubject: Fwd: level {i}\r\nMIME-Version: 1.0\r\n\
                 Content-Type: multipart/mixed; boundary=\"f{i}\"\r\n\r\n\
                 --f{i}\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
                 --f{i}\r\nContent-Type: message/rfc822\r\n\r\n"
            )
            .as_bytes(),
        );
    }
    m.extend_from_slice(&spam());
    for i in (0..levels).rev() {
        m.extend_from_slice(format!("\r\n--f{i}--\r\n").as_bytes());
    }
    m
}

#[test]
fn h3_message_rfc822_nested_150_deep_is_rejected() {
    let detail = expect_rejected(&run(&nested_messages(150)), RejectReason::NestingTooDeep);
    assert!(detail.contains("150"), "{detail}");
}

#[test]
fn h3_message_rfc822_nested_50_deep_is_parsed() {
    let outcome = run(&nested_messages(50));
    let Outcome::NotReport(n) = &outcome else {
        panic!("expected the parse to finish, got {}", summary(&outcome));
    };
    assert_eq!(n.envelope.depth, 50);
}

#[test]
fn h3_forwards_nested_60_deep_are_rejected_and_30_deep_are_processed() {
    // Each forward adds two levels: the message/rfc822 part and the message inside it.
    expect_rejected(&run(&nested_forwards(60)), RejectReason::NestingTooDeep);
    let submission = expect_report(run(&nested_forwards(30)));
    assert_eq!(submission.kind, ReportKind::ForwardAttachment);
    assert_eq!(submission.envelope.depth, 60);
    let spam = spam();
    assert_eq!(
        submission.reports[0].message.header_block,
        header_block_of(&spam)
    );
}

// ---------------------------------------------------------------------------------------
// H4: header field counts

fn many_fields(n: usize) -> String {
    let mut s = String::with_capacity(n * 24);
    for i in 0..n {
        s.push_str(&format!("To: user{i}@isp.example\r\n"));
    }
    s
}

#[test]
fn h4_hundred_thousand_to_fields_are_rejected() {
    let mut input = b"From: a@spam.example\r\nSubject: many\r\n".to_vec();
    input.extend_from_slice(many_fields(100_000).as_bytes());
    input.extend_from_slice(b"\r\nbody\r\n");
    expect_rejected(&run(&input), RejectReason::TooManyHeaderFields);
}

#[test]
fn h4_hundred_thousand_fields_in_a_part_header_are_rejected() {
    let mut input = b"From: a@spam.example\r\nSubject: many\r\nMIME-Version: 1.0\r\n\
                      Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
        .to_vec();
    input.extend_from_slice(many_fields(100_000).as_bytes());
    input.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbody\r\n--b--\r\n");
    expect_rejected(&run(&input), RejectReason::TooManyHeaderFields);
}

#[test]
fn h4_hundred_thousand_fields_in_a_reported_message_are_rejected() {
    let reported = spam_with(&many_fields(100_000), "body");
    // As it is, and base64-encoded (which the pre-scan decodes to see the fields).
    let detail = expect_rejected(&run(&arf(&reported)), RejectReason::TooManyHeaderFields);
    assert!(detail.contains("header block"), "{detail}");
    let encoded = arf_encoded("base64", &base64(&reported, CRLF));
    let detail = expect_rejected(&run(&encoded), RejectReason::TooManyHeaderFields);
    assert!(detail.contains("header block"), "{detail}");
}

#[test]
fn h4_a_thousand_fields_are_allowed() {
    let reported = spam_with(&many_fields(990), "body");
    let item = single_arf_item(run(&arf(&reported)), &reported);
    assert_eq!(item.message.fields.len(), 990 + 6);
}

// ---------------------------------------------------------------------------------------
// H5: long lines

/// A 10 MB header line at the top breaks the header block limit (1 MiB) first: the block
/// is measured line by line, and the one line is the whole block.
#[test]
fn h5_ten_megabyte_top_header_line_is_rejected_as_header_block_too_large() {
    let mut input = b"From: a@spam.example\r\nSubject: ".to_vec();
    input.resize(input.len() + 10 * 1024 * 1024, b'a');
    input.extend_from_slice(b"\r\n\r\nbody\r\n");
    expect_rejected(&run(&input), RejectReason::HeaderBlockTooLarge);
}

/// In a part header (or a reported message's header) the same line breaks the field limit.
#[test]
fn h5_ten_megabyte_line_in_a_reported_header_is_rejected_as_header_field_too_large() {
    let mut long = "X-Long: ".to_owned();
    long.push_str(&"a".repeat(10 * 1024 * 1024));
    long.push_str(CRLF);
    let reported = spam_with(&long, "body");
    expect_rejected(&run(&arf(&reported)), RejectReason::HeaderFieldTooLarge);
}

#[test]
fn h5_one_megabyte_body_line_in_an_arf_is_processed() {
    let line = "x".repeat(1024 * 1024);
    let reported = spam_with("", &line);
    let item = single_arf_item(run(&arf(&reported)), &reported);
    assert!(item.message.has_body);
    assert!(item.message.body_size > 1024 * 1024);
}

// ---------------------------------------------------------------------------------------
// H6: RFC 2231 continuation bomb (mail-parser reads continuations in quadratic time)

fn rfc2231_bomb(sections: usize) -> String {
    let mut s = String::with_capacity(sections * 22);
    s.push_str("Content-Type: text/plain;\r\n");
    for i in 0..sections {
        s.push_str(&format!(" name*{i}*=abcdef;\r\n"));
    }
    s
}

#[test]
fn h6_rfc2231_bomb_in_a_part_header_is_rejected() {
    let mut input = b"From: a@spam.example\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n\
                      Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
        .to_vec();
    input.extend_from_slice(rfc2231_bomb(320_000).as_bytes());
    input.extend_from_slice(b"\r\nbody\r\n--b--\r\n");
    assert!(input.len() > 7_000_000);
    expect_rejected(&run(&input), RejectReason::HeaderFieldTooLarge);
}

/// Regression: the bomb inside a base64- or quoted-printable-encoded message/rfc822 part is
/// invisible to a scan of the raw text, yet mail-parser decodes that part and parses it as
/// a message (about five seconds for this input before the pre-scan learned to decode).
#[test]
fn h6_rfc2231_bomb_in_an_encoded_reported_message_is_rejected() {
    let reported = format!(
        "From: a@spam.example\r\nSubject: bomb\r\n{}\r\nbody\r\n",
        rfc2231_bomb(320_000)
    )
    .into_bytes();
    for input in [
        arf_encoded("base64", &base64(&reported, CRLF)),
        arf_encoded("base64", &base64(&reported, "\n")),
        arf_encoded("quoted-printable", &quoted_printable(&reported)),
    ] {
        expect_rejected(&run(&input), RejectReason::HeaderFieldTooLarge);
    }
}

/// In multipart/digest a part without Content-Type is a message/rfc822, so an encoded one is
/// decoded and scanned too; elsewhere such a part is text and is left alone.
#[test]
fn h6_rfc2231_bomb_in_an_encoded_digest_part_is_rejected() {
    let reported = format!(
        "From: a@spam.example\r\nSubject: bomb\r\n{}\r\nbody\r\n",
        rfc2231_bomb(20_000)
    )
    .into_bytes();
    let part = |container: &str| {
        let mut m = format!(
            "From: a@spam.example\r\nSubject: digest\r\nMIME-Version: 1.0\r\n\
             Content-Type: {container}; boundary=\"d\"\r\n\r\n\
             --d\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        .into_bytes();
        m.extend_from_slice(&base64(&reported, CRLF));
        m.extend_from_slice(b"\r\n--d--\r\n");
        m
    };
    expect_rejected(
        &run(&part("multipart/digest")),
        RejectReason::HeaderFieldTooLarge,
    );
    assert!(!matches!(
        run(&part("multipart/mixed")),
        Outcome::Rejected(_)
    ));
}

/// Regression: mail-parser starts a part's header right after `--boundary`, also when that
/// stands in the middle of a line or is followed by a blank, where the pre-scan saw no field.
#[test]
fn h6_rfc2231_bomb_after_a_mid_line_boundary_is_rejected() {
    for opener in ["x--b Content-Type", "--b Content-Type", "--bContent-Type"] {
        let bomb = rfc2231_bomb(20_000).replacen("Content-Type", opener, 1);
        let input = format!(
            "From: a@spam.example\r\nSubject: bomb\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n{bomb}\r\nbody\r\n--b--\r\n"
        );
        expect_rejected(&run(input.as_bytes()), RejectReason::HeaderFieldTooLarge);
    }
}

#[test]
fn h6_a_few_rfc2231_continuations_are_fine() {
    let reported = spam_with(
        "MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n title*0*=us-ascii'en'This%20is;\r\n \
         title*1*=%20fine\r\n",
        "body",
    );
    single_arf_item(run(&arf(&reported)), &reported);
}

// ---------------------------------------------------------------------------------------
// H7: encoded words in the reported message's Subject

fn reported_subject(subject_field: &str) -> Option<String> {
    let reported = spam_with(&format!("X-Note: subject test\r\n{subject_field}"), "body")
        // The builder's own Subject comes first; drop it so the test's one is read.
        .split(|&b| b == b'\n')
        .filter(|line| !line.starts_with(b"Subject: You have won"))
        .collect::<Vec<_>>()
        .join(&b'\n');
    let item = single_arf_item(run_twice(&arf(&reported)), &reported);
    item.message.subject
}

#[test]
fn h7_hundred_thousand_encoded_words_exceed_the_field_limit() {
    let mut subject = "Subject: ".to_owned();
    subject.push_str(&"=?utf-8?q?a?= ".repeat(100_000));
    subject.push_str(CRLF);
    let reported = spam_with(&subject, "body");
    expect_rejected(&run(&arf(&reported)), RejectReason::HeaderFieldTooLarge);
}

#[test]
fn h7_four_thousand_adjacent_encoded_words_decode() {
    // Folded, 20 words a line: about 60 KB, under the 64 KiB field limit.
    let mut field = "Subject:".to_owned();
    for i in 0..4_000 {
        field.push_str(if i % 20 == 0 && i > 0 { "\r\n " } else { " " });
        field.push_str("=?utf-8?q?a?=");
    }
    field.push_str(CRLF);
    let subject = reported_subject(&field).expect("subject");
    assert_eq!(subject, "a".repeat(4_000));
}

#[test]
fn h7_malformed_encoded_words_do_not_panic() {
    for word in [
        "=?x?Q?abc",
        "=?x?Q?",
        "=?x?Q?=ZZ?=",
        "=?utf-8?Q?=E2=82?=",
        "=?utf-8?B?!!!!?=",
        "=?utf-8?B?QUJD?=?=",
        "=??Q?a?=",
        "=?utf-8??a?=",
        "=?utf-8?X?a?=",
        "=?utf-8*en?Q?a?=",
        "=?utf-8?Q?a?b?c?=",
        "=?=?=?=?=",
        "=?utf-8?Q?\0?=",
        "=?utf-16?B?2D3eAA==?=",
        "=?x-unknown-charset?Q?caf=E9?=",
        "=?iso-8859-1?Q?caf=E9?=",
        "=?utf-7?Q?Hi_+AGEAYgBj-?=",
        "=?utf-7?Q?+AGE?=",
        "=?ISO-2022-JP?B?GyRCRnw=?=",
    ] {
        let subject = reported_subject(&format!("Subject: before {word} after\r\n"));
        let subject = subject.unwrap_or_default();
        no_nul("subject", &subject);
    }
    assert_eq!(
        reported_subject("Subject: =?iso-8859-1?Q?caf=E9?=\r\n").as_deref(),
        Some("café")
    );
}

#[test]
fn h7_iso_2022_jp_decodes_to_japanese() {
    // "日本語" in ISO-2022-JP: ESC $ B, the JIS X 0208 codes 467C 4B5C 386C, ESC ( B.
    let jis = [
        0x1b, b'$', b'B', 0x46, 0x7c, 0x4b, 0x5c, 0x38, 0x6c, 0x1b, b'(', b'B',
    ];
    let encoded = String::from_utf8(base64(&jis, CRLF)).unwrap();
    let field = format!("Subject: =?ISO-2022-JP?B?{encoded}?=\r\n");
    assert_eq!(reported_subject(&field).as_deref(), Some("日本語"));
}

#[test]
fn h7_adjacent_encoded_words_join_without_the_blank_between() {
    let field = "Subject: =?utf-8?q?Hello?= \r\n =?utf-8?q?_World?= =?utf-8?b?IQ==?=\r\n";
    assert_eq!(reported_subject(field).as_deref(), Some("Hello World!"));
}

// ---------------------------------------------------------------------------------------
// H8: base64 in an attached message/rfc822

#[test]
fn h8_base64_edge_cases_do_not_panic() {
    let reported = spam();
    let clean = base64(&reported, CRLF);
    let mut cases: Vec<Vec<u8>> = vec![
        clean.clone(),
        base64(&reported, "\n"),
        base64(&reported, "\r"),
        base64(&reported, "\r\r\n"),
        base64(&reported, " \r\n"),
        base64(&reported, ""),
    ];
    // Invalid characters sprinkled in.
    let mut invalid = clean.clone();
    for i in (0..invalid.len()).step_by(37) {
        invalid[i] = b"!*@.\0\xff"[i % 6];
    }
    cases.push(invalid);
    // Padding removed, and `=` inside the data.
    cases.push(clean.iter().copied().filter(|&b| b != b'=').collect());
    let mut inner_eq = clean.clone();
    for i in (10..inner_eq.len()).step_by(50) {
        inner_eq[i] = b'=';
    }
    cases.push(inner_eq);
    // Truncated mid-group, and nothing at all.
    cases.push(clean[..clean.len() - 3].to_vec());
    cases.push(Vec::new());
    for body in cases {
        run_twice(&arf_encoded("base64", &body));
    }
    // The clean encodings give the reported header block back exactly.
    for eol in [CRLF, "\n"] {
        let item = single_arf_item(
            run(&arf_encoded("base64", &base64(&reported, eol))),
            &reported,
        );
        assert_eq!(item.message.subject.as_deref(), Some("You have won"));
    }
}

#[test]
fn h8_base64_body_over_the_size_limit_is_rejected() {
    let body = vec![b'A'; 26 * 1024 * 1024];
    let detail = expect_rejected(&run(&arf_encoded("base64", &body)), RejectReason::TooLarge);
    assert!(detail.contains("bytes"), "{detail}");
}

#[test]
fn h8_five_megabyte_base64_reported_message_is_processed() {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    let body = line.repeat(3_750_000 / line.len());
    let reported = spam_with("", &body);
    let encoded = base64(&reported, CRLF);
    assert!(encoded.len() > 5_000_000);
    let item = single_arf_item(run(&arf_encoded("base64", &encoded)), &reported);
    assert!(item.message.body_size > 3_000_000);
}

// ---------------------------------------------------------------------------------------
// H9: quoted-printable edge cases

#[test]
fn h9_quoted_printable_edge_cases_are_deterministic() {
    let reported = spam();
    let mut cases: Vec<Vec<u8>> = vec![
        quoted_printable(&reported),
        b"Subject: a==b\r\nFrom: x@y.example\r\n\r\n==\r\n=".to_vec(),
        b"Subject: soft=\r\n break\r\nFrom: x@y.example\r\n\r\nbody=".to_vec(),
        b"Subject: trailing   \r\nFrom: x@y.example  \t\r\n\r\nbody   \r\nmore\t\t\r\n".to_vec(),
        b"Subject: cr=\rno lf\r\nFrom: x@y.example\r\n\r\nbody=\rx=\r".to_vec(),
        b"Subject: =4=\r\n1 =G1 =\r\n\r\nFrom: x@y.example\r\n\r\n=0D=0A=00".to_vec(),
        b"==".to_vec(),
        b"a=\r\n=\r\n".to_vec(),
    ];
    let mut soft_everywhere = Vec::new();
    for &b in &reported {
        soft_everywhere.push(b);
        soft_everywhere.extend_from_slice(b"=\r\n");
    }
    cases.push(soft_everywhere);
    for body in cases {
        // In the reported message and as the body of a whole submission.
        run_twice(&arf_encoded("quoted-printable", &body));
        run_twice(&qp_submission(&body));
    }
    // A soft break at the very end of the input.
    for body in [&b"="[..], b"=\r\n=\r\n=\r\n", b"abc=", b"abc= \t"] {
        run_twice(&qp_submission(body));
    }
    let item = single_arf_item(
        run(&arf_encoded(
            "quoted-printable",
            &quoted_printable(&reported),
        )),
        &reported,
    );
    assert_eq!(item.message.subject.as_deref(), Some("You have won"));
}

/// mail-parser 0.11.9 subtracts past zero when a quoted-printable part decodes to almost
/// nothing before its boundary (`=` then the boundary line). Release builds wrap and carry
/// on; builds with overflow checks panic, which `parse` contains as a parser failure. The
/// workspace turns off debug assertions for mail-parser but not overflow checks.
#[test]
fn h9_quoted_printable_soft_break_right_before_the_boundary() {
    for body in [&b"="[..], b"=\r\n=\r\n=\r\n", b"=\r\n"] {
        run_twice(&arf_encoded("quoted-printable", body));
    }
}

/// A whole submission whose body is `body`, quoted-printable.
fn qp_submission(body: &[u8]) -> Vec<u8> {
    let mut input = arf_header("text/plain; charset=utf-8").into_bytes();
    input.splice(
        input.len() - 2..input.len() - 2,
        b"Content-Transfer-Encoding: quoted-printable\r\n"
            .iter()
            .copied(),
    );
    input.extend_from_slice(body);
    input
}

// ---------------------------------------------------------------------------------------
// H10: NUL, bare CR and bare LF

#[test]
fn h10_nul_bytes_in_headers_and_body_keep_evidence_and_stay_out_of_strings() {
    let reported = b"Received: from a\0b (c [192.0.2.1])\r\n\tby mx\0.isp.example; Thu, 7 Mar 2024 13:59:00 +0000\r\n\
                     From: Sp\0am <off\0ers@spam\0.example>\r\n\
                     To: victim@isp.example\r\n\
                     Subject: You\0have\0won =?utf-8?q?and=00this?=\r\n\
                     Date: Thu, 7 Mar 2024 13:58:00 +0000\0\r\n\
                     Message-ID: <spam\0-1@spam.example>\r\n\
                     Return-Path: <b\0ounce@spam.example>\r\n\
                     DKIM-Signature: v=1; d=spam\0.example; s=s\0el; b=ab\0cd\r\n\
                     \r\n\
                     Body\0with\0NUL\r\n"
        .to_vec();
    let feedback = "Feedback-Type: ab\0use\r\nUser-Agent: x\0y\r\nVersion: 1\0\r\n\
                    Source-IP: 192.0.2.1\0\r\nReported-Domain: spam\0.example\r\n\
                    Original-Mail-From: <a\0@b.example>\r\nX-Extra\0Field: v\0\r\n";
    let input = arf_custom(REPORT_TYPE, feedback, "", &reported);
    let item = single_arf_item(run_twice(&input), &reported);
    assert!(contains(&input, &item.message.header_block));
    // The envelope of the submission, too.
    let mut top = b"From: Rep\0orter <rep\0@isp.example>\r\nSubject: F\0wd\r\n\
                    Message-ID: <a\0b@isp.example>\r\nDate: Thu, 7 Mar 2024 13:58:00 +0000\r\n"
        .to_vec();
    top.extend_from_slice(b"\r\n-----Original Message-----\r\nFrom: s\0@spam.example\r\n");
    top.extend_from_slice(b"Subject: pas\0ted\r\nDate: today\0\r\n\r\nbody\r\n");
    run_twice(&top);
}

#[test]
fn h10_nul_bytes_in_feedback_fields_on_their_own() {
    let body = b"Feedback-Type: ab\0use\r\nUser-Agent: x\0\r\nVersion: 1\r\n\
                 X-A\0B: c\r\nX-Ext: \0\r\nReported-URI: <http://a\0b.example/>\r\n";
    let (report, diagnostics) =
        arfwire_parse::parse_feedback_fields(body, &arfwire_parse::Limits::default());
    check_feedback(&report);
    check_diagnostics(&diagnostics);
    assert_eq!(report.feedback_type.as_deref(), Some("ab\u{fffd}use"));
}

#[test]
fn h10_bare_cr_and_bare_lf_inside_headers_keep_evidence() {
    let reported = b"Received: from a (b [192.0.2.1])\r\n\tby mx.isp.example\r; Thu, 7 Mar 2024 13:59:00 +0000\r\n\
                     From: Spam <offers@spam.example>\r\r\n\
                     To: victim@isp.example\n\
                     Subject: bare\rcr and\nbare lf\r\n\
                     Message-ID: <spam-1@spam.example>\r\n\
                     \r\n\
                     body\rwith\nmixed\r\nendings\r"
        .to_vec();
    let input = arf(&reported);
    let submission = expect_report(run_twice(&input));
    for item in &submission.reports {
        assert!(contains(&input, &item.message.header_block));
    }
    // The same report written entirely with LF, and entirely with bare CR.
    let lf: Vec<u8> = arf(&spam()).into_iter().filter(|&b| b != b'\r').collect();
    let submission = expect_report(run_twice(&lf));
    assert!(contains(&lf, &submission.reports[0].message.header_block));
    let cr: Vec<u8> = lf
        .iter()
        .map(|&b| if b == b'\n' { b'\r' } else { b })
        .collect();
    let submission = expect_report(run_twice(&cr));
    assert!(has_code(&submission.diagnostics, Code::BareCrLineEndings));
}

/// Regression: a submission written with bare CR line endings was one line to the pre-scan,
/// so any such submission over 64 KiB was refused as one oversized header field.
#[test]
fn h10_large_bare_cr_report_is_processed() {
    let body = "A line of the spam body, long enough to add up quickly.\r\n".repeat(4_000);
    let reported = spam_with("", &body);
    let cr: Vec<u8> = arf(&reported).into_iter().filter(|&b| b != b'\n').collect();
    assert!(cr.len() > 200_000);
    let submission = expect_report(run(&cr));
    assert_eq!(submission.kind, ReportKind::Arf);
    assert!(has_code(&submission.diagnostics, Code::BareCrLineEndings));
}

// ---------------------------------------------------------------------------------------
// H11: invalid UTF-8 in every header

fn invalid_utf8_message() -> Vec<u8> {
    let mut m = Vec::new();
    for (name, value) in [
        (
            "Received",
            &b"from \xff\xfe (h\xc3 [192.0.2.1]) by mx; Thu, 7 Mar 2024 13:59:00 +0000"[..],
        ),
        ("From", b"\xe9t\xe9 <offers@spam.example>"),
        ("To", b"vict\xffim@isp.example"),
        ("Subject", b"caf\xe9 \xf0\x28\x8c\x28 \xc0\xaf"),
        ("Date", b"Thu, 7 Mar 2024 13:58:00 +0000 \xff"),
        ("Message-ID", b"<sp\xe4m-1@spam.example>"),
        ("Return-Path", b"<b\xfe@spam.example>"),
        ("X-Mailer", b"\x80\x81\x82"),
        ("Authentication-Results", b"mx; spf=pass \xed\xa0\x80"),
    ] {
        m.extend_from_slice(name.as_bytes());
        m.extend_from_slice(b": ");
        m.extend_from_slice(value);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"\r\nbody \xff\r\n");
    m
}

#[test]
fn h11_invalid_utf8_headers_keep_raw_bytes_and_decode_lossily() {
    let reported = invalid_utf8_message();
    let input = arf(&reported);
    let item = single_arf_item(run_twice(&input), &reported);
    let m = &item.message;
    assert_eq!(m.fields.len(), 9);
    assert!(m.subject.as_deref().is_some_and(|s| s.starts_with("caf")));
    assert_eq!(m.received.len(), 1);
    assert_eq!(m.provider_headers.len(), 1);
    assert!(
        m.from
            .as_ref()
            .is_some_and(|f| f.address == "offers@spam.example")
    );
}

/// The same header block sent as `text/rfc822-headers` must keep its bytes too (mail-parser's
/// text for the part has U+FFFD in place of bytes that are not UTF-8).
#[test]
fn h11_invalid_utf8_in_a_headers_part_keeps_raw_bytes() {
    let reported = invalid_utf8_message();
    let block = header_block_of(&reported);
    let input = arf_typed(REPORT_TYPE, FEEDBACK, "text/rfc822-headers", "", block);
    let submission = expect_report(run(&input));
    assert_eq!(submission.reports[0].message.header_block, block);
}

/// Found by fuzzing: a message/rfc822 part holding header fields and no blank line before the
/// closing boundary is one mail-parser cannot read as a message; the part becomes text, and
/// the evidence must still be its raw bytes, not that text (U+FFFD for bytes not UTF-8).
#[test]
fn h11_unparsable_reported_part_keeps_raw_bytes() {
    let reported = b"From: <offers@spam.example>\r\nSubject: caf\xe9\r\n";
    let mut input = arf(reported);
    // No blank line between the reported header fields and the closing boundary.
    let closing = input.len() - b"\r\n--arf--\r\n".len();
    input.drain(closing..closing + 2);
    let submission = expect_report(run(&input));
    let block = &submission.reports[0].message.header_block;
    assert!(
        contains(&input, block),
        "{:?}",
        String::from_utf8_lossy(block)
    );
}

// ---------------------------------------------------------------------------------------
// H12: inputs that made parsers panic

#[test]
fn h12_received_with_dangling_fold_does_not_fail() {
    for input in [
        &b"Received:\n\t"[..],
        b"Received: from x (y)\r\n\t",
        b"Received:\r\n\t\r\n",
        b"Received: (((((\r\n\t",
        b"From:\r\n\t",
        b"Subject: =?\r\n\t",
    ] {
        run_twice(input);
    }
}

#[test]
fn h12_from_with_many_colons() {
    // 99,999 colons are over the 64 KiB field limit; 60,000 reach mail-parser.
    for (n, rejected) in [(99_999, true), (60_000, false)] {
        let mut input = b"From: ".to_vec();
        input.resize(input.len() + n, b':');
        input.extend_from_slice(b"\r\nSubject: colons\r\n\r\nbody\r\n");
        let outcome = run_twice(&input);
        if rejected {
            expect_rejected(&outcome, RejectReason::HeaderFieldTooLarge);
        } else {
            assert!(
                !matches!(outcome, Outcome::Rejected(_)),
                "{}",
                summary(&outcome)
            );
        }
        // The same From in a reported message.
        let mut field = "From: ".to_owned();
        field.push_str(&":".repeat(n.min(60_000)));
        field.push_str(CRLF);
        let reported = b"Received: from x by y\r\n"
            .iter()
            .copied()
            .chain(field.into_bytes())
            .chain(b"Subject: s\r\n\r\nbody\r\n".iter().copied())
            .collect::<Vec<u8>>();
        run_twice(&arf(&reported));
    }
}

#[test]
fn h12_date_with_deeply_nested_comments() {
    for (n, rejected) in [(100_000, true), (60_000, false)] {
        let comments = "(".repeat(n);
        let input = format!("From: a@b.example\r\nDate: {comments}\r\nSubject: d\r\n\r\nbody\r\n");
        let outcome = run_twice(input.as_bytes());
        if rejected {
            expect_rejected(&outcome, RejectReason::HeaderFieldTooLarge);
        } else {
            assert!(
                !matches!(outcome, Outcome::Rejected(_)),
                "{}",
                summary(&outcome)
            );
        }
    }
    // In a reported message's Date, the feedback report's Arrival-Date and Source-IP.
    let comments = "(".repeat(30_000);
    let reported = spam_with(&format!("Date: {comments}x\r\n"), "body");
    let feedback = format!(
        "Feedback-Type: abuse\r\nUser-Agent: t/1\r\nVersion: 1\r\n\
         Arrival-Date: {comments}Thu, 7 Mar 2024\r\nSource-IP: {comments}192.0.2.1\r\n"
    );
    let outcome = run_twice(&arf_custom(REPORT_TYPE, &feedback, "", &reported));
    let submission = expect_report(outcome);
    assert_eq!(
        submission.reports[0].feedback.as_ref().unwrap().source_ip,
        None
    );
}

/// mail-parser 0.11.9 has a `debug_assert!` on this valid shape (a message/rfc822 whose body
/// is itself `Content-Type: message/rfc822`). The workspace builds mail-parser without debug
/// assertions in every profile, so the test build behaves as production does.
#[test]
fn h12_message_rfc822_whose_body_is_message_rfc822_is_parsed() {
    let spam = spam();
    let mut wrapper = b"From: fwd@fwd.example\r\nSubject: Fwd: wrapped\r\nMIME-Version: 1.0\r\n\
                        Content-Type: message/rfc822\r\n\r\n"
        .to_vec();
    wrapper.extend_from_slice(&spam);
    let input = arf(&wrapper);
    let submission = expect_report(run_twice(&input));
    assert_eq!(submission.kind, ReportKind::Arf);
    let block = &submission.reports[0].message.header_block;
    assert!(block.starts_with(header_block_of(&wrapper)));
    assert!(contains(&input, block));
    // And as a plain forward-as-attachment.
    let mut forward = b"From: r@isp.example\r\nSubject: Fwd: spam\r\nMIME-Version: 1.0\r\n\
                        Content-Type: multipart/mixed; boundary=\"f\"\r\n\r\n\
                        --f\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
                        --f\r\nContent-Type: message/rfc822\r\n\r\n"
        .to_vec();
    forward.extend_from_slice(&wrapper);
    forward.extend_from_slice(b"\r\n--f--\r\n");
    let submission = expect_report(run_twice(&forward));
    assert_eq!(submission.kind, ReportKind::ForwardAttachment);
}

/// The reported message is the wrapper; its header block ends at the wrapper's blank line.
#[test]
fn h12_wrapper_header_block_is_not_joined_with_the_message_inside() {
    let mut wrapper = b"From: fwd@fwd.example\r\nSubject: Fwd: wrapped\r\nMIME-Version: 1.0\r\n\
                        Content-Type: message/rfc822\r\n\r\n"
        .to_vec();
    wrapper.extend_from_slice(&spam());
    single_arf_item(run(&arf(&wrapper)), &wrapper);
}

/// Found by fuzzing: for this 150-byte shape (a message/rfc822 part whose message has no
/// header fields and starts with another boundary-like line) mail-parser 0.11.9 returns a
/// multipart whose children include itself and its parent. Walking that tree without a guard
/// never ends and exhausts memory, which no `catch_unwind` can contain.
#[test]
fn h12_cyclic_part_tree_from_mail_parser_terminates() {
    let input = b"From: a@spam.example\nContent-Type: multipart/mixed; boundary=\"B\"\n\n\
                  --B\nContent-Type: message/rfc822\n\n\
                  --X\nContent-Type: message/rfc822\n\nY: z\n\n\
                  --B\nContent-Type: message/rfc822\n\nW: v\n\nbody\n\n--B--\n";
    run_twice(input);
}

#[test]
fn h12_every_prefix_of_an_arf_parses() {
    let reported = spam_with(
        "DKIM-Signature: v=1; a=rsa-sha256; d=spam.example; s=sel; h=from:to;\r\n\
         \tb=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZQ==\r\n\
         Subject: =?utf-8?q?caf=C3=A9?=\r\n\
         Authentication-Results: mx.isp.example; spf=pass smtp.mailfrom=spam.example;\r\n\
         \tdkim=pass header.d=spam.example; dmarc=pass header.from=spam.example\r\n\
         List-Unsubscribe: <mailto:unsubscribe@spam.example?subject=stop>,\r\n\
         \t<https://spam.example/unsubscribe?id=0123456789abcdef>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n",
        "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         Win! You have been selected for an exclusive caf=C3=A9 reward. Claim it within =\r\n\
         24 hours at https://spam.example/claim?id=0123456789abcdef or lose it forever.\r\n\
         Reply STOP to opt out. This offer is void where prohibited by law.\r\n\
         --alt\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         SGVsbG8sIHdvcmxkIQ==\r\n\
         --alt\r\nContent-Type: text/html\r\n\r\n<p>Win!</p>\r\n--alt--",
    );
    let input = arf(&reported);
    assert!((1_800..2_600).contains(&input.len()), "{}", input.len());
    for end in 0..=input.len() {
        check_outcome(&parse(&input[..end], &ParseOptions::default()));
    }
}

// ---------------------------------------------------------------------------------------
// H21: structural differentials

#[test]
fn h21_two_feedback_parts_in_one_report_are_flagged() {
    let reported = spam();
    let mut input = arf(&reported);
    let second = format!(
        "--arf\r\nContent-Type: message/feedback-report\r\n\r\n{}\r\n",
        FEEDBACK.replace("abuse", "fraud")
    );
    let at = input.len() - b"--arf--\r\n".len();
    input.splice(at..at, second.bytes());
    let submission = expect_report(run_twice(&input));
    assert_eq!(submission.reports.len(), 2);
    let flagged = |diags: &[Diagnostic]| {
        diags
            .iter()
            .any(|d| d.code == Code::MultipleFeedbackParts && d.severity == Severity::Error)
    };
    assert!(flagged(&submission.diagnostics));
    for item in &submission.reports {
        assert!(
            flagged(&item.diagnostics),
            "item {} not flagged",
            item.index
        );
    }
}

#[test]
fn h21_huge_incidents_are_capped() {
    let feedback = format!("{FEEDBACK}Incidents: 1000000000\r\n");
    let reported = spam();
    let item = single_arf_item(
        run(&arf_custom(REPORT_TYPE, &feedback, "", &reported)),
        &reported,
    );
    assert_eq!(item.feedback.as_ref().unwrap().incidents, Some(1_000_000));
    assert!(has_code(&item.diagnostics, Code::IncidentsCapped));
    // Past u64, too.
    let feedback = format!("{FEEDBACK}Incidents: 99999999999999999999999999\r\n");
    run_twice(&arf_custom(REPORT_TYPE, &feedback, "", &reported));
}

#[test]
fn h21_report_without_report_type_is_flagged() {
    let reported = spam();
    let input = arf_custom(
        "multipart/report; boundary=\"arf\"",
        FEEDBACK,
        "",
        &reported,
    );
    let item = single_arf_item(run_twice(&input), &reported);
    assert!(has_code(&item.diagnostics, Code::MissingReportType));
}
