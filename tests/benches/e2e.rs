//! End-to-end throughput benchmark against a real Kafka-compatible broker.
//!
//! Run with `cargo bench -p arfwire-tests --bench e2e` (the broker from `KAFKA_BOOTSTRAP`,
//! default `127.0.0.1:9092`; start one with `scripts/services.sh up`). It prints figures and
//! asserts nothing. Three phases, in one run, on the same machine and broker:
//!
//! * **(a) broker ceiling**: N raw submissions (an ARF fixture of about 4 KB, each made
//!   unique by a header) produced straight with `RawProducer` (idempotent, `acks=all`) by as
//!   many concurrent senders as there are LMTP connections below, timed until all are
//!   acknowledged and read back by a consumer;
//! * **(c) front door alone**: the same over LMTP (MAIL, RCPT and DATA pipelined, as
//!   Postfix's LMTP client does) through the front door into the raw topic, timed until the
//!   last `250`;
//! * **(b) end to end**: LMTP → front door → raw topic → worker (the production pipeline, on
//!   a runtime of its own as it has a process of its own when deployed) → events topic,
//!   timed until every event is visible to a consumer: submissions/s, the ratio to the
//!   ceiling (target ≥ 70 %), and the latency from the `250` reply to the event being
//!   readable (p50, p99). Readers only count records and note their `ce_id` header.
//!
//! It also prints the front door's durable-submit latency and the CPU time of this process
//! per submission. `ARFWIRE_E2E_N` sets N (default 10,000); `ARFWIRE_E2E_CONNECTIONS` the
//! LMTP connections (default 16); `ARFWIRE_E2E_IN_FLIGHT` the worker's `max_in_flight`
//! (default: the worker's default, as every other setting); `ARFWIRE_E2E_FETCH_WAIT_MS` the consumers' `fetch_wait_max_ms` (default:
//! the configuration default). Everything runs in this process except the broker.
//!
//! The test broker keeps every record in memory and slows down as it grows (gigabytes after
//! a few dozen runs): measure against a freshly started one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arfwire_attribution::{DirectorySnapshot, Profile};
use arfwire_events::event_id;
use arfwire_kafka::{
    EventProducer, KafkaConfig, RawConsumer, RawProducer, StartPosition, TopicNames, ensure_topics,
};
use arfwire_lmtp::{LmtpConfig, Server};
use arfwire_raw::{Channel, RawSubmission};
use arfwire_worker::{Pipeline, Worker, WorkerConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const RCPT: &str = "junk@provider.example";
/// Bound on the whole of one phase.
const PHASE_LIMIT: Duration = Duration::from_secs(90);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("bench-{}-{n}-{nanos:x}", std::process::id())
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// N distinct messages of about 4 KB with CRLF line endings.
fn messages(n: usize, tag: &str) -> Vec<Vec<u8>> {
    let base = fixture("arf/001-rfc5965-every-field.eml");
    let mut crlf = Vec::with_capacity(base.len() + 200);
    let mut previous = 0u8;
    for &b in &base {
        if b == b'\n' && previous != b'\r' {
            crlf.push(b'\r');
        }
        crlf.push(b);
        previous = b;
    }
    if !crlf.ends_with(b"\r\n") {
        crlf.extend_from_slice(b"\r\n");
    }
    let padding = "p".repeat(4096usize.saturating_sub(crlf.len() + 80).min(900));
    (0..n)
        .map(|i| {
            let mut m =
                format!("X-Bench-Seq: {tag}-{i}\r\nX-Bench-Padding: {padding}\r\n").into_bytes();
            m.extend_from_slice(&crlf);
            m
        })
        .collect()
}

fn kafka_config(bootstrap: &str, suffix: &str) -> KafkaConfig {
    let mut config = KafkaConfig::new(bootstrap);
    config.topics = TopicNames::with_suffix(suffix);
    config.client_id = format!("arfwire-bench-{suffix}");
    config.group_id = format!("bench-workers-{suffix}");
    config.auto_commit_interval_ms = 1000;
    if let Some(ms) = std::env::var("ARFWIRE_E2E_FETCH_WAIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.fetch_wait_max_ms = ms;
    }
    config
}

/// CPU time this process has used so far (user + system), from `/proc/self/stat`; zero
/// where that file does not exist.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Count records of `topic` from its beginning until `expected` were read; with `seen`,
/// note when each record (by its `ce_id` header, the event id) first became visible. The
/// reader does no more than that, as in the ceiling phase: no JSON is parsed.
async fn read_back(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
    seen: Option<Arc<Mutex<HashMap<String, Instant>>>>,
) -> Option<Instant> {
    let group = format!("bench-reader-{}", unique());
    let consumer = RawConsumer::assign_to(
        kafka,
        &group,
        topic,
        StartPosition::Beginning,
        Duration::from_secs(10),
    )
    .await
    .expect("reader assigned");
    let mut count = 0;
    let done = tokio::time::timeout(PHASE_LIMIT, async {
        while count < expected {
            let Ok(record) = consumer.recv().await else {
                continue;
            };
            count += 1;
            if let Some(seen) = &seen
                && let Some(id) = record
                    .headers
                    .iter()
                    .find(|h| h.key == "ce_id")
                    .and_then(|h| h.value.as_deref())
            {
                seen.lock()
                    .unwrap()
                    .entry(String::from_utf8_lossy(id).into_owned())
                    .or_insert_with(Instant::now);
            }
        }
        Instant::now()
    })
    .await;
    if done.is_err() {
        eprintln!("reading {topic}: only {count} of {expected} records within the time limit");
    }
    done.ok()
}

/// Phase (a): raw submissions straight to the broker and back.
async fn broker_ceiling(bootstrap: &str, n: usize, concurrency: usize) -> Option<Duration> {
    let suffix = unique();
    let kafka = kafka_config(bootstrap, &suffix);
    ensure_topics(&kafka, 4, 1).await.expect("topics");
    let producer = Arc::new(RawProducer::new(&kafka).expect("raw producer"));
    let messages = messages(n, &suffix);
    // Warm up the connection and metadata outside the timed part.
    let warm = RawSubmission::new(
        b"Subject: warm-up\r\n\r\nx\r\n".to_vec(),
        Channel::Lmtp,
        chrono::Utc::now(),
    );
    producer.send(&warm).await.expect("warm-up send");

    let reader = {
        let kafka = kafka.clone();
        let topic = kafka.topics.raw.clone();
        tokio::spawn(async move { read_back(&kafka, &topic, n + 1, None).await })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in messages.chunks(n.div_ceil(concurrency)) {
        let (producer, chunk) = (Arc::clone(&producer), chunk.to_vec());
        tasks.push(tokio::spawn(async move {
            for bytes in chunk {
                let raw = RawSubmission::new(bytes, Channel::Lmtp, chrono::Utc::now());
                producer.send(&raw).await.expect("raw record acknowledged");
            }
        }));
    }
    for task in tasks {
        task.await.expect("producer task");
    }
    let acked = started.elapsed();
    let finished = reader.await.expect("reader task")?;
    let total = finished.saturating_duration_since(started);
    eprintln!("ceiling: all {n} acknowledged after {acked:?}, all read back after {total:?}");
    Some(total)
}

/// A minimal LMTP client session: greeting, LHLO, then transactions.
struct Lmtp(BufReader<TcpStream>);

impl Lmtp {
    async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let mut client = Lmtp(BufReader::new(TcpStream::connect(addr).await?));
        client.expect(220).await?;
        client
            .0
            .get_mut()
            .write_all(b"LHLO bench.example\r\n")
            .await?;
        client.expect(250).await?;
        Ok(client)
    }

    async fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line
                    .get(..3)
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| std::io::Error::other(line.clone()));
            }
        }
    }

    async fn expect(&mut self, code: u16) -> std::io::Result<()> {
        let got = self.reply().await?;
        if got == code {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("expected {code}, got {got}")))
        }
    }

    /// One message, already dot-stuffed and ended with `.` ([`wire`]); the reply code
    /// after the data. Like Postfix's LMTP client when the server offers `PIPELINING` (ours
    /// does), MAIL, RCPT and DATA go out in one write and their replies are read after it.
    async fn send(&mut self, wire: &[u8]) -> std::io::Result<u16> {
        let commands =
            format!("MAIL FROM:<feedback@fbl.example.org>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n");
        self.0.get_mut().write_all(commands.as_bytes()).await?;
        self.expect(250).await?;
        self.expect(250).await?;
        self.expect(354).await?;
        self.0.get_mut().write_all(wire).await?;
        self.reply().await
    }
}

/// A message as the DATA phase carries it: dot-stuffed, ended with `.` CRLF.
fn wire(message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            wire.push(b'.');
        }
        wire.push(b);
        at_line_start = b == b'\n';
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// The raw producer, timing each durable submit (the wait behind every `250`).
struct TimedProducer {
    inner: RawProducer,
    times: Arc<Mutex<Vec<Duration>>>,
}

impl arfwire_raw::Submitter for TimedProducer {
    async fn submit(&self, submission: RawSubmission) -> Result<(), arfwire_raw::SubmitError> {
        let started = Instant::now();
        let result = self.inner.submit(submission).await;
        self.times.lock().unwrap().push(started.elapsed());
        result
    }
}

struct EndToEnd {
    /// How long each durable submit of the front door took, sorted.
    submits: Vec<Duration>,
    /// Until every event was visible (with the worker) or every 250 was received.
    total: Duration,
    /// Until the last 250 reply.
    replies: Duration,
    /// CPU time of this process over `total`.
    cpu: Duration,
    accepted: usize,
    visible: usize,
    latencies: Vec<Duration>,
}

/// Phase (b): LMTP → front door → raw topic → worker → events topic; without the worker
/// (phase (c)), LMTP → front door → raw topic, timed until the last 250.
async fn end_to_end(
    bootstrap: &str,
    n: usize,
    connections: usize,
    worker_runtime: Option<&tokio::runtime::Handle>,
) -> EndToEnd {
    let suffix = unique();
    let kafka = kafka_config(bootstrap, &suffix);
    ensure_topics(&kafka, 4, 1).await.expect("topics");

    let producer = RawProducer::new(&kafka).expect("raw producer");
    let mut config = LmtpConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "ingest.bench.example",
        vec![RCPT.to_owned()],
    );
    config.max_connections_per_ip = connections + 8;
    let submit_times: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let producer = TimedProducer {
        inner: producer,
        times: Arc::clone(&submit_times),
    };
    let server = Server::new(config, producer).expect("front door");
    let listener = server.bind().await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop_door, door_stopped) = tokio::sync::oneshot::channel::<()>();
    let door = tokio::spawn(server.serve(listener, async move {
        let _ = door_stopped.await;
    }));

    let mut running = None;
    if let Some(worker_runtime) = worker_runtime {
        let read = |name: &str| String::from_utf8(fixture(name)).expect("UTF-8");
        let pipeline = Pipeline::with_static_directory(
            Profile::from_toml(&read("exchange/profile.toml")).expect("profile"),
            DirectorySnapshot::from_toml(&read("exchange/tenants.toml")).expect("directory"),
        );
        let worker = Worker::new(
            WorkerConfig {
                max_in_flight: env_usize(
                    "ARFWIRE_E2E_IN_FLIGHT",
                    WorkerConfig::default().max_in_flight,
                ),
                ..WorkerConfig::default()
            },
            RawConsumer::subscribe(&kafka, &kafka.group_id).expect("consumer"),
            EventProducer::new(&kafka).expect("event producer"),
            pipeline,
        )
        .expect("worker");
        let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = worker_runtime.spawn(worker.run(async move {
            let _ = worker_stopped.await;
        }));

        // One event per message (the fixture reports one message).
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let reader = {
            let (kafka, seen) = (kafka.clone(), Arc::clone(&seen));
            let topic = kafka.topics.events.clone();
            tokio::spawn(async move { read_back(&kafka, &topic, n, Some(seen)).await })
        };
        running = Some((stop_worker, worker, reader, seen));
    }
    // Warm-up session outside the timed part (connection, producer metadata).
    {
        let mut session = Lmtp::connect(addr).await.expect("LMTP connect");
        let warm = wire(b"Subject: warm-up\r\n\r\nnot a report\r\n");
        session.send(&warm).await.expect("warm-up message");
    }

    // Outside the timed part: each message on the wire, and the id of the one event it
    // yields (the fixture reports one message).
    let messages: Vec<(Vec<u8>, String)> = messages(n, &suffix)
        .into_iter()
        .map(|m| {
            let id = event_id(&arfwire_raw::sha256_hex(&m), 0);
            (wire(&m), id)
        })
        .collect();
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut clients = Vec::new();
    for chunk in messages.chunks(n.div_ceil(connections)) {
        let (chunk, acked) = (chunk.to_vec(), Arc::clone(&acked));
        clients.push(tokio::spawn(async move {
            let mut session = Lmtp::connect(addr).await.expect("LMTP connect");
            for (wire, id) in chunk {
                if session.send(&wire).await.expect("LMTP transaction") == 250 {
                    acked.lock().unwrap().insert(id, Instant::now());
                }
            }
        }));
    }
    for client in clients {
        let _ = tokio::time::timeout(PHASE_LIMIT, client).await;
    }
    let replies = started.elapsed();
    let mut seen_at = HashMap::new();
    let total = match running {
        Some((stop_worker, worker, reader, seen)) => {
            let finished = reader.await.expect("reader task");
            let total = finished
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(started);
            let _ = stop_worker.send(());
            let _ = tokio::time::timeout(Duration::from_secs(30), worker).await;
            seen_at = std::mem::take(&mut *seen.lock().unwrap());
            total
        }
        None => replies,
    };
    let cpu = process_cpu().saturating_sub(cpu_before);
    let _ = stop_door.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), door).await;

    let acked = acked.lock().unwrap();
    let mut latencies: Vec<Duration> = acked
        .iter()
        .filter_map(|(sha, at)| Some(seen_at.get(sha)?.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    let mut submits = std::mem::take(&mut *submit_times.lock().unwrap());
    submits.sort();
    EndToEnd {
        submits,
        total,
        replies,
        cpu,
        accepted: acked.len(),
        visible: latencies.len(),
        latencies,
    }
}

/// CPU cost of the worker's processing alone (parse, attribution, derive with
/// pseudonymisation, and the JSON each output is published as) for the bench's message, on
/// one thread: microseconds per submission.
fn processing_cost(n: usize) -> f64 {
    let read = |name: &str| String::from_utf8(fixture(name)).expect("UTF-8");
    let pipeline = Pipeline::with_static_directory(
        Profile::from_toml(&read("exchange/profile.toml")).expect("profile"),
        DirectorySnapshot::from_toml(&read("exchange/tenants.toml")).expect("directory"),
    );
    let submissions: Vec<RawSubmission> = messages(n, "cost")
        .into_iter()
        .map(|m| RawSubmission::new(m, Channel::Lmtp, chrono::Utc::now()))
        .collect();
    let started = Instant::now();
    let mut bytes = 0usize;
    for raw in &submissions {
        for output in arfwire_worker::Processor::process(&pipeline, raw).expect("processes") {
            bytes += output.to_json_line().len();
        }
    }
    std::hint::black_box(bytes);
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing of ours either.
    let n = env_usize("ARFWIRE_E2E_N", 10_000);
    let connections = env_usize("ARFWIRE_E2E_CONNECTIONS", 16);
    let bootstrap = arfwire_kafka::testing::broker_bootstrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The worker gets a runtime of its own, as it has a process of its own when deployed:
    // its tasks do not queue behind the front door's on the same scheduler threads.
    let worker_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let worker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .thread_name("worker-rt")
        .enable_all()
        .build()
        .expect("worker runtime");
    let worker_runtime_handle = worker_runtime.handle().clone();
    // Before anything else runs, so that nothing competes with it.
    let processing = processing_cost(n.min(2000));
    runtime.block_on(async {
        let worker_runtime = worker_runtime_handle;
        let ceiling = broker_ceiling(&bootstrap, n, connections).await;
        let door = end_to_end(&bootstrap, n, connections, None).await;
        let e2e = end_to_end(&bootstrap, n, connections, Some(&worker_runtime)).await;
        let rate = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        println!();
        println!("e2e bench: {n} submissions of ~4 KB, {connections} concurrent senders, broker {bootstrap}");
        println!("| path                                   |   time (s) | submissions/s |");
        println!("|----------------------------------------|-----------:|--------------:|");
        match ceiling {
            Some(d) => println!(
                "| (a) RawProducer → raw topic → consumer | {:>10.2} | {:>13.0} |",
                d.as_secs_f64(),
                rate(d)
            ),
            None => println!("| (a) RawProducer → raw topic → consumer |   timed out |             – |"),
        }
        println!(
            "| (b) LMTP → front door → worker → events| {:>10.2} | {:>13.0} |",
            e2e.total.as_secs_f64(),
            rate(e2e.total)
        );
        println!(
            "| (c) LMTP → front door (no worker)      | {:>10.2} | {:>13.0} |",
            door.total.as_secs_f64(),
            rate(door.total)
        );
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / n as f64;
        println!(
            "worker processing alone (parse, attribute, derive, JSON), one thread, measured first: {processing:.0} µs per submission"
        );
        println!(
            "CPU of this process (clients, front door, worker, readers): (b) {:.0} µs, (c) {:.0} µs per submission",
            per(e2e.cpu),
            per(door.cpu)
        );
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "front door's durable submit (raw topic ack): (b) p50 {:.1} ms p99 {:.1} ms, (c) p50 {:.1} ms p99 {:.1} ms",
            ms(percentile(&e2e.submits, 50.0)),
            ms(percentile(&e2e.submits, 99.0)),
            ms(percentile(&door.submits, 50.0)),
            ms(percentile(&door.submits, 99.0)),
        );
        println!(
            "(b): last 250 after {:.2} s, last event visible {:.2} s later",
            e2e.replies.as_secs_f64(),
            e2e.total.saturating_sub(e2e.replies).as_secs_f64()
        );
        if let Some(d) = ceiling {
            println!(
                "ratio (c)/(a): {:.0} % (the front door alone)",
                100.0 * rate(door.total) / rate(d)
            );
            println!(
                "ratio (b)/(a): {:.0} % (target ≥ 70 %)",
                100.0 * rate(e2e.total) / rate(d)
            );
        }
        println!(
            "250 replies: {} of {n}; events visible for {} of them",
            e2e.accepted, e2e.visible
        );
        println!(
            "latency 250 → event visible: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            percentile(&e2e.latencies, 50.0).as_secs_f64() * 1000.0,
            percentile(&e2e.latencies, 99.0).as_secs_f64() * 1000.0,
            e2e.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        );
    });
}
