//! Shared helpers for the attribution end-to-end tests: load profiles and directories, wrap a
//! reported header block in a report message, and run it through the real parser and the
//! engine.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use arfwire_attribution::{
    Attribution, DirectorySnapshot, Input, Options, Profile, ReporterTier, VerifiedSignature,
    attribute_with,
};
use arfwire_parse::{Outcome, ParseOptions, ReportedItem, Submission};

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Load a provider profile by name from `deploy/profiles/<name>.toml`.
pub fn profile(name: &str) -> Profile {
    let path = workspace_root().join(format!("deploy/profiles/{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read profile {}: {e}", path.display()));
    Profile::from_toml(&text).unwrap_or_else(|e| panic!("bad profile {name}: {e}"))
}

/// Load a tenant directory by name from `fixtures/attribution/directory/<name>.toml`.
pub fn directory(name: &str) -> DirectorySnapshot {
    let path = workspace_root().join(format!("fixtures/attribution/directory/{name}.toml"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read directory {}: {e}", path.display()));
    DirectorySnapshot::from_toml(&text).unwrap_or_else(|e| panic!("bad directory {name}: {e}"))
}

/// Normalise line endings to CRLF, as mail on the wire has them.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// How the reported header block is wrapped before parsing.
#[derive(Debug, Clone, Default)]
pub struct Wrapper<'a> {
    /// `arf`, `auth_failure`, `arf_nonstandard` (JMRP), `forward_attachment`, `headers_only`
    /// (pasted into a text body).
    pub kind: &'a str,
    /// The `message/feedback-report` fields, as written.
    pub feedback: Option<&'a str>,
    /// Carry the reported message as `text/rfc822-headers` instead of `message/rfc822`.
    pub headers_part: bool,
    /// The reported header block.
    pub headers: &'a str,
    /// The body of the reported message; `None` gives a one-line body.
    pub body: Option<&'a str>,
    /// Put `headers` into the third part verbatim (no blank line, no body).
    pub verbatim: bool,
    /// Subject of the report itself.
    pub subject: Option<&'a str>,
}

/// Build the raw report message.
pub fn wrap(w: &Wrapper<'_>) -> Vec<u8> {
    let headers = w.headers.trim_end_matches(['\n', '\r']);
    let body = w.body.unwrap_or("Reported message body.");
    let rm = if w.verbatim || w.headers_part {
        format!("{headers}\n")
    } else {
        format!("{headers}\n\n{body}\n")
    };
    let boundary = "=_arfwire-case-boundary_=";
    let mut out = String::new();
    out.push_str("Received: from reporter-out.reporter.test (reporter-out.reporter.test [198.18.0.7])\n\tby intake.abuse-desk.test with ESMTPS id CASE0001; Mon, 1 Jun 2026 10:00:00 +0000\n");
    out.push_str("From: Feedback Desk <fbl@reporter.test>\n");
    out.push_str("To: junk@abuse-desk.test\n");
    out.push_str("Date: Mon, 1 Jun 2026 10:00:00 +0000\n");
    out.push_str("Message-ID: <case-wrapper@reporter.test>\n");
    out.push_str("MIME-Version: 1.0\n");
    let subject = w.subject.unwrap_or("Abuse report");
    out.push_str(&format!("Subject: {subject}\n"));
    match w.kind {
        "arf" | "auth_failure" => {
            out.push_str(&format!(
                "Content-Type: multipart/report; report-type=feedback-report;\n\tboundary=\"{boundary}\"\n\n"
            ));
            out.push_str(&format!("--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\nA recipient reported the attached message.\n\n"));
            let default_fb = "Feedback-Type: abuse\nUser-Agent: CaseGenerator/1.0\nVersion: 1\n";
            let fb = w
                .feedback
                .unwrap_or(default_fb)
                .trim_end_matches(['\n', '\r']);
            out.push_str(&format!(
                "--{boundary}\nContent-Type: message/feedback-report\n\n{fb}\n\n"
            ));
            let ctype = if w.headers_part {
                "text/rfc822-headers"
            } else {
                "message/rfc822"
            };
            out.push_str(&format!("--{boundary}\nContent-Type: {ctype}\n\n{rm}\n"));
            out.push_str(&format!("--{boundary}--\n"));
        }
        "arf_nonstandard" | "forward_attachment" => {
            out.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\n"
            ));
            out.push_str(&format!("--{boundary}\nContent-Type: text/plain; charset=us-ascii\n\nPlease look at the attached message.\n\n"));
            out.push_str(&format!(
                "--{boundary}\nContent-Type: message/rfc822\nContent-Disposition: attachment\n\n{rm}\n"
            ));
            out.push_str(&format!("--{boundary}--\n"));
        }
        "headers_only" => {
            out.push_str("Content-Type: text/plain; charset=us-ascii\n\n");
            out.push_str("Here are the headers of the spam I got:\n\n");
            out.push_str(headers);
            out.push_str("\n\nThanks.\n");
        }
        other => panic!("unknown wrapper kind {other}"),
    }
    crlf(&out).into_bytes()
}

/// Parse a raw report; it must be a report.
pub fn parse_report(raw: &[u8]) -> Result<Submission, String> {
    match arfwire_parse::parse(raw, &ParseOptions::default()) {
        Outcome::Report(s) => Ok(s),
        Outcome::NotReport(n) => Err(format!("not a report: {:?} {}", n.reason, n.detail)),
        Outcome::Rejected(r) => Err(format!("rejected: {:?} {}", r.reason, r.detail)),
    }
}

/// Attribute one reported item of a submission.
pub fn run(
    submission: &Submission,
    item: &ReportedItem,
    profile: &Profile,
    directory: &DirectorySnapshot,
    tier: ReporterTier,
    verified: &[VerifiedSignature],
    provider_dkim_checked: bool,
) -> Attribution {
    let input = Input {
        message: &item.message,
        feedback: item.feedback.as_ref(),
        kind: submission.kind,
        claimed_source_ip: item.claimed_source_ip.as_ref(),
        report_time_unix: submission.envelope.date_unix,
        reporter_tier: tier,
        verified_signatures: verified,
    };
    let options = Options {
        provider_dkim_checked,
    };
    attribute_with(&input, &options, profile, directory)
}
