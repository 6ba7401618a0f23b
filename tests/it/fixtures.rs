//! Fixture snapshots: every hand-written mail under `fixtures/` is parsed in LF and in CRLF
//! form and summarised as JSON, and the summary must equal `<name>.expected.json` beside it.
//!
//! The summary is meant to be read by a person: what the submission was classified as, and
//! for each reported message where it sat, what the feedback report said and which header
//! facts attribution will use. Line endings change nothing but the header block bytes, so
//! both forms must give the same summary, and the header block's length and SHA-256 are
//! recorded for each form.
//!
//! Regenerate the snapshots after a deliberate change, then review the diff by eye:
//!
//! ```text
//! UPDATE_EXPECT=1 cargo test -p arfwire-tests --test it fixtures
//! ```

use std::path::{Path, PathBuf};

use arfwire_parse::{
    Diagnostic, FeedbackReport, Outcome, ParseOptions, ReportedItem, ReportedMessage,
    SubmissionHeader,
};
use arfwire_tests::{eml_files_under, fixtures_dir, to_crlf, to_lf};
use sha2::{Digest, Sha256};

/// The fixture groups this snapshot test covers (other directories under `fixtures/` belong
/// to other tests).
const GROUPS: &[&str] = &[
    "arf", "charset", "exchange", "forward", "headers", "inline", "jmrp", "negative", "redirect",
];

/// Every fixture mail of the parser groups, sorted.
fn fixture_paths() -> Vec<PathBuf> {
    let root = fixtures_dir();
    let mut paths: Vec<PathBuf> = GROUPS
        .iter()
        .flat_map(|group| {
            let dir = root.join(group);
            assert!(dir.is_dir(), "fixture group {} is missing", dir.display());
            eml_files_under(&dir)
        })
        .collect();
    paths.sort();
    paths
}

/// A JSON value whose objects keep their keys in the order written, so that a snapshot reads
/// top-down: what the submission is, then each reported message.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Int(i128),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn str(value: impl Into<String>) -> J {
        J::Str(value.into())
    }

    fn opt_str(value: Option<impl Into<String>>) -> J {
        value.map_or(J::Null, |v| J::Str(v.into()))
    }

    fn opt_int(value: Option<impl Into<i128>>) -> J {
        value.map_or(J::Null, |v| J::Int(v.into()))
    }

    fn strs<'a>(values: impl IntoIterator<Item = &'a str>) -> J {
        J::Arr(values.into_iter().map(J::str).collect())
    }

    fn is_empty(&self) -> bool {
        match self {
            J::Null => true,
            J::Arr(a) => a.is_empty(),
            J::Obj(o) => o.is_empty(),
            _ => false,
        }
    }

    /// Pretty-print with two-space indentation, strings escaped as JSON.
    fn write(&self, out: &mut String, indent: usize) {
        let pad = |n: usize| "  ".repeat(n);
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => out.push_str(&i.to_string()),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("escape a string")),
            J::Arr(items) if items.is_empty() => out.push_str("[]"),
            J::Obj(items) if items.is_empty() => out.push_str("{}"),
            J::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    item.write(out, indent + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            J::Obj(items) => {
                out.push_str("{\n");
                for (i, (key, value)) in items.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    out.push_str(&serde_json::to_string(key).expect("escape a key"));
                    out.push_str(": ");
                    value.write(out, indent + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
        }
    }

    fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }
}

/// An object under construction.
#[derive(Default)]
struct Obj(Vec<(String, J)>);

impl Obj {
    fn set(&mut self, key: &str, value: J) -> &mut Self {
        self.0.push((key.to_owned(), value));
        self
    }

    /// Set only what is present: absent values, empty lists and empty maps are left out.
    fn put(&mut self, key: &str, value: J) -> &mut Self {
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
        self
    }

    fn done(&mut self) -> J {
        J::Obj(std::mem::take(&mut self.0))
    }
}

/// The snapshot file of a fixture: `001-name.eml` -> `001-name.expected.json`.
fn snapshot_path(fixture: &Path) -> PathBuf {
    let stem = fixture
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("fixture names are UTF-8");
    fixture.with_file_name(format!("{stem}.expected.json"))
}

/// The fixture's path relative to the fixtures directory, with `/` separators.
fn relative_name(fixture: &Path) -> String {
    let rel = fixture
        .strip_prefix(fixtures_dir())
        .expect("fixtures live under the fixtures directory");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Diagnostic codes, sorted (repeats kept: they count).
fn codes(diagnostics: &[Diagnostic]) -> J {
    let mut codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
    codes.sort_unstable();
    J::strs(codes)
}

fn feedback_summary(f: &FeedbackReport) -> J {
    let mut o = Obj::default();
    o.put("feedback_type", J::opt_str(f.feedback_type.clone()))
        .put("version", J::opt_str(f.version.clone()))
        .put("user_agent", J::opt_str(f.user_agent.clone()))
        .put("arrival_date", J::opt_str(f.arrival_date.clone()))
        .put("arrival_date_unix", J::opt_int(f.arrival_date_unix))
        .put(
            "source_ip",
            J::opt_str(f.source_ip.map(|ip| ip.to_string())),
        )
        .put("source_ip_raw", J::opt_str(f.source_ip_raw.clone()))
        .put("source_port", J::opt_int(f.source_port))
        .put(
            "original_envelope_id",
            J::opt_str(f.original_envelope_id.clone()),
        )
        .put(
            "original_mail_from",
            J::opt_str(f.original_mail_from.clone()),
        )
        .put(
            "original_rcpt_to",
            J::strs(f.original_rcpt_to.iter().map(String::as_str)),
        )
        .put(
            "reported_domain",
            J::strs(f.reported_domain.iter().map(String::as_str)),
        )
        .put(
            "reported_uri",
            J::strs(f.reported_uri.iter().map(String::as_str)),
        )
        .put("reporting_mta", J::opt_str(f.reporting_mta.clone()))
        .put(
            "authentication_results",
            J::strs(f.authentication_results.iter().map(String::as_str)),
        )
        .put("incidents", J::opt_int(f.incidents))
        .put("auth_failure", J::opt_str(f.auth_failure.clone()))
        .put("delivery_result", J::opt_str(f.delivery_result.clone()))
        .put("dkim_domain", J::opt_str(f.dkim_domain.clone()))
        .put("dkim_identity", J::opt_str(f.dkim_identity.clone()))
        .put("dkim_selector", J::opt_str(f.dkim_selector.clone()))
        .put(
            "dkim_canonicalized_header",
            J::opt_str(f.dkim_canonicalized_header.clone()),
        )
        .put(
            "dkim_canonicalized_body",
            J::opt_str(f.dkim_canonicalized_body.clone()),
        )
        .put("spf_dns", J::strs(f.spf_dns.iter().map(String::as_str)))
        .put(
            "identity_alignment",
            J::opt_str(f.identity_alignment.clone()),
        )
        .put(
            "removal_recipient",
            J::strs(f.removal_recipient.iter().map(String::as_str)),
        )
        .put(
            "extensions",
            J::Obj(
                f.extensions
                    .iter()
                    .map(|(k, v)| (k.clone(), J::strs(v.iter().map(String::as_str))))
                    .collect(),
            ),
        )
        .put(
            "field_names",
            J::strs(f.fields.iter().map(|x| x.name.as_str())),
        );
    o.done()
}

fn message_summary(m: &ReportedMessage, o: &mut Obj) {
    let from = m.from.as_ref().map_or(J::Null, |f| {
        let mut from = Obj::default();
        from.set("address", J::str(&f.address))
            .put("name", J::opt_str(f.name.clone()))
            .put("domain", J::opt_str(f.domain.clone()));
        from.done()
    });
    o.set("from", from)
        .set("subject", J::opt_str(m.subject.clone()))
        .set("message_id", J::opt_str(m.message_id.clone()))
        .set("date", J::opt_str(m.date.clone()))
        .set("date_unix", J::opt_int(m.date_unix))
        .set("return_path", J::opt_str(m.return_path.clone()))
        .set("received_count", J::Int(m.received.len() as i128))
        .set(
            "dkim",
            J::Arr(
                m.dkim_signatures
                    .iter()
                    .map(|d| {
                        let mut sig = Obj::default();
                        sig.set("d", J::opt_str(d.domain.clone()))
                            .set("s", J::opt_str(d.selector.clone()));
                        sig.done()
                    })
                    .collect(),
            ),
        )
        .set(
            "provider_headers",
            J::strs(m.provider_headers.iter().map(|h| h.name.as_str())),
        )
        .set("has_body", J::Bool(m.has_body))
        .set("field_count", J::Int(m.fields.len() as i128));
}

fn item_summary(item: &ReportedItem) -> J {
    let mut o = Obj::default();
    o.set("index", J::Int(item.index as i128))
        .set("mime_path", J::str(&item.mime_path))
        .set("source", J::str(item.message.source.as_str()))
        .set(
            "feedback",
            item.feedback.as_ref().map_or(J::Null, feedback_summary),
        )
        .set(
            "source_ip",
            J::opt_str(
                item.feedback
                    .as_ref()
                    .and_then(|f| f.source_ip)
                    .map(|ip| ip.to_string()),
            ),
        )
        .set(
            "claimed_source_ip",
            item.claimed_source_ip.as_ref().map_or(J::Null, |c| {
                let mut claimed = Obj::default();
                claimed
                    .set("ip", J::str(c.ip.to_string()))
                    .set("origin", J::str(c.origin));
                claimed.done()
            }),
        )
        .set("sender_domain", J::opt_str(item.sender_domain()));
    message_summary(&item.message, &mut o);
    o.set("diagnostics", codes(&item.diagnostics));
    o.done()
}

/// The submission's own From and Subject (and Resent-From, for redirected mail).
fn reporter(envelope: &SubmissionHeader) -> J {
    let mut o = Obj::default();
    o.set(
        "from",
        J::opt_str(envelope.from.as_ref().map(|f| f.address.clone())),
    )
    .put(
        "from_name",
        J::opt_str(envelope.from.as_ref().and_then(|f| f.name.clone())),
    )
    .set("subject", J::opt_str(envelope.subject.clone()))
    .put(
        "resent_from",
        J::opt_str(envelope.resent_from.as_ref().map(|f| f.address.clone())),
    );
    o.done()
}

/// The summary of one outcome, without header block bytes (those differ by line ending).
fn summarise(name: &str, outcome: &Outcome) -> Obj {
    let mut o = Obj::default();
    o.set("fixture", J::str(name));
    match outcome {
        Outcome::Report(s) => {
            o.set("outcome", J::str("report"))
                .set("kind", J::str(s.kind.as_str()))
                .set("format", J::str(s.format.as_str()))
                .set("reporter", reporter(&s.envelope))
                .set("diagnostics", codes(&s.diagnostics))
                .set(
                    "reports",
                    J::Arr(s.reports.iter().map(item_summary).collect()),
                );
        }
        Outcome::NotReport(n) => {
            o.set("outcome", J::str("not_report"))
                .set("reason", J::str(n.reason.as_str()))
                .set("detail", J::str(&n.detail))
                .set("reporter", reporter(&n.envelope))
                .set("diagnostics", codes(&n.diagnostics));
        }
        Outcome::Rejected(r) => {
            o.set("outcome", J::str("rejected"))
                .set("reason", J::str(r.reason.as_str()))
                .set("diagnostics", codes(&r.diagnostics));
        }
    }
    o
}

fn block_digest(block: &[u8]) -> J {
    let digest = Sha256::digest(block);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut o = Obj::default();
    o.set("len", J::Int(block.len() as i128))
        .set("sha256", J::Str(hex));
    o.done()
}

fn header_blocks(outcome: &Outcome) -> Vec<J> {
    match outcome {
        Outcome::Report(s) => s
            .reports
            .iter()
            .map(|r| block_digest(&r.message.header_block))
            .collect(),
        _ => Vec::new(),
    }
}

/// The full snapshot for one fixture; panics when the LF and CRLF forms disagree.
fn snapshot(name: &str, raw: &[u8]) -> J {
    let options = ParseOptions::default();
    let lf = arfwire_parse::parse(&to_lf(raw), &options);
    let crlf = arfwire_parse::parse(&to_crlf(raw), &options);
    let mut summary = summarise(name, &lf).done();
    let crlf_summary = summarise(name, &crlf).done();
    assert_eq!(
        summary,
        crlf_summary,
        "{name}: the LF and CRLF forms give different summaries:\nLF:   {}\nCRLF: {}",
        summary.to_text(),
        crlf_summary.to_text(),
    );
    // Each report gains its header block's length and hash, per line-ending form.
    let lf_blocks = header_blocks(&lf);
    let crlf_blocks = header_blocks(&crlf);
    if let J::Obj(fields) = &mut summary
        && let Some((_, J::Arr(reports))) = fields.iter_mut().find(|(k, _)| k == "reports")
    {
        for (i, report) in reports.iter_mut().enumerate() {
            if let J::Obj(items) = report {
                let mut block = Obj::default();
                block
                    .set("lf", lf_blocks.get(i).cloned().unwrap_or(J::Null))
                    .set("crlf", crlf_blocks.get(i).cloned().unwrap_or(J::Null));
                // Just before the diagnostics, which stay last.
                let at = items.len().saturating_sub(1);
                items.insert(at, ("header_block".to_owned(), block.done()));
            }
        }
    }
    summary
}

/// The `outcome` of a summary.
fn outcome_of(summary: &J) -> &str {
    match summary {
        J::Obj(fields) => fields
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("outcome", J::Str(s)) => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or(""),
        _ => "",
    }
}

#[test]
fn fixtures_match_snapshots() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v != "0");
    let fixtures = fixture_paths();
    assert!(
        fixtures.len() >= 40,
        "expected at least 40 fixtures under {}, found {}",
        fixtures_dir().display(),
        fixtures.len()
    );
    let mut failures = Vec::new();
    for path in &fixtures {
        let name = relative_name(path);
        let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let summary = snapshot(&name, &raw);

        // Structural invariants, so that a careless UPDATE_EXPECT cannot bless a wrong class:
        // everything under negative/ is not a report, everything else is one.
        let outcome = outcome_of(&summary);
        let want = if name.starts_with("negative/") {
            "not_report"
        } else {
            "report"
        };
        if outcome != want {
            failures.push(format!("{name}: outcome is {outcome}, expected {want}"));
        }

        let text = summary.to_text();
        let expected_path = snapshot_path(path);
        if update {
            let current = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if current != text {
                std::fs::write(&expected_path, &text)
                    .unwrap_or_else(|e| panic!("write {}: {e}", expected_path.display()));
                println!("updated {}", expected_path.display());
            }
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == text => {}
            Ok(expected) => failures.push(format!(
                "{name}: the summary differs from {}\n--- expected\n{expected}+++ actual\n{text}",
                expected_path.display()
            )),
            Err(_) => failures.push(format!(
                "{name}: no snapshot at {} (run with UPDATE_EXPECT=1 and review it)\n{text}",
                expected_path.display()
            )),
        }
    }

    // A snapshot whose fixture is gone is stale.
    let snapshots = GROUPS
        .iter()
        .flat_map(|group| fixture_snapshots(&fixtures_dir().join(group)));
    for path in snapshots {
        let stem = path
            .file_name()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_suffix(".expected.json"))
            .unwrap_or("");
        if !path.with_file_name(format!("{stem}.eml")).is_file() {
            failures.push(format!("{}: snapshot without a fixture", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every `*.expected.json` under `dir`, recursively.
fn fixture_snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".expected.json"))
            {
                found.push(path);
            }
        }
    }
    found
}
