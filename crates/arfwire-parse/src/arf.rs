//! The `message/feedback-report` field grammar (RFC 5965, RFC 6591, RFC 6692, the draft ARF).
//!
//! Lenient about what is missing or misspelled, strict about what a value means: field names
//! are case-insensitive, comments are stripped from structured values but kept raw,
//! redacted values read as absent, and every deviation is a diagnostic.

use std::net::IpAddr;

use crate::address::strip_angles;
use crate::diag::{Code, Diagnostic};
use crate::headers::{fields, unfold};
use crate::limits::Limits;
use crate::types::{FeedbackField, FeedbackReport};

/// Registered feedback types (RFC 5965 §7.3, RFC 6591 §3).
const KNOWN_TYPES: &[&str] = &[
    "abuse",
    "fraud",
    "virus",
    "other",
    "not-spam",
    "auth-failure",
];

/// Canonical spellings of the fields we know, for case diagnostics and lookups.
const CANONICAL: &[&str] = &[
    "Feedback-Type",
    "User-Agent",
    "Version",
    "Arrival-Date",
    "Received-Date",
    "Source-IP",
    "Source-Port",
    "Original-Envelope-Id",
    "Original-Mail-From",
    "Original-Rcpt-To",
    "Reported-Domain",
    "Reported-URI",
    "Reporting-MTA",
    "Authentication-Results",
    "Incidents",
    "Auth-Failure",
    "Delivery-Result",
    "DKIM-Domain",
    "DKIM-Identity",
    "DKIM-Selector",
    "DKIM-Canonicalized-Header",
    "DKIM-Canonicalized-Body",
    "SPF-DNS",
    "Identity-Alignment",
    "Removal-Recipient",
];

/// Fields whose values are structured, so comments in them are not data.
const STRUCTURED: &[&str] = &[
    "feedback-type",
    "version",
    "arrival-date",
    "received-date",
    "source-ip",
    "source-port",
    "original-mail-from",
    "original-rcpt-to",
    "reported-domain",
    "reporting-mta",
    "incidents",
    "auth-failure",
    "delivery-result",
    "dkim-domain",
    "dkim-identity",
    "dkim-selector",
    "identity-alignment",
    "removal-recipient",
];

/// Remove RFC 5322 comments (nested parentheses, outside quoted strings) and collapse blanks.
pub(crate) fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut in_quotes = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            if depth == 0 {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                in_quotes = !in_quotes;
                out.push(c);
            }
            '(' if !in_quotes => depth += 1,
            ')' if !in_quotes && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Is this value a redaction rather than data?
fn is_redacted(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.is_empty()
        || v.contains("redacted")
        || v == "unknown"
        || v.chars().all(|c| matches!(c, 'x' | '.' | '*' | ':' | '#'))
        || (v.contains('x')
            && v.split('.').count() == 4
            && v.split('.').any(|o| o.chars().all(|c| c == 'x')))
}

/// Parse an IP as reporters write it: bracketed, with an `IPv6:` tag, with a comment.
pub(crate) fn parse_ip(value: &str) -> Option<IpAddr> {
    let token = value.split_whitespace().next()?;
    let token = token.trim_matches(|c| c == '[' || c == ']' || c == ';' || c == ',');
    let token = token
        .strip_prefix("IPv6:")
        .or_else(|| token.strip_prefix("ipv6:"))
        .unwrap_or(token);
    let ip: IpAddr = token.parse().ok()?;
    Some(ip.to_canonical())
}

/// Parse an RFC 5322 date through mail-parser's lenient date grammar.
pub(crate) fn parse_date(value: &str) -> Option<i64> {
    let mut buf = Vec::with_capacity(value.len() + 12);
    buf.extend_from_slice(b"Date: ");
    buf.extend_from_slice(value.as_bytes());
    buf.extend_from_slice(b"\n\n");
    static DATE_PARSER: std::sync::LazyLock<mail_parser::MessageParser> =
        std::sync::LazyLock::new(|| mail_parser::MessageParser::new().with_date_headers());
    let message = DATE_PARSER.parse_headers(&buf[..])?;
    let date = message.date()?;
    if date.is_valid() {
        Some(date.to_timestamp())
    } else {
        None
    }
}

/// Parse the body of a feedback-report part into a [`FeedbackReport`].
pub(crate) fn parse_fields(
    body: &[u8],
    limits: &Limits,
    received_at_unix: Option<i64>,
    diagnostics: &mut Vec<Diagnostic>,
) -> FeedbackReport {
    let mut report = FeedbackReport::default();
    // Feedback parts sometimes hold blank lines between fields; read every non-blank line.
    let mut normalised: Vec<u8> = Vec::with_capacity(body.len());
    for line in crate::limits::lines(body) {
        if line.trim_ascii().is_empty() {
            continue;
        }
        normalised.extend_from_slice(line);
        normalised.push(b'\n');
    }
    let (raw_fields, malformed) = fields(&normalised);
    if malformed > 0 {
        diagnostics.push(Diagnostic::new(
            Code::MalformedFeedbackLine,
            format!("{malformed} line(s) in the feedback report are not fields"),
        ));
    }

    let mut seen_single: Vec<String> = Vec::new();
    let mut case_noted: Vec<String> = Vec::new();
    for field in &raw_fields {
        let name = field.name_str();
        let lower = name.to_ascii_lowercase();
        let raw = unfold(field.value);
        let value = if STRUCTURED.contains(&lower.as_str()) {
            strip_comments(&raw)
        } else {
            raw.clone()
        };
        if let Some(canonical) = CANONICAL.iter().find(|c| c.eq_ignore_ascii_case(&name))
            && *canonical != name
            && !case_noted.contains(&lower)
        {
            case_noted.push(lower.clone());
            diagnostics.push(Diagnostic::new(
                Code::FieldNameCase,
                format!("field {name} is written in a non-canonical case ({canonical})"),
            ));
        }
        report.fields.push(FeedbackField {
            name: name.clone(),
            value: value.clone(),
            raw: raw.clone(),
        });

        let mut duplicate = false;
        let mut single = |slot: &mut Option<String>, v: String| {
            if slot.is_some() {
                duplicate = true;
            } else {
                *slot = Some(v);
            }
        };
        match lower.as_str() {
            "feedback-type" => single(&mut report.feedback_type, value.to_ascii_lowercase()),
            "user-agent" => single(&mut report.user_agent, value),
            "version" => single(&mut report.version, value),
            "arrival-date" => single(&mut report.arrival_date, value),
            "received-date" => {
                diagnostics.push(Diagnostic::new(
                    Code::HistoricReceivedDate,
                    "the draft field Received-Date is read as Arrival-Date",
                ));
                single(&mut report.arrival_date, value);
            }
            "source-ip" => {
                let mut slot = report.source_ip_raw.take();
                single(&mut slot, raw.clone());
                report.source_ip_raw = slot;
            }
            "source-port" => {
                if report.source_port.is_none() {
                    match value.parse::<u16>() {
                        Ok(port) => report.source_port = Some(port),
                        Err(_) => diagnostics.push(Diagnostic::new(
                            Code::InvalidValue,
                            "Source-Port is not a port number",
                        )),
                    }
                }
            }
            "original-envelope-id" => single(&mut report.original_envelope_id, value),
            "original-mail-from" => single(&mut report.original_mail_from, strip_angles(&value)),
            "original-rcpt-to" => report.original_rcpt_to.push(strip_angles(&value)),
            "reported-domain" => report.reported_domain.push(value.to_ascii_lowercase()),
            "reported-uri" => report.reported_uri.push(strip_angles(&value)),
            "reporting-mta" => {
                let v = match value.split_once(';') {
                    Some((kind, host)) if kind.trim().eq_ignore_ascii_case("dns") => {
                        host.trim().to_owned()
                    }
                    _ => value,
                };
                single(&mut report.reporting_mta, v);
            }
            "authentication-results" => report.authentication_results.push(raw),
            "incidents" => match value.parse::<u64>() {
                Ok(n) if n > limits.max_incidents => {
                    diagnostics.push(Diagnostic::new(
                        Code::IncidentsCapped,
                        format!("Incidents {n} capped at {}", limits.max_incidents),
                    ));
                    report.incidents = Some(limits.max_incidents);
                }
                Ok(n) => report.incidents = report.incidents.or(Some(n)),
                Err(_) => diagnostics.push(Diagnostic::new(
                    Code::InvalidValue,
                    "Incidents is not a number",
                )),
            },
            "auth-failure" => single(&mut report.auth_failure, value.to_ascii_lowercase()),
            "delivery-result" => single(&mut report.delivery_result, value.to_ascii_lowercase()),
            "dkim-domain" => single(&mut report.dkim_domain, value.to_ascii_lowercase()),
            "dkim-identity" => single(&mut report.dkim_identity, value),
            "dkim-selector" => single(&mut report.dkim_selector, value),
            "dkim-canonicalized-header" => single(
                &mut report.dkim_canonicalized_header,
                value.replace(' ', ""),
            ),
            "dkim-canonicalized-body" => {
                single(&mut report.dkim_canonicalized_body, value.replace(' ', ""))
            }
            "spf-dns" => report.spf_dns.push(value),
            "identity-alignment" => single(&mut report.identity_alignment, value),
            "removal-recipient" => report.removal_recipient.push(strip_angles(&value)),
            _ => report
                .extensions
                .entry(lower.clone())
                .or_default()
                .push(value),
        }
        if duplicate && !seen_single.contains(&lower) {
            seen_single.push(lower.clone());
            diagnostics.push(Diagnostic::new(
                Code::DuplicateField,
                format!("field {name} appears more than once; the first value is kept"),
            ));
        }
    }

    // Source-IP: parse, normalise, or explain why not.
    if let Some(raw_ip) = report.source_ip_raw.as_deref() {
        let stripped = strip_comments(raw_ip);
        if is_redacted(&stripped) {
            diagnostics.push(Diagnostic::new(
                Code::RedactedValue,
                "Source-IP is redacted and read as absent",
            ));
        } else {
            match parse_ip(&stripped) {
                Some(ip) => report.source_ip = Some(ip),
                None => diagnostics.push(Diagnostic::new(
                    Code::InvalidValue,
                    "Source-IP is not an IP address and is read as absent",
                )),
            }
        }
    }

    if let Some(date) = report.arrival_date.as_deref() {
        report.arrival_date_unix = parse_date(date);
        match (report.arrival_date_unix, received_at_unix) {
            (None, _) => diagnostics.push(Diagnostic::new(
                Code::InvalidValue,
                "Arrival-Date is not a date",
            )),
            (Some(arrival), Some(received)) if arrival > received + 86_400 => {
                diagnostics.push(Diagnostic::new(
                    Code::ArrivalDateInFuture,
                    "Arrival-Date is more than a day after the report was received",
                ))
            }
            _ => {}
        }
    }

    for (present, name) in [
        (report.feedback_type.is_some(), "Feedback-Type"),
        (report.user_agent.is_some(), "User-Agent"),
        (report.version.is_some(), "Version"),
    ] {
        if !present {
            diagnostics.push(Diagnostic::new(
                Code::MissingRequiredField,
                format!("required field {name} is missing"),
            ));
        }
    }
    if let Some(feedback_type) = report.feedback_type.as_deref() {
        if !KNOWN_TYPES.contains(&feedback_type) {
            diagnostics.push(Diagnostic::new(
                Code::UnknownFeedbackType,
                format!("Feedback-Type {feedback_type} is not registered"),
            ));
        }
        if feedback_type == "auth-failure" && report.auth_failure.is_none() {
            diagnostics.push(Diagnostic::new(
                Code::MissingRequiredField,
                "required field Auth-Failure is missing from an auth-failure report",
            ));
        }
    }
    if let Some(version) = report.version.as_deref()
        && version != "1"
    {
        diagnostics.push(Diagnostic::new(
            Code::NonstandardVersion,
            format!("Version is {version}, not 1"),
        ));
    }
    report
}
