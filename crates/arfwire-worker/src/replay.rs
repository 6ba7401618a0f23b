//! Replay: re-read part of the raw topic and publish again what it yields with the
//! current parser, profile and directory.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arfwire_kafka::{EventProducer, KafkaConfig, RawConsumer, StartPosition};
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::WorkerError;
use crate::config::WorkerConfig;
use crate::process::Processor;
use crate::run::Pool;
use crate::stats::{StatsSnapshot, WorkerStats};

/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayFrom {
    /// From these offsets, per partition. Partitions not listed are not replayed.
    Offsets(Vec<(i32, i64)>),
    /// From the first record written at or after this time, in every partition.
    Time(DateTime<Utc>),
}

/// One partition of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPartition {
    /// Partition.
    pub partition: i32,
    /// First offset replayed (for a time replay: the broker's answer to the time query;
    /// records before the time are then skipped).
    pub start: i64,
    /// One past the last offset replayed: the partition's end when the replay started, as
    /// the broker reported it, or as found by reading when records older than the replay
    /// lay beyond it (a broker that under-reports its high watermarks).
    pub end: i64,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// The range of every partition of the raw topic.
    pub partitions: Vec<ReplayPartition>,
    /// Records processed and what they yielded.
    pub stats: StatsSnapshot,
    /// `false` when the shutdown signal stopped the replay before the end.
    pub complete: bool,
}

/// How long without a record before the replay asks the broker whether the partitions
/// still pending are at their end.
const IDLE_CHECK: Duration = Duration::from_secs(2);

/// Re-read the raw topic of `kafka` from `from` up to the end offsets of the moment the
/// replay starts, and process every record exactly as the worker does (same processing,
/// retries and dead-lettering), publishing through `producer`.
///
/// Ids are derived from the submission bytes, so re-derived records carry the same ids as
/// before; what may differ is their content (`parser_version`, attribution against the
/// current directory), which is the point of a replay. Consumers de-duplicate or upsert on
/// the ids.
///
/// Where each partition ends: the high watermark the broker reports at the start. A
/// partition is finished when a record written after the replay started arrives, or when
/// nothing has arrived for two seconds and the position has reached the end. Records
/// written *before* the start that lie beyond the reported end (a broker that
/// under-reports its watermarks) are followed and replayed, and a broker that answers a
/// fetch from inside a record batch with the next batch is read from the partition's start
/// instead, skipping what lies before the asked offset; both are logged.
///
/// The replay reads with manual assignment under `group_id`, which must not be the
/// worker's group: it commits its own progress there and never moves the worker's
/// offsets. Stops early, cleanly, when `shutdown` completes.
pub async fn replay<P: Processor>(
    kafka: &KafkaConfig,
    group_id: &str,
    from: ReplayFrom,
    config: WorkerConfig,
    producer: EventProducer,
    processor: P,
    shutdown: impl Future<Output = ()>,
) -> Result<ReplaySummary, WorkerError> {
    config.validate()?;
    if group_id == kafka.group_id {
        return Err(WorkerError::Replay(format!(
            "the replay group {group_id:?} is the worker's group; use a group of its own"
        )));
    }
    let timeout = config.kafka_timeout;

    // The end of every partition now: the replay stops there.
    let probe = RawConsumer::assign(kafka, group_id, StartPosition::End, timeout).await?;
    let lags = probe.lag(timeout).await?;
    probe.shutdown(timeout).await?;
    let ends: BTreeMap<i32, (i64, i64)> = lags
        .iter()
        .map(|l| (l.partition, (l.low_watermark, l.high_watermark)))
        .collect();
    if ends.is_empty() {
        return Err(WorkerError::Replay(format!(
            "topic {} has no partitions",
            kafka.topics.raw
        )));
    }

    let mut partitions = Vec::with_capacity(ends.len());
    // Per partition: records below this offset are not replayed (see below).
    let mut below: BTreeMap<i32, i64> = BTreeMap::new();
    let start = match &from {
        ReplayFrom::Offsets(list) => {
            for (partition, _) in list {
                if !ends.contains_key(partition) {
                    return Err(WorkerError::Replay(format!(
                        "topic {} has no partition {partition} (it has {})",
                        kafka.topics.raw,
                        ends.len()
                    )));
                }
            }
            let mut offsets = Vec::with_capacity(ends.len());
            for (&partition, &(low, end)) in &ends {
                let requested = list
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == partition)
                    .map(|(_, offset)| *offset);
                let start = requested.map_or(end, |offset| offset.clamp(low, end));
                // Positioned at most at the reported end (beyond it the broker would reset
                // the position); records below the requested offset are skipped, in case
                // the reported end was short.
                if let Some(requested) = requested.filter(|r| *r > start) {
                    below.insert(partition, requested);
                }
                offsets.push((partition, start));
                partitions.push(ReplayPartition {
                    partition,
                    start,
                    end,
                });
            }
            StartPosition::Offsets(offsets)
        }
        ReplayFrom::Time(at) => {
            let found = crate::adapter::offsets_for_time(
                kafka,
                *at,
                ends.keys().copied().collect(),
                timeout,
            )
            .await?;
            let mut offsets = Vec::with_capacity(ends.len());
            for (&partition, &(low, end)) in &ends {
                // No record at or after the time: nothing to replay there.
                let start = found
                    .get(&partition)
                    .copied()
                    .flatten()
                    .map_or(end, |offset| offset.clamp(low, end));
                offsets.push((partition, start));
                partitions.push(ReplayPartition {
                    partition,
                    start,
                    end,
                });
            }
            StartPosition::Offsets(offsets)
        }
    };
    // Every partition asked for stays pending until its end is reached: even one whose
    // start is its reported end, since a broker may under-report the end.
    let mut pending: BTreeSet<i32> = match &from {
        ReplayFrom::Offsets(list) => list.iter().map(|(p, _)| *p).collect(),
        ReplayFrom::Time(_) => partitions.iter().map(|p| p.partition).collect(),
    };
    // A time replay skips records older than its time until the first that is not, in
    // case the broker's answer to the time query was early.
    let skip_before = match &from {
        ReplayFrom::Time(at) => Some(*at),
        ReplayFrom::Offsets(_) => None,
    };
    let mut skipping: BTreeSet<i32> = match skip_before {
        Some(_) => pending.clone(),
        None => BTreeSet::new(),
    };
    info!(
        topic = %kafka.topics.raw,
        group = group_id,
        partitions = partitions.len(),
        pending = pending.len(),
        "replay starting"
    );

    let consumer = Arc::new(RawConsumer::assign(kafka, group_id, start, timeout).await?);
    let stats = Arc::new(WorkerStats::default());
    let source = Arc::clone(&consumer);
    let mut pool = Pool::new(
        config,
        consumer,
        Arc::new(producer),
        Arc::new(processor),
        Arc::clone(&stats),
        None,
    );
    // The end of each partition: the high watermark the broker reported at the start,
    // raised when records older than the replay turn up beyond it (a broker that
    // under-reports its watermarks). A record past the end that was written after the
    // replay started ends its partition.
    let mut end_of: BTreeMap<i32, i64> = ends.iter().map(|(p, (_, end))| (*p, *end)).collect();
    let replay_started = Utc::now();
    // Where each partition was positioned, and the partitions whose first record was seen.
    let start_of: BTreeMap<i32, i64> = partitions.iter().map(|p| (p.partition, p.start)).collect();
    let mut positioned: BTreeSet<i32> = BTreeSet::new();
    let mut complete = true;
    let mut last_record = Instant::now();
    // Checked often; acts only once nothing has arrived for IDLE_CHECK. (A condition on the
    // select branch would be evaluated once, on entry, and never again while it waits.)
    let mut idle = tokio::time::interval(IDLE_CHECK / 4);
    let mut warned_short_end: BTreeSet<i32> = BTreeSet::new();
    tokio::pin!(shutdown);
    while !(pending.is_empty() && pool.is_empty()) {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                info!("shutdown requested: the replay stops early");
                complete = false;
                break;
            }
            Some(()) = pool.join_next(), if !pool.is_empty() => {}
            received = source.recv(), if !pending.is_empty() && pool.has_room() => match received {
                Ok(record) => {
                    last_record = Instant::now();
                    let partition = record.partition;
                    if !pending.contains(&partition) {
                        continue;
                    }
                    if positioned.insert(partition) {
                        let (low, asked) = (
                            ends.get(&partition).map_or(0, |e| e.0),
                            start_of.get(&partition).copied().unwrap_or(0),
                        );
                        if record.offset > asked && asked > low {
                            // Some brokers answer a fetch from inside a record batch with
                            // the next batch (tansu 0.6). Read the partition from its start
                            // instead and skip what lies before the asked offset.
                            warn!(
                                partition,
                                asked,
                                got = record.offset,
                                "the broker skipped records after the start offset; reading the partition from its start instead"
                            );
                            let first = below.get(&partition).copied().unwrap_or(asked).max(asked);
                            below.insert(partition, first);
                            if let Err(error) = source.seek_to_offset(partition, low, timeout).await {
                                warn!(%error, partition, "could not move the replay back; records may be missing");
                            }
                            continue;
                        }
                    }
                    let end = end_of.get(&partition).copied().unwrap_or(0);
                    if record.offset >= end {
                        let older = record.timestamp.is_some_and(|t| t < replay_started);
                        if !older {
                            // Written after the replay started: not part of it.
                            pending.remove(&partition);
                            continue;
                        }
                        if warned_short_end.insert(partition) {
                            warn!(
                                partition,
                                reported_end = end,
                                offset = record.offset,
                                "a record older than the replay lies beyond the end the broker reported; following the records instead"
                            );
                        }
                        end_of.insert(partition, record.offset + 1);
                    }
                    if below.get(&partition).is_some_and(|&first| record.offset < first) {
                        if let Err(error) = source.mark_done(&record) {
                            warn!(%error, "could not store the offset of a skipped record");
                        }
                        continue;
                    }
                    if skipping.contains(&partition) {
                        if skip_before.is_some_and(|at| record.timestamp.is_some_and(|t| t < at)) {
                            if let Err(error) = source.mark_done(&record) {
                                warn!(%error, "could not store the offset of a skipped record");
                            }
                            continue;
                        }
                        skipping.remove(&partition);
                    }
                    pool.spawn(record);
                }
                Err(error) if error.is_fatal() => {
                    pool.drain().await;
                    let _ = pool.close().await;
                    return Err(error.into());
                }
                Err(error) => warn!(%error, "raw consumer error during the replay"),
            },
            _ = idle.tick(), if !pending.is_empty() => {
                if last_record.elapsed() < IDLE_CHECK {
                    continue;
                }
                // Nothing arrives: partitions whose fetch position reached their end are
                // done (nothing more was written, or a time replay found nothing).
                match source.lag(timeout).await {
                    Ok(lags) => {
                        for lag in lags {
                            let end = end_of.get(&lag.partition).copied().unwrap_or(0);
                            // No position yet: nothing consumed since the start.
                            let at = lag
                                .position
                                .or_else(|| start_of.get(&lag.partition).copied())
                                .unwrap_or(0);
                            if at >= end {
                                pending.remove(&lag.partition);
                            }
                        }
                    }
                    Err(error) => warn!(%error, "consumer position query failed during the replay"),
                }
            }
        }
    }
    for partition in &mut partitions {
        if let Some(&end) = end_of.get(&partition.partition) {
            partition.end = partition.end.max(end);
        }
    }
    pool.drain().await;
    drop(source);
    if let Err(error) = pool.close().await {
        warn!(%error, "closing the replay consumer failed");
    }
    let totals = stats.snapshot();
    info!(
        complete,
        records = totals.consumed,
        events = totals.events,
        rejected = totals.rejected,
        dead_lettered = totals.dead_lettered,
        "replay finished"
    );
    Ok(ReplaySummary {
        partitions,
        stats: totals,
        complete: complete && totals.abandoned == 0,
    })
}
