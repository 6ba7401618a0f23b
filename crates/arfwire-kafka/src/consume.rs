//! The worker's side of the raw topic: [`RawConsumer`].
//!
//! # Offset strategy
//!
//! The consumer runs with `enable.auto.commit=true` and `enable.auto.offset.store=false`:
//!
//! * nothing is ever committed that the worker has not finished: an offset is *stored*
//!   only by [`RawConsumer::mark_done`], which the worker calls after every output of the
//!   record was acknowledged (or the record went to the DLQ);
//! * librdkafka *commits* the stored offsets in the background every
//!   `auto_commit_interval_ms`, and again when partitions are revoked in a rebalance and
//!   when the consumer closes; [`RawConsumer::commit_now`] commits synchronously (for
//!   shutdown, and before a replay reports success).
//!
//! Manual commits were the alternative. They cost a broker round trip per commit on the
//! processing path, need their own batching, and race with rebalances (a commit for a
//! partition that was just revoked fails, one that is skipped replays the partition's
//! tail on the new owner). librdkafka's own commit-on-revoke handles that case, and the
//! timer batches commits for free. What this leaves is a replay window after a *crash*:
//! up to one commit interval of records, processed again. That is harmless by design,
//! because every event id is derived from the submission bytes: a replay publishes the
//! same ids and consumers de-duplicate on them.
//!
//! The worker may process records concurrently and finish them out of order. The consumer
//! keeps, per partition, the set of offsets received but not yet done, and stores the
//! lowest offset that is still in flight (or one past the highest done when nothing is):
//! a record finished early never lets the committed offset pass an unfinished one.
//! Rebalances and seeks reset a partition's bookkeeping; [`RawConsumer::mark_done`] on a
//! record received before such a reset is ignored (the partition's new owner or the new
//! position processes it again).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arfwire_raw::RawSubmission;
use chrono::{DateTime, TimeZone, Utc};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::SetupError;
use crate::config::KafkaConfig;
use crate::framing::{DecodeError, HeaderField, decode_raw_parts, headers_of};

/// One record read from the raw topic.
///
/// The bytes are held once: in the decoded submission, or (when decoding failed) in the
/// record itself. Process the submission by reference ([`RawRecord::submission`]): the
/// DLQ needs the bytes ([`RawRecord::payload`]).
#[derive(Debug, Clone)]
pub struct RawRecord {
    submission: Result<RawSubmission, DecodeError>,
    undecoded: Vec<u8>,
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's Kafka timestamp (the producer's send time), when it has one.
    pub timestamp: Option<DateTime<Utc>>,
    /// The record key (the submission's SHA-256, hex).
    pub key: Option<Vec<u8>>,
    /// Every header, in order.
    pub headers: Vec<HeaderField>,
    epoch: u64,
}

impl RawRecord {
    /// Decode a message (from any consumer) into a record. A record made this way is not
    /// tracked by any [`RawConsumer`]: `mark_done` ignores it.
    pub fn from_message<M: Message>(message: &M) -> Self {
        Self::decode(message, 0)
    }

    fn decode<M: Message>(message: &M, epoch: u64) -> Self {
        let headers = headers_of(message);
        let submission = decode_raw_parts(message.key(), &headers, message.payload());
        let undecoded = match &submission {
            Ok(_) => Vec::new(),
            Err(_) => message.payload().unwrap_or_default().to_vec(),
        };
        RawRecord {
            submission,
            undecoded,
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message
                .timestamp()
                .to_millis()
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            key: message.key().map(<[u8]>::to_vec),
            headers,
            epoch,
        }
    }

    /// The decoded submission, or why the record could not be decoded (such a record is
    /// sent to the DLQ, not retried).
    pub fn submission(&self) -> Result<&RawSubmission, &DecodeError> {
        self.submission.as_ref()
    }

    /// The record value: the submission bytes exactly as stored.
    pub fn payload(&self) -> &[u8] {
        match &self.submission {
            Ok(submission) => &submission.bytes,
            Err(_) => &self.undecoded,
        }
    }
}

/// Where a manually assigned consumer starts reading (replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The group's committed offsets (the earliest offset where there are none).
    Committed,
    /// The earliest offset still in the topic.
    Beginning,
    /// Only records written from now on.
    End,
    /// Explicit offsets per partition; partitions not listed start at their committed
    /// offset.
    Offsets(Vec<(i32, i64)>),
    /// The first record whose timestamp is at or after the given time, per partition.
    /// Records the broker returns before that time are skipped (and counted as done).
    Time(DateTime<Utc>),
}

/// Consumer lag of one assigned partition, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Earliest offset still in the partition.
    pub low_watermark: i64,
    /// Offset the next record written to the partition gets: what the broker reported,
    /// raised to the consumer's fetch position when that is further (a broker may
    /// under-report it; the position proves records exist up to it).
    pub high_watermark: i64,
    /// The high watermark exactly as the broker reported it.
    pub reported_high_watermark: i64,
    /// The consumer's fetch position (next offset to fetch), once it fetched.
    pub position: Option<i64>,
    /// The offset stored for commit by [`RawConsumer::mark_done`] in this assignment.
    pub stored: Option<i64>,
    /// Records not yet done: `high_watermark` minus the stored offset (else the fetch
    /// position, else the low watermark). Never negative.
    pub lag: i64,
}

/// Why a consumer operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumeError {
    /// librdkafka reported an error.
    #[error("kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
    /// The consumer could not be created.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A blocking operation panicked (a bug).
    #[error("kafka consumer: {0}")]
    Internal(String),
    /// A blocking operation did not finish in time.
    #[error("kafka consumer: {0} timed out")]
    Timeout(&'static str),
    /// The partition is not assigned to this consumer.
    #[error("partition {partition} of {topic} is not assigned to this consumer")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
}

impl ConsumeError {
    /// Whether the consumer is unusable and must be recreated.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConsumeError::Kafka(KafkaError::MessageConsumptionFatal(_))
        ) || matches!(self, ConsumeError::Kafka(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal))
    }

    /// Whether trying again later can succeed (everything but fatal errors and
    /// authorisation failures).
    pub fn is_retryable(&self) -> bool {
        use RDKafkaErrorCode as C;
        if self.is_fatal() {
            return false;
        }
        match self {
            ConsumeError::Kafka(error) => !matches!(
                error.rdkafka_error_code(),
                Some(
                    C::TopicAuthorizationFailed
                        | C::GroupAuthorizationFailed
                        | C::ClusterAuthorizationFailed
                        | C::SaslAuthenticationFailed
                        | C::Authentication
                        | C::InvalidGroupId
                        | C::InvalidArgument
                )
            ),
            ConsumeError::Timeout(_) | ConsumeError::NotAssigned { .. } => true,
            ConsumeError::Setup(_) | ConsumeError::Internal(_) => false,
        }
    }
}

/// Per-partition progress.
#[derive(Debug, Default)]
struct PartitionProgress {
    epoch: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset done.
    done_next: Option<i64>,
    /// The offset last stored for commit.
    stored: Option<i64>,
    /// Skip records older than this (milliseconds), until the first one that is not.
    skip_before_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Tracker {
    partitions: HashMap<(String, i32), PartitionProgress>,
    last_epoch: u64,
}

impl Tracker {
    /// Start a partition afresh (assignment, seek).
    fn reset(&mut self, topic: &str, partition: i32) -> &mut PartitionProgress {
        self.last_epoch += 1;
        let progress = PartitionProgress {
            epoch: self.last_epoch,
            ..PartitionProgress::default()
        };
        let slot = self
            .partitions
            .entry((topic.to_owned(), partition))
            .or_default();
        *slot = progress;
        slot
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    fn received(&mut self, topic: &str, partition: i32, offset: i64) -> u64 {
        let key = (topic.to_owned(), partition);
        if !self.partitions.contains_key(&key) {
            self.reset(topic, partition);
        }
        let progress = self.partitions.get_mut(&key).expect("inserted above");
        progress.in_flight.insert(offset);
        progress.epoch
    }

    /// Whether a record with this timestamp comes before a replay's start time. The first
    /// record at or after it ends the skipping for the partition (later records with
    /// earlier timestamps are kept, as a broker's time lookup would).
    fn skip(&mut self, topic: &str, partition: i32, timestamp_ms: Option<i64>) -> bool {
        let Some(progress) = self.partitions.get_mut(&(topic.to_owned(), partition)) else {
            return false;
        };
        match (progress.skip_before_ms, timestamp_ms) {
            (Some(before), Some(ts)) if ts < before => true,
            (Some(_), _) => {
                progress.skip_before_ms = None;
                false
            }
            (None, _) => false,
        }
    }

    /// Record `offset` as done; the offset to store, when it moved forward.
    fn done(&mut self, topic: &str, partition: i32, offset: i64, epoch: u64) -> Option<i64> {
        let progress = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        if progress.epoch != epoch || !progress.in_flight.remove(&offset) {
            return None;
        }
        let next = offset.saturating_add(1);
        progress.done_next = Some(progress.done_next.map_or(next, |d| d.max(next)));
        let candidate = progress.in_flight.first().copied().or(progress.done_next)?;
        if progress.stored.is_some_and(|stored| stored >= candidate) {
            return None;
        }
        progress.stored = Some(candidate);
        Some(candidate)
    }
}

/// The consumer context: keeps the tracker in step with rebalances.
struct TrackingContext {
    tracker: Arc<Mutex<Tracker>>,
}

impl TrackingContext {
    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut tracker = self.lock();
            for element in partitions.elements() {
                tracker.forget(element.topic(), element.partition());
            }
            tracing::info!(partitions = partitions.count(), "raw partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let mut tracker = self.lock();
                for element in partitions.elements() {
                    tracker.reset(element.topic(), element.partition());
                }
                tracing::info!(partitions = partitions.count(), "raw partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(partitions = offsets.count(), "raw offsets committed"),
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "raw offset commit failed"),
        }
    }
}

/// Reads the raw topic for the worker and stores offsets only for finished records (see
/// the module documentation for the offset strategy).
///
/// Use one task to call [`recv`](RawConsumer::recv); [`mark_done`](RawConsumer::mark_done)
/// may be called from any task. The other operations block on the broker and run on
/// tokio's blocking pool. Needs a tokio runtime.
pub struct RawConsumer {
    consumer: Arc<StreamConsumer<TrackingContext>>,
    tracker: Arc<Mutex<Tracker>>,
    topic: String,
}

impl RawConsumer {
    /// Join `group_id` and consume `config.topics.raw` with group-managed partition
    /// assignment. A group with no committed offsets starts at the earliest record.
    pub fn subscribe(config: &KafkaConfig, group_id: &str) -> Result<Self, SetupError> {
        Self::subscribe_to(config, group_id, &config.topics.raw)
    }

    /// [`subscribe`](RawConsumer::subscribe) to another topic whose records are framed
    /// like raw ones: the DLQ, for a redrive (dead letters keep the raw headers and bytes,
    /// so they decode to the original submission).
    pub fn subscribe_to(
        config: &KafkaConfig,
        group_id: &str,
        topic: &str,
    ) -> Result<Self, SetupError> {
        let this = Self::create(config, group_id, topic)?;
        this.consumer
            .subscribe(&[&this.topic])
            .map_err(SetupError::Client)?;
        Ok(this)
    }

    /// Consume every partition of `config.topics.raw` without group-managed assignment,
    /// from `start` (for replay). Offsets are still stored and committed to `group_id`;
    /// use a group of its own (e.g. `arfwire-replay`), not the worker's.
    pub async fn assign(
        config: &KafkaConfig,
        group_id: &str,
        start: StartPosition,
        timeout: Duration,
    ) -> Result<Self, ConsumeError> {
        Self::assign_to(config, group_id, &config.topics.raw, start, timeout).await
    }

    /// [`assign`](RawConsumer::assign) on another topic (the DLQ, for a redrive).
    pub async fn assign_to(
        config: &KafkaConfig,
        group_id: &str,
        topic: &str,
        start: StartPosition,
        timeout: Duration,
    ) -> Result<Self, ConsumeError> {
        let this = Self::create(config, group_id, topic)?;
        let consumer = Arc::clone(&this.consumer);
        let tracker = Arc::clone(&this.tracker);
        let topic = this.topic.clone();
        blocking(timeout, "assign", move || {
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic)
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                return Err(ConsumeError::Kafka(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                )));
            }
            let mut skip_before_ms = None;
            let mut assignment = TopicPartitionList::with_capacity(partitions.len());
            match &start {
                StartPosition::Time(at) => {
                    let mut query = TopicPartitionList::with_capacity(partitions.len());
                    for &p in &partitions {
                        query.add_partition_offset(
                            &topic,
                            p,
                            Offset::Offset(at.timestamp_millis()),
                        )?;
                    }
                    let found = consumer.offsets_for_times(query, timeout)?;
                    for element in found.elements() {
                        let offset = match element.offset() {
                            Offset::Offset(o) => Offset::Offset(o),
                            // No record at or after the time.
                            _ => Offset::End,
                        };
                        assignment.add_partition_offset(&topic, element.partition(), offset)?;
                    }
                    skip_before_ms = Some(at.timestamp_millis());
                }
                other => {
                    for &p in &partitions {
                        let offset = match other {
                            StartPosition::Committed => Offset::Stored,
                            StartPosition::Beginning => Offset::Beginning,
                            StartPosition::End => Offset::End,
                            StartPosition::Offsets(list) => list
                                .iter()
                                .find(|(partition, _)| *partition == p)
                                .map_or(Offset::Stored, |(_, o)| Offset::Offset(*o)),
                            StartPosition::Time(_) => unreachable!("handled above"),
                        };
                        assignment.add_partition_offset(&topic, p, offset)?;
                    }
                }
            }
            {
                let mut tracker = tracker.lock().unwrap_or_else(|p| p.into_inner());
                for &p in &partitions {
                    tracker.reset(&topic, p).skip_before_ms = skip_before_ms;
                }
            }
            consumer.assign(&assignment)?;
            Ok(())
        })
        .await?;
        Ok(this)
    }

    fn create(config: &KafkaConfig, group_id: &str, topic: &str) -> Result<Self, SetupError> {
        let mut client = config.base_client_config()?;
        if group_id.trim().is_empty() {
            return Err(SetupError::Config(crate::ConfigError::Invalid {
                field: "group_id".to_owned(),
                reason: "must not be empty".to_owned(),
            }));
        }
        client
            .set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                config.auto_commit_interval_ms.to_string(),
            )
            .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
            .set("enable.partition.eof", "false");
        if !config.librdkafka_options.contains_key("auto.offset.reset") {
            // A new group must see everything that is durable, not only what comes next.
            client.set("auto.offset.reset", "earliest");
        }
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let context = TrackingContext {
            tracker: Arc::clone(&tracker),
        };
        let consumer: StreamConsumer<TrackingContext> = client
            .create_with_context(context)
            .map_err(SetupError::Client)?;
        Ok(RawConsumer {
            consumer: Arc::new(consumer),
            tracker,
            topic: topic.to_owned(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next raw record. Cancellation safe. Decoding failures are part of the record
    /// ([`RawRecord::submission`]), not errors; errors are the consumer's (broker
    /// unreachable, topic missing, ...), and the caller keeps calling `recv` unless
    /// [`ConsumeError::is_fatal`].
    pub async fn recv(&self) -> Result<RawRecord, ConsumeError> {
        loop {
            let message = self.consumer.recv().await?;
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            let timestamp_ms = message.timestamp().to_millis();
            let (epoch, skip) = {
                let mut tracker = self.lock();
                let epoch = tracker.received(topic, partition, offset);
                (epoch, tracker.skip(topic, partition, timestamp_ms))
            };
            if skip {
                // Before the replay's start time: done without processing.
                self.store_done(topic, partition, offset, epoch)?;
                continue;
            }
            return Ok(RawRecord::decode(&message, epoch));
        }
    }

    /// The record is finished: every output was acknowledged (or it went to the DLQ).
    /// Stores the offset for commit as far as every earlier record of the partition is
    /// finished too. Never blocks. A record from before a rebalance or seek is ignored.
    pub fn mark_done(&self, record: &RawRecord) -> Result<(), ConsumeError> {
        self.store_done(&record.topic, record.partition, record.offset, record.epoch)
    }

    fn store_done(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        epoch: u64,
    ) -> Result<(), ConsumeError> {
        let mut tracker = self.lock();
        let Some(next) = tracker.done(topic, partition, offset, epoch) else {
            return Ok(());
        };
        let mut list = TopicPartitionList::with_capacity(1);
        list.add_partition_offset(topic, partition, Offset::Offset(next))?;
        match self.consumer.store_offsets(&list) {
            Ok(()) => Ok(()),
            // Revoked in the meantime: the new owner processes the record again.
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!(
                    topic,
                    partition,
                    offset,
                    "offset not stored: partition no longer assigned"
                );
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Commit the stored offsets now and wait for the broker (for shutdown; the timer
    /// commits them anyway). Nothing to commit is not an error.
    pub async fn commit_now(&self, timeout: Duration) -> Result<(), ConsumeError> {
        let consumer = Arc::clone(&self.consumer);
        blocking(timeout, "commit", move || {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    /// Continue an assigned partition of the consumed topic from `offset` (replay). Records
    /// of the partition received before the seek are no longer tracked.
    pub async fn seek_to_offset(
        &self,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<(), ConsumeError> {
        self.seek_partitions(vec![(partition, Offset::Offset(offset))], None, timeout)
            .await
    }

    /// Continue every assigned partition of the consumed topic from the first record at or
    /// after `at` (replay); a partition with none continues at its end.
    pub async fn seek_to_time(
        &self,
        at: DateTime<Utc>,
        timeout: Duration,
    ) -> Result<(), ConsumeError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let found = blocking(timeout, "offsets_for_times", move || {
            let assignment = consumer.assignment()?;
            let mut query = TopicPartitionList::new();
            for element in assignment.elements_for_topic(&topic) {
                query.add_partition_offset(
                    &topic,
                    element.partition(),
                    Offset::Offset(at.timestamp_millis()),
                )?;
            }
            let found = consumer.offsets_for_times(query, timeout)?;
            Ok(found
                .elements()
                .iter()
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => Offset::Offset(o),
                        _ => Offset::End,
                    };
                    (e.partition(), offset)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        self.seek_partitions(found, Some(at.timestamp_millis()), timeout)
            .await
    }

    async fn seek_partitions(
        &self,
        targets: Vec<(i32, Offset)>,
        skip_before_ms: Option<i64>,
        timeout: Duration,
    ) -> Result<(), ConsumeError> {
        let consumer = Arc::clone(&self.consumer);
        let tracker = Arc::clone(&self.tracker);
        let topic = self.topic.clone();
        blocking(timeout, "seek", move || {
            let assignment = consumer.assignment()?;
            for (partition, _) in &targets {
                if assignment.find_partition(&topic, *partition).is_none() {
                    return Err(ConsumeError::NotAssigned {
                        topic: topic.clone(),
                        partition: *partition,
                    });
                }
            }
            for (partition, offset) in targets {
                // Reset first: a record received between the seek and the reset must
                // belong to the new position.
                tracker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .reset(&topic, partition)
                    .skip_before_ms = skip_before_ms;
                consumer.seek(&topic, partition, offset, timeout)?;
            }
            Ok(())
        })
        .await
    }

    /// Lag of every assigned partition (one watermark query per partition).
    pub async fn lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>, ConsumeError> {
        let consumer = Arc::clone(&self.consumer);
        let tracker = Arc::clone(&self.tracker);
        blocking(timeout, "lag", move || {
            let assignment = consumer.assignment()?;
            let position = consumer.position()?;
            let mut lags = Vec::with_capacity(assignment.count());
            for element in assignment.elements() {
                let (topic, partition) = (element.topic(), element.partition());
                let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
                let position = position
                    .find_partition(topic, partition)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0);
                let stored = tracker
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .partitions
                    .get(&(topic.to_owned(), partition))
                    .and_then(|p| p.stored);
                lags.push(partition_lag(topic, partition, low, high, position, stored));
            }
            lags.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            Ok(lags)
        })
        .await
    }

    /// The partitions currently assigned to this consumer (topic, partition).
    pub fn assignment(&self) -> Result<Vec<(String, i32)>, ConsumeError> {
        let assignment = self.consumer.assignment()?;
        Ok(assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect())
    }

    /// Commit the stored offsets, leave the group and close the consumer, within
    /// `timeout`.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), ConsumeError> {
        let committed = self.commit_now(timeout).await;
        let consumer = self.consumer;
        // Dropping the last handle closes the consumer: the final commit of stored offsets
        // for the revoked partitions, then LeaveGroup. It polls until closed, so do it off
        // the async threads, bounded.
        let closed = blocking(timeout, "close", move || {
            drop(consumer);
            Ok(())
        })
        .await;
        committed.and(closed)
    }
}

/// The lag of one partition from the broker's watermarks and the consumer's own progress.
/// The fetch position is a lower bound of the high watermark: some Kafka-compatible brokers
/// under-report the high watermark (tansu 0.6 after batched writes), and lag computed from
/// it alone would read zero while fetched records are still being processed.
fn partition_lag(
    topic: &str,
    partition: i32,
    low: i64,
    reported_high: i64,
    position: Option<i64>,
    stored: Option<i64>,
) -> PartitionLag {
    let high = reported_high.max(position.unwrap_or(reported_high));
    let base = stored.or(position).unwrap_or(low);
    PartitionLag {
        topic: topic.to_owned(),
        partition,
        low_watermark: low,
        high_watermark: high,
        reported_high_watermark: reported_high,
        position,
        stored,
        lag: (high - base).max(0),
    }
}

/// Run a blocking librdkafka call on the blocking pool, bounded by `timeout` plus a
/// margin (the call has its own timeout; the margin covers calls that take several).
async fn blocking<T, F>(timeout: Duration, what: &'static str, f: F) -> Result<T, ConsumeError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ConsumeError> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(f);
    match tokio::time::timeout(timeout * 2 + Duration::from_secs(1), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ConsumeError::Internal(format!("{what} panicked: {join}"))),
        Err(_) => Err(ConsumeError::Timeout(what)),
    }
}

#[cfg(test)]
mod tracker_tests {
    use super::{Tracker, partition_lag};

    #[test]
    fn lag_counts_fetched_records_even_when_the_broker_under_reports() {
        // The broker says 1; the consumer has fetched up to 521 and finished 100.
        let lag = partition_lag("raw", 0, 0, 1, Some(521), Some(100));
        assert_eq!(lag.high_watermark, 521);
        assert_eq!(lag.reported_high_watermark, 1);
        assert_eq!(lag.lag, 421);
        // A truthful broker: its watermark wins.
        let lag = partition_lag("raw", 0, 0, 900, Some(521), Some(100));
        assert_eq!((lag.high_watermark, lag.lag), (900, 800));
        // Nothing fetched or stored yet: from the low watermark.
        let lag = partition_lag("raw", 0, 40, 90, None, None);
        assert_eq!(lag.lag, 50);
    }

    #[test]
    fn stores_the_lowest_unfinished_offset() {
        let mut t = Tracker::default();
        let e = t.received("raw", 0, 10);
        t.received("raw", 0, 11);
        t.received("raw", 0, 12);
        // 11 finishes first: 10 is still in flight, nothing moves.
        assert_eq!(t.done("raw", 0, 11, e), Some(10));
        // Stored 10 already; finishing 12 keeps 10 (still in flight).
        assert_eq!(t.done("raw", 0, 12, e), None);
        // 10 done: everything up to 12 is done.
        assert_eq!(t.done("raw", 0, 10, e), Some(13));
        // Twice is a no-op.
        assert_eq!(t.done("raw", 0, 10, e), None);
    }

    #[test]
    fn gaps_in_offsets_do_not_stall() {
        let mut t = Tracker::default();
        let e = t.received("raw", 1, 3);
        t.received("raw", 1, 7);
        assert_eq!(t.done("raw", 1, 3, e), Some(7));
        assert_eq!(t.done("raw", 1, 7, e), Some(8));
    }

    #[test]
    fn records_before_the_replay_time_are_skipped_and_done() {
        let mut t = Tracker::default();
        t.reset("raw", 0).skip_before_ms = Some(1_000);
        let e = t.received("raw", 0, 0);
        assert!(t.skip("raw", 0, Some(999)));
        assert_eq!(t.done("raw", 0, 0, e), Some(1));
        t.received("raw", 0, 1);
        assert!(!t.skip("raw", 0, Some(1_000)));
        t.received("raw", 0, 2);
        assert!(
            !t.skip("raw", 0, Some(10)),
            "skipping ends at the first record in range"
        );
        assert!(!t.skip("raw", 5, Some(10)), "untracked partition");
    }

    #[test]
    fn stale_records_are_ignored_after_a_reset() {
        let mut t = Tracker::default();
        let old = t.received("raw", 0, 5);
        t.reset("raw", 0);
        assert_eq!(t.done("raw", 0, 5, old), None);
        let new = t.received("raw", 0, 2);
        assert_ne!(old, new);
        assert_eq!(t.done("raw", 0, 2, new), Some(3));
        t.forget("raw", 0);
        assert_eq!(t.done("raw", 0, 2, new), None);
    }
}
