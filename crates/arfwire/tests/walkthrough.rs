//! The README's "Running the pipeline" walkthrough, run exactly as written.
//!
//! The shell block under that heading is taken from `README.md` and run with bash from the
//! workspace root, with `arfwire` standing for the binary under test (the block's own
//! `cargo build` line is the only one left out: the test already has the binary). It
//! starts the services itself (`scripts/services.sh up`), the front door, a worker and the
//! desk consumer in the background, sends the Contoso fixture with swaks, and tails the
//! events topic. The test then looks for this run's event in what `arfwire tail` printed.
//!
//! It uses the README's fixed addresses (LMTP 127.0.0.1:2424, metrics 9464 and 9465), topic
//! names and consumer groups, and the database of `DATABASE_URL`, as a user following the
//! README would.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::workspace;

/// The tenant the Contoso fixture is attributed to (deploy/tenants.example.toml).
const CONTOSO: &str = "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f";
/// Bound on the whole walkthrough.
const BUDGET: Duration = Duration::from_secs(150);

/// The first ```sh block after the heading, as lines of shell (continuations kept).
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let after = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"))
        .1;
    let start = after.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = after[start..].find("```").expect("the block's end") + start;
    after[start..end].to_owned()
}

#[test]
fn the_readme_walkthrough_shows_the_event() {
    let block = readme_block("## Running the pipeline");
    // Every line but the build: the test runs the binary cargo built for it.
    let lines: Vec<&str> = block
        .lines()
        .filter(|line| !line.trim_start().starts_with("cargo build"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("swaks")) && lines.iter().any(|l| l.contains("tail")),
        "the walkthrough sends a report and shows the event:\n{block}"
    );
    let script = format!(
        "set -euo pipefail\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null || true' EXIT\n\
         {}\n",
        lines.join("\n")
    );
    // `arfwire` on the PATH is the binary under test, so that `arfwire ... &` backgrounds
    // the service itself and the script's exit trap stops it.
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_arfwire"), bin.join("arfwire"))
        .expect("symlink");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(workspace())
        .env("PATH", path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0)
        .spawn()
        .expect("bash");
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break Some(status);
        }
        if started.elapsed() > BUDGET {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Whatever is left of the group (a service the trap did not reach) goes too.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        panic!(
            "the walkthrough did not finish within {BUDGET:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    };
    assert!(
        status.success(),
        "the walkthrough failed ({status}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("250 2.0.0"), "swaks got its 250:\n{stdout}");

    // This run's event: received after the start, attributed to Contoso, with its
    // CloudEvents headers.
    let ours: Vec<Value> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| {
            record["headers"]["ce_time"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= started_at - chrono::Duration::seconds(1))
        })
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one event from this run:\n{stdout}\n--- stderr\n{stderr}"
    );
    let event = &ours[0];
    assert_eq!(event["topic"], "abuse.events.v1");
    assert_eq!(event["key"], CONTOSO, "keyed by the sending tenant");
    assert_eq!(event["headers"]["ce_type"], "arfwire.abuse-event.v1");
    assert_eq!(event["headers"]["ce_id"], event["value"]["event_id"]);
    assert_eq!(
        event["value"]["attribution"]["sending_tenant"]["id"],
        CONTOSO
    );
    assert_eq!(event["value"]["intake"]["channel"], "lmtp");
}
