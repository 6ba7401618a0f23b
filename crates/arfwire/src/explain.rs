//! `arfwire explain`: for a person, which tenant sent each reported message, from which IPs,
//! and why, evidence by evidence.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use arfwire_attribution::{Attribution, IpFinding};
use arfwire_parse::Outcome;
use chrono::{DateTime, Utc};
use clap::Args;

use crate::attribution::{AttributionArgs, Attributor};
use crate::submission;

/// Arguments of `arfwire explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// The submission (one message file)
    #[arg(value_name = "FILE")]
    file: PathBuf,

    #[command(flatten)]
    attribution: AttributionArgs,

    /// Receive time of the report (RFC 3339); without it, the file's modification time
    #[arg(long, value_name = "RFC3339", value_parser = crate::parse_rfc3339)]
    received_at: Option<DateTime<Utc>>,
}

fn finding(label: &str, f: Option<&IpFinding>, out: &mut String) {
    match f {
        Some(f) => {
            let port = f.port.map(|p| format!(" port {p}")).unwrap_or_default();
            let index = f
                .location
                .index
                .map(|i| format!("[{i}]"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {label:<19} {}{port}  {}  (from {}{index}; evidence {:?})",
                f.ip,
                f.confidence.as_str(),
                f.location.header,
                f.sources
            );
        }
        None => {
            let _ = writeln!(out, "  {label:<19} -");
        }
    }
}

/// Render an attribution for a terminal.
pub(crate) fn render(a: &Attribution) -> String {
    let mut out = String::new();
    match a.tenant.as_ref() {
        Some(t) => {
            let _ = writeln!(
                out,
                "  Sending tenant      {}{}  {}  (score {:.3})",
                t.name
                    .as_deref()
                    .map(|n| format!("{n} "))
                    .unwrap_or_default(),
                t.id,
                a.tenant_confidence.as_str(),
                a.tenant_score
            );
        }
        None => {
            let _ = writeln!(out, "  Sending tenant      none named");
        }
    }
    let _ = writeln!(out, "  Path                {}", a.path.as_str());
    let _ = writeln!(out, "  Header block        {}", a.provenance.as_str());
    finding("Egress IP", a.egress.as_ref(), &mut out);
    finding(
        "Reported Source-IP",
        a.reported_source_ip.as_ref(),
        &mut out,
    );
    finding("Ingress IP", a.ingress.as_ref(), &mut out);
    finding("Origin IP", a.origin.as_ref(), &mut out);
    let _ = writeln!(out, "  Origin kind         {}", a.origin_kind.as_str());
    if a.delivered_by.is_some() {
        finding("Delivered by", a.delivered_by.as_ref(), &mut out);
    }
    if let Some(r) = a.recipient_tenant.as_ref() {
        let _ = writeln!(
            out,
            "  Complainant tenant  {}{}",
            r.name
                .as_deref()
                .map(|n| format!("{n} "))
                .unwrap_or_default(),
            r.id
        );
    }
    for t in &a.impersonated_tenants {
        let _ = writeln!(out, "  Impersonated        {}", t.id);
    }
    if a.tenant_candidates.len() > 1 || (a.tenant.is_none() && !a.tenant_candidates.is_empty()) {
        let _ = writeln!(out, "  Candidates");
        for c in &a.tenant_candidates {
            let _ = writeln!(
                out,
                "    {} {:.3} {} ({}) evidence {:?}",
                c.tenant.id,
                c.score,
                c.confidence.as_str(),
                c.role.as_str(),
                c.evidence
            );
        }
    }
    if let Some(id) = a.log_keys.network_message_id.as_deref() {
        let _ = writeln!(out, "  Network-Message-Id  {id}");
    }
    if !a.flags.is_empty() {
        let flags: Vec<&str> = a.flags.iter().copied().collect();
        let _ = writeln!(out, "  Flags               {}", flags.join(", "));
    }
    let _ = writeln!(out, "  Why");
    for line in &a.explanation {
        let _ = writeln!(out, "    - {line}");
    }
    if !a.evidence.is_empty() {
        let _ = writeln!(out, "  Evidence");
        for e in &a.evidence {
            let index = e
                .location
                .index
                .map(|i| format!("[{i}]"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    E#{:<3} {:<26} {:<8} w={:.2}  {}{} = {}  {}",
                e.id,
                e.kind.as_str(),
                e.trust.as_str(),
                e.weight,
                e.location.header,
                index,
                e.value,
                e.tenant
                    .as_deref()
                    .map(|t| format!("-> {t}"))
                    .unwrap_or_default()
            );
        }
    }
    out
}

pub(crate) fn run(args: &ExplainArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let modified = std::fs::metadata(&args.file)
        .and_then(|m| m.modified())
        .ok();
    let received_at = submission::received_at(args.received_at, modified);
    let attributor = Attributor::load(&args.attribution)?
        .context("explain needs attribution; drop --no-attribution")?;
    let outcome = submission::parse(&bytes, received_at);
    let mut out = String::new();
    match &outcome {
        Outcome::Report(sub) => {
            let trust = attributor.trust(Some(&bytes));
            let _ = writeln!(
                out,
                "{}: {} report ({}), {} reported message(s); profile {}",
                args.file.display(),
                sub.kind.as_str(),
                sub.format.as_str(),
                sub.reports.len(),
                attributor.profile_name()
            );
            let _ = writeln!(
                out,
                "Reporter trust: {}{} ({})",
                trust.record.tier,
                trust
                    .record
                    .operator
                    .as_deref()
                    .map(|o| format!(", {o}"))
                    .unwrap_or_default(),
                trust.record.reasons.join("; ")
            );
            for item in &sub.reports {
                let a = attributor.attribute_with_tier(sub, item, received_at, trust.tier);
                let _ = writeln!(
                    out,
                    "\nReported message {} of {} (MIME part {}): {}",
                    item.index + 1,
                    sub.reports.len(),
                    if item.mime_path.is_empty() {
                        "top level"
                    } else {
                        &item.mime_path
                    },
                    crate::show::text(item.message.subject.as_deref().unwrap_or("(no subject)"))
                );
                out.push_str(&render(&a));
            }
        }
        Outcome::NotReport(n) => {
            let _ = writeln!(
                out,
                "{}: not a report ({}): {}",
                args.file.display(),
                n.reason.as_str(),
                n.detail
            );
        }
        Outcome::Rejected(r) => {
            let _ = writeln!(
                out,
                "{}: refused ({}): {}",
                args.file.display(),
                r.reason.as_str(),
                r.detail
            );
        }
    }
    // Header-derived text can hold control characters: escape everything but line breaks.
    let safe: String = out
        .split('\n')
        .map(crate::show::text)
        .collect::<Vec<_>>()
        .join("\n");
    println!("{}", safe.trim_end());
    Ok(())
}
