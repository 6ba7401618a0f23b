//! Where the corpus, the fixtures and the schemas are, and how to validate against them.

use std::path::{Path, PathBuf};

use arfwire_events::{Channel, Intake, Output};
use chrono::{DateTime, TimeZone, Utc};
use jsonschema::Validator;
use serde_json::Value;

/// The workspace root.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared report corpus: `ARFWIRE_CORPUS`, else `../shared/corpus` beside the workspace.
/// Panics with a clear message when it is missing: these tests fail, never skip.
pub(crate) fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("ARFWIRE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/corpus"));
    assert!(
        dir.join("INDEX.tsv").is_file(),
        "the report corpus is missing: expected {}/INDEX.tsv; set ARFWIRE_CORPUS to the \
         corpus directory",
        dir.display()
    );
    dir
}

/// The project's own fixtures (may be missing or empty).
pub(crate) fn fixtures_dir() -> PathBuf {
    workspace_root().join("fixtures")
}

/// Every regular file under `dir`, recursively, sorted; empty when `dir` does not exist.
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A fixed reception time, so every run derives the same records.
pub(crate) fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

/// Parse and derive one submission as the file channel would.
pub(crate) fn derive_file(
    raw: &[u8],
    relative_path: &str,
) -> (arfwire_parse::Outcome, Vec<Output>) {
    let at = received_at();
    let options = arfwire_parse::ParseOptions {
        received_at_unix: Some(at.timestamp()),
        ..Default::default()
    };
    let outcome = arfwire_parse::parse(raw, &options);
    let intake = Intake::new(raw, Channel::File, at).with_file(relative_path, None);
    let outputs = arfwire_events::derive(&outcome, &intake);
    (outcome, outputs)
}

/// A schema file as JSON.
pub(crate) fn schema(name: &str) -> Value {
    let path = workspace_root().join("schemas").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A validator for a schema file: draft 2020-12, formats asserted, nothing fetched.
pub(crate) fn validator(name: &str) -> Validator {
    let schema = schema(name);
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid JSON Schema: {e}"));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
}

/// The abuse-event and rejection validators.
pub(crate) struct Validators {
    pub(crate) event: Validator,
    pub(crate) rejected: Validator,
}

impl Validators {
    pub(crate) fn new() -> Self {
        Validators {
            event: validator("abuse-event.v1.json"),
            rejected: validator("rejected.v1.json"),
        }
    }

    /// Validation errors of one record against its schema, as text.
    pub(crate) fn errors(&self, output: &Output) -> Vec<String> {
        let json = output.to_json();
        let validator = match output {
            Output::Event(_) => &self.event,
            Output::Rejected(_) => &self.rejected,
        };
        validator
            .iter_errors(&json)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

/// Every string in a JSON value, keys included.
pub(crate) fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings(v, out);
            }
        }
        _ => {}
    }
}
