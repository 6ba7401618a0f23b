//! Against a real Kafka-wire broker (tansu in development and CI). The broker must be
//! running: these tests fail, never skip, when it is not.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arfwire_kafka::testing::{broker_bootstrap, unique_suffix};
use arfwire_kafka::{
    EventProducer, KafkaConfig, RawConsumer, RawProducer, TopicNames, TopicStatus, ensure_topics,
};
use arfwire_raw::Submitter;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::TopicPartitionList;

use crate::common::{check_published, read_topic, sample_outputs, submission, within};

const T: Duration = Duration::from_secs(5);

/// A configuration for the test broker with topics of this test's own, which exist with
/// `partitions` partitions.
async fn broker_config(partitions: i32) -> KafkaConfig {
    let bootstrap = broker_bootstrap();
    let mut config = KafkaConfig::new(bootstrap);
    config.client_id = "arfwire-test".to_owned();
    config.topics = TopicNames::with_suffix(&unique_suffix());
    config.produce_timeout_ms = 10_000;
    config.auto_commit_interval_ms = 500;
    let created = within(20, "ensure_topics", ensure_topics(&config, partitions, 1))
        .await
        .expect("topics created");
    assert!(
        created
            .iter()
            .all(|(_, status)| *status == TopicStatus::Created)
    );
    config
}

fn partition_count(config: &KafkaConfig, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), T).unwrap();
    metadata.topics()[0].partitions().len()
}

/// Sum of the offsets `group` committed for the raw topic's partitions.
fn committed_total(config: &KafkaConfig, group: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_range(&config.topics.raw, 0, partitions - 1);
    let committed = consumer.committed_offsets(list, T).unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .filter(|o| *o >= 0)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_topics_creates_the_four_topics_once() {
    let config = broker_config(3).await;
    let again = within(20, "ensure_topics again", ensure_topics(&config, 3, 1))
        .await
        .unwrap();
    let names: Vec<&str> = again.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, config.topics.all().to_vec());
    assert!(
        again
            .iter()
            .all(|(_, status)| *status == TopicStatus::Existed),
        "{again:?}"
    );
    for topic in config.topics.all() {
        let topic = topic.to_owned();
        let config = config.clone();
        let n = tokio::task::spawn_blocking(move || partition_count(&config, &topic))
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_submissions_through_a_consumer_group() {
    let config = broker_config(4).await;
    let producer = Arc::new(RawProducer::new(&config).unwrap());
    let total = 500;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let producer = Arc::clone(&producer);
        tasks.spawn(async move { producer.submit(submission(n)).await });
    }
    within(20, "produce 500", async {
        while let Some(result) = tasks.join_next().await {
            result.unwrap().unwrap();
        }
    })
    .await;

    let group = format!("workers-{}", unique_suffix());
    let consumer = RawConsumer::subscribe(&config, &group).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    within(25, "consume 500", async {
        while seen.len() < total {
            let record = consumer.recv().await.unwrap();
            let decoded = record.submission().expect("decodes");
            // "Processing" done: only now is the offset stored.
            *seen.entry(decoded.sha256_hex()).or_default() += 1;
            consumer.mark_done(&record).unwrap();
        }
    })
    .await;
    let expected: BTreeSet<String> = (0..total).map(|n| submission(n).sha256_hex()).collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        seen.values().all(|&count| count == 1),
        "a single member replays nothing"
    );

    consumer.commit_now(T).await.unwrap();
    let lag = consumer.lag(T).await.unwrap();
    assert_eq!(lag.len(), 4);
    // Every record done and stored. tansu 0.6.0 under-reports the high watermarks of
    // partitions written in large batches; the lag takes the fetch position as a lower
    // bound, so the watermarks still add up.
    assert_eq!(
        lag.iter().map(|l| l.high_watermark).sum::<i64>(),
        500,
        "{lag:?}"
    );
    assert_eq!(
        lag.iter().filter_map(|l| l.stored).sum::<i64>(),
        500,
        "{lag:?}"
    );
    assert_eq!(
        lag.iter().filter_map(|l| l.position).sum::<i64>(),
        500,
        "{lag:?}"
    );
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
    // And committed on the broker for the group.
    let committed = tokio::task::spawn_blocking({
        let config = config.clone();
        let group = group.clone();
        move || committed_total(&config, &group, 4)
    })
    .await
    .unwrap();
    assert_eq!(committed, 500);
    within(15, "shutdown", consumer.shutdown(T)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_of_one_group_split_the_partitions() {
    let mut config = broker_config(4).await;
    config
        .librdkafka_options
        .insert("session.timeout.ms".to_owned(), "6000".to_owned());
    config
        .librdkafka_options
        .insert("heartbeat.interval.ms".to_owned(), "500".to_owned());
    let group = format!("workers-{}", unique_suffix());
    let a = Arc::new(RawConsumer::subscribe(&config, &group).unwrap());
    let b = Arc::new(RawConsumer::subscribe(&config, &group).unwrap());

    // Each member polls (and records what it gets) until told to stop.
    let seen: Arc<std::sync::Mutex<BTreeSet<String>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let spawn_member = |member: Arc<RawConsumer>| {
        let mut stop = stop_rx.clone();
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut got: Vec<(i32, String)> = Vec::new();
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    record = member.recv() => {
                        let record = record.unwrap();
                        let sha = record.submission().unwrap().sha256_hex();
                        member.mark_done(&record).unwrap();
                        seen.lock().unwrap().insert(sha.clone());
                        got.push((record.partition, sha));
                    }
                }
            }
            got
        })
    };
    let task_a = spawn_member(Arc::clone(&a));
    let task_b = spawn_member(Arc::clone(&b));

    // Wait until the group has settled with both members holding partitions.
    within(25, "both members assigned", async {
        loop {
            let pa = a.assignment().unwrap();
            let pb = b.assignment().unwrap();
            if !pa.is_empty() && !pb.is_empty() && pa.len() + pb.len() == 4 {
                let sa: BTreeSet<_> = pa.iter().map(|(_, p)| *p).collect();
                let sb: BTreeSet<_> = pb.iter().map(|(_, p)| *p).collect();
                assert!(sa.is_disjoint(&sb), "{sa:?} {sb:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    let producer = RawProducer::new(&config).unwrap();
    let total = 200;
    within(20, "produce", async {
        for n in 0..total {
            producer.submit(submission(n)).await.unwrap();
        }
    })
    .await;

    let expected: BTreeSet<String> = (0..total).map(|n| submission(n).sha256_hex()).collect();
    within(20, "members see every record", async {
        while *seen.lock().unwrap() != expected {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    stop_tx.send(true).unwrap();
    let got_a = task_a.await.unwrap();
    let got_b = task_b.await.unwrap();

    let parts_a: BTreeSet<i32> = got_a.iter().map(|(p, _)| *p).collect();
    let parts_b: BTreeSet<i32> = got_b.iter().map(|(p, _)| *p).collect();
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "both members did work"
    );
    assert!(parts_a.is_disjoint(&parts_b), "{parts_a:?} vs {parts_b:?}");
    let mut union: HashMap<&str, usize> = HashMap::new();
    for (_, sha) in got_a.iter().chain(&got_b) {
        *union.entry(sha.as_str()).or_default() += 1;
    }
    assert_eq!(
        union
            .keys()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>(),
        expected
    );
    assert!(
        union.values().all(|&n| n == 1),
        "no rebalance happened, so nothing was replayed"
    );

    let a = Arc::into_inner(a).expect("member a released");
    let b = Arc::into_inner(b).expect("member b released");
    within(15, "shutdown a", a.shutdown(T)).await.unwrap();
    within(15, "shutdown b", b.shutdown(T)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_carry_cloudevents_headers() {
    let mut config = broker_config(2).await;
    config.event_source = "urn:arfwire:worker:test".to_owned();
    let outputs = sample_outputs();
    let events = EventProducer::new(&config).unwrap();
    within(15, "publish", events.publish_all(&outputs))
        .await
        .unwrap();
    // Publishing again (a retry after a crash) writes the same ids and keys.
    within(15, "publish again", events.publish_all(&outputs))
        .await
        .unwrap();
    let n_events = outputs
        .iter()
        .filter(|o| matches!(o, arfwire_events::Output::Event(_)))
        .count();
    let n_rejected = outputs.len() - n_events;
    let events_read = read_topic(&config, &config.topics.events, 2 * n_events, 15).await;
    let rejected_read = read_topic(&config, &config.topics.rejected, 2 * n_rejected, 15).await;
    let mut by_id: HashMap<String, Vec<arfwire_kafka::RawRecord>> = HashMap::new();
    for record in events_read.into_iter().chain(rejected_read) {
        let id = crate::common::header(&record, "ce_id").unwrap().to_owned();
        by_id.entry(id).or_default().push(record);
    }
    assert_eq!(by_id.len(), outputs.len());
    let mut unique = Vec::new();
    for (id, copies) in by_id {
        assert_eq!(copies.len(), 2, "{id}: published twice");
        assert_eq!(copies[0].key, copies[1].key, "{id}");
        assert_eq!(copies[0].headers, copies[1].headers, "{id}");
        assert_eq!(copies[0].payload(), copies[1].payload(), "{id}");
        assert_eq!(
            copies[0].partition, copies[1].partition,
            "{id}: same key, same partition"
        );
        unique.extend(copies.into_iter().take(1));
    }
    check_published(&outputs, &unique, "urn:arfwire:worker:test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_point_in_time() {
    let config = broker_config(2).await;
    let producer = RawProducer::new(&config).unwrap();
    within(15, "produce before", async {
        for n in 0..10 {
            producer.submit(submission(n)).await.unwrap();
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    within(15, "produce after", async {
        for n in 10..20 {
            producer.submit(submission(n)).await.unwrap();
        }
    })
    .await;

    let replay = RawConsumer::assign(
        &config,
        &format!("replay-{}", unique_suffix()),
        arfwire_kafka::StartPosition::Time(from),
        T,
    )
    .await
    .unwrap();
    let expected: BTreeSet<String> = (10..20).map(|n| submission(n).sha256_hex()).collect();
    let mut got = BTreeSet::new();
    within(15, "replay", async {
        while got.len() < expected.len() {
            let record = replay.recv().await.unwrap();
            assert!(record.timestamp.unwrap() >= from - chrono::TimeDelta::milliseconds(1));
            got.insert(record.submission().unwrap().sha256_hex());
            replay.mark_done(&record).unwrap();
        }
    })
    .await;
    assert_eq!(got, expected);
    within(15, "shutdown", replay.shutdown(T)).await.unwrap();
}
