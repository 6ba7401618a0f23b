//! The store consumer end to end against the real broker: records built from the fixtures
//! are produced to the topics, the consumer applies them, rows appear; nothing a
//! complainant wrote leaks into the topics, the logs or the tables.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arfwire_desk::{DeskConfig, RuleConfig, StoreConsumer};
use arfwire_events::{Output, Pseudonymizer};
use arfwire_kafka::{
    EventProducer, KafkaConfig, RawConsumer, RawProducer, StartPosition, TopicNames, ensure_topics,
};
use arfwire_raw::{Channel, RawSubmission};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::{Attributor, Derived, TestDb, derive_file, fixture_files, names, received_at};

async fn broker(suffix: &str) -> KafkaConfig {
    let bootstrap =
        std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let reachable = bootstrap
        .split(',')
        .filter_map(|b| std::net::ToSocketAddrs::to_socket_addrs(b.trim()).ok())
        .flatten()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok());
    assert!(
        reachable,
        "no Kafka broker at {bootstrap} (KAFKA_BOOTSTRAP): start one with `scripts/services.sh up`"
    );
    let mut config = KafkaConfig::new(bootstrap);
    config.topics = TopicNames::with_suffix(suffix);
    config.client_id = format!("desk-test-{suffix}");
    ensure_topics(&config, 2, 1).await.expect("topics");
    config
}

async fn create_topic(config: &KafkaConfig, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .create()
        .expect("admin");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    for result in results {
        if let Err((name, code)) = result {
            assert_eq!(
                code,
                rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists,
                "{name}"
            );
        }
    }
}

/// Logs of this test, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn read_all(config: &KafkaConfig, topic: &str, count: usize) -> Vec<Vec<u8>> {
    let group = format!("reader-{}", arfwire_kafka::testing::unique_suffix());
    let consumer = RawConsumer::assign_to(
        config,
        &group,
        topic,
        StartPosition::Beginning,
        Duration::from_secs(10),
    )
    .await
    .expect("reader");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while out.len() < count {
            if let Ok(record) = consumer.recv().await {
                out.push(record.payload().to_vec());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("read {} of {count} records of {topic}", out.len()));
    out
}

#[tokio::test]
async fn fixtures_through_the_topics_into_the_tables() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = TestDb::new().await;
    let suffix = arfwire_kafka::testing::unique_suffix();
    let kafka = broker(&suffix).await;
    let alerts_topic = format!("abuse.alerts.v1.{suffix}");
    create_topic(&kafka, &alerts_topic).await;

    // Records as the worker publishes them, and the raw submissions as the front door does.
    let p = Pseudonymizer::development();
    let attributor = Attributor::exchange();
    let derived: Vec<Derived> = fixture_files()
        .iter()
        .map(|path| derive_file(path, &p, Some(&attributor)))
        .collect();
    let outputs: Vec<Output> = derived.iter().flat_map(|d| d.outputs.clone()).collect();
    let events = outputs
        .iter()
        .filter(|o| matches!(o, Output::Event(_)))
        .count();
    let rejections = outputs.len() - events;
    let distinct_raw: BTreeSet<&[u8]> = derived.iter().map(|d| d.raw.as_slice()).collect();
    let attributed = outputs
        .iter()
        .filter(|o| matches!(o, Output::Event(e) if e.partition_key() != "unattributed"))
        .count();
    assert!(attributed >= 3, "only {attributed} attributed events");

    let producer = EventProducer::new(&kafka).expect("event producer");
    producer.publish_all(&outputs).await.expect("published");
    // Replays: every record once more.
    producer
        .publish_all(&outputs)
        .await
        .expect("published again");
    let raw_producer = RawProducer::new(&kafka).expect("raw producer");
    for d in &derived {
        raw_producer
            .send(&RawSubmission::new(
                d.raw.clone(),
                Channel::Lmtp,
                received_at(),
            ))
            .await
            .expect("raw sent");
    }
    // A poison record: not JSON.
    let poison: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create()
        .expect("producer");
    poison
        .send(
            FutureRecord::to(&kafka.topics.events)
                .key("x")
                .payload("{ not json from victim@example.org"),
            Duration::from_secs(10),
        )
        .await
        .expect("poison sent");

    let mut config = DeskConfig::parse("").expect("config");
    config.kafka = Some(kafka.clone());
    config.consumer.group_id = format!("desk-{suffix}");
    config.consumer.batch_size = 50;
    config.alerts.topic = alerts_topic.clone();
    // Every attributed report alerts: one alert per attributed tenant.
    config.alerts.default_rule = Some(RuleConfig {
        threshold: 1,
        window_hours: 24 * 365 * 30,
        min_confidence: "NONE".into(),
        complaint_types: None,
        clear_below: None,
    });
    let consumer = StoreConsumer::new(&config, db.pool.clone())
        .await
        .expect("consumer");
    let pool = db.pool.clone();
    let expected_raw = distinct_raw.len() as i64;
    let done = async move {
        loop {
            let (reports, rejected, raw, errors, published): (i64, i64, i64, i64, i64) =
                sqlx::query_as(
                    "SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM rejections), \
                            (SELECT count(*) FROM submissions WHERE raw IS NOT NULL), \
                            (SELECT count(*) FROM store_errors), \
                            (SELECT count(*) FROM alerts WHERE published_at IS NOT NULL)",
                )
                .fetch_one(&pool)
                .await
                .expect("counts");
            if reports == events as i64
                && rejected == rejections as i64
                && raw == expected_raw
                && errors == 1
                && published >= 1
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(120), consumer.run(done))
        .await
        .expect("the consumer stored everything within 120 s")
        .expect("the consumer ran");
    // Drain what is left (replays read after the rows were complete): the group goes on
    // from the offsets committed at shutdown.
    let rest = consumer
        .run(tokio::time::sleep(Duration::from_secs(6)))
        .await
        .expect("the consumer ran again");
    let unique_records: BTreeSet<&str> = outputs.iter().map(Output::event_id).collect();
    let total = 2 * outputs.len() + derived.len() + 1;
    assert_eq!(
        first.records + rest.records,
        total as u64,
        "{first:?} {rest:?}"
    );
    assert_eq!(
        first.inserted + rest.inserted,
        (unique_records.len() + distinct_raw.len()) as u64,
        "{first:?} {rest:?}"
    );
    assert_eq!(first.errors + rest.errors, 1, "{first:?} {rest:?}");
    assert!(first.alerts_published >= 1);

    // Rows appear, once each.
    assert_eq!(
        db.count("SELECT count(*) FROM reports").await,
        events as i64
    );
    assert_eq!(
        db.count("SELECT sum(report_count)::bigint FROM clusters")
            .await,
        events as i64
    );
    assert_eq!(
        db.count("SELECT count(*) FROM reports WHERE tenant_id IS NOT NULL")
            .await,
        attributed as i64
    );
    let (topic, error): (String, String) = sqlx::query_as("SELECT topic, error FROM store_errors")
        .fetch_one(&db.pool)
        .await
        .expect("store error");
    assert_eq!(topic, kafka.topics.events);
    assert!(!error.contains("victim@example.org"), "{error}");

    // Alerts were published with CloudEvents headers.
    let tenants = db
        .count("SELECT count(DISTINCT tenant_id) FROM reports WHERE tenant_id IS NOT NULL")
        .await;
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, tenants);
    let group = format!("alerts-{suffix}");
    let reader = RawConsumer::assign_to(
        &kafka,
        &group,
        &alerts_topic,
        StartPosition::Beginning,
        Duration::from_secs(10),
    )
    .await
    .expect("alert reader");
    let record = tokio::time::timeout(Duration::from_secs(30), reader.recv())
        .await
        .expect("an alert record")
        .expect("read");
    let header = |name: &str| {
        record
            .headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("ce_type").as_deref(), Some("arfwire.alert.v1"));
    assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
    let alert: serde_json::Value = serde_json::from_slice(record.payload()).expect("JSON");
    assert_eq!(header("ce_id").as_deref(), alert["alert_id"].as_str());
    assert_eq!(alert["schema"], "arfwire.alert.v1");

    // P9: no complainant address in the topics' payloads, the logs or the tables.
    let addresses: BTreeSet<String> = derived
        .iter()
        .flat_map(|d| d.complainants.iter().cloned())
        .filter(|a| a.contains('@'))
        .collect();
    assert!(addresses.len() >= 20);
    let mut payloads = read_all(&kafka, &kafka.topics.events, events * 2 + 1).await;
    payloads.extend(read_all(&kafka, &kafka.topics.rejected, rejections * 2).await);
    let payload_text = payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).to_lowercase())
        .collect::<Vec<_>>()
        .join("\n");
    let (table_text,): (String,) =
        sqlx::query_as("SELECT lower(string_agg(row_to_json(r)::text, E'\\n')) FROM reports r")
            .fetch_one(&db.pool)
            .await
            .expect("reports");
    drop(_guard);
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_lowercase();
    assert!(log_text.contains("store_errors"), "the logs were captured");
    for address in &addresses {
        assert!(!names(&payload_text, address), "{address} on a topic");
        assert!(!names(&table_text, address), "{address} in reports");
        assert!(!names(&log_text, address), "{address} in the logs");
    }
    assert!(!log_text.contains("victim@example.org"));
}
