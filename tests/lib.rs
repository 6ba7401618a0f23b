//! Shared helpers for arfwire's integration tests and benchmarks: where the corpus and the
//! fixtures are, and how to read the corpus index.

use std::path::{Path, PathBuf};

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// The shared corpus of real report mails: `ARFWIRE_CORPUS`, else `../shared/corpus`
/// beside the workspace. Panics with a clear message when it is missing: tests that need it
/// must fail, not skip.
pub fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("ARFWIRE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/corpus"));
    assert!(
        dir.join("INDEX.tsv").is_file(),
        "the report corpus is missing: expected {}/INDEX.tsv (set ARFWIRE_CORPUS)",
        dir.display()
    );
    dir
}

/// The project's own fixtures.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

/// One row of the corpus index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    /// Path relative to the corpus directory.
    pub path: String,
    /// `arf`, `arf-nonstandard`, `dmarc-forensic`, `rfc822-forward`, `bounce-not-abuse`, `other`.
    pub kind: String,
    /// Feedback type as written, or `-`.
    pub feedback_type: String,
    /// Source-IP as written, or `-`.
    pub source_ip: String,
    /// Sender domain, or `-`.
    pub sender_domain: String,
    /// Free-text notes.
    pub notes: String,
}

/// Read `INDEX.tsv`.
pub fn read_index(corpus: &Path) -> Vec<IndexRow> {
    let text = std::fs::read_to_string(corpus.join("INDEX.tsv")).expect("read INDEX.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let col = |i: usize| cols.get(i).copied().unwrap_or("-").to_owned();
            IndexRow {
                path: col(0),
                kind: col(2),
                feedback_type: col(3),
                source_ip: col(4),
                sender_domain: col(5),
                notes: col(6),
            }
        })
        .collect()
}

/// Is this index kind a report (as opposed to a negative)?
pub fn is_report_kind(kind: &str) -> bool {
    matches!(
        kind,
        "arf"
            | "arf-nonstandard"
            | "dmarc-forensic"
            | "rfc822-forward"
            | "inline-forward"
            | "headers-only"
    )
}

/// Convert line endings to LF.
pub fn to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Convert line endings to CRLF (bare LF becomes CRLF; existing CRLF stays).
pub fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let lf = to_lf(bytes);
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 40);
    for &b in &lf {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Every `.eml` file under `dir`, recursively, sorted by path. A missing directory has none.
pub fn eml_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read a fixtures directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "eml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
