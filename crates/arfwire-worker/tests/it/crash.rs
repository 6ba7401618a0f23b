//! Records that kill the worker process: the crash journal counts them across restarts.
//!
//! The main test runs real worker processes (this test binary started again as a child,
//! running only [`child_worker`]) against a mock cluster living in the test process, so
//! committed offsets outlive every child. The child's processor aborts the process on one
//! record; production code has no test branch.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arfwire_events::Output;
use arfwire_kafka::testing::MockKafka;
use arfwire_kafka::{EventProducer, KafkaConfig, RawConsumer, TopicNames};
use arfwire_raw::RawSubmission;
use arfwire_worker::{CrashJournal, ProcessError, Processor, Worker, WorkerConfig};

use crate::support::{
    drain, eventually, expected_outputs, fast_config, fixture, header, pipeline, produce,
    submission, three_fixtures, within,
};

const CHILD_ENV: &str = "ARFWIRE_TEST_CRASH_CHILD";
/// Marks the record the child's processor aborts on.
const ABORT_MARK: &[u8] = b"X-Test-Abort-Process: yes";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "arfwire-crash-{name}-{}",
        arfwire_kafka::testing::unique_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn group_options(config: &mut KafkaConfig) {
    config.auto_commit_interval_ms = 100;
    // A killed child stays a group member until its session times out; keep that short.
    for (key, value) in [
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config
            .librdkafka_options
            .insert(key.to_owned(), value.to_owned());
    }
}

fn poison() -> RawSubmission {
    let mut bytes = ABORT_MARK.to_vec();
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(&fixture("arf/001-rfc5965-every-field.eml"));
    submission(bytes)
}

/// Run once per child process: a worker with a crash journal whose processor aborts the
/// process on the marked record, until the parent creates the stop file.
#[test]
#[ignore = "a worker process started by a_record_that_kills_the_process_is_dead_lettered_after_max_attempts_crashes"]
fn child_worker() {
    let spec = std::env::var(CHILD_ENV).expect("started by the crash test");
    let mut fields = spec.split('\t');
    let (bootstrap, suffix, journal, stop) = (
        fields.next().expect("bootstrap"),
        fields.next().expect("suffix"),
        PathBuf::from(fields.next().expect("journal")),
        PathBuf::from(fields.next().expect("stop file")),
    );
    let mut kafka = KafkaConfig::new(bootstrap);
    kafka.topics = TopicNames::with_suffix(suffix);
    kafka.client_id = "arfwire-crash-child".to_owned();
    group_options(&mut kafka);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let inner = pipeline();
        let processor = move |raw: &RawSubmission| -> Result<Vec<Output>, ProcessError> {
            if raw.bytes.starts_with(ABORT_MARK) {
                std::process::abort();
            }
            inner.process(raw)
        };
        let worker = Worker::new(
            WorkerConfig {
                max_attempts: 3,
                ..fast_config()
            },
            RawConsumer::subscribe(&kafka, "crashing-workers").expect("consumer"),
            EventProducer::new(&kafka).expect("producer"),
            processor,
        )
        .expect("worker")
        .with_crash_journal(CrashJournal::open(&journal).expect("journal"));
        worker
            .run(async move {
                while !stop.exists() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .expect("worker run");
    });
}

fn start_child(kafka: &KafkaConfig, journal: &Path, stop: &Path) -> std::process::Child {
    let spec = [
        kafka.bootstrap_servers.as_str(),
        kafka.topics.raw.trim_start_matches("abuse.raw.v1."),
        &journal.display().to_string(),
        &stop.display().to_string(),
    ]
    .join("\t");
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash::child_worker",
            "--include-ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("child worker started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_kills_the_process_is_dead_lettered_after_max_attempts_crashes() {
    let kafka = MockKafka::start(1, 1).expect("mock cluster");
    let mut config = kafka.config().clone();
    group_options(&mut config);
    assert_eq!(
        TopicNames::with_suffix(config.topics.raw.trim_start_matches("abuse.raw.v1.")),
        config.topics,
        "the child derives the same topic names"
    );
    let fixtures = three_fixtures();
    let good = [
        submission(fixtures[0].clone()),
        submission(fixtures[1].clone()),
        submission(fixtures[2].clone()),
    ];
    let poison = poison();
    produce(
        &config,
        &[
            good[0].clone(),
            poison.clone(),
            good[1].clone(),
            good[2].clone(),
        ],
    )
    .await;
    let expected_ids: BTreeSet<String> = expected_outputs(&good)
        .iter()
        .map(|o| o.event_id().to_owned())
        .collect();

    let dir = temp_dir("journal");
    let journal = dir.join("worker-crashes");
    let stop = dir.join("stop");
    let mut exits: Vec<ExitStatus> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Each child runs until it dies or the parent has seen the dead letter.
    let dead = loop {
        assert!(
            exits.len() <= 5,
            "the worker keeps dying: {exits:?} (a crash loop)"
        );
        assert!(
            Instant::now() < deadline,
            "no dead letter in time: {exits:?}"
        );
        let mut child = start_child(&config, &journal, &stop);
        let dead = within(60, "a child worker dies or dead-letters", async {
            loop {
                if let Some(status) = child.try_wait().expect("child status") {
                    return Err(status);
                }
                let found = dead_letters(&config).await;
                if !found.is_empty() {
                    return Ok(found);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        match dead {
            Ok(found) => {
                // Let it finish the rest, then stop it cleanly.
                let outputs = within(30, "every good record published", async {
                    loop {
                        let seen = output_ids(&config).await;
                        if expected_ids.is_subset(&seen) {
                            return seen;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
                .await;
                assert!(expected_ids.is_subset(&outputs));
                std::fs::write(&stop, b"stop").expect("stop file");
                let status = within(30, "the last child stops", async {
                    loop {
                        if let Some(status) = child.try_wait().expect("child status") {
                            return status;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
                .await;
                assert!(status.success(), "a clean stop: {status:?}");
                break found;
            }
            Err(status) => exits.push(status),
        }
    };

    // Exactly max_attempts crashes, each an abort, before the record was set aside.
    assert_eq!(exits.len(), 3, "{exits:?}");
    for status in &exits {
        assert_eq!(status.signal(), Some(6), "an abort: {status:?}");
    }
    assert_eq!(dead.len(), 1);
    let record = &dead[0];
    assert_eq!(
        record.payload(),
        poison.bytes.as_slice(),
        "the original bytes"
    );
    assert_eq!(header(record, "arfwire-attempts"), Some("3"));
    let error = header(record, "arfwire-error").expect("error header");
    assert!(
        error.contains("killed the worker process 3 times"),
        "{error}"
    );
    // The good records' outputs are all there, with their deterministic ids (some twice,
    // from the runs that died after publishing them).
    let seen = output_ids(&config).await;
    assert_eq!(seen, expected_ids);
    // The journal forgot the record once it was dead-lettered.
    let reopened = CrashJournal::open(&journal).expect("journal");
    assert!(reopened.suspects().is_empty(), "{:?}", reopened.suspects());
}

/// What the DLQ holds now (read from the beginning by a fresh reader).
async fn dead_letters(config: &KafkaConfig) -> Vec<arfwire_kafka::RawRecord> {
    drain(config, &config.topics.dlq, 300).await
}

/// The distinct ids on the events and rejected topics now.
async fn output_ids(config: &KafkaConfig) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for topic in [&config.topics.events, &config.topics.rejected] {
        for record in drain(config, topic, 300).await {
            let output = Output::from_json(&String::from_utf8_lossy(record.payload()))
                .expect("an output record");
            ids.insert(output.event_id().to_owned());
        }
    }
    ids
}

/// A suspect (a record that was in processing when the process died) is processed with
/// nothing else in processing, and published normally when it does not crash again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspect_is_processed_alone_and_cleared_when_it_survives() {
    // One partition: records are fetched in the order below, so many ordinary records come
    // after the suspect and would be processed beside it if it were not isolated.
    let kafka = MockKafka::start(1, 1).expect("mock cluster");
    let mut config = kafka.config().clone();
    group_options(&mut config);
    let mut submissions: Vec<RawSubmission> =
        three_fixtures().into_iter().map(submission).collect();
    let suspect = poison();
    submissions.insert(1, suspect.clone());
    for n in 0..20 {
        submissions.push(submission(
            format!("From: a{n}@example.org\r\nSubject: filler {n}\r\n\r\nhello\r\n").into_bytes(),
        ));
    }
    // The previous process died while processing the suspect.
    let dir = temp_dir("suspect");
    let path = dir.join("worker-crashes");
    std::fs::write(&path, format!("begin\t{}\n", suspect.sha256_hex())).expect("journal");
    let journal = CrashJournal::open(&path).expect("journal");
    assert_eq!(journal.crashes(&suspect.sha256_hex()), 1);

    let in_processing = Arc::new(AtomicUsize::new(0));
    let overlapped = Arc::new(AtomicBool::new(false));
    let processor = {
        let (in_processing, overlapped) = (Arc::clone(&in_processing), Arc::clone(&overlapped));
        let inner = pipeline();
        move |raw: &RawSubmission| -> Result<Vec<Output>, ProcessError> {
            let now = in_processing.fetch_add(1, Ordering::SeqCst) + 1;
            let is_suspect = raw.bytes.starts_with(ABORT_MARK);
            std::thread::sleep(Duration::from_millis(if is_suspect { 300 } else { 40 }));
            if is_suspect && (now > 1 || in_processing.load(Ordering::SeqCst) > 1) {
                overlapped.store(true, Ordering::SeqCst);
            }
            in_processing.fetch_sub(1, Ordering::SeqCst);
            inner.process(raw)
        }
    };
    produce(&config, &submissions).await;
    let worker = Worker::new(
        WorkerConfig {
            max_in_flight: 8,
            ..fast_config()
        },
        RawConsumer::subscribe(&config, "suspects").expect("consumer"),
        EventProducer::new(&config).expect("producer"),
        processor,
    )
    .expect("worker")
    .with_crash_journal(journal);
    let stats = worker.stats();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let total = submissions.len() as u64;
    eventually(30, "every record done", || stats.snapshot().done == total).await;
    let _ = stop.send(());
    let totals = within(20, "worker stops", task)
        .await
        .expect("task")
        .expect("run");
    assert_eq!(totals.dead_lettered, 0);
    assert!(
        !overlapped.load(Ordering::SeqCst),
        "another record was in processing beside the suspect"
    );
    let reopened = CrashJournal::open(&path).expect("journal");
    assert!(reopened.suspects().is_empty(), "{:?}", reopened.suspects());
    // Every record was published: the suspect's event too.
    let expected: BTreeSet<String> = expected_outputs(&submissions)
        .iter()
        .map(|o| o.event_id().to_owned())
        .collect();
    let mut seen = BTreeSet::new();
    for topic in [&config.topics.events, &config.topics.rejected] {
        for record in drain(&config, topic, 300).await {
            let output = Output::from_json(&String::from_utf8_lossy(record.payload()))
                .expect("an output record");
            seen.insert(output.event_id().to_owned());
        }
    }
    assert_eq!(seen, expected);
}
