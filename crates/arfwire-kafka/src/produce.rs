//! Producers: [`RawProducer`] (the front door's durability point) and [`EventProducer`]
//! (the worker's events, rejection records and dead letters).
//!
//! Both are idempotent producers (`enable.idempotence=true`, `acks=all`): librdkafka
//! retries internally without creating duplicates or reordering within a partition, and a
//! record counts as published only when its delivery report says so. Every send is
//! bounded by `produce_timeout_ms` (`message.timeout.ms`).
//!
//! When librdkafka raises a *fatal* error (the idempotence guarantee can no longer be
//! kept, e.g. a sequence desynchronisation with the broker), the producer instance is
//! unusable. Both producers then replace their instance themselves and report the failure
//! ([`PublishError::Fatal`]; [`arfwire_raw::SubmitError::Unavailable`] for the front door):
//! the caller sends every unacknowledged record again, with the same ids.

use std::collections::VecDeque;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arfwire_events::{ABUSE_EVENT_SCHEMA, Output, REJECTED_SCHEMA};
use arfwire_raw::{RawSubmission, SubmitError, Submitter};
use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::SetupError;
use crate::config::KafkaConfig;
use crate::consume::RawRecord;
use crate::framing::{self, HeaderField, encode_raw, header, header_safe_text};

/// CloudEvents `type` of abuse events.
pub const CE_TYPE_EVENT: &str = ABUSE_EVENT_SCHEMA;
/// CloudEvents `type` of rejection records.
pub const CE_TYPE_REJECTED: &str = REJECTED_SCHEMA;
/// Longest `arfwire-error` header value written to the DLQ, in bytes.
pub const DLQ_ERROR_MAX_BYTES: usize = 2048;

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
}

/// Why records were not (all) acknowledged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PublishError {
    /// The broker was unreachable or did not acknowledge within `produce_timeout_ms`.
    /// The record may or may not have been written; sending it again is safe (same key,
    /// same id).
    #[error("topic {topic}: not acknowledged: {reason}")]
    Unavailable {
        /// The topic.
        topic: String,
        /// librdkafka's description.
        reason: String,
        /// librdkafka's error code, when there is one.
        code: Option<RDKafkaErrorCode>,
    },
    /// A record is larger than `message_max_bytes` or than the topic accepts.
    #[error("topic {topic}: a record of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The topic.
        topic: String,
        /// The record's size (value, key and headers).
        size: usize,
        /// The limit that applied (the client's; the broker's may be lower).
        limit: usize,
    },
    /// The idempotent producer hit a fatal error. The producer has already been replaced
    /// by a new instance; send every record that was not acknowledged again.
    #[error("the producer failed fatally and was replaced: {reason}")]
    Fatal {
        /// librdkafka's description of the fatal error.
        reason: String,
    },
    /// The broker refused the record for a reason that retrying does not cure (not
    /// authorised, topic does not exist or is invalid, unsupported record).
    #[error("topic {topic}: refused: {reason}")]
    Refused {
        /// The topic.
        topic: String,
        /// librdkafka's description.
        reason: String,
        /// librdkafka's error code.
        code: Option<RDKafkaErrorCode>,
    },
    /// The record cannot be framed (an intake fact with CR, LF or NUL).
    #[error("invalid record: {0}")]
    Invalid(String),
}

impl PublishError {
    /// Whether sending the same records again can succeed: after a pause for
    /// [`Unavailable`](PublishError::Unavailable), at once for
    /// [`Fatal`](PublishError::Fatal) (the producer was replaced).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PublishError::Unavailable { .. } | PublishError::Fatal { .. }
        )
    }

    /// Whether the producer instance failed fatally (and was replaced).
    pub fn is_fatal(&self) -> bool {
        matches!(self, PublishError::Fatal { .. })
    }

    /// Whether a record was too large.
    pub fn is_too_large(&self) -> bool {
        matches!(self, PublishError::TooLarge { .. })
    }
}

impl From<PublishError> for SubmitError {
    fn from(error: PublishError) -> Self {
        match error {
            PublishError::TooLarge { .. } => SubmitError::TooLarge(error.to_string()),
            other => SubmitError::Unavailable(other.to_string()),
        }
    }
}

/// One record to send.
struct Outgoing<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    headers: Vec<HeaderField>,
}

impl Outgoing<'_> {
    fn size(&self) -> usize {
        self.payload.len()
            + self.key.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }
}

/// Failed sends in a row after which the producer instance is recreated.
const REPLACE_AFTER_FAILURES: u64 = 3;

/// Counts a send as failed unless it is marked as succeeded, also when the send is abandoned.
struct FailureGuard<'a> {
    failures: &'a AtomicU64,
    succeeded: bool,
}

impl Drop for FailureGuard<'_> {
    fn drop(&mut self) {
        if !self.succeeded {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An idempotent `FutureProducer` that replaces itself after a fatal error, or after
/// [`REPLACE_AFTER_FAILURES`] failed sends in a row.
struct Publisher {
    client_config: ClientConfig,
    current: RwLock<(u64, FutureProducer)>,
    fatal_errors: AtomicU64,
    /// Failed sends in a row (any error), reset by a success.
    consecutive_failures: AtomicU64,
    produce_timeout: Duration,
    message_max_bytes: usize,
}

impl Publisher {
    fn new(config: &KafkaConfig) -> Result<Self, SetupError> {
        let mut client_config = config.base_client_config()?;
        client_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.produce_timeout_ms.to_string())
            .set("message.max.bytes", config.message_max_bytes.to_string());
        // The Java client's partitioner, so that every client maps a key to the same
        // partition; applications may still override it through the escape hatch.
        if !config.librdkafka_options.contains_key("partitioner") {
            client_config.set("partitioner", "murmur2_random");
        }
        let producer: FutureProducer = client_config.create().map_err(SetupError::Client)?;
        Ok(Publisher {
            client_config,
            current: RwLock::new((0, producer)),
            fatal_errors: AtomicU64::new(0),
            consecutive_failures: AtomicU64::new(0),
            produce_timeout: Duration::from_millis(config.produce_timeout_ms),
            message_max_bytes: config.message_max_bytes,
        })
    }

    fn current(&self) -> (u64, FutureProducer) {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        (guard.0, guard.1.clone())
    }

    /// Replace the producer of `generation` (once, however many callers saw its failure).
    fn replace(&self, generation: u64) {
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        if guard.0 != generation {
            return;
        }
        match self.client_config.create::<FutureProducer>() {
            Ok(producer) => {
                *guard = (generation + 1, producer);
                tracing::warn!(generation = generation + 1, "kafka producer recreated");
            }
            Err(error) => {
                // Keep the broken one; the next fatal report tries again.
                tracing::error!(%error, "kafka producer could not be recreated after a fatal error");
            }
        }
    }

    /// Send every record and wait for all acknowledgements. `Ok` only when every record
    /// was acknowledged; the deliveries are in input order.
    async fn send_all(&self, records: Vec<Outgoing<'_>>) -> Result<Vec<Delivered>, PublishError> {
        for record in &records {
            let size = record.size();
            if size > self.message_max_bytes {
                return Err(PublishError::TooLarge {
                    topic: record.topic.to_owned(),
                    size,
                    limit: self.message_max_bytes,
                });
            }
        }
        // A producer that keeps failing without a fatal error is replaced too: a broker that
        // lost its state (a cluster rebuilt, or a test broker restarted empty) can refuse the
        // old producer id for good without librdkafka calling it fatal. Failed records were
        // never acknowledged, so their senders retry; duplicates are harmless downstream
        // (content-derived ids). Sends abandoned by their caller (a front door's submit
        // timeout) count as failures through the guard's drop.
        let failures = self.consecutive_failures.load(Ordering::Relaxed);
        if failures >= REPLACE_AFTER_FAILURES {
            let (generation, _) = self.current();
            self.consecutive_failures.store(0, Ordering::Relaxed);
            tracing::warn!(failures, "kafka producer keeps failing; recreating it");
            self.replace(generation);
        }
        let mut outcome = FailureGuard {
            failures: &self.consecutive_failures,
            succeeded: false,
        };
        let (generation, producer) = self.current();
        let deadline = tokio::time::Instant::now() + self.produce_timeout;
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        let mut delivered: Vec<Option<Delivered>> = vec![None; records.len()];
        let mut first_error: Option<PublishError> = None;

        'enqueue: for (index, record) in records.iter().enumerate() {
            let mut future_record = FutureRecord::to(record.topic)
                .payload(record.payload)
                .headers(framing::to_owned_headers(&record.headers));
            if let Some(key) = record.key {
                future_record = future_record.key(key);
            }
            loop {
                match producer.send_result(future_record) {
                    Ok(delivery) => {
                        pending.push_back((index, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // Back-pressure: wait for the oldest outstanding record first.
                        future_record = back;
                        if let Some((done_index, delivery)) = pending.pop_front() {
                            match self
                                .await_delivery(&records[done_index], delivery, deadline)
                                .await
                            {
                                Ok(d) => delivered[done_index] = Some(d),
                                Err(error) => {
                                    first_error.get_or_insert(error);
                                    break 'enqueue;
                                }
                            }
                        } else if tokio::time::Instant::now() >= deadline {
                            first_error.get_or_insert(PublishError::Unavailable {
                                topic: record.topic.to_owned(),
                                reason: "the producer queue stayed full".to_owned(),
                                code: Some(RDKafkaErrorCode::QueueFull),
                            });
                            break 'enqueue;
                        } else {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Err((error, _)) => {
                        first_error.get_or_insert(self.classify(record, &error));
                        break 'enqueue;
                    }
                }
            }
        }
        // Wait for everything that was enqueued, even after an error, so that no delivery
        // report is abandoned half way.
        while let Some((index, delivery)) = pending.pop_front() {
            match self
                .await_delivery(&records[index], delivery, deadline)
                .await
            {
                Ok(d) => delivered[index] = Some(d),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }

        if let Some(error) = first_error {
            if let Some((code, reason)) = producer.client().fatal_error() {
                self.fatal_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(?code, %reason, "kafka producer fatal error");
                drop(producer);
                self.replace(generation);
                return Err(PublishError::Fatal { reason });
            }
            return Err(error);
        }
        outcome.succeeded = true;
        self.consecutive_failures.store(0, Ordering::Relaxed);
        Ok(delivered.into_iter().flatten().collect())
    }

    async fn await_delivery(
        &self,
        record: &Outgoing<'_>,
        delivery: DeliveryFuture,
        deadline: tokio::time::Instant,
    ) -> Result<Delivered, PublishError> {
        // librdkafka reports every record within message.timeout.ms; the margin only guards
        // against a report that never comes.
        let limit = deadline + Duration::from_secs(5);
        match tokio::time::timeout_at(limit, delivery).await {
            Ok(Ok(Ok(delivery))) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Ok(Err((error, _message)))) => Err(self.classify(record, &error)),
            Ok(Err(_canceled)) => Err(PublishError::Unavailable {
                topic: record.topic.to_owned(),
                reason: "the producer was closed before the record was acknowledged".to_owned(),
                code: None,
            }),
            Err(_elapsed) => Err(PublishError::Unavailable {
                topic: record.topic.to_owned(),
                reason: "no delivery report within the produce timeout".to_owned(),
                code: None,
            }),
        }
    }

    fn classify(&self, record: &Outgoing<'_>, error: &KafkaError) -> PublishError {
        classify_error(record.topic, record.size(), self.message_max_bytes, error)
    }

    fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        let (_, producer) = self.current();
        producer
            .flush(Timeout::After(timeout))
            .map_err(|error| PublishError::Unavailable {
                topic: String::new(),
                reason: error.to_string(),
                code: error.rdkafka_error_code(),
            })
    }
}

/// Map a librdkafka production error to a [`PublishError`] (fatal errors are detected
/// separately, on the producer instance).
pub(crate) fn classify_error(
    topic: &str,
    size: usize,
    limit: usize,
    error: &KafkaError,
) -> PublishError {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code();
    let reason = error.to_string();
    let topic = topic.to_owned();
    match code {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize) => {
            PublishError::TooLarge { topic, size, limit }
        }
        Some(C::Fatal) => PublishError::Fatal { reason },
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidTopic
            | C::UnknownTopic
            | C::UnknownPartition
            | C::InvalidRequiredAcks
            | C::UnsupportedForMessageFormat
            | C::UnsupportedCompressionType
            | C::InvalidArgument
            | C::InvalidRecord
            | C::KeySerialization
            | C::ValueSerialization,
        ) => PublishError::Refused {
            topic,
            reason,
            code,
        },
        _ => PublishError::Unavailable {
            topic,
            reason,
            code,
        },
    }
}

/// The front door's producer: makes [`RawSubmission`]s durable on the raw topic.
///
/// `submit` returns `Ok` only after the broker acknowledged the record (all in-sync
/// replicas, idempotent producer). Errors map to
/// [`SubmitError::Unavailable`] (answer 451, the source retries) or
/// [`SubmitError::TooLarge`] (answer 552). Cheap to share behind an `Arc`.
pub struct RawProducer {
    publisher: Publisher,
    topic: String,
}

impl RawProducer {
    /// A producer for `config.topics.raw`. Needs a tokio runtime.
    pub fn new(config: &KafkaConfig) -> Result<Self, SetupError> {
        Ok(RawProducer {
            publisher: Publisher::new(config)?,
            topic: config.topics.raw.clone(),
        })
    }

    /// Send one submission and wait for its acknowledgement.
    pub async fn send(&self, submission: &RawSubmission) -> Result<Delivered, PublishError> {
        let encoded = encode_raw(submission).map_err(|e| PublishError::Invalid(e.to_string()))?;
        let record = Outgoing {
            topic: &self.topic,
            key: Some(encoded.key.as_bytes()),
            payload: encoded.payload,
            headers: encoded.headers,
        };
        let mut delivered = self.publisher.send_all(vec![record]).await?;
        delivered.pop().ok_or_else(|| PublishError::Unavailable {
            topic: self.topic.clone(),
            reason: "no delivery report".to_owned(),
            code: None,
        })
    }

    /// Wait until every record in flight is acknowledged or failed (for shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.publisher.flush(timeout)
    }

    /// How many fatal producer errors were met (and the producer replaced), for the
    /// `producer_fatal_total` metric.
    pub fn fatal_errors(&self) -> u64 {
        self.publisher.fatal_errors.load(Ordering::Relaxed)
    }
}

impl Submitter for RawProducer {
    async fn submit(&self, submission: RawSubmission) -> Result<(), SubmitError> {
        match self.send(&submission).await {
            Ok(_) => Ok(()),
            Err(error) => {
                tracing::warn!(%error, sha256 = %submission.sha256_hex(), "raw submission not made durable");
                Err(error.into())
            }
        }
    }
}

/// Why a raw record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqFailure {
    /// The last error, as text (CR, LF and NUL are replaced; cut to
    /// [`DLQ_ERROR_MAX_BYTES`]).
    pub error: String,
    /// How many processing attempts were made.
    pub attempts: u32,
    /// When processing first failed.
    pub first_failed_at: DateTime<Utc>,
}

/// The worker's producer: abuse events, rejection records and dead letters.
pub struct EventProducer {
    publisher: Publisher,
    events_topic: String,
    rejected_topic: String,
    dlq_topic: String,
    source: String,
}

impl EventProducer {
    /// A producer for the events, rejected and DLQ topics of `config`, stamping
    /// `config.event_source` as the CloudEvents source. Needs a tokio runtime.
    pub fn new(config: &KafkaConfig) -> Result<Self, SetupError> {
        framing::check_value(&config.event_source).map_err(|reason| {
            SetupError::Config(crate::ConfigError::Invalid {
                field: "event_source".to_owned(),
                reason: reason.to_owned(),
            })
        })?;
        Ok(EventProducer {
            publisher: Publisher::new(config)?,
            events_topic: config.topics.events.clone(),
            rejected_topic: config.topics.rejected.clone(),
            dlq_topic: config.topics.dlq.clone(),
            source: config.event_source.clone(),
        })
    }

    /// Publish every record concurrently and wait for all acknowledgements.
    ///
    /// `Ok` means every record is durable: only then may the worker mark the raw record
    /// done. On `Err` some records may have been written; publishing them all again is
    /// safe because ids and keys are deterministic. Events go to the events topic keyed by
    /// [`arfwire_events::AbuseEventV1::partition_key`], rejection records to the rejected
    /// topic keyed by submission id; both carry CloudEvents binary-mode headers (see
    /// [`cloudevents_headers`]) and the record's JSON as the value.
    pub async fn publish_all(&self, outputs: &[Output]) -> Result<(), PublishError> {
        let bodies: Vec<String> = outputs.iter().map(Output::to_json_line).collect();
        let mut records = Vec::with_capacity(outputs.len());
        for (output, body) in outputs.iter().zip(&bodies) {
            let (topic, key) = match output {
                Output::Event(event) => (&self.events_topic, event.partition_key()),
                Output::Rejected(rejected) => {
                    (&self.rejected_topic, rejected.submission_id.as_str())
                }
            };
            records.push(Outgoing {
                topic,
                key: Some(key.as_bytes()),
                payload: body.as_bytes(),
                headers: cloudevents_headers(output, &self.source)?,
            });
        }
        self.publisher.send_all(records).await.map(|_| ())
    }

    /// Send a raw record that could not be processed to the DLQ: value and key as read,
    /// the original headers followed by `arfwire-error`, `arfwire-attempts`,
    /// `arfwire-first-failed-at` and the record's original topic, partition and offset.
    pub async fn publish_dlq(
        &self,
        record: &RawRecord,
        failure: &DlqFailure,
    ) -> Result<Delivered, PublishError> {
        let headers = dlq_headers(record, failure);
        let outgoing = Outgoing {
            topic: &self.dlq_topic,
            key: record.key.as_deref(),
            payload: record.payload(),
            headers,
        };
        let mut delivered = self.publisher.send_all(vec![outgoing]).await?;
        delivered.pop().ok_or_else(|| PublishError::Unavailable {
            topic: self.dlq_topic.clone(),
            reason: "no delivery report".to_owned(),
            code: None,
        })
    }

    /// Wait until every record in flight is acknowledged or failed (for shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.publisher.flush(timeout)
    }

    /// How many fatal producer errors were met (and the producer replaced).
    pub fn fatal_errors(&self) -> u64 {
        self.publisher.fatal_errors.load(Ordering::Relaxed)
    }
}

/// The CloudEvents 1.0 Kafka binary-mode headers of a record: `ce_specversion`, `ce_id`
/// (event or rejection id), `ce_type` (the record's schema), `ce_source`, `ce_time` (the
/// submission's receive time, so that a re-publication is identical) and `content-type`.
pub fn cloudevents_headers(
    output: &Output,
    source: &str,
) -> Result<Vec<HeaderField>, PublishError> {
    let ce_type = match output {
        Output::Event(_) => CE_TYPE_EVENT,
        Output::Rejected(_) => CE_TYPE_REJECTED,
    };
    let fields = [
        ("ce_specversion", "1.0"),
        ("ce_id", output.event_id()),
        ("ce_type", ce_type),
        ("ce_source", source),
        ("ce_time", output.intake().received_at.as_str()),
        ("content-type", "application/json"),
    ];
    fields
        .iter()
        .map(|(name, value)| {
            framing::check_value(value)
                .map_err(|reason| PublishError::Invalid(format!("header {name} {reason}")))?;
            Ok(HeaderField::text(*name, *value))
        })
        .collect()
}

/// The DLQ headers: the original ones (minus DLQ headers of an earlier dead-lettering)
/// followed by the failure.
fn dlq_headers(record: &RawRecord, failure: &DlqFailure) -> Vec<HeaderField> {
    const DLQ_HEADERS: [&str; 6] = [
        header::ERROR,
        header::ATTEMPTS,
        header::FIRST_FAILED_AT,
        header::ORIGINAL_TOPIC,
        header::ORIGINAL_PARTITION,
        header::ORIGINAL_OFFSET,
    ];
    let mut headers: Vec<HeaderField> = record
        .headers
        .iter()
        .filter(|h| !DLQ_HEADERS.contains(&h.key.as_str()))
        .cloned()
        .collect();
    headers.push(HeaderField::text(
        header::ERROR,
        header_safe_text(&failure.error, DLQ_ERROR_MAX_BYTES),
    ));
    headers.push(HeaderField::text(
        header::ATTEMPTS,
        failure.attempts.to_string(),
    ));
    headers.push(HeaderField::text(
        header::FIRST_FAILED_AT,
        failure
            .first_failed_at
            .to_rfc3339_opts(SecondsFormat::Millis, true),
    ));
    headers.push(HeaderField::text(
        header::ORIGINAL_TOPIC,
        header_safe_text(&record.topic, 512),
    ));
    headers.push(HeaderField::text(
        header::ORIGINAL_PARTITION,
        record.partition.to_string(),
    ));
    headers.push(HeaderField::text(
        header::ORIGINAL_OFFSET,
        record.offset.to_string(),
    ));
    headers
}
