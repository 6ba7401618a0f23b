//! Helpers shared by the worker's integration tests.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arfwire_attribution::{DirectorySnapshot, Profile};
use arfwire_events::Output;
use arfwire_kafka::{
    EventProducer, KafkaConfig, RawConsumer, RawProducer, RawRecord, StartPosition,
};
use arfwire_raw::{Channel, Envelope, RawSubmission, Submitter};
use arfwire_worker::{
    Pipeline, Processor, StatsSnapshot, Worker, WorkerConfig, WorkerError, WorkerStats,
};
use chrono::{TimeZone, Utc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Bound for one blocking broker query in a test.
pub(crate) const T: Duration = Duration::from_secs(5);

/// Run `future`, failing the test if it takes longer than `seconds`.
pub(crate) async fn within<T>(seconds: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not finish within {seconds} s"),
    }
}

/// Poll `check` every 20 ms until it holds, failing after `seconds`.
pub(crate) async fn eventually(seconds: u64, what: &str, mut check: impl FnMut() -> bool) {
    within(seconds, what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the workspace's `fixtures/` folder.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = workspace().join("fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The three fixtures most tests send: a Contoso connector report (attributed), an ARF
/// report and a bounce (a rejection record).
pub(crate) fn three_fixtures() -> Vec<Vec<u8>> {
    vec![
        fixture("exchange/001-connector-contoso.eml"),
        fixture("arf/001-rfc5965-every-field.eml"),
        fixture("negative/001-dsn-with-rfc822-headers.eml"),
    ]
}

/// The tenant id the Contoso fixture is attributed to.
pub(crate) const CONTOSO: &str = "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f";

/// The pipeline over the Exchange fixtures' profile and directory.
pub(crate) fn pipeline() -> Pipeline {
    let read =
        |name: &str| String::from_utf8(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let profile = Profile::from_toml(&read("exchange/profile.toml")).expect("profile");
    let directory =
        DirectorySnapshot::from_toml(&read("exchange/tenants.toml")).expect("directory");
    Pipeline::with_static_directory(profile, directory)
        .with_pseudonymizer(arfwire_events::Pseudonymizer::development())
}

/// A submission received over LMTP at a fixed time (so ids and `ce_time` are stable).
pub(crate) fn submission(bytes: Vec<u8>) -> RawSubmission {
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let mut raw = RawSubmission::new(bytes, Channel::Lmtp, at);
    raw.envelope = Envelope {
        mail_from: Some("feedback@fbl.example.org".to_owned()),
        rcpt_to: vec!["junk@example.net".to_owned()],
        peer_ip: Some("192.0.2.25".parse().unwrap()),
        helo: Some("mx.example.org".to_owned()),
    };
    raw
}

/// Make `submissions` durable on the raw topic, in order.
pub(crate) async fn produce(config: &KafkaConfig, submissions: &[RawSubmission]) {
    let producer = RawProducer::new(config).expect("raw producer");
    within(20, "producing raw submissions", async {
        for raw in submissions {
            producer
                .submit(raw.clone())
                .await
                .expect("raw submission acknowledged");
        }
    })
    .await;
}

/// Send the worker's logs to the test output when `RUST_LOG` is set.
pub(crate) fn logs() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// Settings for fast tests.
pub(crate) fn fast_config() -> WorkerConfig {
    logs();
    WorkerConfig {
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(10),
        lag_interval: Duration::from_millis(500),
        kafka_timeout: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// A running worker.
pub(crate) struct Running {
    pub(crate) stats: Arc<WorkerStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<StatsSnapshot, WorkerError>>,
}

impl Running {
    /// Signal shutdown and wait for the worker to return.
    pub(crate) async fn stop(mut self, seconds: u64) -> StatsSnapshot {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        within(seconds, "worker shutdown", self.task)
            .await
            .expect("worker task")
            .expect("worker run")
    }
}

/// Start a worker in group `group` with `processor`.
pub(crate) fn start_worker<P: Processor>(
    kafka: &KafkaConfig,
    group: &str,
    config: WorkerConfig,
    processor: P,
) -> Running {
    let consumer = RawConsumer::subscribe(kafka, group).expect("consumer");
    let producer = EventProducer::new(kafka).expect("producer");
    let worker = Worker::new(config, consumer, producer, processor).expect("worker");
    let stats = worker.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    Running {
        stats,
        stop: Some(stop),
        task,
    }
}

/// Read `count` records of `topic` from its beginning (every partition).
pub(crate) async fn read_topic(
    config: &KafkaConfig,
    topic: &str,
    count: usize,
    seconds: u64,
) -> Vec<RawRecord> {
    let mut config = config.clone();
    // Only the raw name is read; the others just have to differ from it.
    config.topics = arfwire_kafka::TopicNames::with_suffix("unused-by-the-reader");
    config.topics.raw = topic.to_owned();
    let group = format!("reader-{}", arfwire_kafka::testing::unique_suffix());
    let consumer = RawConsumer::assign(&config, &group, StartPosition::Beginning, T)
        .await
        .expect("reader assigned");
    let mut records = Vec::with_capacity(count);
    within(
        seconds,
        &format!("reading {count} records of {topic}"),
        async {
            while records.len() < count {
                match consumer.recv().await {
                    Ok(record) => records.push(record),
                    Err(error) => eprintln!("reader: {error}"),
                }
            }
        },
    )
    .await;
    // Nothing more than expected arrives shortly after.
    let extra = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await;
    assert!(extra.is_err(), "{topic} has more than {count} records");
    records
}

/// Text value of the only header `name` of a record.
pub(crate) fn header<'a>(record: &'a RawRecord, name: &str) -> Option<&'a str> {
    let mut values = record.headers.iter().filter(|h| h.key == name);
    let value = values.next()?;
    assert!(
        values.next().is_none(),
        "header {name} appears more than once"
    );
    Some(std::str::from_utf8(value.value.as_deref().unwrap_or_default()).expect("UTF-8 header"))
}

/// The offsets `group` has committed on the raw topic's partitions (`None`: nothing).
pub(crate) async fn committed(
    config: &KafkaConfig,
    group: &str,
    partitions: i32,
) -> Vec<Option<i64>> {
    let bootstrap = config.bootstrap_servers.clone();
    let topic = config.topics.raw.clone();
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", &group)
            .create()
            .expect("query consumer");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(&topic, p);
        }
        let found = consumer
            .committed_offsets(list, T)
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match found.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect()
    })
    .await
    .expect("query task")
}

/// What the pipeline yields for each submission, in order.
pub(crate) fn expected_outputs(submissions: &[RawSubmission]) -> Vec<Output> {
    let pipeline = pipeline();
    submissions
        .iter()
        .flat_map(|raw| pipeline.process(raw).expect("fixtures process"))
        .collect()
}

/// Every record of `topic` at this moment, from its beginning: read until nothing comes for
/// `quiet_ms`.
pub(crate) async fn drain(config: &KafkaConfig, topic: &str, quiet_ms: u64) -> Vec<RawRecord> {
    let mut reader = config.clone();
    reader.topics = arfwire_kafka::TopicNames::with_suffix("unused-by-the-reader");
    reader.topics.raw = topic.to_owned();
    let group = format!("reader-{}", arfwire_kafka::testing::unique_suffix());
    let consumer = RawConsumer::assign(&reader, &group, StartPosition::Beginning, T)
        .await
        .expect("reader assigned");
    let mut records = Vec::new();
    while let Ok(Ok(record)) =
        tokio::time::timeout(Duration::from_millis(quiet_ms), consumer.recv()).await
    {
        records.push(record);
    }
    records
}
