//! Runs the built `arfwire` binary on inputs written here, and once over the shared corpus.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ARF: &str = "From: feedback@fbl.example.org\r
To: abuse@example.com\r
Subject: FW: complaint\r
Date: Mon, 01 Jan 2024 10:00:00 +0000\r
Message-ID: <arf-1@fbl.example.org>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"\r
\r
--b1\r
Content-Type: text/plain\r
\r
This is an abuse report for a message received from 192.0.2.55.\r
--b1\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
User-Agent: TestFBL/1.0\r
Version: 1\r
Source-IP: 192.0.2.55\r
Original-Mail-From: <sender@spam.example.net>\r
Arrival-Date: Mon, 01 Jan 2024 09:59:00 +0000\r
\r
--b1\r
Content-Type: message/rfc822\r
\r
Received: from mx.spam.example.net (mx.spam.example.net [192.0.2.55])\r
\tby mx.fbl.example.org; Mon, 01 Jan 2024 09:59:00 +0000\r
From: Spammer <sender@spam.example.net>\r
To: victim@fbl.example.org\r
Subject: Buy now\r
Message-ID: <spam-1@spam.example.net>\r
Date: Mon, 01 Jan 2024 09:58:00 +0000\r
DKIM-Signature: v=1; a=rsa-sha256; d=spam.example.net; s=sel1; h=from; bh=abc=; b=def=\r
\r
Buy now!\r
--b1--\r
";

const BOUNCE: &str = "From: MAILER-DAEMON@mx.example.com
To: someone@example.com
Subject: Undelivered Mail Returned to Sender
Date: Mon, 01 Jan 2024 11:00:00 +0000
Message-ID: <bounce-1@mx.example.com>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b2\"

--b2
Content-Type: text/plain

Your message could not be delivered to one or more recipients.
--b2
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; nobody@example.org
Action: failed
Status: 5.1.1

--b2
Content-Type: text/rfc822-headers

From: someone@example.com
To: nobody@example.org
Subject: hello

--b2--
";

const GARBAGE: &[u8] = b"\x00\x01\x02 this is not mail at all \xff\xfe\n\x7f\x7f\n";

fn arfwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arfwire"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run the arfwire binary")
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON records of a JSON-lines stream.
fn records(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .expect("output is UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect()
}

/// Every record must satisfy the published JSON Schema of its kind.
fn assert_valid(records: &[Value]) {
    let compile = |text: &str| {
        let schema: Value = serde_json::from_str(text).expect("the schema is JSON");
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .expect("the schema compiles")
    };
    let event = compile(arfwire_events::ABUSE_EVENT_SCHEMA_JSON);
    let rejected = compile(arfwire_events::REJECTED_SCHEMA_JSON);
    for record in records {
        let validator = if is_event(record) { &event } else { &rejected };
        let errors: Vec<String> = validator
            .iter_errors(record)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?} in {record:#}");
    }
}

fn schema(record: &Value) -> &str {
    record["schema"]
        .as_str()
        .expect("every record has a schema")
}

fn is_event(record: &Value) -> bool {
    schema(record) == "arfwire.abuse-event.v1"
}

fn is_rejected(record: &Value) -> bool {
    schema(record) == "arfwire.rejected.v1"
}

fn file_name(record: &Value) -> String {
    let path = record["intake"]["file_path"]
        .as_str()
        .expect("file intake has a path");
    Path::new(path)
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

fn mixed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::write(dir.path().join("1-arf.eml"), ARF).expect("write");
    fs::write(dir.path().join("2-bounce.eml"), BOUNCE).expect("write");
    fs::write(dir.path().join("3-garbage.bin"), GARBAGE).expect("write");
    dir
}

#[test]
fn a_directory_yields_events_rejections_and_a_summary() {
    let dir = mixed_dir();
    let output = arfwire(&["process", arg(dir.path()), "--no-progress"]);
    assert!(output.status.success(), "{}", stderr(&output));

    // Without --rejected, both kinds of record share standard output, in input order.
    let records = records(&output.stdout);
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_valid(&records);
    assert!(is_event(&records[0]));
    assert_eq!(file_name(&records[0]), "1-arf.eml");
    assert_eq!(records[0]["kind"], "arf");
    assert_eq!(records[0]["feedback"]["source_ip"], "192.0.2.55");
    assert_eq!(records[0]["intake"]["channel"], "file");
    assert_eq!(records[0]["intake"]["mbox_index"], Value::Null);
    assert_eq!(records[0]["intake"]["raw_size"], ARF.len());

    assert!(is_rejected(&records[1]));
    assert_eq!(file_name(&records[1]), "2-bounce.eml");
    assert_eq!(records[1]["category"], "not_report");
    assert_eq!(records[1]["reason"], "bounce");

    assert!(is_rejected(&records[2]));
    assert_eq!(file_name(&records[2]), "3-garbage.bin");
    assert_eq!(records[2]["category"], "refused");
    assert_eq!(records[2]["reason"], "not_mail");

    let summary = stderr(&output);
    assert!(
        summary.contains("arfwire: 3 submissions (1 report) in "),
        "{summary}"
    );
    for (label, n) in [
        ("events", 1),
        ("arf", 1),
        ("abuse", 1),
        ("rejected", 2),
        ("bounce", 1),
        ("not_mail", 1),
        ("input errors", 0),
    ] {
        assert!(
            count_in(&summary, label) == Some(n),
            "{label} {n}: {summary}"
        );
    }
    assert!(summary.contains("by kind") && summary.contains("by feedback type"));
    assert!(summary.contains("not a report") && summary.contains("refused"));
}

/// The count the summary shows on the line labelled `label`.
fn count_in(summary: &str, label: &str) -> Option<u64> {
    summary.lines().find_map(|line| {
        let (name, count) = line.trim().rsplit_once(' ')?;
        (name.trim() == label).then(|| count.parse().ok())?
    })
}

/// Quote a message as an mboxrd writer does: `From ` and `>From ` lines gain one `>`.
fn mboxrd_quote(message: &str) -> String {
    message
        .split_inclusive('\n')
        .map(|line| {
            if line.trim_start_matches('>').starts_with("From ") {
                format!(">{line}")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

#[test]
fn mbox_messages_carry_their_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let second_arf = ARF.replace("192.0.2.55", "198.51.100.7").replace(
        "Buy now!\r\n",
        "Buy now!\r\nFrom the start of a line\r\n>From quoted once\r\n",
    );
    let mbox = format!(
        "From feedback@fbl.example.org Mon Jan  1 10:00:00 2024\n{}\n\
         From MAILER-DAEMON Mon Jan  1 11:00:00 2024\n{}\n\
         From feedback@fbl.example.org Mon Jan  1 12:00:00 2024\n{}\n",
        mboxrd_quote(ARF),
        mboxrd_quote(BOUNCE),
        mboxrd_quote(&second_arf),
    );
    let path = dir.path().join("junk.mbox");
    fs::write(&path, mbox).expect("write");
    let output = arfwire(&["process", arg(&path), "--no-progress"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = records(&output.stdout);
    assert_eq!(records.len(), 3, "{records:#?}");
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record["intake"]["channel"], "mbox");
        assert_eq!(record["intake"]["mbox_index"], index);
        assert_eq!(record["intake"]["file_path"], arg(&path));
    }
    assert!(is_event(&records[0]) && is_rejected(&records[1]) && is_event(&records[2]));
    assert_valid(&records);
    assert_eq!(records[2]["feedback"]["source_ip"], "198.51.100.7");
    // The separator line and the framing blank line are not part of a message, and the
    // mboxrd quoting was undone: the first message is the ARF byte for byte.
    assert_eq!(records[0]["intake"]["raw_size"], ARF.len());
    assert_eq!(records[2]["intake"]["raw_size"], second_arf.len());
    assert!(stderr(&output).contains("arfwire: 3 submissions (2 reports)"));
}

#[test]
fn out_and_rejected_files_are_written() {
    let dir = mixed_dir();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let events = out_dir.path().join("events.jsonl");
    let rejected = out_dir.path().join("rejected.jsonl");
    let output = arfwire(&[
        "process",
        arg(dir.path()),
        "--out",
        arg(&events),
        "--rejected",
        arg(&rejected),
        "--received-at",
        "2024-05-01T14:00:00+02:00",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let events = records(&fs::read(&events).expect("events file"));
    let rejected = records(&fs::read(&rejected).expect("rejected file"));
    assert_eq!(events.len(), 1);
    assert!(events.iter().all(is_event));
    assert_eq!(rejected.len(), 2);
    assert!(rejected.iter().all(is_rejected));
    for record in events.iter().chain(&rejected) {
        assert_eq!(record["intake"]["received_at"], "2024-05-01T12:00:00.000Z");
    }
    // The same records carry the same ids on every run.
    let again = arfwire(&["process", arg(dir.path()), "--no-progress"]);
    let ids: BTreeSet<String> = records(&again.stdout)
        .iter()
        .map(|r| {
            r.get("event_id")
                .or_else(|| r.get("rejection_id"))
                .and_then(Value::as_str)
                .expect("an id")
                .to_owned()
        })
        .collect();
    assert!(ids.contains(events[0]["event_id"].as_str().expect("event id")));
}

#[test]
fn without_received_at_the_modification_time_is_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("arf.eml");
    fs::write(&path, ARF).expect("write");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(when))
        .expect("set the modification time");
    let output = arfwire(&["process", arg(&path), "--no-progress"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = records(&output.stdout);
    assert_eq!(
        records[0]["intake"]["received_at"],
        "2023-11-14T22:13:20.000Z"
    );
}

#[cfg(unix)]
#[test]
fn an_unreadable_input_does_not_abort_the_run() {
    let dir = mixed_dir();
    // A link to nothing cannot be read, whoever runs the test (permission bits do not stop
    // the superuser).
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("0-broken.eml"))
        .expect("symlink");
    let output = arfwire(&["process", arg(dir.path()), "--no-progress"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = records(&output.stdout);
    assert_eq!(records.len(), 3);
    let text = stderr(&output);
    assert_eq!(count_in(&text, "input errors"), Some(1), "{text}");
    assert!(
        text.contains("0-broken.eml"),
        "the failure is logged with its path: {text}"
    );
}

#[test]
fn an_input_over_the_size_limit_is_a_rejection() {
    let dir = mixed_dir();
    let output = arfwire(&[
        "process",
        arg(&dir.path().join("1-arf.eml")),
        arg(&dir.path().join("2-bounce.eml")),
        "--max-bytes",
        "1000",
        "--no-progress",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = records(&output.stdout);
    assert_eq!(records.len(), 2);
    assert_valid(&records);
    assert_eq!(records[0]["reason"], "too_large");
    assert_eq!(records[0]["category"], "refused");
    assert_eq!(records[0]["intake"]["raw_size"], ARF.len());
    // The digest is of the whole file, as if it had been read: the same as a normal run's.
    let normal = arfwire(&[
        "process",
        arg(&dir.path().join("1-arf.eml")),
        "--no-progress",
    ]);
    let normal = self::records(&normal.stdout);
    assert_eq!(
        records[0]["intake"]["raw_sha256"],
        normal[0]["intake"]["raw_sha256"]
    );
    assert_eq!(records[1]["reason"], "bounce");
    assert_eq!(count_in(&stderr(&output), "too_large"), Some(1));
}

#[test]
fn usage_errors_exit_with_status_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let output = arfwire(&["process", arg(&missing)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("no such file or directory"));
    assert!(output.stdout.is_empty());

    let output = arfwire(&["process", arg(dir.path()), "--received-at", "yesterday"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("RFC 3339"));

    let output = arfwire(&["process"]);
    assert_eq!(output.status.code(), Some(2));

    let output = arfwire(&["parse", arg(dir.path())]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("is a directory"));
}

#[test]
fn unwritable_output_fails_the_run() {
    let dir = mixed_dir();
    let nowhere = dir.path().join("no-such-dir/events.jsonl");
    let output = arfwire(&["process", arg(dir.path()), "--out", arg(&nowhere)]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: cannot create "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_says_where_rejections_go() {
    let output = arfwire(&["process", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--rejected"), "{help}");
    assert!(help.contains("same stream as the events"), "{help}");
}

#[test]
fn parse_shows_a_report_for_a_person() {
    let dir = mixed_dir();
    let output = arfwire(&["parse", arg(&dir.path().join("1-arf.eml"))]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let source_ip = text
        .lines()
        .find(|l| l.trim_start().starts_with("Source-IP") && l.contains("192.0.2.55"));
    assert!(source_ip.is_some(), "{text}");
    for expected in [
        "report: arf (rfc5965), 1 reported message",
        "feedback@fbl.example.org",
        "Feedback-Type",
        "spam.example.net",
        "Buy now",
        "spam-1@spam.example.net",
        "Received (1, newest first)",
        "by mx.fbl.example.org",
        "d=spam.example.net  s=sel1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let output = arfwire(&["parse", arg(&dir.path().join("3-garbage.bin"))]);
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(text.contains("refused: not_mail"), "{text}");
}

#[test]
fn parse_json_prints_the_derived_records() {
    let dir = mixed_dir();
    let output = arfwire(&[
        "parse",
        "--json",
        arg(&dir.path().join("1-arf.eml")),
        "--received-at",
        "2024-05-01T12:00:00Z",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let value: Value = serde_json::from_slice(&output.stdout).expect("pretty JSON");
    let list = value.as_array().expect("an array of records");
    assert_eq!(list.len(), 1);
    assert!(is_event(&list[0]));
    assert_eq!(list[0]["feedback"]["source_ip"], "192.0.2.55");
    assert_eq!(list[0]["intake"]["received_at"], "2024-05-01T12:00:00.000Z");
    assert!(String::from_utf8_lossy(&output.stdout).contains("\n  "));
}

// ----- the shared corpus -----

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The shared corpus: `ARFWIRE_CORPUS`, else `shared/corpus` beside the workspace. Missing
/// is a failure, never a skip.
fn corpus_dir() -> PathBuf {
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

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("list corpus directory") {
        let entry = entry.expect("corpus entry");
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_corpus_file_yields_events_or_a_rejection() {
    let corpus = corpus_dir();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let events_path = out_dir.path().join("events.jsonl");
    let rejected_path = out_dir.path().join("rejected.jsonl");
    let output = arfwire(&[
        "process",
        arg(&corpus),
        "--out",
        arg(&events_path),
        "--rejected",
        arg(&rejected_path),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events = records(&fs::read(&events_path).expect("events file"));
    let rejected = records(&fs::read(&rejected_path).expect("rejected file"));
    assert!(events.iter().all(is_event));
    assert!(rejected.iter().all(is_rejected));
    // Schema conformance over the corpus is the events crate's to check; here it is
    // checked on the records this binary builds itself (see the size-limit test).

    // Per file: how many events and how many rejections it yielded.
    let mut seen: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for record in &events {
        let path = record["intake"]["file_path"]
            .as_str()
            .expect("path")
            .to_owned();
        seen.entry(path).or_default().0 += 1;
    }
    for record in &rejected {
        let path = record["intake"]["file_path"]
            .as_str()
            .expect("path")
            .to_owned();
        seen.entry(path).or_default().1 += 1;
    }

    let mut files = Vec::new();
    files_under(&corpus, &mut files);
    assert!(files.len() > 100, "only {} corpus files", files.len());
    for file in &files {
        let key = file.to_string_lossy().into_owned();
        match seen.get(&key) {
            Some((n_events, 0)) if *n_events > 0 => {}
            Some((0, 1)) => {}
            other => panic!("{key} yielded {other:?} (events, rejections)"),
        }
    }
    assert_eq!(
        seen.len(),
        files.len(),
        "records name files that do not exist"
    );

    let summary = stderr(&output);
    assert_eq!(count_in(&summary, "input errors"), Some(0), "{summary}");
    assert_eq!(count_in(&summary, "events"), Some(events.len() as u64));
    assert_eq!(count_in(&summary, "rejected"), Some(rejected.len() as u64));
}

#[test]
fn output_files_inside_an_input_directory_are_not_read_back() {
    let dir = mixed_dir();
    let events = dir.path().join("events.jsonl");
    // Left over from an earlier run: it would otherwise be read as a (not-mail) input.
    fs::write(&events, "{}\n").expect("write");
    let output = arfwire(&[
        "process",
        arg(dir.path()),
        "--out",
        arg(&events),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let records = records(&fs::read(&events).expect("events file"));
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(records.iter().all(|r| file_name(r) != "events.jsonl"));
}
