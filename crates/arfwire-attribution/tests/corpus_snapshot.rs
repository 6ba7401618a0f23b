//! Corpus snapshot: every message of the shared report corpus runs through the real parser and
//! the engine under the `documentation-test` profile and the documentation tenants; a compact,
//! human-readable summary of each reported message is compared with the committed snapshot
//! `fixtures/attribution/corpus-doc-test.snapshot`. Regenerate with `UPDATE_EXPECT=1` and
//! review the diff by eye.
//!
//! The corpus is `ARFWIRE_CORPUS`, else `shared/corpus` beside the workspace; the test fails
//! when it is missing.

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;

use arfwire_attribution::{Attribution, IpFinding, ReporterTier};
use arfwire_parse::{Outcome, ParseOptions};

const SNAPSHOT: &str = "fixtures/attribution/corpus-doc-test.snapshot";

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("ARFWIRE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::workspace_root().join("../shared/corpus"));
    assert!(
        dir.join("INDEX.tsv").is_file(),
        "the report corpus is missing: expected {}/INDEX.tsv; set ARFWIRE_CORPUS to the \
         directory that holds it",
        dir.display()
    );
    dir
}

fn finding(f: Option<&IpFinding>) -> String {
    f.map_or_else(
        || "-".to_owned(),
        |f| format!("{} {}", f.ip, f.confidence.as_str()),
    )
}

fn render(out: &mut String, a: &Attribution) {
    let tenant = a.tenant.as_ref().map_or_else(
        || "-".to_owned(),
        |t| {
            format!(
                "{} {} {:.3}",
                t.name.as_deref().unwrap_or(&t.id),
                a.tenant_confidence.as_str(),
                a.tenant_score
            )
        },
    );
    let candidates: Vec<String> = a
        .tenant_candidates
        .iter()
        .map(|c| {
            format!(
                "{}:{:.3}:{}",
                c.tenant.name.as_deref().unwrap_or(&c.tenant.id),
                c.score,
                c.role.as_str()
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "  path={} provenance={} tenant={} candidates=[{}]",
        a.path.as_str(),
        a.provenance.as_str(),
        tenant,
        candidates.join(", ")
    );
    let _ = writeln!(
        out,
        "  egress={} source_ip={} ingress={} origin={} ({}) delivered_by={}",
        finding(a.egress.as_ref()),
        finding(a.reported_source_ip.as_ref()),
        finding(a.ingress.as_ref()),
        finding(a.origin.as_ref()),
        a.origin_kind.as_str(),
        finding(a.delivered_by.as_ref()),
    );
    let flags: Vec<&str> = a.flags.iter().copied().collect();
    let _ = writeln!(out, "  flags: {}", flags.join(" "));
    for line in &a.explanation {
        let _ = writeln!(out, "  | {line}");
    }
}

fn build_snapshot() -> String {
    let dir = corpus_dir();
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("read INDEX.tsv");
    let profile = common::profile("documentation-test");
    let directory = common::directory("doc-tenants");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Attribution of every corpus message: profile documentation-test, directory\n\
         # doc-tenants, reporter tier T3 (offline runs cannot authenticate reporters).\n\
         # Regenerate with UPDATE_EXPECT=1 and review the diff by eye."
    );
    for line in index.lines().skip(1) {
        let Some(path) = line.split('\t').next() else {
            continue;
        };
        if path.is_empty() || path.ends_with(".json") {
            continue;
        }
        let raw = std::fs::read(dir.join(path))
            .unwrap_or_else(|e| panic!("cannot read corpus file {path}: {e}"));
        let _ = writeln!(out, "\n== {path}");
        match arfwire_parse::parse(&raw, &ParseOptions::default()) {
            Outcome::Report(submission) => {
                for item in &submission.reports {
                    let a = common::run(
                        &submission,
                        item,
                        &profile,
                        &directory,
                        ReporterTier::T3,
                        &[],
                        false,
                    );
                    let _ = writeln!(
                        out,
                        "#{} {} {} feedback-type={}",
                        item.index,
                        submission.kind.as_str(),
                        submission.format.as_str(),
                        item.feedback
                            .as_ref()
                            .and_then(|f| f.feedback_type.as_deref())
                            .unwrap_or("-")
                    );
                    render(&mut out, &a);
                }
            }
            Outcome::NotReport(n) => {
                let _ = writeln!(out, "not a report: {}", n.reason.as_str());
            }
            Outcome::Rejected(r) => {
                let _ = writeln!(out, "rejected: {}", r.reason.as_str());
            }
        }
    }
    out
}

#[test]
fn corpus_snapshot_matches() {
    let got = build_snapshot();
    let path = common::workspace_root().join(SNAPSHOT);
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &got).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != got {
        let mut diff = String::new();
        let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
        let mut shown = 0;
        for i in 0..w.len().max(g.len()) {
            let (a, b) = (w.get(i).copied(), g.get(i).copied());
            if a != b {
                let _ = writeln!(
                    diff,
                    "line {}:\n  - {}\n  + {}",
                    i + 1,
                    a.unwrap_or("<none>"),
                    b.unwrap_or("<none>")
                );
                shown += 1;
                if shown >= 20 {
                    break;
                }
            }
        }
        panic!(
            "the corpus attribution differs from {SNAPSHOT} (first differences below); review \
             and regenerate with UPDATE_EXPECT=1\n{diff}"
        );
    }
}
