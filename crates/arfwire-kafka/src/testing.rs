//! An in-process Kafka for tests: librdkafka's mock cluster with the four topics created.
//!
//! ```ignore
//! let kafka = MockKafka::start(1, 3)?;
//! let producer = RawProducer::new(kafka.config())?;
//! ```
//!
//! The mock cluster supports producing (idempotent too), consumer groups with offset
//! commits and injected errors, but not the CreateTopics admin request, so topics are made
//! with `MockCluster::create_topic`. It is experimental in librdkafka and checks client
//! behaviour, not a broker's semantics.

use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::config::{KafkaConfig, TopicNames};

/// A mock cluster with the raw, events, rejected and DLQ topics, and a configuration
/// pointing at it.
pub struct MockKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    config: KafkaConfig,
}

impl MockKafka {
    /// Start `brokers` mock brokers and create the four topics (names with a unique
    /// suffix) with `partitions` partitions each, replicated on every broker.
    pub fn start(brokers: i32, partitions: i32) -> Result<Self, KafkaError> {
        let cluster = MockCluster::new(brokers)?;
        let mut config = KafkaConfig::new(cluster.bootstrap_servers());
        config.topics = TopicNames::with_suffix(&unique_suffix());
        config.client_id = "arfwire-test".to_owned();
        for topic in config.topics.all() {
            cluster.create_topic(topic, partitions, brokers)?;
        }
        Ok(MockKafka { cluster, config })
    }

    /// The configuration of a client of this cluster.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The cluster, for error injection (`broker_down`, `request_errors`, ...).
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

/// A suffix no other test in any process uses at the same time: the process id, a
/// counter and the clock.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("t{}-{n}-{nanos:x}", std::process::id())
}

/// The bootstrap servers of the real test broker: `KAFKA_BOOTSTRAP`, default
/// `127.0.0.1:9092`. Panics with how to start one when none of them answers, so a test that
/// needs the broker fails instead of skipping.
pub fn broker_bootstrap() -> String {
    use std::net::{TcpStream, ToSocketAddrs};
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let reachable = bootstrap
        .split(',')
        .filter_map(|server| server.trim().to_socket_addrs().ok())
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Kafka broker at {bootstrap} (KAFKA_BOOTSTRAP): start one with `scripts/services.sh up`"
    );
    bootstrap
}
