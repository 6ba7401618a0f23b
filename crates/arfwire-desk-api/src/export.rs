//! Exports: a tenant's reports as CSV, one report as an XARF v4 JSON document.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::hex;
use crate::db::{ReportDetail, ReportSummary};

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 17] = [
    "report_id",
    "received_at",
    "tenant_id",
    "tenant_name",
    "kind",
    "feedback_type",
    "complaint_type",
    "reporter_domain",
    "reporter_tier",
    "confidence",
    "score",
    "source_ip",
    "origin_ip",
    "egress_ip",
    "sender_domain",
    "message_id",
    "subject",
];

/// A cell a spreadsheet will not run as a formula: text starting with `=`, `+`, `-`, `@`
/// (or a tab or carriage return, which some spreadsheets skip before looking) gets a leading
/// `'`.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// A tenant's reports as CSV (RFC 4180 quoting, formula cells neutralised).
pub fn csv(rows: &[ReportSummary]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    writer.write_record(CSV_HEADER)?;
    for r in rows {
        let received = r
            .received_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let score = r.score.map(|s| format!("{s:.3}")).unwrap_or_default();
        let cells: [&str; 17] = [
            &r.id,
            &received,
            &r.tenant_id,
            r.tenant_name.as_deref().unwrap_or(""),
            &r.kind,
            r.feedback_type.as_deref().unwrap_or(""),
            &r.complaint_type,
            r.reporter_domain.as_deref().unwrap_or(""),
            r.reporter_tier.as_deref().unwrap_or(""),
            r.confidence.as_deref().unwrap_or(""),
            &score,
            r.source_ip.as_deref().unwrap_or(""),
            r.origin_ip.as_deref().unwrap_or(""),
            r.egress_ip.as_deref().unwrap_or(""),
            r.sender_domain.as_deref().unwrap_or(""),
            r.message_id.as_deref().unwrap_or(""),
            r.subject.as_deref().unwrap_or(""),
        ];
        writer.write_record(cells.iter().map(|c| neutralise(c).into_owned()))?;
    }
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// Letters, digits, `-`, `_` and `.` of `text` (others become `_`), at most 64: safe inside a
/// download's file name.
pub fn safe_filename_part(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "tenant".to_owned()
    } else {
        cleaned
    }
}

/// Who files the XARF reports (the `reporter` object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XarfReporter {
    /// `reporter.org`.
    pub org: String,
    /// `reporter.domain`.
    pub domain: Option<String>,
    /// `reporter.contact`.
    pub email: Option<String>,
}

impl Default for XarfReporter {
    fn default() -> Self {
        XarfReporter {
            org: "arfwire abuse desk".to_owned(),
            domain: None,
            email: None,
        }
    }
}

/// One report as an XARF v4.0.0 document: class `messaging`, type `spam`, evidence source
/// `user_complaint`, the sending IP as `source_identifier` and, when the raw submission is
/// held, the submission as base64 `message/rfc822` evidence.
pub fn xarf(report: &ReportDetail, raw: Option<&[u8]>, reporter: &XarfReporter) -> Value {
    let r = &report.summary;
    let attribution = report.attribution.as_ref();
    // The IP the message left the platform from is what the receiving side saw; fall back to
    // the reporter's Source-IP.
    let source_ip = r
        .egress_ip
        .clone()
        .or_else(|| r.source_ip.clone())
        .or_else(|| r.origin_ip.clone());
    let source_port = attribution
        .and_then(|a| a.egress_ip.as_ref().and_then(|ip| ip.port))
        .or_else(|| {
            report
                .event
                .pointer("/feedback/source_port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        });
    // When the incident happened: the message's arrival at the complainant, as the store
    // recorded it or as the event states it; else when the report reached us.
    let event_time = |pointer: &str| {
        report
            .event
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let date = report
        .arrival_at
        .or_else(|| event_time("/feedback/arrival_date_parsed"))
        .or_else(|| event_time("/reported_message/date_parsed"))
        .unwrap_or(r.received_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let smtp_from = report
        .event
        .pointer("/feedback/original_mail_from")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            report
                .event
                .pointer("/reported_message/from/address")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let evidence: Vec<Value> = raw
        .map(|bytes| {
            vec![json!({
                "content_type": "message/rfc822",
                "description": "The abuse report as received, with the reported message",
                "hash": format!("sha256:{}", hex(&Sha256::digest(bytes))),
                "size": bytes.len(),
                "payload": STANDARD.encode(bytes),
            })]
        })
        .unwrap_or_default();
    let tenant = r.tenant_name.clone().unwrap_or_else(|| r.tenant_id.clone());
    // XARF v4.0.0 layout: flat core fields, the messaging class's spam type with its SMTP
    // fields, evidence as base64 payloads. What only arfwire knows (the attributed tenant, the
    // confidence label, the explanation) travels in the `x_arfwire` extension object.
    json!({
        "xarf_version": "4.0.0",
        "report_id": r.id,
        "timestamp": date,
        "reporter": {
            "org": reporter.org,
            "contact": reporter.email,
            "domain": reporter.domain,
            "type": "automated",
        },
        "source_identifier": source_ip,
        "source_port": source_port,
        "class": "messaging",
        "type": "spam",
        "protocol": "smtp",
        "smtp_from": smtp_from,
        "subject": r.subject,
        "message_id": r.message_id,
        "evidence_source": "user_complaint",
        "evidence": evidence,
        "confidence": r.score,
        "description": format!(
            "{} complaint ({}) about a message attributed to {} with confidence {}",
            r.complaint_type,
            r.kind,
            tenant,
            r.confidence.as_deref().unwrap_or("NONE"),
        ),
        "x_arfwire": {
            "tenant_id": r.tenant_id,
            "tenant_name": r.tenant_name,
            "confidence": r.confidence,
            "feedback_type": r.feedback_type.clone().unwrap_or_else(|| r.complaint_type.clone()),
            "reporter_domain": r.reporter_domain,
            "reporter_tier": r.reporter_tier,
            "sender_domain": r.sender_domain,
            "explanation": attribution.map(|a| a.explanation.clone()).unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(neutralise("=1+1"), "'=1+1");
        assert_eq!(neutralise("+cmd"), "'+cmd");
        assert_eq!(neutralise("-2"), "'-2");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\t=x"), "'\t=x");
        assert_eq!(neutralise("plain"), "plain");
        assert_eq!(neutralise(""), "");
    }

    #[test]
    fn filename_parts_are_safe() {
        assert_eq!(safe_filename_part("../etc/passwd"), "___etc_passwd");
        assert_eq!(safe_filename_part("a\u{202e}b\"c"), "a_b_c");
        assert_eq!(safe_filename_part(""), "tenant");
    }
}
