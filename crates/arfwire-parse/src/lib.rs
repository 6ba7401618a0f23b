//! Parse and classify mail sent to an abuse mailbox.
//!
//! The one entry point is [`parse`]: the caller passes the raw bytes of a submission and the
//! time it was received, and gets an [`Outcome`]: a [`Submission`] holding every reported
//! message, a [`NotReport`] (a bounce, an auto-reply, ordinary mail) with a reason, or a
//! [`Rejection`] when the input breaks a hard limit or is not mail at all.
//!
//! This crate does no IO, reads no clock, draws no random numbers and never panics: limits
//! are checked by a linear pre-scan before the MIME parser runs, and the whole parse runs
//! under `catch_unwind` as a last resort. Deviations from the standards are reported as
//! [`Diagnostic`]s with stable codes rather than refused.
//!
//! ```ignore
//! let outcome = arfwire_parse::parse(&bytes, &arfwire_parse::ParseOptions::default());
//! ```

mod address;
mod arf;
mod classify;
mod diag;
mod headers;
mod inline;
mod limits;
mod message;
mod types;

#[cfg(test)]
mod tests;

pub use address::domain_of;
pub use diag::{Code, Diagnostic, Severity};
pub use limits::Limits;
pub use types::*;

/// Options for one parse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Hard resource limits.
    pub limits: Limits,
    /// When the submission was received, as seconds since the Unix epoch. Used only for
    /// plausibility diagnostics (an arrival date in the future); `None` skips them.
    pub received_at_unix: Option<i64>,
}

/// Parse and classify one submission. Never panics.
///
/// No string in the outcome holds a NUL character (one in the input reads as U+FFFD); the
/// raw `header_block` bytes are kept as they were.
pub fn parse(raw: &[u8], options: &ParseOptions) -> Outcome {
    let mut outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        classify::run(raw, options)
    })) {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Rejected(Rejection {
            reason: RejectReason::ParserFailure,
            detail: "the parser failed on this input; it was contained and the input kept"
                .to_owned(),
            diagnostics: Vec::new(),
        }),
    };
    nul_free::outcome(&mut outcome);
    outcome
}

/// Parse one `message/feedback-report` body on its own (used by fuzzing and tooling).
pub fn parse_feedback_fields(body: &[u8], limits: &Limits) -> (FeedbackReport, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut report = arf::parse_fields(body, limits, None, &mut diagnostics);
    nul_free::feedback(&mut report);
    nul_free::diagnostics(&mut diagnostics);
    (report, diagnostics)
}

/// NUL is valid in a Rust string but not in the stores and formats events go to (a
/// PostgreSQL text column refuses it), so every string derived from the input has it
/// replaced. The patterns name every field, so a new string field cannot be missed.
mod nul_free {
    use std::collections::BTreeMap;

    use crate::{
        DkimSignature, FeedbackField, FeedbackReport, HeaderField, Mailbox, NotReport, Outcome,
        Rejection, ReportedItem, ReportedMessage, Submission, SubmissionHeader,
    };

    fn string(s: &mut String) {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{fffd}");
        }
    }

    fn opt(s: &mut Option<String>) {
        if let Some(s) = s {
            string(s);
        }
    }

    fn list(v: &mut [String]) {
        v.iter_mut().for_each(string);
    }

    pub(super) fn diagnostics(diags: &mut [crate::Diagnostic]) {
        for d in diags {
            let crate::Diagnostic {
                code: _,
                severity: _,
                message,
            } = d;
            string(message);
        }
    }

    fn mailbox(m: &mut Option<Mailbox>) {
        if let Some(Mailbox {
            name,
            address,
            domain,
        }) = m
        {
            opt(name);
            string(address);
            opt(domain);
        }
    }

    fn envelope(e: &mut SubmissionHeader) {
        let SubmissionHeader {
            from,
            subject,
            message_id,
            date,
            date_unix: _,
            content_type,
            report_type,
            n_parts: _,
            depth: _,
            resent_from,
        } = e;
        mailbox(from);
        mailbox(resent_from);
        for s in [subject, message_id, date, content_type, report_type] {
            opt(s);
        }
    }

    fn header_fields(fields: &mut [HeaderField]) {
        for HeaderField { name, value } in fields {
            string(name);
            string(value);
        }
    }

    fn message(m: &mut ReportedMessage) {
        let ReportedMessage {
            source: _,
            // Raw evidence: kept byte for byte.
            header_block: _,
            has_body: _,
            body_size: _,
            fields,
            received,
            message_id,
            from,
            date,
            date_unix: _,
            subject,
            return_path,
            dkim_signatures,
            provider_headers,
        } = m;
        header_fields(fields);
        header_fields(provider_headers);
        list(received);
        mailbox(from);
        for s in [message_id, date, subject, return_path] {
            opt(s);
        }
        for DkimSignature {
            domain,
            selector,
            identity,
            signature_prefix,
        } in dkim_signatures
        {
            for s in [domain, selector, identity, signature_prefix] {
                opt(s);
            }
        }
    }

    pub(super) fn feedback(f: &mut FeedbackReport) {
        let FeedbackReport {
            feedback_type,
            version,
            user_agent,
            arrival_date,
            arrival_date_unix: _,
            source_ip: _,
            source_ip_raw,
            source_port: _,
            original_envelope_id,
            original_mail_from,
            original_rcpt_to,
            reported_domain,
            reported_uri,
            reporting_mta,
            authentication_results,
            incidents: _,
            auth_failure,
            delivery_result,
            dkim_domain,
            dkim_identity,
            dkim_selector,
            dkim_canonicalized_header,
            dkim_canonicalized_body,
            spf_dns,
            identity_alignment,
            removal_recipient,
            extensions,
            fields,
        } = f;
        for s in [
            feedback_type,
            version,
            user_agent,
            arrival_date,
            source_ip_raw,
            original_envelope_id,
            original_mail_from,
            reporting_mta,
            auth_failure,
            delivery_result,
            dkim_domain,
            dkim_identity,
            dkim_selector,
            dkim_canonicalized_header,
            dkim_canonicalized_body,
            identity_alignment,
        ] {
            opt(s);
        }
        for v in [
            original_rcpt_to,
            reported_domain,
            reported_uri,
            authentication_results,
            spf_dns,
            removal_recipient,
        ] {
            list(v);
        }
        if extensions
            .iter()
            .any(|(k, v)| k.contains('\0') || v.iter().any(|s| s.contains('\0')))
        {
            let mut clean: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (mut name, mut values) in std::mem::take(extensions) {
                string(&mut name);
                list(&mut values);
                clean.entry(name).or_default().extend(values);
            }
            *extensions = clean;
        }
        for FeedbackField { name, value, raw } in fields {
            string(name);
            string(value);
            string(raw);
        }
    }

    fn item(i: &mut ReportedItem) {
        let ReportedItem {
            index: _,
            mime_path,
            feedback: fb,
            message: m,
            claimed_source_ip: _,
            diagnostics: d,
        } = i;
        string(mime_path);
        if let Some(fb) = fb {
            feedback(fb);
        }
        message(m);
        diagnostics(d);
    }

    pub(super) fn outcome(outcome: &mut Outcome) {
        match outcome {
            Outcome::Report(Submission {
                kind: _,
                format: _,
                envelope: e,
                reports,
                diagnostics: d,
            }) => {
                envelope(e);
                reports.iter_mut().for_each(item);
                diagnostics(d);
            }
            Outcome::NotReport(NotReport {
                reason: _,
                detail,
                envelope: e,
                diagnostics: d,
            }) => {
                string(detail);
                envelope(e);
                diagnostics(d);
            }
            Outcome::Rejected(Rejection {
                reason: _,
                detail,
                diagnostics: d,
            }) => {
                string(detail);
                diagnostics(d);
            }
        }
    }
}

/// The version of this parser, recorded in every event so a replay can tell old from new.
pub const PARSER_VERSION: &str = env!("CARGO_PKG_VERSION");
