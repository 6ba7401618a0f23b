//! Replays against a real Kafka-wire broker (tansu in development and CI; the one
//! `scripts/services.sh up` starts, `KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`). The
//! broker must be running: these tests fail, never skip, when it is not.
//!
//! tansu 0.6 under-reports the high watermark of partitions written in large batches and
//! answers a time query past the last record with offset 0; the replay must still cover
//! exactly what it was asked for.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arfwire_events::Output;
use arfwire_kafka::testing::{broker_bootstrap, unique_suffix};
use arfwire_kafka::{EventProducer, KafkaConfig, RawProducer, TopicNames, ensure_topics};
use arfwire_raw::{RawSubmission, Submitter};
use arfwire_worker::{Processor, ReplayFrom, replay};
use chrono::Utc;

use crate::support::{drain, fast_config, pipeline, submission, within};

async fn broker_config(partitions: i32) -> KafkaConfig {
    let bootstrap = broker_bootstrap();
    let mut config = KafkaConfig::new(bootstrap);
    config.client_id = "arfwire-replay-test".to_owned();
    config.topics = TopicNames::with_suffix(&unique_suffix());
    config.produce_timeout_ms = 15_000;
    config.auto_commit_interval_ms = 500;
    config.fetch_wait_max_ms = 50;
    within(20, "topics", ensure_topics(&config, partitions, 1))
        .await
        .expect("topics created");
    config
}

/// A distinct ordinary mail (one rejection record each: cheap to process).
fn ordinary(tag: &str, n: usize) -> RawSubmission {
    submission(
        format!(
            "From: someone{n}@example.org\r\nTo: junk@example.net\r\nSubject: {tag} {n}\r\nMessage-ID: <{tag}-{n}@example.org>\r\n\r\nnothing to report {n}\r\n"
        )
        .into_bytes(),
    )
}

/// Produce every submission at once, so that the producer sends large batches.
async fn produce_batched(config: &KafkaConfig, submissions: &[RawSubmission]) {
    let producer = Arc::new(RawProducer::new(config).expect("producer"));
    let mut tasks = tokio::task::JoinSet::new();
    for raw in submissions {
        let (producer, raw) = (Arc::clone(&producer), raw.clone());
        tasks.spawn(async move { producer.submit(raw).await });
    }
    within(30, "producing", async {
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("acknowledged");
        }
    })
    .await;
}

/// Every output id on the rejected topic now.
async fn rejected_ids(config: &KafkaConfig) -> Vec<String> {
    drain(config, &config.topics.rejected, 1500)
        .await
        .iter()
        .map(|record| {
            Output::from_json(&String::from_utf8_lossy(record.payload()))
                .expect("an output")
                .event_id()
                .to_owned()
        })
        .collect()
}

fn ids_of(submissions: &[RawSubmission]) -> BTreeSet<String> {
    let pipeline = pipeline();
    submissions
        .iter()
        .flat_map(|raw| pipeline.process(raw).expect("processes"))
        .map(|o| o.event_id().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_from_offsets_and_from_a_time_cover_exactly_what_was_asked() {
    let config = broker_config(2).await;
    let early: Vec<RawSubmission> = (0..300).map(|n| ordinary("early", n)).collect();
    let late: Vec<RawSubmission> = (0..200).map(|n| ordinary("late", n)).collect();
    produce_batched(&config, &early).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let between = Utc::now();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    produce_batched(&config, &late).await;

    // Everything, from offset 0 of both partitions.
    let everything = within(
        90,
        "replay from offset 0",
        replay(
            &config,
            &format!("replay-{}", unique_suffix()),
            ReplayFrom::Offsets(vec![(0, 0), (1, 0)]),
            fast_config(),
            EventProducer::new(&config).expect("producer"),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    assert!(everything.complete, "{everything:?}");
    assert_eq!(everything.stats.consumed, 500, "{everything:?}");
    assert_eq!(everything.stats.done, 500);
    assert_eq!(
        everything.partitions.iter().map(|p| p.end).sum::<i64>(),
        500,
        "the ends found: {:?}",
        everything.partitions
    );
    let all: BTreeSet<String> = ids_of(&early).union(&ids_of(&late)).cloned().collect();
    let published = rejected_ids(&config).await;
    assert_eq!(published.len(), 500);
    assert_eq!(published.iter().cloned().collect::<BTreeSet<_>>(), all);

    // From the time between the two bursts: exactly the late ones, again with their ids.
    let since = within(
        90,
        "replay from a time",
        replay(
            &config,
            &format!("replay-{}", unique_suffix()),
            ReplayFrom::Time(between),
            fast_config(),
            EventProducer::new(&config).expect("producer"),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    assert!(since.complete, "{since:?}");
    assert_eq!(since.stats.consumed, 200, "{since:?}");
    let published = rejected_ids(&config).await;
    assert_eq!(published.len(), 700);
    let late_ids = ids_of(&late);
    for id in &late_ids {
        assert_eq!(
            published.iter().filter(|p| *p == id).count(),
            2,
            "published twice: {id}"
        );
    }

    // From a time after every record: nothing.
    let nothing = within(
        60,
        "replay from now",
        replay(
            &config,
            &format!("replay-{}", unique_suffix()),
            ReplayFrom::Time(Utc::now()),
            fast_config(),
            EventProducer::new(&config).expect("producer"),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    assert!(nothing.complete);
    assert_eq!(nothing.stats.consumed, 0, "{nothing:?}");

    // One partition from an offset in its middle: only what lies from there.
    let one = within(
        60,
        "replay of one partition from an offset",
        replay(
            &config,
            &format!("replay-{}", unique_suffix()),
            ReplayFrom::Offsets(vec![(1, 100)]),
            fast_config(),
            EventProducer::new(&config).expect("producer"),
            pipeline(),
            std::future::pending(),
        ),
    )
    .await
    .expect("replay");
    let p1_end = everything
        .partitions
        .iter()
        .find(|p| p.partition == 1)
        .map(|p| p.end)
        .expect("partition 1");
    assert_eq!(one.stats.consumed as i64, p1_end - 100, "{one:?}");
}
