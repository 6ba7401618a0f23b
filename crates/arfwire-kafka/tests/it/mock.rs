//! Against librdkafka's in-process mock cluster: no network, no broker process.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arfwire_kafka::testing::MockKafka;
use arfwire_kafka::{
    DlqFailure, EventProducer, PublishError, RawConsumer, RawProducer, StartPosition,
};
use arfwire_raw::{SubmitError, Submitter};
use chrono::{TimeZone, Utc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::common::{check_published, header, read_topic, sample_outputs, submission, within};

const T: Duration = Duration::from_secs(5);

/// Records in a topic's log (sum over partitions of high minus low watermark).
fn log_size(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "watermarks")
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer.fetch_watermarks(topic, p, T).unwrap();
            high - low
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_round_trip_through_a_consumer_group() {
    let kafka = MockKafka::start(1, 3).unwrap();
    let producer = RawProducer::new(kafka.config()).unwrap();
    let sent: Vec<_> = (0..30).map(submission).collect();
    within(20, "produce", async {
        for raw in &sent {
            producer.submit(raw.clone()).await.unwrap();
        }
    })
    .await;

    let consumer = RawConsumer::subscribe(kafka.config(), "workers").unwrap();
    let mut received = HashMap::new();
    within(20, "consume", async {
        while received.len() < sent.len() {
            let record = consumer.recv().await.unwrap();
            let decoded = record.submission().expect("decodes").clone();
            assert_eq!(record.key.as_deref(), Some(decoded.sha256_hex().as_bytes()));
            assert_eq!(record.payload(), decoded.bytes.as_slice());
            assert!(record.timestamp.is_some());
            consumer.mark_done(&record).unwrap();
            received.insert(decoded.sha256_hex(), decoded);
        }
    })
    .await;
    for raw in &sent {
        assert_eq!(received.get(&raw.sha256_hex()), Some(raw));
    }
    consumer.commit_now(T).await.unwrap();
    let lag = consumer.lag(T).await.unwrap();
    assert_eq!(lag.len(), 3);
    assert!(lag.iter().all(|l| l.lag == 0), "{lag:?}");
    assert_eq!(lag.iter().map(|l| l.high_watermark).sum::<i64>(), 30);
    within(10, "shutdown", consumer.shutdown(T)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_while_the_broker_is_down_then_durable_after_it_is_up() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let mut config = kafka.config().clone();
    config.produce_timeout_ms = 1500;
    config
        .librdkafka_options
        .insert("reconnect.backoff.max.ms".to_owned(), "200".to_owned());
    let producer = RawProducer::new(&config).unwrap();
    within(10, "warm-up send", producer.submit(submission(0)))
        .await
        .unwrap();

    kafka.cluster().broker_down(1).unwrap();
    let started = Instant::now();
    let result = within(10, "send while down", producer.submit(submission(1))).await;
    assert!(
        matches!(result, Err(SubmitError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "bounded by the produce timeout"
    );

    kafka.cluster().broker_up(1).unwrap();
    // The front door retries (the sender would, after a 451) until the log takes it.
    within(20, "send after recovery", async {
        loop {
            match producer.submit(submission(1)).await {
                Ok(()) => break,
                Err(SubmitError::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(other) => panic!("{other}"),
            }
        }
    })
    .await;

    let records = read_topic(&config, &config.topics.raw, 2, 15).await;
    let shas: BTreeSet<_> = records
        .iter()
        .map(|r| r.submission().unwrap().sha256_hex())
        .collect();
    assert_eq!(
        shas,
        [submission(0).sha256_hex(), submission(1).sha256_hex()]
            .into_iter()
            .collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_produce_errors_cause_neither_loss_nor_duplicates() {
    let kafka = MockKafka::start(3, 4).unwrap();
    let config = kafka.config().clone();
    let errors: Vec<RDKafkaRespErr> = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    ]
    .repeat(5);
    kafka
        .cluster()
        .request_errors(RDKafkaApiKey::Produce, &errors);

    let producer = Arc::new(RawProducer::new(&config).unwrap());
    let total = 300;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let producer = Arc::clone(&producer);
        tasks.spawn(async move { producer.submit(submission(n)).await });
        if n == total / 2 {
            // Move a leader in the middle of the stream as well.
            kafka
                .cluster()
                .partition_leader(&config.topics.raw, 0, Some(2))
                .unwrap();
        }
    }
    let mut acked = 0;
    within(25, "produce under injected errors", async {
        while let Some(result) = tasks.join_next().await {
            result
                .unwrap()
                .expect("retriable errors are retried by the producer");
            acked += 1;
        }
    })
    .await;
    assert_eq!(acked, total);

    // Every acknowledged record is in the log once: as many log entries as acks, and
    // every submission read back.
    let bootstrap = config.bootstrap_servers.clone();
    let topic = config.topics.raw.clone();
    let in_log = tokio::task::spawn_blocking(move || log_size(&bootstrap, &topic, 4))
        .await
        .unwrap();
    assert_eq!(in_log, i64::try_from(total).unwrap(), "0 duplicates");
    let records = read_topic(&config, &config.topics.raw, total, 20).await;
    let shas: BTreeSet<_> = records
        .iter()
        .map(|r| r.submission().unwrap().sha256_hex())
        .collect();
    assert_eq!(shas.len(), total, "0 lost, 0 duplicated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_idempotence_error_replaces_the_producer() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let outputs = sample_outputs();
    let events = EventProducer::new(kafka.config()).unwrap();
    // Warm up so that the producer id is known, then desynchronise the sequence.
    within(10, "warm-up", events.publish_all(&outputs[..1]))
        .await
        .unwrap();
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let error = within(
        15,
        "publish into a fatal error",
        events.publish_all(&outputs),
    )
    .await
    .unwrap_err();
    assert!(error.is_fatal(), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(events.fatal_errors(), 1);
    // The caller re-publishes everything; the new producer takes it.
    within(15, "publish again", events.publish_all(&outputs))
        .await
        .unwrap();

    // The raw producer heals the same way, reporting only "unavailable" to the front door.
    let raw = RawProducer::new(kafka.config()).unwrap();
    within(10, "raw warm-up", raw.submit(submission(1)))
        .await
        .unwrap();
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    let result = within(15, "raw into a fatal error", raw.submit(submission(2))).await;
    assert!(
        matches!(result, Err(SubmitError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(raw.fatal_errors(), 1);
    within(15, "raw again", raw.submit(submission(2)))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_submissions_are_refused_before_sending() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let mut config = kafka.config().clone();
    config.message_max_bytes = 4096;
    let producer = RawProducer::new(&config).unwrap();
    let mut big = submission(0);
    big.bytes.extend(std::iter::repeat_n(b'x', 8192));
    let result = within(10, "too large", producer.submit(big)).await;
    assert!(
        matches!(result, Err(SubmitError::TooLarge(_))),
        "{result:?}"
    );
    within(10, "small", producer.submit(submission(1)))
        .await
        .unwrap();

    let events = EventProducer::new(&config).unwrap();
    let error = within(10, "event too large", events.publish_all(&sample_outputs()))
        .await
        .unwrap_err();
    assert!(matches!(error, PublishError::TooLarge { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_rejections_carry_cloudevents_headers() {
    let kafka = MockKafka::start(1, 3).unwrap();
    let config = kafka.config();
    let outputs = sample_outputs();
    let events = EventProducer::new(config).unwrap();
    within(15, "publish", events.publish_all(&outputs))
        .await
        .unwrap();
    let n_events = outputs
        .iter()
        .filter(|o| matches!(o, arfwire_events::Output::Event(_)))
        .count();
    let mut records = read_topic(config, &config.topics.events, n_events, 15).await;
    records.extend(
        read_topic(
            config,
            &config.topics.rejected,
            outputs.len() - n_events,
            15,
        )
        .await,
    );
    check_published(&outputs, &records, "urn:arfwire:worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_original_bytes_and_headers() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let config = kafka.config().clone();
    let raw = RawProducer::new(&config).unwrap();
    let original = submission(3);
    within(10, "produce", raw.submit(original.clone()))
        .await
        .unwrap();
    // And a record no intake wrote: no headers, bytes that are not mail.
    let plain: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap_servers)
        .create()
        .unwrap();
    within(
        10,
        "produce garbage",
        plain.send(
            FutureRecord::<[u8], [u8]>::to(&config.topics.raw).payload(&b"\x00\xffnot framed"[..]),
            T,
        ),
    )
    .await
    .unwrap();

    let consumer = RawConsumer::subscribe(&config, "workers").unwrap();
    let events = EventProducer::new(&config).unwrap();
    let first_failed_at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 0).unwrap();
    let mut dead = Vec::new();
    within(20, "consume and dead-letter", async {
        while dead.len() < 2 {
            let record = consumer.recv().await.unwrap();
            let failure = DlqFailure {
                error: match record.submission() {
                    Ok(_) => "parser crashed\r\nwith a two-line message".to_owned(),
                    Err(error) => error.to_string(),
                },
                attempts: 3,
                first_failed_at,
            };
            events.publish_dlq(&record, &failure).await.unwrap();
            consumer.mark_done(&record).unwrap();
            dead.push(record);
        }
    })
    .await;

    let letters = read_topic(&config, &config.topics.dlq, 2, 15).await;
    for letter in &letters {
        let source = dead
            .iter()
            .find(|r| r.payload() == letter.payload())
            .expect("value = the original bytes");
        assert_eq!(letter.key, source.key);
        // The original headers come first, unchanged and in order.
        assert_eq!(
            &letter.headers[..source.headers.len()],
            source.headers.as_slice()
        );
        assert_eq!(header(letter, "arfwire-attempts"), Some("3"));
        assert_eq!(
            header(letter, "arfwire-first-failed-at"),
            Some("2024-05-01T12:30:00.000Z")
        );
        assert_eq!(
            header(letter, "arfwire-original-topic"),
            Some(config.topics.raw.as_str())
        );
        let error = header(letter, "arfwire-error").unwrap();
        assert!(!error.contains(['\r', '\n']), "{error:?}");
        match source.submission() {
            // A framed record still decodes from the DLQ: same submission.
            Ok(sub) => {
                assert_eq!(sub, &original);
                assert_eq!(letter.submission().unwrap(), &original);
                assert_eq!(error, "parser crashed  with a two-line message");
            }
            Err(_) => {
                assert_eq!(letter.payload(), b"\x00\xffnot framed");
                assert!(error.contains("arfwire-schema"), "{error}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_for_finished_records() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let mut config = kafka.config().clone();
    // The mock coordinator waits almost a session timeout before it hands the partitions
    // of a member that left to a new one; keep that short.
    config
        .librdkafka_options
        .insert("session.timeout.ms".to_owned(), "3000".to_owned());
    config
        .librdkafka_options
        .insert("heartbeat.interval.ms".to_owned(), "500".to_owned());
    let producer = RawProducer::new(&config).unwrap();
    within(15, "produce", async {
        for n in 0..10 {
            producer.submit(submission(n)).await.unwrap();
        }
    })
    .await;

    let first = RawConsumer::subscribe(&config, "workers").unwrap();
    let mut records = Vec::new();
    within(15, "first consumer", async {
        while records.len() < 10 {
            records.push(first.recv().await.unwrap());
        }
    })
    .await;
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    // Finished: 0..=4, and 7 and 8 (out of order); 5, 6 and 9 are still in flight when
    // the worker dies.
    for r in records
        .iter()
        .filter(|r| r.offset <= 4 || r.offset == 7 || r.offset == 8)
    {
        first.mark_done(r).unwrap();
    }
    let lag = first.lag(T).await.unwrap();
    assert_eq!(lag[0].stored, Some(5));
    assert_eq!(lag[0].lag, 5);
    first.commit_now(T).await.unwrap();
    within(10, "shutdown", first.shutdown(T)).await.unwrap();

    let second = RawConsumer::subscribe(&config, "workers").unwrap();
    let resumed = within(15, "second consumer", second.recv()).await.unwrap();
    assert_eq!(resumed.offset, 5, "resumes at the first unfinished record");
    assert_eq!(
        resumed.submission().unwrap(),
        records[5].submission().unwrap()
    );
    within(10, "shutdown", second.shutdown(T)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_an_offset_and_seek_back() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let config = kafka.config().clone();
    let producer = RawProducer::new(&config).unwrap();
    within(15, "produce", async {
        for n in 0..6 {
            producer.submit(submission(n)).await.unwrap();
        }
    })
    .await;

    let replay = RawConsumer::assign(&config, "replay", StartPosition::Offsets(vec![(0, 3)]), T)
        .await
        .unwrap();
    let record = within(10, "replay from 3", replay.recv()).await.unwrap();
    assert_eq!(record.offset, 3);
    assert_eq!(record.submission().unwrap(), &submission(3));
    replay.mark_done(&record).unwrap();
    let next = within(10, "replay 4", replay.recv()).await.unwrap();
    assert_eq!(next.offset, 4);

    replay.seek_to_offset(0, 1, T).await.unwrap();
    let again = within(10, "after seek", replay.recv()).await.unwrap();
    assert_eq!(again.offset, 1);
    // A record from before the seek no longer counts.
    replay.mark_done(&next).unwrap();
    assert_eq!(replay.lag(T).await.unwrap()[0].stored, None);
    replay.mark_done(&again).unwrap();
    assert_eq!(replay.lag(T).await.unwrap()[0].stored, Some(2));

    assert!(
        replay.seek_to_offset(7, 0, T).await.is_err(),
        "partition 7 is not assigned"
    );
    within(10, "shutdown", replay.shutdown(T)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_topics_needs_a_real_broker() {
    let kafka = MockKafka::start(1, 1).unwrap();
    let mut config = kafka.config().clone();
    config.topics = arfwire_kafka::TopicNames::with_suffix("admin");
    config.produce_timeout_ms = 3000;
    // The mock cluster does not implement CreateTopics: the error is reported, not hidden.
    let result = within(
        15,
        "ensure_topics on the mock",
        arfwire_kafka::ensure_topics(&config, 1, 1),
    )
    .await;
    assert!(result.is_err(), "{result:?}");
}
