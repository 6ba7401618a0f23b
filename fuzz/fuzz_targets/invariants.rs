//! Invariants every parse must keep, shared by the fuzz targets.

use arfwire_parse::{
    Diagnostic, FeedbackReport, Mailbox, MessageSource, Outcome, RejectReason, ReportedMessage,
    SubmissionHeader,
};

/// Structural tokens are rare in random bytes; the second pass of each target maps every
/// byte into this alphabet so that colons, equals signs, dashes, blanks and line ends come
/// up often.
pub const ALPHABET: &[u8] = b"0123456789abcdefghijklm:=- \r\n";

pub fn remap(data: &[u8]) -> Vec<u8> {
    data.iter()
        .map(|&b| ALPHABET[b as usize % ALPHABET.len()])
        .collect()
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn is_subslice(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn no_nul(what: &str, s: &str) {
    assert!(!s.contains('\0'), "NUL in {what}: {s:?}");
}

fn mailbox(what: &str, m: &Option<Mailbox>) {
    if let Some(m) = m {
        no_nul(what, &m.address);
        if let Some(name) = &m.name {
            no_nul(what, name);
        }
        if let Some(domain) = &m.domain {
            no_nul(what, domain);
        }
    }
}

fn opt(what: &str, s: &Option<String>) {
    if let Some(s) = s {
        no_nul(what, s);
    }
}

fn diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        no_nul("diagnostic", &d.message);
    }
}

fn envelope(e: &SubmissionHeader) {
    mailbox("envelope from", &e.from);
    mailbox("envelope resent-from", &e.resent_from);
    opt("envelope subject", &e.subject);
    opt("envelope message-id", &e.message_id);
    opt("envelope date", &e.date);
    opt("envelope content type", &e.content_type);
    opt("envelope report type", &e.report_type);
}

/// Every string a feedback report carries is free of NUL.
pub fn feedback(f: &FeedbackReport) {
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
        opt("feedback field", s);
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
        no_nul("feedback extension name", name);
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

fn message(m: &ReportedMessage) {
    for f in m.fields.iter().chain(&m.provider_headers) {
        no_nul("field name", &f.name);
        no_nul("field value", &f.value);
    }
    for r in &m.received {
        no_nul("received", r);
    }
    opt("message-id", &m.message_id);
    mailbox("from", &m.from);
    opt("date", &m.date);
    opt("subject", &m.subject);
    opt("return-path", &m.return_path);
    for sig in &m.dkim_signatures {
        opt("dkim d=", &sig.domain);
        opt("dkim s=", &sig.selector);
        opt("dkim i=", &sig.identity);
        opt("dkim b=", &sig.signature_prefix);
    }
}

/// The reported header block is evidence: it must be bytes of the input, except where the
/// parser had to decode to find it (a transfer encoding, bare CR line endings read as LF) and
/// for blocks quoted in a text body (inline forwards, pasted headers), which come from the
/// decoded text and have lost folding restored.
fn evidence(input: &[u8], m: &ReportedMessage) {
    if is_subslice(input, &m.header_block) {
        return;
    }
    let encoded =
        contains_ignore_case(input, b"base64") || contains_ignore_case(input, b"quoted-printable");
    let bare_cr = !input.contains(&b'\n') && input.contains(&b'\r');
    let quoted_in_text = matches!(
        m.source,
        MessageSource::Pasted | MessageSource::InlineForward
    );
    assert!(
        encoded || bare_cr || quoted_in_text,
        "header block of a {:?} message is not a copy of input bytes",
        m.source
    );
}

/// Check one outcome of `arfwire_parse::parse` on `input`.
pub fn outcome(input: &[u8], outcome: &Outcome) {
    match outcome {
        Outcome::Rejected(r) => {
            assert!(
                r.reason != RejectReason::ParserFailure,
                "the parser failed (a contained panic): {}",
                r.detail
            );
            no_nul("rejection detail", &r.detail);
            diagnostics(&r.diagnostics);
        }
        Outcome::NotReport(n) => {
            no_nul("detail", &n.detail);
            envelope(&n.envelope);
            diagnostics(&n.diagnostics);
        }
        Outcome::Report(s) => {
            assert!(!s.reports.is_empty(), "a report without reported messages");
            envelope(&s.envelope);
            diagnostics(&s.diagnostics);
            for (i, item) in s.reports.iter().enumerate() {
                assert_eq!(item.index, i);
                no_nul("mime path", &item.mime_path);
                if let Some(f) = &item.feedback {
                    feedback(f);
                }
                message(&item.message);
                evidence(input, &item.message);
                diagnostics(&item.diagnostics);
            }
        }
    }
}
