//! Explicit conversions from the parser's types to the v1 wire types.
//!
//! Every text value passes through [`clean`], so no emitted string holds a NUL.

use arfwire_parse as parse;
use chrono::{DateTime, SecondsFormat};

use crate::ids::sha256_hex;
use crate::v1::{
    ClaimedIpV1, DiagnosticScope, DiagnosticSeverity, DiagnosticV1, DkimSignatureV1,
    FeedbackFieldV1, FeedbackV1, HeaderFieldV1, MailboxV1, ReportedMessageV1, ReporterV1,
    SenderDomainSource, StructureV1,
};

/// Text as it goes on the wire: NUL (U+0000) replaced by U+FFFD.
pub(crate) fn clean(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

fn clean_opt(text: Option<&String>) -> Option<String> {
    text.map(|t| clean(t))
}

fn clean_all(texts: &[String]) -> Vec<String> {
    texts.iter().map(|t| clean(t)).collect()
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2010-08-09T10:00:00Z`); `None` when out
/// of range.
pub(crate) fn rfc3339(unix: Option<i64>) -> Option<String> {
    let at = DateTime::from_timestamp(unix?, 0)?;
    Some(at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl From<&parse::Mailbox> for MailboxV1 {
    fn from(m: &parse::Mailbox) -> Self {
        MailboxV1 {
            name: clean_opt(m.name.as_ref()),
            address: clean(&m.address),
            domain: clean_opt(m.domain.as_ref()),
        }
    }
}

impl From<&parse::SubmissionHeader> for ReporterV1 {
    fn from(h: &parse::SubmissionHeader) -> Self {
        ReporterV1 {
            from: h.from.as_ref().map(MailboxV1::from),
            subject: clean_opt(h.subject.as_ref()),
            message_id: clean_opt(h.message_id.as_ref()),
            date: clean_opt(h.date.as_ref()),
            date_parsed: rfc3339(h.date_unix),
        }
    }
}

impl From<&parse::SubmissionHeader> for StructureV1 {
    fn from(h: &parse::SubmissionHeader) -> Self {
        StructureV1 {
            content_type: clean_opt(h.content_type.as_ref()),
            report_type: clean_opt(h.report_type.as_ref()),
            part_count: count(h.n_parts),
            depth: count(h.depth),
        }
    }
}

impl From<&parse::FeedbackField> for FeedbackFieldV1 {
    fn from(f: &parse::FeedbackField) -> Self {
        FeedbackFieldV1 {
            name: clean(&f.name),
            value: clean(&f.value),
            raw: clean(&f.raw),
        }
    }
}

impl From<&parse::FeedbackReport> for FeedbackV1 {
    fn from(f: &parse::FeedbackReport) -> Self {
        FeedbackV1 {
            feedback_type: clean_opt(f.feedback_type.as_ref()),
            version: clean_opt(f.version.as_ref()),
            user_agent: clean_opt(f.user_agent.as_ref()),
            arrival_date: clean_opt(f.arrival_date.as_ref()),
            arrival_date_parsed: rfc3339(f.arrival_date_unix),
            source_ip: f.source_ip.map(|ip| ip.to_canonical()),
            source_ip_raw: clean_opt(f.source_ip_raw.as_ref()),
            source_port: f.source_port,
            original_envelope_id: clean_opt(f.original_envelope_id.as_ref()),
            original_mail_from: clean_opt(f.original_mail_from.as_ref()),
            original_rcpt_to: clean_all(&f.original_rcpt_to),
            reported_domain: clean_all(&f.reported_domain),
            reported_uri: clean_all(&f.reported_uri),
            reporting_mta: clean_opt(f.reporting_mta.as_ref()),
            authentication_results: clean_all(&f.authentication_results),
            incidents: f.incidents,
            auth_failure: clean_opt(f.auth_failure.as_ref()),
            delivery_result: clean_opt(f.delivery_result.as_ref()),
            dkim_domain: clean_opt(f.dkim_domain.as_ref()),
            dkim_identity: clean_opt(f.dkim_identity.as_ref()),
            dkim_selector: clean_opt(f.dkim_selector.as_ref()),
            dkim_canonicalized_header: clean_opt(f.dkim_canonicalized_header.as_ref()),
            dkim_canonicalized_body: clean_opt(f.dkim_canonicalized_body.as_ref()),
            spf_dns: clean_all(&f.spf_dns),
            identity_alignment: clean_opt(f.identity_alignment.as_ref()),
            removal_recipient: clean_all(&f.removal_recipient),
            extensions: f
                .extensions
                .iter()
                .map(|(name, values)| (clean(name), clean_all(values)))
                .collect(),
            fields: f.fields.iter().map(FeedbackFieldV1::from).collect(),
        }
    }
}

impl From<&parse::ClaimedIp> for ClaimedIpV1 {
    fn from(c: &parse::ClaimedIp) -> Self {
        ClaimedIpV1 {
            ip: c.ip.to_canonical(),
            origin: clean(c.origin),
        }
    }
}

impl From<&parse::DkimSignature> for DkimSignatureV1 {
    fn from(d: &parse::DkimSignature) -> Self {
        DkimSignatureV1 {
            domain: clean_opt(d.domain.as_ref()),
            selector: clean_opt(d.selector.as_ref()),
            identity: clean_opt(d.identity.as_ref()),
            signature_prefix: clean_opt(d.signature_prefix.as_ref()),
        }
    }
}

impl From<&parse::HeaderField> for HeaderFieldV1 {
    fn from(h: &parse::HeaderField) -> Self {
        HeaderFieldV1 {
            name: clean(&h.name),
            value: clean(&h.value),
        }
    }
}

impl From<parse::Severity> for DiagnosticSeverity {
    fn from(s: parse::Severity) -> Self {
        match s {
            parse::Severity::Info => DiagnosticSeverity::Info,
            parse::Severity::Warning => DiagnosticSeverity::Warning,
            parse::Severity::Error => DiagnosticSeverity::Error,
        }
    }
}

/// One parser diagnostic, with the scope it was found at.
pub(crate) fn diagnostic(d: &parse::Diagnostic, scope: DiagnosticScope) -> DiagnosticV1 {
    DiagnosticV1 {
        code: d.code.as_str().to_owned(),
        severity: d.severity.into(),
        message: clean(&d.message),
        scope,
    }
}

/// The reported message of one item.
pub(crate) fn reported_message(item: &parse::ReportedItem) -> ReportedMessageV1 {
    let m = &item.message;
    let from_domain = m.from.as_ref().and_then(|f| f.domain.as_deref());
    let sender_domain = item.sender_domain().map(|d| clean(&d.to_ascii_lowercase()));
    let sender_domain_source = match (from_domain, &sender_domain) {
        (_, None) => None,
        (Some(_), Some(_)) => Some(SenderDomainSource::HeaderFrom),
        (None, Some(_)) => Some(SenderDomainSource::OriginalMailFrom),
    };
    ReportedMessageV1 {
        source: m.source.as_str().to_owned(),
        mime_path: clean(&item.mime_path),
        header_block_sha256: sha256_hex(&m.header_block),
        header_field_count: count(m.fields.len()),
        has_body: m.has_body,
        body_size: count(m.body_size),
        message_id: clean_opt(m.message_id.as_ref()),
        from: m.from.as_ref().map(MailboxV1::from),
        sender_domain,
        sender_domain_source,
        date: clean_opt(m.date.as_ref()),
        date_parsed: rfc3339(m.date_unix),
        subject: clean_opt(m.subject.as_ref()),
        return_path: clean_opt(m.return_path.as_ref()),
        received: clean_all(&m.received),
        dkim_signatures: m
            .dkim_signatures
            .iter()
            .map(DkimSignatureV1::from)
            .collect(),
        provider_headers: m.provider_headers.iter().map(HeaderFieldV1::from).collect(),
    }
}
