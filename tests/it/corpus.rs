//! Corpus conformance: every row of the shared corpus index, in LF and CRLF form, must be
//! classified as the index says, with the same feedback type, Source-IP and sender domain.
//! Known, reasoned mismatches live in `tests/corpus-allowlist.tsv`.

use std::collections::BTreeMap;

use arfwire_parse::{NotReportReason, Outcome, ParseOptions, ReportKind};
use arfwire_tests::{corpus_dir, read_index, to_crlf, to_lf, workspace_root};

/// The index's kind for an outcome.
pub(crate) fn index_kind(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Report(s) => match s.kind {
            ReportKind::Arf => "arf",
            ReportKind::ArfNonstandard => "arf-nonstandard",
            ReportKind::AuthFailure => "dmarc-forensic",
            ReportKind::ForwardAttachment => "rfc822-forward",
            ReportKind::ForwardInline => "inline-forward",
            ReportKind::HeadersOnly => "headers-only",
            _ => "redirect",
        },
        Outcome::NotReport(n) if n.reason == NotReportReason::Bounce => "bounce-not-abuse",
        Outcome::NotReport(_) | Outcome::Rejected(_) => "other",
    }
}

/// Normalise a Source-IP as the index writes it: comment dropped, redactions read as absent.
fn normalise_ip(value: &str) -> String {
    let token = value.split_whitespace().next().unwrap_or("-");
    match token.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().to_string(),
        Err(_) => "-".to_owned(),
    }
}

struct Observed {
    kind: &'static str,
    feedback_type: String,
    source_ip: String,
    sender_domain: String,
}

fn observe(outcome: &Outcome) -> Observed {
    let kind = index_kind(outcome);
    let first = match outcome {
        Outcome::Report(s) => s.reports.first(),
        _ => None,
    };
    let feedback = first.and_then(|r| r.feedback.as_ref());
    Observed {
        kind,
        feedback_type: feedback
            .and_then(|f| f.feedback_type.clone())
            .unwrap_or_else(|| "-".to_owned()),
        source_ip: feedback
            .and_then(|f| f.source_ip)
            .map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        sender_domain: first
            .and_then(|r| r.sender_domain())
            .map_or_else(|| "-".to_owned(), str::to_ascii_lowercase),
    }
}

fn read_allowlist() -> BTreeMap<(String, String), String> {
    let path = workspace_root().join("tests/corpus-allowlist.tsv");
    let text = std::fs::read_to_string(&path).expect("read tests/corpus-allowlist.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(
                cols.len() == 3,
                "allowlist rows are path, check, reason: {l}"
            );
            assert!(
                !cols[2].trim().is_empty(),
                "allowlist row without a reason: {l}"
            );
            ((cols[0].to_owned(), cols[1].to_owned()), cols[2].to_owned())
        })
        .collect()
}

#[test]
fn corpus_conformance() {
    let corpus = corpus_dir();
    let rows = read_index(&corpus);
    assert!(
        rows.len() >= 150,
        "the corpus index has only {} rows",
        rows.len()
    );
    let allowlist = read_allowlist();
    let mut used_allowances = std::collections::BTreeSet::new();
    let options = ParseOptions::default();
    let mut failures = Vec::new();
    let mut checks = 0usize;
    let mut passed_rows = 0usize;
    let mut total_rows = 0usize;

    for row in &rows {
        let raw = std::fs::read(corpus.join(&row.path))
            .unwrap_or_else(|e| panic!("read {}: {e}", row.path));
        for (form, bytes) in [("lf", to_lf(&raw)), ("crlf", to_crlf(&raw))] {
            total_rows += 1;
            let outcome = arfwire_parse::parse(&bytes, &options);
            let seen = observe(&outcome);
            let is_report = arfwire_tests::is_report_kind(&row.kind);
            let mut expected = vec![("kind", row.kind.clone(), seen.kind.to_owned())];
            if is_report {
                expected.push((
                    "feedback_type",
                    row.feedback_type.to_ascii_lowercase(),
                    seen.feedback_type.clone(),
                ));
                expected.push((
                    "source_ip",
                    normalise_ip(&row.source_ip),
                    seen.source_ip.clone(),
                ));
                expected.push((
                    "sender_domain",
                    row.sender_domain.to_ascii_lowercase(),
                    seen.sender_domain.clone(),
                ));
            }
            let mut row_ok = true;
            for (check, want, got) in expected {
                checks += 1;
                if want == got {
                    continue;
                }
                let key = (row.path.clone(), check.to_owned());
                if allowlist.contains_key(&key) {
                    used_allowances.insert(key);
                    continue;
                }
                row_ok = false;
                failures.push(format!(
                    "{} [{form}] {check}: index says {want:?}, parser says {got:?}",
                    row.path
                ));
            }
            if row_ok {
                passed_rows += 1;
            }
        }
    }
    let stale: Vec<_> = allowlist
        .keys()
        .filter(|k| !used_allowances.contains(*k))
        .collect();
    println!(
        "corpus conformance: {passed_rows}/{total_rows} row forms passed ({checks} checks, {} allowlisted mismatches)",
        used_allowances.len()
    );
    assert!(
        failures.is_empty(),
        "{} corpus mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        stale.is_empty(),
        "allowlist rows that no longer mismatch: {stale:?}"
    );
}
