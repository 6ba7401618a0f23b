//! Every record derived from every corpus file and every fixture validates against its
//! schema and keeps the record-level invariants.

use std::collections::BTreeSet;
use std::path::Path;

use arfwire_events::{Output, RejectionCategory};
use arfwire_parse::Outcome;

use crate::support::{Validators, corpus_dir, derive_file, files_under, fixtures_dir, strings};

#[derive(Default)]
struct Tally {
    files: usize,
    events: usize,
    rejected: usize,
    failures: Vec<String>,
}

/// Check every record of one submission; failures are collected, not panicked on.
fn check_file(validators: &Validators, root: &Path, path: &Path, tally: &mut Tally) {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let relative = path
        .strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let (outcome, outputs) = derive_file(&raw, &relative);
    tally.files += 1;
    let mut fail = |what: String| tally.failures.push(format!("{relative}: {what}"));

    // The count and shape of the records follow the outcome.
    match &outcome {
        Outcome::Report(submission) => {
            if outputs.len() != submission.reports.len() {
                fail(format!(
                    "{} reported messages but {} records",
                    submission.reports.len(),
                    outputs.len()
                ));
            }
            for (i, output) in outputs.iter().enumerate() {
                match output {
                    Output::Event(event) => {
                        if event.report_index != i as u64
                            || event.report_count != outputs.len() as u64
                        {
                            fail(format!(
                                "event {i} has index {} of {}",
                                event.report_index, event.report_count
                            ));
                        }
                        if event.event_id != arfwire_events::event_id(&event.intake.raw_sha256, i) {
                            fail(format!("event {i} id is not event_id(raw_sha256, {i})"));
                        }
                    }
                    Output::Rejected(_) => fail(format!("record {i} of a report is a rejection")),
                }
            }
        }
        Outcome::NotReport(_) | Outcome::Rejected(_) => {
            let expected = if matches!(outcome, Outcome::NotReport(_)) {
                RejectionCategory::NotReport
            } else {
                RejectionCategory::Refused
            };
            match outputs.as_slice() {
                [Output::Rejected(r)] if r.category == expected => {}
                _ => fail(format!("expected one {expected:?} record, got {outputs:?}")),
            }
        }
    }

    let ids: BTreeSet<&str> = outputs.iter().map(Output::event_id).collect();
    if ids.len() != outputs.len() {
        fail("record ids are not unique".to_owned());
    }

    for output in &outputs {
        match output {
            Output::Event(_) => tally.events += 1,
            Output::Rejected(_) => tally.rejected += 1,
        }
        for error in validators.errors(output) {
            fail(format!(
                "{} {}: {error}",
                output.schema(),
                output.event_id()
            ));
        }
        let line = output.to_json_line();
        if line.contains('\n') || line.contains('\r') {
            fail(format!("{} is not one line", output.event_id()));
        }
        match Output::from_json(&line) {
            Ok(back) if back == *output => {}
            Ok(_) => fail(format!("{} does not round-trip", output.event_id())),
            Err(e) => fail(format!("{} does not read back: {e}", output.event_id())),
        }
        let mut texts = Vec::new();
        strings(&output.to_json(), &mut texts);
        if texts.iter().any(|t| t.contains('\0')) {
            fail(format!("{} holds a NUL", output.event_id()));
        }
    }
}

fn report(tally: &Tally, what: &str) {
    assert!(
        tally.failures.is_empty(),
        "{} of the records derived from {what} break the contract:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
}

#[test]
fn every_corpus_record_validates() {
    let corpus = corpus_dir();
    let validators = Validators::new();
    let mut tally = Tally::default();
    for path in files_under(&corpus) {
        check_file(&validators, &corpus, &path, &mut tally);
    }
    eprintln!(
        "corpus: {} files, {} events, {} rejections",
        tally.files, tally.events, tally.rejected
    );
    report(&tally, "the corpus");
    // The corpus index lists 168 files; the walk also reads the README and SOURCE files.
    assert!(
        tally.files >= 168,
        "only {} corpus files were read",
        tally.files
    );
    assert!(
        tally.events >= 80,
        "only {} events from the corpus",
        tally.events
    );
    assert!(
        tally.rejected >= 60,
        "only {} rejections from the corpus",
        tally.rejected
    );
}

#[test]
fn every_fixture_record_validates() {
    let fixtures = fixtures_dir();
    let validators = Validators::new();
    let mut tally = Tally::default();
    for path in files_under(&fixtures) {
        check_file(&validators, &fixtures, &path, &mut tally);
    }
    eprintln!(
        "fixtures: {} files, {} events, {} rejections",
        tally.files, tally.events, tally.rejected
    );
    report(&tally, "the fixtures");
}
