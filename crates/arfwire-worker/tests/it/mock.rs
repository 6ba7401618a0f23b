//! The worker against librdkafka's in-process mock cluster: no network, no broker process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use arfwire_events::{Output, event_id};
use arfwire_kafka::EventProducer;
use arfwire_kafka::testing::MockKafka;
use arfwire_raw::RawSubmission;
use arfwire_worker::{ProcessError, Processor, ReplayFrom, WorkerConfig, replay};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::support::{
    CONTOSO, committed, eventually, expected_outputs, fast_config, header, pipeline, produce,
    read_topic, start_worker, submission, three_fixtures, within,
};

fn mock(partitions: i32) -> (MockKafka, arfwire_kafka::KafkaConfig) {
    let kafka = MockKafka::start(1, partitions).expect("mock cluster");
    let mut config = kafka.config().clone();
    config.auto_commit_interval_ms = 100;
    // The mock coordinator waits up to the session timeout for members to rejoin after
    // one leaves; keep that short so a second worker of a group starts at once.
    for (key, value) in [
        ("session.timeout.ms", "3000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config
            .librdkafka_options
            .insert(key.to_owned(), value.to_owned());
    }
    (kafka, config)
}

fn events_and_rejections(outputs: &[Output]) -> (Vec<&Output>, Vec<&Output>) {
    outputs.iter().partition(|o| matches!(o, Output::Event(_)))
}

/// A distinct ordinary message (it yields one rejection record, reason ordinary_mail).
fn ordinary(n: usize) -> RawSubmission {
    submission(
        format!(
            "From: someone{n}@example.org\r\nTo: junk@example.net\r\nSubject: hello {n}\r\nDate: Wed, 01 May 2024 12:00:00 +0000\r\nMessage-ID: <m{n}@example.org>\r\n\r\nnothing to report {n}\r\n"
        )
        .into_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_submissions_in_events_and_rejections_out_with_the_expected_ids() {
    let (_kafka, config) = mock(3);
    let submissions: Vec<_> = three_fixtures().into_iter().map(submission).collect();
    produce(&config, &submissions).await;
    let expected = expected_outputs(&submissions);
    let (events, rejections) = events_and_rejections(&expected);
    assert!(!events.is_empty() && rejections.len() == 1, "{expected:?}");
    for output in &events {
        let Output::Event(event) = output else {
            unreachable!()
        };
        let index = usize::try_from(event.report_index).unwrap();
        assert_eq!(event.event_id, event_id(&event.intake.raw_sha256, index));
        assert!(event.attribution.is_some());
    }

    let running = start_worker(&config, "workers", fast_config(), pipeline());
    let stats = Arc::clone(&running.stats);
    eventually(20, "three records done", || stats.snapshot().done == 3).await;

    let published = read_topic(&config, &config.topics.events, events.len(), 15).await;
    let refused = read_topic(&config, &config.topics.rejected, rejections.len(), 15).await;
    let by_id: BTreeMap<&str, _> = published
        .iter()
        .chain(&refused)
        .map(|r| (header(r, "ce_id").expect("ce_id"), r))
        .collect();
    assert_eq!(by_id.len(), expected.len());
    let mut keys = BTreeSet::new();
    for output in &expected {
        let record = by_id[output.event_id()];
        assert_eq!(record.payload(), output.to_json_line().as_bytes());
        assert_eq!(header(record, "ce_specversion"), Some("1.0"));
        assert_eq!(
            header(record, "ce_source"),
            Some(config.event_source.as_str())
        );
        let key = String::from_utf8(record.key.clone().unwrap()).unwrap();
        if let Output::Event(event) = output {
            assert_eq!(key, event.partition_key());
            assert_eq!(header(record, "ce_type"), Some("arfwire.abuse-event.v1"));
        }
        keys.insert(key);
    }
    assert!(
        keys.contains(CONTOSO),
        "the Contoso report is keyed by its tenant: {keys:?}"
    );
    assert!(keys.contains("unattributed"), "{keys:?}");

    let totals = running.stop(15).await;
    assert_eq!(totals.done, 3);
    assert_eq!(totals.events, events.len() as u64);
    assert_eq!(totals.rejected, 1);
    assert_eq!(totals.dead_lettered, 0);
    let offsets = committed(&config, "workers", 3).await;
    assert_eq!(offsets.iter().flatten().sum::<i64>(), 3, "{offsets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_after_max_attempts_and_the_worker_goes_on() {
    let (_kafka, config) = mock(1);
    let fixtures = three_fixtures();
    let poison = submission(
        b"From: x@example.org\r\nSubject: POISON\r\n\r\nprocessing this one panics\r\n".to_vec(),
    );
    let first = [
        submission(fixtures[0].clone()),
        poison.clone(),
        submission(fixtures[1].clone()),
    ];
    produce(&config, &first).await;

    // The failure is injected through the processor parameter: production code has no
    // test branch.
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let inner = pipeline();
    let processor = move |raw: &RawSubmission| -> Result<Vec<Output>, ProcessError> {
        if raw.bytes.windows(6).any(|w| w == b"POISON") {
            seen.fetch_add(1, Ordering::SeqCst);
            panic!("injected parser failure");
        }
        inner.process(raw)
    };
    let config_worker = WorkerConfig {
        max_attempts: 3,
        ..fast_config()
    };
    let running = start_worker(&config, "workers", config_worker, processor);
    let stats = Arc::clone(&running.stats);
    eventually(20, "three records done", || stats.snapshot().done == 3).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "tried exactly max_attempts times"
    );

    let dead = read_topic(&config, &config.topics.dlq, 1, 15).await;
    let record = &dead[0];
    assert_eq!(
        record.payload(),
        poison.bytes.as_slice(),
        "the original bytes"
    );
    assert_eq!(header(record, "arfwire-attempts"), Some("3"));
    let error = header(record, "arfwire-error").unwrap();
    assert!(
        error.contains("panicked: injected parser failure"),
        "{error}"
    );
    assert_eq!(header(record, "arfwire-original-offset"), Some("1"));
    assert_eq!(
        header(record, "arfwire-original-topic"),
        Some(config.topics.raw.as_str())
    );
    assert_eq!(
        header(record, "arfwire-sha256"),
        Some(poison.sha256_hex().as_str()),
        "the raw headers are kept"
    );

    // The worker keeps going with later records.
    produce(&config, &[submission(fixtures[2].clone())]).await;
    eventually(20, "the next record done", || stats.snapshot().done == 4).await;
    let totals = running.stop(15).await;
    assert_eq!(totals.dead_lettered, 1);
    assert_eq!(totals.processing_failures, 3);
    assert_eq!(committed(&config, "workers", 1).await, vec![Some(4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_record_goes_straight_to_the_dead_letter_topic() {
    let (_kafka, config) = mock(1);
    let bootstrap = config.bootstrap_servers.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    within(
        10,
        "raw record without framing",
        producer.send(
            FutureRecord::<[u8], [u8]>::to(&config.topics.raw).payload(b"no headers at all"),
            Duration::from_secs(5),
        ),
    )
    .await
    .expect("sent");
    produce(&config, &[ordinary(1)]).await;

    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let inner = pipeline();
    let processor = move |raw: &RawSubmission| {
        seen.fetch_add(1, Ordering::SeqCst);
        inner.process(raw)
    };
    let running = start_worker(&config, "workers", fast_config(), processor);
    let stats = Arc::clone(&running.stats);
    eventually(20, "both records done", || stats.snapshot().done == 2).await;
    let dead = read_topic(&config, &config.topics.dlq, 1, 15).await;
    assert_eq!(dead[0].payload(), b"no headers at all");
    assert_eq!(header(&dead[0], "arfwire-attempts"), Some("1"));
    let error = header(&dead[0], "arfwire-error").unwrap();
    assert!(error.contains("cannot be decoded"), "{error}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "only the decodable record is processed"
    );
    running.stop(15).await;
    assert_eq!(committed(&config, "workers", 1).await, vec![Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_advance_only_after_every_output_is_acknowledged() {
    let (kafka, mut config) = mock(1);
    let fixtures = three_fixtures();
    let submissions = vec![
        submission(fixtures[0].clone()),
        submission(fixtures[1].clone()),
    ];
    produce(&config, &submissions).await;
    config.produce_timeout_ms = 1_000;
    let expected = expected_outputs(&submissions);

    // Every produce request now fails with a retriable error: nothing gets acknowledged.
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 5_000],
    );
    let running = start_worker(&config, "workers", fast_config(), pipeline());
    let stats = Arc::clone(&running.stats);
    eventually(30, "publishes retried", || {
        stats.snapshot().publish_retries >= 2
    })
    .await;
    assert_eq!(stats.snapshot().done, 0);
    assert_eq!(
        stats.snapshot().processing_failures,
        0,
        "a broker failure is not the record's"
    );
    // Commits run every 100 ms: had anything been stored, it would be committed by now.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        committed(&config, "workers", 1).await,
        vec![None],
        "no offset before the acks"
    );

    kafka.cluster().clear_request_errors(RDKafkaApiKey::Produce);
    eventually(30, "records done after recovery", || {
        stats.snapshot().done == 2
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let offsets = committed(&config, "workers", 1).await;
        if offsets == vec![Some(2)] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "offset not committed after recovery: {offsets:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = running.stop(15).await;
    assert_eq!(totals.dead_lettered, 0);
    let ids: BTreeSet<String> = read_topic(&config, &config.topics.events, 2, 15)
        .await
        .iter()
        .map(|r| header(r, "ce_id").unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = expected.iter().map(|o| o.event_id().to_owned()).collect();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_records_then_commits() {
    let (_kafka, config) = mock(1);
    let submissions: Vec<_> = (0..8).map(ordinary).collect();
    produce(&config, &submissions).await;

    let inner = Arc::new(pipeline());
    let slow = {
        let inner = Arc::clone(&inner);
        move |raw: &RawSubmission| {
            std::thread::sleep(Duration::from_millis(400));
            inner.process(raw)
        }
    };
    let worker_config = WorkerConfig {
        max_in_flight: 4,
        ..fast_config()
    };
    let running = start_worker(&config, "workers", worker_config.clone(), slow);
    let stats = Arc::clone(&running.stats);
    eventually(20, "records in flight", || stats.snapshot().in_flight == 4).await;
    let started = Instant::now();
    let first = running.stop(15).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained promptly"
    );
    assert_eq!(first.abandoned, 0);
    assert_eq!(first.in_flight, 0);
    assert_eq!(
        first.done, first.consumed,
        "every fetched record finished: {first:?}"
    );
    assert!((4..8).contains(&first.done), "stopped fetching: {first:?}");
    assert_eq!(
        committed(&config, "workers", 1).await,
        vec![Some(first.done as i64)],
        "the finished records are committed at shutdown"
    );

    // The next worker of the group continues where the first stopped.
    let running = start_worker(
        &config,
        "workers",
        worker_config,
        move |raw: &RawSubmission| inner.process(raw),
    );
    let stats = Arc::clone(&running.stats);
    let rest = 8 - first.done;
    let watched = Arc::clone(&stats);
    within(20, "the rest done", async move {
        while watched.snapshot().done < rest {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let second = running.stop(15).await;
    assert_eq!(second.consumed, rest, "no record processed twice");
    assert_eq!(committed(&config, "workers", 1).await, vec![Some(8)]);
    read_topic(&config, &config.topics.rejected, 8, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_unacknowledged_at_the_end_of_the_grace_period_are_left_for_later() {
    let (kafka, mut config) = mock(1);
    produce(&config, &[ordinary(1)]).await;
    config.produce_timeout_ms = 500;
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 5_000],
    );
    let worker_config = WorkerConfig {
        shutdown_grace: Duration::from_secs(1),
        ..fast_config()
    };
    let running = start_worker(&config, "workers", worker_config, pipeline());
    let stats = Arc::clone(&running.stats);
    eventually(20, "publish retried", || {
        stats.snapshot().publish_retries >= 1
    })
    .await;
    let started = Instant::now();
    let totals = running.stop(15).await;
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "bounded by the grace period"
    );
    assert_eq!(totals.abandoned, 1);
    assert_eq!(totals.done, 0);
    assert_eq!(committed(&config, "workers", 1).await, vec![None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_the_same_ids_again_without_moving_the_workers_offsets() {
    let (_kafka, config) = mock(2);
    let submissions: Vec<_> = three_fixtures().into_iter().map(submission).collect();
    produce(&config, &submissions).await;
    let expected = expected_outputs(&submissions);
    let (events, _) = events_and_rejections(&expected);

    let running = start_worker(&config, "workers", fast_config(), pipeline());
    let stats = Arc::clone(&running.stats);
    eventually(20, "worker done", || stats.snapshot().done == 3).await;
    running.stop(15).await;
    let worker_offsets = committed(&config, "workers", 2).await;
    assert_eq!(worker_offsets.iter().flatten().sum::<i64>(), 3);

    let summary = within(
        30,
        "replay from offset 0",
        replay(
            &config,
            "replayers",
            ReplayFrom::Offsets(vec![(0, 0), (1, 0)]),
            fast_config(),
            EventProducer::new(&config).unwrap(),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    assert!(summary.complete);
    assert_eq!(summary.stats.consumed, 3);
    assert_eq!(summary.stats.done, 3);
    assert_eq!(summary.partitions.iter().map(|p| p.end).sum::<i64>(), 3);

    let twice = read_topic(&config, &config.topics.events, 2 * events.len(), 15).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in &twice {
        *counts
            .entry(header(record, "ce_id").unwrap().to_owned())
            .or_default() += 1;
    }
    for event in &events {
        assert_eq!(counts.get(event.event_id()), Some(&2), "{counts:?}");
    }
    assert_eq!(
        committed(&config, "workers", 2).await,
        worker_offsets,
        "worker untouched"
    );

    // Only partition 1, from its start: only its records.
    let in_p1 = worker_offsets[1].unwrap_or(0);
    let summary = within(
        30,
        "replay of one partition",
        replay(
            &config,
            "replayers",
            ReplayFrom::Offsets(vec![(1, 0)]),
            fast_config(),
            EventProducer::new(&config).unwrap(),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    assert_eq!(summary.stats.consumed, in_p1 as u64);

    // From a time after every record (the mock answers "no offset" to time queries, as
    // it would for a time past the end): nothing to do, and it ends.
    let summary = within(
        30,
        "replay from a time",
        replay(
            &config,
            "replayers",
            ReplayFrom::Time(chrono::Utc::now()),
            fast_config(),
            EventProducer::new(&config).unwrap(),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    assert_eq!(summary.stats.consumed, 0);
    assert!(summary.complete);

    // The worker's own group is refused.
    let refused = replay(
        &config,
        &config.group_id,
        ReplayFrom::Offsets(vec![(0, 0)]),
        fast_config(),
        EventProducer::new(&config).unwrap(),
        pipeline(),
        std::future::pending(),
    )
    .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_producer_error_is_survived_by_publishing_again() {
    let (kafka, config) = mock(1);
    let fixtures = three_fixtures();
    let late = submission(fixtures[1].clone());
    produce(&config, &[submission(fixtures[0].clone()), late.clone()]).await;

    // The second record waits at a gate, so the fault can be armed after the producer
    // has published once (and so has a producer id and sequence numbers).
    let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = Arc::clone(&gate);
    let inner = pipeline();
    let late_bytes = late.bytes.clone();
    let processor = move |raw: &RawSubmission| {
        if raw.bytes == late_bytes {
            while !open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        inner.process(raw)
    };
    let running = start_worker(&config, "workers", fast_config(), processor);
    let stats = Arc::clone(&running.stats);
    eventually(20, "the first record done", || stats.snapshot().done == 1).await;
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    gate.store(true, Ordering::SeqCst);
    eventually(30, "the second record done", || stats.snapshot().done == 2).await;
    let totals = running.stop(15).await;
    assert!(totals.publish_retries >= 1, "{totals:?}");
    assert_eq!(totals.dead_lettered, 0);
    assert_eq!(totals.processing_failures, 0);
    assert_eq!(committed(&config, "workers", 1).await, vec![Some(2)]);
}
