//! `arfwire parse`: what the parser makes of one submission, laid out for a person.

use std::fmt::{self, Write as _};
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use arfwire_events::{Channel, Intake};
use arfwire_intake::{IntakeError, WalkOptions};
use arfwire_parse::{
    Diagnostic, FeedbackReport, Mailbox, Outcome, ReportedItem, ReportedMessage, SubmissionHeader,
};
use chrono::DateTime;

use crate::{ParseArgs, UsageError, submission};

/// Width of the label column.
const LABEL: usize = 20;

/// One submission to show: a name for a person, its intake facts and the parse outcome.
struct Shown {
    name: String,
    intake: Intake,
    outcome: Outcome,
}

pub(crate) fn run(args: &ParseArgs) -> anyhow::Result<()> {
    let shown = if args.file.as_os_str() == "-" {
        vec![from_stdin(args)?]
    } else {
        from_path(&args.file, args)?
    };
    let text = if args.json {
        // Serialised from the records themselves, so fields keep the schema's order.
        let pseudonymizer = crate::desk_store::offline_pseudonymizer()?;
        let records: Vec<arfwire_events::Output> = shown
            .iter()
            .flat_map(|s| arfwire_events::derive_with(&s.outcome, &s.intake, pseudonymizer))
            .collect();
        let mut text = serde_json::to_string_pretty(&records).context("cannot format JSON")?;
        text.push('\n');
        text
    } else {
        let mut text = String::new();
        for (n, s) in shown.iter().enumerate() {
            if n > 0 {
                text.push('\n');
            }
            // Writing to a String cannot fail.
            let _ = render(&mut text, s);
        }
        text
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")
}

fn from_stdin(args: &ParseArgs) -> anyhow::Result<Shown> {
    let mut raw = Vec::new();
    io::stdin()
        .lock()
        .take(args.max_bytes.saturating_add(1))
        .read_to_end(&mut raw)
        .context("cannot read standard input")?;
    if raw.len() as u64 > args.max_bytes {
        anyhow::bail!(
            "standard input is larger than the limit of {} bytes",
            args.max_bytes
        );
    }
    let received_at = submission::received_at(args.received_at, None);
    Ok(Shown {
        name: "standard input".to_owned(),
        intake: Intake::new(&raw, Channel::File, received_at),
        outcome: submission::parse(&raw, received_at),
    })
}

fn from_path(path: &Path, args: &ParseArgs) -> anyhow::Result<Vec<Shown>> {
    match path.metadata() {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(UsageError(format!("no such file: {}", path.display())).into());
        }
        Ok(metadata) if metadata.is_dir() => {
            return Err(UsageError(format!(
                "{} is a directory; `parse` shows one file (use `arfwire process` for directories)",
                path.display()
            ))
            .into());
        }
        _ => {}
    }
    let options = WalkOptions {
        max_file_bytes: args.max_bytes,
    };
    let mut shown = Vec::new();
    for result in arfwire_intake::walk_with([path], options) {
        match result {
            Ok(item) => {
                let received_at = submission::received_at(args.received_at, item.modified);
                shown.push(Shown {
                    name: item.origin.to_string(),
                    intake: submission::intake(&item.origin, &item.bytes, received_at),
                    outcome: submission::parse(&item.bytes, received_at),
                });
            }
            Err(IntakeError::TooLarge {
                origin,
                size,
                limit,
                modified,
                sha256: Some(sha256),
            }) => {
                let received_at = submission::received_at(args.received_at, modified);
                let (outcome, intake) =
                    submission::too_large(&origin, size, limit, sha256, received_at);
                shown.push(Shown {
                    name: origin.to_string(),
                    intake,
                    outcome,
                });
            }
            Err(error) => return Err(error.into()),
        }
    }
    if shown.is_empty() {
        anyhow::bail!("{} holds no message (an empty mbox)", path.display());
    }
    Ok(shown)
}

/// Text from a message made safe and tidy for a terminal: folded lines joined with one
/// space, tabs as spaces, other control characters (escape sequences among them) escaped.
pub(crate) fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut folding = false;
    for c in value.chars() {
        match c {
            '\r' | '\n' => folding = true,
            ' ' | '\t' if folding => {}
            _ => {
                if folding {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    folding = false;
                }
                match c {
                    '\t' => out.push(' '),
                    c if c.is_control() => out.extend(c.escape_default()),
                    c => out.push(c),
                }
            }
        }
    }
    out
}

fn mailbox(m: &Mailbox) -> String {
    match &m.name {
        Some(name) if !name.trim().is_empty() => format!("{} <{}>", text(name), text(&m.address)),
        _ => text(&m.address),
    }
}

/// Seconds since the Unix epoch as RFC 3339 UTC.
fn utc(unix: Option<i64>) -> Option<String> {
    let at = DateTime::from_timestamp(unix?, 0)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// A date as written, with its parsed UTC form when there is one.
fn date(written: &str, unix: Option<i64>) -> String {
    match utc(unix) {
        Some(at) => format!("{}  ({at})", text(written)),
        None => text(written),
    }
}

/// `label  value` on one line, indented; nothing when the value is absent.
fn line(out: &mut String, indent: usize, label: &str, value: Option<String>) -> fmt::Result {
    match value {
        Some(value) => {
            let width = LABEL.saturating_sub(indent);
            writeln!(out, "{:indent$}{label:<width$} {value}", "")
        }
        None => Ok(()),
    }
}

fn render(out: &mut String, shown: &Shown) -> fmt::Result {
    let intake = &shown.intake;
    writeln!(out, "{}", text(&shown.name))?;
    writeln!(
        out,
        "  {} bytes, sha256 {}, received {}",
        intake.raw_size, intake.raw_sha256, intake.received_at
    )?;
    writeln!(out)?;
    match &shown.outcome {
        Outcome::Report(report) => {
            let n = report.reports.len();
            line(
                out,
                0,
                "Outcome",
                Some(format!(
                    "report: {} ({}), {n} reported message{}",
                    report.kind.as_str(),
                    report.format.as_str(),
                    if n == 1 { "" } else { "s" }
                )),
            )?;
            envelope(out, &report.envelope)?;
            for item in &report.reports {
                writeln!(out)?;
                reported_item(out, item, n)?;
            }
            diagnostics(out, 0, "Diagnostics", &report.diagnostics)?;
        }
        Outcome::NotReport(not_report) => {
            line(
                out,
                0,
                "Outcome",
                Some(format!("not a report: {}", not_report.reason.as_str())),
            )?;
            line(out, 0, "Detail", Some(text(&not_report.detail)))?;
            envelope(out, &not_report.envelope)?;
            diagnostics(out, 0, "Diagnostics", &not_report.diagnostics)?;
        }
        Outcome::Rejected(rejection) => {
            line(
                out,
                0,
                "Outcome",
                Some(format!("refused: {}", rejection.reason.as_str())),
            )?;
            line(out, 0, "Detail", Some(text(&rejection.detail)))?;
            diagnostics(out, 0, "Diagnostics", &rejection.diagnostics)?;
        }
    }
    Ok(())
}

/// The submission's own header: who reported, and its shape.
fn envelope(out: &mut String, h: &SubmissionHeader) -> fmt::Result {
    line(out, 0, "Reporter", h.from.as_ref().map(mailbox))?;
    line(out, 0, "Subject", h.subject.as_deref().map(text))?;
    line(out, 0, "Message-ID", h.message_id.as_deref().map(text))?;
    line(
        out,
        0,
        "Date",
        h.date.as_deref().map(|d| date(d, h.date_unix)),
    )?;
    let content_type = h.content_type.as_deref().map(|ct| match &h.report_type {
        Some(rt) => format!("{}; report-type={}", text(ct), text(rt)),
        None => text(ct),
    });
    line(out, 0, "Content-Type", content_type)?;
    line(
        out,
        0,
        "Structure",
        Some(format!(
            "{} MIME part{}, depth {}",
            h.n_parts,
            if h.n_parts == 1 { "" } else { "s" },
            h.depth
        )),
    )
}

fn reported_item(out: &mut String, item: &ReportedItem, count: usize) -> fmt::Result {
    let m = &item.message;
    let part = if item.mime_path.is_empty() {
        "top level".to_owned()
    } else {
        format!("part {}", text(&item.mime_path))
    };
    let body = if m.has_body {
        format!("header and {}-byte body", m.body_size)
    } else {
        "header only".to_owned()
    };
    writeln!(
        out,
        "Reported message {} of {count}: {part}, {}, {body}",
        item.index + 1,
        m.source.as_str()
    )?;
    let feedback = item.feedback.as_ref();
    let source_ip = match (
        feedback.and_then(|f| f.source_ip),
        &item.claimed_source_ip,
        feedback.and_then(|f| f.source_ip_raw.as_deref()),
    ) {
        (Some(ip), _, _) => format!("{ip}"),
        (None, Some(claimed), _) => format!("{} (stated in the {})", claimed.ip, claimed.origin),
        (None, None, Some(raw)) => format!("none (the field reads {:?})", text(raw)),
        (None, None, None) => "none".to_owned(),
    };
    line(out, 2, "Source-IP", Some(source_ip))?;
    line(out, 2, "Sender domain", item.sender_domain().map(text))?;
    message_fields(out, m)?;
    if let Some(feedback) = feedback {
        feedback_report(out, feedback)?;
    }
    received(out, &m.received)?;
    if !m.dkim_signatures.is_empty() {
        writeln!(out, "  DKIM signatures")?;
        for sig in &m.dkim_signatures {
            let mut tags = Vec::new();
            for (tag, value) in [
                ("d", &sig.domain),
                ("s", &sig.selector),
                ("i", &sig.identity),
            ] {
                if let Some(value) = value {
                    tags.push(format!("{tag}={}", text(value)));
                }
            }
            if tags.is_empty() {
                tags.push("(no d=, s= or i= tag)".to_owned());
            }
            writeln!(out, "    {}", tags.join("  "))?;
        }
    }
    if !m.provider_headers.is_empty() {
        writeln!(out, "  Provider headers")?;
        for field in &m.provider_headers {
            writeln!(
                out,
                "    {}: {}",
                text(&field.name),
                text(field.value.trim())
            )?;
        }
    }
    diagnostics(out, 2, "Diagnostics", &item.diagnostics)
}

fn message_fields(out: &mut String, m: &ReportedMessage) -> fmt::Result {
    line(out, 2, "From", m.from.as_ref().map(mailbox))?;
    line(out, 2, "Subject", m.subject.as_deref().map(text))?;
    line(out, 2, "Message-ID", m.message_id.as_deref().map(text))?;
    line(
        out,
        2,
        "Date",
        m.date.as_deref().map(|d| date(d, m.date_unix)),
    )?;
    line(out, 2, "Return-Path", m.return_path.as_deref().map(text))
}

fn feedback_report(out: &mut String, f: &FeedbackReport) -> fmt::Result {
    writeln!(out, "  Feedback report")?;
    if f.fields.is_empty() {
        return writeln!(out, "    (no fields)");
    }
    let width = f
        .fields
        .iter()
        .map(|field| text(&field.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(LABEL - 4);
    for field in &f.fields {
        writeln!(
            out,
            "    {:<width$} {}",
            text(&field.name),
            text(&field.raw)
        )?;
    }
    if let Some(at) = utc(f.arrival_date_unix) {
        writeln!(out, "    {:<width$} {at}", "(arrival in UTC)")?;
    }
    Ok(())
}

fn received(out: &mut String, received: &[String]) -> fmt::Result {
    if received.is_empty() {
        return line(out, 2, "Received", Some("none".to_owned()));
    }
    writeln!(out, "  Received ({}, newest first)", received.len())?;
    for (n, value) in received.iter().enumerate() {
        writeln!(out, "    {:>2}. {}", n + 1, text(value.trim()))?;
    }
    Ok(())
}

fn diagnostics(out: &mut String, indent: usize, heading: &str, list: &[Diagnostic]) -> fmt::Result {
    if list.is_empty() {
        return Ok(());
    }
    if indent == 0 {
        writeln!(out)?;
    }
    writeln!(out, "{:indent$}{heading}", "")?;
    let width = list
        .iter()
        .map(|d| d.code.as_str().len())
        .max()
        .unwrap_or(0);
    for d in list {
        writeln!(
            out,
            "{:indent$}  {:<7} {:<width$}  {}",
            "",
            d.severity.as_str(),
            d.code.as_str(),
            text(&d.message)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_values_are_joined_and_escapes_neutralised() {
        assert_eq!(text("from a\r\n\tby b\r\n    with c"), "from a by b with c");
        assert_eq!(text("red \u{1b}[31mtext"), "red \\u{1b}[31mtext");
        assert_eq!(text("a\tb"), "a b");
        assert_eq!(text("\r\n trailing"), "trailing");
    }

    #[test]
    fn dates_show_their_utc_form() {
        assert_eq!(
            date("Thu, 8 Mar 2005 17:00:00 +0100", Some(1_110_297_600)),
            "Thu, 8 Mar 2005 17:00:00 +0100  (2005-03-08T16:00:00Z)"
        );
        assert_eq!(date("garbage", None), "garbage");
    }
}
