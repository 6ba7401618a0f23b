//! "No loss" end to end, against a real Kafka-compatible broker.
//!
//! ```text
//! LMTP client ──► front door (Server + RawProducer) ──► raw topic ──► worker ──► events / rejected
//!   (ledger)                                                                        (collector)
//! ```
//!
//! Every test keeps a **ledger** of what it sent: per message the SHA-256 of the bytes and
//! the reply (`250`, a `4xx`/`5xx`, or indeterminate when the connection broke after the
//! final dot). The **checker** then compares the ledger with what a consumer reads back:
//!
//! * every `250` submission has exactly the outputs that `arfwire_parse::parse` plus
//!   `arfwire_events::derive` give locally for the same bytes (same ids, same count);
//! * every id read more than once carries byte-identical JSON (replays are harmless);
//! * no output exists for a submission that was never acknowledged;
//! * nothing went to the dead-letter topic.
//!
//! The broker comes from `KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`); start one with
//! `scripts/services.sh up`. The broker-outage test starts a private `tansu` of its own so
//! it never disturbs the shared one. Every test uses topics and consumer groups of its own.
//!
//! The worker that is killed with SIGKILL is the shipped binary, `arfwire worker`, running in
//! a child process with a config file written by the test: a real `kill -9` of the service
//! as deployed.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arfwire_attribution::{DirectorySnapshot, Profile};
use arfwire_events::{Intake, Output, derive};
use arfwire_kafka::{
    EventProducer, KafkaConfig, RawConsumer, RawProducer, StartPosition, TopicNames, ensure_topics,
};
use arfwire_lmtp::{LmtpConfig, Server};
use arfwire_parse::ParseOptions;
use arfwire_worker::{Pipeline, StatsSnapshot, Worker, WorkerConfig, WorkerError, WorkerStats};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The recipient the front door accepts.
const RCPT: &str = "junk@provider.example";
/// A second accepted recipient (LMTP: one reply per recipient).
const RCPT2: &str = "abuse@provider.example";
/// Bound on one protocol step of the LMTP client.
const STEP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------

/// The shared broker, which must be reachable: the test fails (never skips) otherwise.
fn bootstrap() -> String {
    arfwire_kafka::testing::broker_bootstrap()
}

/// A suffix no other test (in this or another process) uses.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("noloss-{}-{n}-{nanos:x}", std::process::id())
}

/// A client configuration with topics of its own.
fn kafka_config(bootstrap: &str, suffix: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(bootstrap);
    config.topics = TopicNames::with_suffix(suffix);
    config.client_id = format!("arfwire-noloss-{suffix}");
    config.group_id = format!("workers-{suffix}");
    config.produce_timeout_ms = 15_000;
    // Offsets are committed every 2 s, so a kill usually leaves processed records
    // uncommitted and the restart replays them (duplicates whose sameness is checked).
    config.auto_commit_interval_ms = 2_000;
    // A killed group member is noticed in seconds, not after the 45 s default.
    config
        .librdkafka_options
        .insert("session.timeout.ms".into(), "6000".into());
    config
        .librdkafka_options
        .insert("heartbeat.interval.ms".into(), "1000".into());
    config
}

async fn create_topics(config: &KafkaConfig, partitions: i32) {
    within(30, "creating topics", ensure_topics(config, partitions, 1))
        .await
        .expect("topics created");
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = workspace().join("fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `.eml` of a fixture group, in name order.
fn fixture_group(group: &str) -> Vec<(String, Vec<u8>)> {
    let dir = workspace().join("fixtures").join(group);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".eml"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let bytes = fixture(&format!("{group}/{name}"));
            (format!("{group}/{name}"), bytes)
        })
        .collect()
}

/// Run `future`, failing the test when it takes longer than `seconds`.
async fn within<T>(seconds: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not finish within {seconds} s"),
    }
}

/// Wire form of a message: CRLF line endings throughout, ending with CRLF (what an MTA
/// relays). The front door stores exactly these bytes, so the ledger hashes them.
fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40 + 2);
    let mut previous = 0u8;
    for &b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `bytes` made unique by a first header line (for fixtures whose first line is a header).
fn tagged(bytes: &[u8], tag: &str) -> Vec<u8> {
    let mut out = format!("X-Noloss-Tag: {tag}\r\n").into_bytes();
    out.extend_from_slice(&to_crlf(bytes));
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The outputs the pipeline must publish for `bytes`, computed locally: `(id, is_event)`.
fn expected_outputs(bytes: &[u8]) -> Vec<(String, bool)> {
    let outcome = arfwire_parse::parse(bytes, &ParseOptions::default());
    let intake = Intake::new(bytes, arfwire_events::Channel::Lmtp, chrono::Utc::now());
    derive(&outcome, &intake)
        .iter()
        .map(|o| (o.event_id().to_owned(), matches!(o, Output::Event(_))))
        .collect()
}

// ---------------------------------------------------------------------------------------
// LMTP client and ledger
// ---------------------------------------------------------------------------------------

/// What the front door answered for one message (for one recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// `250`: the front door took responsibility.
    Accepted,
    /// Any other reply code, with its text.
    Refused(u16, String),
    /// The connection broke after the final dot, before the reply.
    Indeterminate,
}

/// One ledger line.
#[derive(Debug, Clone)]
struct Entry {
    sha256: String,
    replies: Vec<Reply>,
}

impl Entry {
    fn accepted(&self) -> bool {
        !self.replies.is_empty() && self.replies.iter().all(|r| *r == Reply::Accepted)
    }
}

/// The record of everything sent, shared by concurrent clients.
#[derive(Debug, Clone, Default)]
struct Ledger(Arc<Mutex<Vec<Entry>>>);

impl Ledger {
    fn push(&self, entry: Entry) {
        self.0.lock().unwrap().push(entry);
    }
    fn entries(&self) -> Vec<Entry> {
        self.0.lock().unwrap().clone()
    }
}

/// A raw-socket LMTP client: one reply per command, one per recipient after the data.
struct Lmtp {
    stream: BufReader<TcpStream>,
}

impl Lmtp {
    async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::other("connect timed out"))??;
        let mut client = Lmtp {
            stream: BufReader::new(stream),
        };
        let (code, text) = client.reply().await?;
        if code != 220 {
            return Err(std::io::Error::other(format!("greeting {code} {text}")));
        }
        let (code, text) = client.command("LHLO client.test.example").await?;
        if code != 250 {
            return Err(std::io::Error::other(format!("LHLO: {code} {text}")));
        }
        Ok(client)
    }

    /// Read one (possibly multi-line) reply.
    async fn reply(&mut self) -> std::io::Result<(u16, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(STEP, self.stream.read_line(&mut line))
                .await
                .map_err(|_| std::io::Error::other("reply timed out"))??;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad reply line {line:?}")))?;
            text.push_str(line.get(4..).unwrap_or_default());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, text));
            }
            text.push('\n');
        }
    }

    async fn command(&mut self, line: &str) -> std::io::Result<(u16, String)> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        tokio::time::timeout(STEP, self.stream.get_mut().write_all(bytes))
            .await
            .map_err(|_| std::io::Error::other("write timed out"))?
    }

    /// Send one message (CRLF-terminated lines) to `rcpts`. `Err` only when the session
    /// is unusable *before* the final dot (the message was certainly not taken).
    async fn send(&mut self, message: &[u8], rcpts: &[&str]) -> std::io::Result<Vec<Reply>> {
        let (code, text) = self.command("MAIL FROM:<feedback@fbl.example.org>").await?;
        if code != 250 {
            return Err(std::io::Error::other(format!("MAIL: {code} {text}")));
        }
        for rcpt in rcpts {
            let (code, text) = self.command(&format!("RCPT TO:<{rcpt}>")).await?;
            if code != 250 {
                return Err(std::io::Error::other(format!("RCPT: {code} {text}")));
            }
        }
        let (code, text) = self.command("DATA").await?;
        if code != 354 {
            return Err(std::io::Error::other(format!("DATA: {code} {text}")));
        }
        let mut wire = dot_stuff(message);
        wire.extend_from_slice(b".\r\n");
        if self.write(&wire).await.is_err() {
            return Ok(vec![Reply::Indeterminate; rcpts.len()]);
        }
        let mut replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            replies.push(match self.reply().await {
                Ok((250, text)) => {
                    let prefix = text.split_whitespace().nth(1).unwrap_or_default();
                    let sha = sha256_hex(message);
                    assert!(
                        !prefix.is_empty() && sha.starts_with(prefix),
                        "250 reply {text:?} does not name the digest {sha} of what was sent"
                    );
                    Reply::Accepted
                }
                Ok((code, text)) => Reply::Refused(code, text),
                Err(_) => Reply::Indeterminate,
            });
        }
        Ok(replies)
    }
}

/// RFC 5321 §4.5.2: a line starting with `.` gets another `.` in front.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    out
}

/// Send `messages` over one LMTP session (reconnecting after a broken one), recording each
/// in `ledger`.
async fn send_all(addr: SocketAddr, messages: Vec<Vec<u8>>, rcpts: &[&str], ledger: &Ledger) {
    let mut client: Option<Lmtp> = None;
    for message in messages {
        let sha256 = sha256_hex(&message);
        if client.is_none() {
            client = Some(Lmtp::connect(addr).await.expect("LMTP connect"));
        }
        let session = client.as_mut().expect("connected");
        let replies = match session.send(&message, rcpts).await {
            Ok(replies) => replies,
            Err(error) => {
                client = None;
                vec![Reply::Refused(0, format!("before the data: {error}"))]
            }
        };
        if replies.contains(&Reply::Indeterminate) {
            client = None;
        }
        ledger.push(Entry { sha256, replies });
    }
    if let Some(mut session) = client {
        let _ = session.command("QUIT").await;
    }
}

// ---------------------------------------------------------------------------------------
// Front door, worker, collector
// ---------------------------------------------------------------------------------------

/// The front door running in this process (aborted on drop).
struct FrontDoor {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl FrontDoor {
    async fn start(kafka: &KafkaConfig, submit_timeout_ms: u64) -> Self {
        let producer = RawProducer::new(kafka).expect("raw producer");
        let mut config = LmtpConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "ingest.test.example",
            vec![RCPT.to_owned(), RCPT2.to_owned()],
        );
        config.submit_timeout_ms = submit_timeout_ms;
        config.max_connections_per_ip = 200;
        config.shutdown_grace_ms = 2_000;
        let server = Server::new(config, producer).expect("front door config");
        let listener = server.bind().await.expect("bind front door");
        let addr = listener.local_addr().expect("front door address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        FrontDoor {
            addr,
            stop: Some(stop),
            task,
        }
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// The production pipeline over the Exchange fixtures' profile and tenant directory.
fn pipeline() -> Pipeline {
    let read = |name: &str| String::from_utf8(fixture(name)).expect("UTF-8 fixture");
    let profile = Profile::from_toml(&read("exchange/profile.toml")).expect("profile");
    let directory =
        DirectorySnapshot::from_toml(&read("exchange/tenants.toml")).expect("directory");
    // One key for every process of the test (as a deployment shares one), so a record
    // replayed by a restarted worker gets identical complainant pseudonyms.
    Pipeline::with_static_directory(profile, directory)
        .with_pseudonymizer(arfwire_events::Pseudonymizer::development())
}

fn worker_config() -> WorkerConfig {
    WorkerConfig {
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
        lag_interval: Duration::from_secs(5),
        kafka_timeout: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// A worker running in this process (aborted on drop).
struct InProcessWorker {
    stats: Arc<WorkerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<StatsSnapshot, WorkerError>>>,
}

impl InProcessWorker {
    fn start(kafka: &KafkaConfig) -> Self {
        let consumer = RawConsumer::subscribe(kafka, &kafka.group_id).expect("raw consumer");
        let producer = EventProducer::new(kafka).expect("event producer");
        let worker = Worker::new(worker_config(), consumer, producer, pipeline()).expect("worker");
        let stats = worker.stats();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        }));
        InProcessWorker {
            stats,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) -> StatsSnapshot {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("running");
        within(30, "worker shutdown", task)
            .await
            .expect("worker task")
            .expect("worker run")
    }
}

impl Drop for InProcessWorker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A child process, killed (SIGKILL) and reaped on drop.
struct ChildGuard(Child);

impl ChildGuard {
    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Start `arfwire worker` (the shipped binary) in a child process, with a config file that
/// matches [`kafka_config`]: same topics, consumer group, commit interval and session timeout,
/// the fixture profile and tenant directory, and the development pseudonym key.
fn spawn_worker_process(bootstrap: &str, suffix: &str) -> ChildGuard {
    let dir = std::env::temp_dir().join(format!("arfwire-noloss-{suffix}"));
    std::fs::create_dir_all(&dir).expect("config directory");
    let config = dir.join("arfwire.toml");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let root = workspace();
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
client_id = "arfwire-noloss-{suffix}"
group_id = "workers-{suffix}"
produce_timeout_ms = 15000
auto_commit_interval_ms = 2000

[kafka.topics]
raw = "abuse.raw.v1.{suffix}"
events = "abuse.events.v1.{suffix}"
rejected = "abuse.rejected.v1.{suffix}"
dlq = "abuse.dlq.v1.{suffix}"

[kafka.librdkafka_options]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[worker]
group_id = "workers-{suffix}"
profile = "{profile}"
tenants = {{ source = "file", path = "{tenants}" }}
verify_reporters = false
shutdown_grace_secs = 5

[metrics]
listen = "127.0.0.1:{metrics_port}"

[log]
format = "json"
filter = "warn"
"#,
            profile = root.join("fixtures/exchange/profile.toml").display(),
            tenants = root.join("fixtures/exchange/tenants.toml").display(),
        ),
    )
    .expect("write the worker config");
    let child = Command::new(env!("CARGO_BIN_EXE_arfwire"))
        .args(["worker", "--config"])
        .arg(&config)
        .env("ARFWIRE_PSEUDONYM_KEY", arfwire_events::DEVELOPMENT_KEY_HEX)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("arfwire worker child process");
    ChildGuard(child)
}

/// One output read back from the events or rejected topic.
#[derive(Debug, Clone)]
struct Seen {
    raw_sha256: String,
    json: String,
    copies: usize,
    distinct_bodies: Vec<String>,
}

/// Everything read back, by output id.
#[derive(Debug, Default)]
struct Collected {
    by_id: HashMap<String, Seen>,
    records: usize,
    dlq: usize,
}

/// Consumers of the events, rejected and DLQ topics, reading from the beginning.
struct Collector {
    state: Arc<Mutex<Collected>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Collector {
    async fn start(kafka: &KafkaConfig) -> Self {
        let state = Arc::new(Mutex::new(Collected::default()));
        let mut tasks = Vec::new();
        let topics = [
            (kafka.topics.events.clone(), false),
            (kafka.topics.rejected.clone(), false),
            (kafka.topics.dlq.clone(), true),
        ];
        for (topic, is_dlq) in topics {
            let group = format!("reader-{}", unique());
            let consumer = within(
                30,
                "assigning a reader",
                RawConsumer::assign_to(
                    kafka,
                    &group,
                    &topic,
                    StartPosition::Beginning,
                    Duration::from_secs(10),
                ),
            )
            .await
            .expect("reader assigned");
            let state = Arc::clone(&state);
            tasks.push(tokio::spawn(async move {
                loop {
                    let record = match consumer.recv().await {
                        Ok(record) => record,
                        Err(error) => {
                            eprintln!("reader {topic}: {error}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    let mut state = state.lock().unwrap();
                    state.records += 1;
                    if is_dlq {
                        state.dlq += 1;
                        continue;
                    }
                    let json = String::from_utf8_lossy(record.payload()).into_owned();
                    let output = Output::from_json(&json).expect("output JSON");
                    let id = output.event_id().to_owned();
                    let raw_sha256 = output.intake().raw_sha256.clone();
                    let seen = state.by_id.entry(id).or_insert_with(|| Seen {
                        raw_sha256,
                        json: json.clone(),
                        copies: 0,
                        distinct_bodies: Vec::new(),
                    });
                    seen.copies += 1;
                    if seen.json != json && !seen.distinct_bodies.contains(&json) {
                        seen.distinct_bodies.push(json);
                    }
                }
            }));
        }
        Collector { state, tasks }
    }

    fn distinct(&self) -> usize {
        self.state.lock().unwrap().by_id.len()
    }

    /// Wait until every id in `ids` was read and then nothing new arrived for `quiet`.
    async fn wait_for(&self, ids: &[String], seconds: u64, quiet: Duration) {
        let started = Instant::now();
        let mut last_count = usize::MAX;
        let mut stable_since = Instant::now();
        loop {
            let (missing, records) = {
                let state = self.state.lock().unwrap();
                let missing = ids
                    .iter()
                    .filter(|id| !state.by_id.contains_key(*id))
                    .count();
                (missing, state.records)
            };
            if records != last_count {
                last_count = records;
                stable_since = Instant::now();
            }
            if missing == 0 && stable_since.elapsed() >= quiet {
                return;
            }
            if started.elapsed() > Duration::from_secs(seconds) {
                // Leave the verdict to the checker, which names what is missing.
                eprintln!(
                    "waited {seconds} s: {missing} of {} ids still missing",
                    ids.len()
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The checker's figures, for the test's own assertions and its log line.
#[derive(Debug)]
struct Verdict {
    acked: usize,
    not_acked: usize,
    expected_ids: usize,
    duplicate_copies: usize,
}

/// Check the ledger against what was read back (see the module docs).
fn check(ledger: &Ledger, sent: &HashMap<String, Vec<u8>>, collector: &Collector) -> Verdict {
    let entries = ledger.entries();
    let state = collector.state.lock().unwrap();
    let mut problems = Vec::new();
    let mut acked = 0;
    let mut not_acked = 0;
    let mut expected_ids = 0;
    // The best reply each submission ever got (a resend after a 451 may be acked).
    let mut best: BTreeMap<&str, bool> = BTreeMap::new();
    for entry in &entries {
        *best.entry(&entry.sha256).or_default() |= entry.accepted();
    }
    for (sha, accepted) in &best {
        let bytes = sent.get(*sha).expect("every ledger entry was sent");
        let expected = expected_outputs(bytes);
        if *accepted {
            acked += 1;
            expected_ids += expected.len();
            for (id, _) in &expected {
                match state.by_id.get(id) {
                    None => problems.push(format!("acknowledged {sha}: output {id} missing")),
                    Some(seen) if seen.raw_sha256 != *sha => {
                        problems.push(format!("{id}: from {} instead of {sha}", seen.raw_sha256))
                    }
                    Some(_) => {}
                }
            }
            let published = state
                .by_id
                .values()
                .filter(|s| s.raw_sha256 == *sha)
                .count();
            if published != expected.len() {
                problems.push(format!(
                    "acknowledged {sha}: {published} distinct outputs, expected {}",
                    expected.len()
                ));
            }
        } else {
            not_acked += 1;
        }
    }
    let mut duplicate_copies = 0;
    for (id, seen) in &state.by_id {
        duplicate_copies += seen.copies - 1;
        for other in &seen.distinct_bodies {
            let mut paths = Vec::new();
            json_diff(
                &serde_json::from_str(&seen.json).expect("JSON"),
                &serde_json::from_str(other).expect("JSON"),
                "",
                &mut paths,
            );
            problems.push(format!(
                "{id}: duplicates differ in content at {}",
                paths.join(", ")
            ));
        }
        if !best.get(seen.raw_sha256.as_str()).copied().unwrap_or(false) {
            problems.push(format!(
                "{id}: output for {} which was never acknowledged",
                seen.raw_sha256
            ));
        }
    }
    if state.dlq != 0 {
        problems.push(format!(
            "{} records went to the dead-letter topic",
            state.dlq
        ));
    }
    assert!(
        problems.is_empty(),
        "checker found {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Verdict {
        acked,
        not_acked,
        expected_ids,
        duplicate_copies,
    }
}

/// The JSON paths (at most a few) where `a` and `b` differ.
fn json_diff(a: &serde_json::Value, b: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (x.get(key), y.get(key));
                if va != vb {
                    let sub = format!("{path}/{key}");
                    match (va, vb) {
                        (Some(va), Some(vb)) => json_diff(va, vb, &sub, out),
                        _ => out.push(sub),
                    }
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if va != vb {
                    json_diff(va, vb, &format!("{path}/{i}"), out);
                }
            }
        }
        _ => out.push(format!("{path} ({a} vs {b})")),
    }
}

/// Every expected output id of the acknowledged entries.
fn expected_ids(ledger: &Ledger, sent: &HashMap<String, Vec<u8>>) -> Vec<String> {
    let mut ids: Vec<String> = ledger
        .entries()
        .iter()
        .filter(|e| e.accepted())
        .flat_map(|e| expected_outputs(&sent[&e.sha256]))
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `count` distinct ARF reports (the same fixture with a distinguishing first header).
fn unique_reports(count: usize, tag: &str) -> Vec<Vec<u8>> {
    let base = fixture("arf/001-rfc5965-every-field.eml");
    (0..count)
        .map(|i| tagged(&base, &format!("{tag}-{i}")))
        .collect()
}

fn index(messages: &[Vec<u8>]) -> HashMap<String, Vec<u8>> {
    messages
        .iter()
        .map(|m| (sha256_hex(m), m.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// The fixture corpus through the front door and one worker: every acknowledged submission
/// has exactly the outputs the parser gives locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_over_lmtp_yields_the_expected_outputs() {
    let bootstrap = bootstrap();
    let suffix = unique();
    let kafka = kafka_config(&bootstrap, &suffix);
    create_topics(&kafka, 2).await;
    let door = FrontDoor::start(&kafka, 15_000).await;

    let mut messages: Vec<Vec<u8>> = Vec::new();
    for group in ["arf", "exchange", "forward"] {
        messages.extend(fixture_group(group).into_iter().map(|(_, b)| to_crlf(&b)));
    }
    messages.extend(
        fixture_group("negative")
            .into_iter()
            .take(6)
            .map(|(_, b)| to_crlf(&b)),
    );
    // Dot-stuffing: lines that start with a dot, one of them a lone dot.
    let mut dotted = to_crlf(&fixture("negative/009-ordinary-mail.eml"));
    dotted.extend_from_slice(b".\r\n..\r\n.leading dot\r\n");
    messages.push(dotted);
    let sent = index(&messages);
    assert_eq!(sent.len(), messages.len(), "fixtures are distinct");

    // Half with one recipient, half with two (one reply per recipient, one stored message).
    let ledger = Ledger::default();
    let half = messages.len() / 2;
    let second: Vec<Vec<u8>> = messages[half..].to_vec();
    let first: Vec<Vec<u8>> = messages[..half].to_vec();
    let (a, b) = (ledger.clone(), ledger.clone());
    let addr = door.addr;
    within(60, "sending the corpus", async move {
        tokio::join!(
            send_all(addr, first, &[RCPT], &a),
            send_all(addr, second, &[RCPT, RCPT2], &b),
        )
    })
    .await;
    let entries = ledger.entries();
    assert!(
        entries.iter().all(Entry::accepted),
        "every message answered 250: {:?}",
        entries
            .iter()
            .filter(|e| !e.accepted())
            .map(|e| &e.replies)
            .collect::<Vec<_>>()
    );

    let collector = Collector::start(&kafka).await;
    let worker = InProcessWorker::start(&kafka);
    let ids = expected_ids(&ledger, &sent);
    collector
        .wait_for(&ids, 90, Duration::from_millis(1500))
        .await;
    let totals = worker.stop().await;
    let verdict = check(&ledger, &sent, &collector);
    eprintln!("corpus: {verdict:?}, worker {totals:?}");
    assert_eq!(verdict.acked, messages.len());
    assert_eq!(totals.dead_lettered, 0);
    assert!(verdict.expected_ids >= messages.len());
}

/// Two workers in one group share a four-partition raw topic: both process records, and
/// the union of their outputs is exactly the expected set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions() {
    let bootstrap = bootstrap();
    let suffix = unique();
    let kafka = kafka_config(&bootstrap, &suffix);
    create_topics(&kafka, 4).await;
    let door = FrontDoor::start(&kafka, 15_000).await;
    let collector = Collector::start(&kafka).await;
    let one = InProcessWorker::start(&kafka);
    let two = InProcessWorker::start(&kafka);

    // Send in rounds until both members have processed something (the group may still be
    // settling during the first round: that is a rebalance under load, also wanted here).
    let ledger = Ledger::default();
    let mut sent = HashMap::new();
    for round in 0..8 {
        let batch = unique_reports(25, &format!("{suffix}-r{round}"));
        sent.extend(index(&batch));
        within(
            60,
            "sending a round",
            send_all(door.addr, batch, &[RCPT], &ledger),
        )
        .await;
        let ids = expected_ids(&ledger, &sent);
        collector
            .wait_for(&ids, 30, Duration::from_millis(200))
            .await;
        if one.stats.snapshot().done > 0 && two.stats.snapshot().done > 0 {
            break;
        }
    }
    let ids = expected_ids(&ledger, &sent);
    collector
        .wait_for(&ids, 60, Duration::from_millis(1500))
        .await;
    let (a, b) = (one.stop().await, two.stop().await);
    let verdict = check(&ledger, &sent, &collector);
    eprintln!("two workers: {verdict:?}; first {a:?}; second {b:?}");
    assert!(a.done > 0 && b.done > 0, "both workers processed records");
    assert_eq!(verdict.not_acked, 0);
    assert_eq!(collector.distinct(), ids.len());
}

/// `kill -9` of the worker process while it works through a stream, then a restart in the
/// same group: every acknowledged submission has its outputs, duplicates are identical,
/// nothing unacknowledged appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_stream_loses_nothing() {
    const N: usize = 200;
    let bootstrap = bootstrap();
    let suffix = unique();
    let kafka = kafka_config(&bootstrap, &suffix);
    create_topics(&kafka, 4).await;
    let door = FrontDoor::start(&kafka, 15_000).await;
    let collector = Collector::start(&kafka).await;

    let messages = unique_reports(N, &suffix);
    let sent = index(&messages);
    let ledger = Ledger::default();
    let mut worker = spawn_worker_process(&bootstrap, &suffix);

    // Send on four connections while the worker runs.
    let mut senders = Vec::new();
    for chunk in messages.chunks(N / 4) {
        let (addr, chunk, ledger) = (door.addr, chunk.to_vec(), ledger.clone());
        senders.push(tokio::spawn(async move {
            send_all(addr, chunk, &[RCPT], &ledger).await;
        }));
    }
    // Kill once a quarter of the events are out.
    let seen_at_kill = within(90, "first events from the worker", async {
        loop {
            let seen = collector.distinct();
            if seen >= N / 4 {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    worker.kill9();
    for sender in senders {
        within(90, "senders", sender).await.expect("sender task");
    }
    eprintln!("killed the worker (SIGKILL) after {seen_at_kill} of {N} events");

    let _restarted = spawn_worker_process(&bootstrap, &suffix);
    let ids = expected_ids(&ledger, &sent);
    collector.wait_for(&ids, 90, Duration::from_secs(3)).await;
    let verdict = check(&ledger, &sent, &collector);
    eprintln!(
        "kill -9: {verdict:?}; {} outputs were published more than once (replayed after the kill)",
        verdict.duplicate_copies
    );
    assert_eq!(verdict.acked, N, "every message answered 250");
    assert!(seen_at_kill < N, "the kill happened mid-stream");
}

/// A private broker on a free port, started as a child process in an empty directory.
struct PrivateBroker {
    child: ChildGuard,
    _dir: tempfile::TempDir,
}

fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file())
    {
        return path;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = home.join(".cargo/bin/tansu");
    assert!(
        path.is_file(),
        "tansu not found on PATH or in ~/.cargo/bin: install it with `scripts/services.sh up`"
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PrivateBroker {
    async fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log")).expect("log file");
        let child = Command::new(tansu_binary())
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let broker = PrivateBroker {
            child: ChildGuard(child),
            _dir: dir,
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        within(30, "private broker listening", async {
            while StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        broker
    }
}

/// Read the raw topic's record keys (each the submission's SHA-256) for a few seconds.
async fn raw_keys(kafka: &KafkaConfig, want: &[&str], seconds: u64) -> Vec<String> {
    let group = format!("raw-reader-{}", unique());
    let consumer = RawConsumer::assign(
        kafka,
        &group,
        StartPosition::Beginning,
        Duration::from_secs(10),
    )
    .await
    .expect("raw reader");
    let mut keys = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(seconds), async {
        while !want.iter().all(|w| keys.iter().any(|k| k == w)) {
            if let Ok(record) = consumer.recv().await {
                keys.push(
                    String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into(),
                );
            }
        }
    })
    .await;
    keys
}

/// One message over a fresh session; the reply for the single recipient and its delay.
async fn send_one(addr: SocketAddr, message: &[u8], ledger: &Ledger) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = match Lmtp::connect(addr).await {
        Ok(mut session) => match session.send(message, &[RCPT]).await {
            Ok(replies) => replies[0].clone(),
            Err(error) => Reply::Refused(0, error.to_string()),
        },
        Err(error) => Reply::Refused(0, error.to_string()),
    };
    let elapsed = started.elapsed();
    ledger.push(Entry {
        sha256: sha256_hex(message),
        replies: vec![reply.clone()],
    });
    (reply, elapsed)
}

/// Broker down: the front door answers `451 4.3.0` within its submit timeout instead of
/// acknowledging; after the broker is back, the same message is acknowledged.
///
/// The private broker keeps its log in memory, so a restart starts empty (topics are
/// created again). That is a property of the test broker: what is checked is that every
/// `250` was on the raw topic of the broker that acknowledged it, and that no `250` was
/// given while no broker was there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_gives_451_and_recovery_gives_250() {
    let port = free_port();
    let mut broker = PrivateBroker::start(port).await;
    let suffix = unique();
    let mut kafka = kafka_config(&format!("127.0.0.1:{port}"), &suffix);
    kafka.produce_timeout_ms = 3_000;
    create_topics(&kafka, 1).await;
    let door = FrontDoor::start(&kafka, 3_000).await;
    let ledger = Ledger::default();
    let [first, during, after]: [Vec<u8>; 3] = unique_reports(3, &suffix).try_into().unwrap();

    // Broker up: 250, and the record is on the raw topic.
    let mut reply = Reply::Indeterminate;
    for _ in 0..5 {
        reply = send_one(door.addr, &first, &ledger).await.0;
        if reply == Reply::Accepted {
            break;
        }
    }
    assert_eq!(reply, Reply::Accepted, "first message acknowledged");
    let first_sha = sha256_hex(&first);
    let keys = raw_keys(&kafka, &[&first_sha], 15).await;
    assert!(
        keys.contains(&first_sha),
        "acknowledged message is on the raw topic"
    );

    // Broker gone: a temporary failure within the submit timeout, never a 250.
    broker.child.kill9();
    let (reply, elapsed) = send_one(door.addr, &during, &ledger).await;
    match &reply {
        Reply::Refused(451, text) => assert!(text.starts_with("4.3.0"), "{text}"),
        other => panic!("expected 451 4.3.0 with the broker down, got {other:?}"),
    }
    assert!(
        elapsed < Duration::from_secs(10),
        "451 came after {elapsed:?}, the submit timeout is 3 s"
    );

    // Broker back (empty): the sender retries the same bytes until 250, as an MTA would.
    drop(broker);
    let _broker = PrivateBroker::start(port).await;
    create_topics(&kafka, 1).await;
    // The same front door first, for 20 s. Its idempotent producer still carries the
    // producer id and sequence numbers the vanished broker gave it; a broker that kept
    // its state (any real Kafka restart) would accept them, but the restarted test broker
    // knows nothing of them.
    let mut attempts = 0;
    let mut recovered = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        attempts += 1;
        if send_one(door.addr, &during, &ledger).await.0 == Reply::Accepted {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let door = if recovered {
        door
    } else {
        eprintln!(
            "the running front door answered 451 for {attempts} attempts after the broker \
             came back empty; restarting the front door"
        );
        drop(door);
        let door = FrontDoor::start(&kafka, 3_000).await;
        within(30, "acknowledgement after a front-door restart", async {
            loop {
                attempts += 1;
                if send_one(door.addr, &during, &ledger).await.0 == Reply::Accepted {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        door
    };
    let (reply, _) = send_one(door.addr, &after, &ledger).await;
    assert_eq!(reply, Reply::Accepted, "a new message after recovery");
    let (during_sha, after_sha) = (sha256_hex(&during), sha256_hex(&after));
    let keys = raw_keys(&kafka, &[&during_sha, &after_sha], 15).await;
    assert!(keys.contains(&during_sha), "the retried message is durable");
    assert!(keys.contains(&after_sha), "the later message is durable");
    eprintln!(
        "broker outage: 451 after {elapsed:?}; 250 after recovery on attempt {attempts} \
         (same front door: {recovered}); ledger {:?}",
        ledger
            .entries()
            .iter()
            .map(|e| (&e.sha256[..8], &e.replies))
            .collect::<Vec<_>>()
    );
    drop(door);
}

/// R3: the connection drops after the final dot, before the reply, so the sender cannot know
/// whether the message was taken; it sends the same bytes again (what Postfix does after a
/// lost reply) and gets 250. Downstream sees one set of event ids: if the first attempt was
/// stored too, its events are identical copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_lost_after_the_final_dot_then_resent_gives_one_set_of_ids() {
    let bootstrap = bootstrap();
    let suffix = unique();
    let kafka = kafka_config(&bootstrap, &suffix);
    create_topics(&kafka, 2).await;
    let door = FrontDoor::start(&kafka, 15_000).await;
    let message = to_crlf(&fixture("exchange/001-connector-contoso.eml"));
    let sha = sha256_hex(&message);

    // First attempt: the whole transaction, then the connection is gone before any reply.
    within(30, "the attempt whose reply is lost", async {
        let mut client = Lmtp::connect(door.addr).await.expect("LMTP connect");
        let (code, _) = client
            .command("MAIL FROM:<feedback@fbl.example.org>")
            .await
            .expect("MAIL");
        assert_eq!(code, 250);
        let (code, _) = client
            .command(&format!("RCPT TO:<{RCPT}>"))
            .await
            .expect("RCPT");
        assert_eq!(code, 250);
        let (code, _) = client.command("DATA").await.expect("DATA");
        assert_eq!(code, 354);
        let mut wire = dot_stuff(&message);
        wire.extend_from_slice(b".\r\n");
        client.write(&wire).await.expect("message written");
        drop(client);
    })
    .await;

    // The sender retries the same bytes on a new session.
    let ledger = Ledger::default();
    ledger.push(Entry {
        sha256: sha.clone(),
        replies: vec![Reply::Indeterminate],
    });
    within(
        30,
        "the resend",
        send_all(door.addr, vec![message.clone()], &[RCPT], &ledger),
    )
    .await;
    assert!(
        ledger.entries().last().is_some_and(Entry::accepted),
        "the resend is answered 250: {:?}",
        ledger.entries()
    );

    let sent = index(std::slice::from_ref(&message));
    let collector = Collector::start(&kafka).await;
    let worker = InProcessWorker::start(&kafka);
    let ids = expected_ids(&ledger, &sent);
    collector
        .wait_for(&ids, 60, Duration::from_millis(1500))
        .await;
    let totals = worker.stop().await;
    // One set of ids. When the first attempt was stored too, the same report was delivered
    // twice: the copies share their ids and differ at most in the intake facts of each
    // delivery (its receive time), which is what consumers deduplicate on.
    let state = collector.state.lock().unwrap();
    let expected = expected_outputs(&message);
    let mut copies = 0;
    for (id, _) in &expected {
        let seen = state
            .by_id
            .get(id)
            .unwrap_or_else(|| panic!("output {id} of the resent report is missing"));
        assert_eq!(seen.raw_sha256, sha);
        copies += seen.copies;
        for other in &seen.distinct_bodies {
            let mut paths = Vec::new();
            json_diff(
                &serde_json::from_str(&seen.json).expect("JSON"),
                &serde_json::from_str(other).expect("JSON"),
                "",
                &mut paths,
            );
            assert!(
                paths.iter().all(|p| p.starts_with("/intake/")),
                "{id}: copies differ outside the intake facts: {paths:?}"
            );
        }
    }
    let others = state.by_id.values().filter(|s| s.raw_sha256 != sha).count();
    assert_eq!(others, 0, "no output for anything else");
    assert_eq!(state.dlq, 0, "nothing dead-lettered");
    eprintln!(
        "R3: {} id(s), {copies} cop(ies) published, worker {totals:?}",
        expected.len()
    );
    assert!(
        copies >= expected.len() && copies <= 2 * expected.len(),
        "one or two deliveries' worth of outputs, not {copies}"
    );
    assert_eq!(totals.dead_lettered, 0);
}
