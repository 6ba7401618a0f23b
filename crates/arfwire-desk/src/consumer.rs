//! [`StoreConsumer`]: the desk's own consumer group on the event, rejection and raw topics.
//!
//! # Delivery
//!
//! Records are read in batches (up to `batch_size`, waiting at most `batch_wait_ms` for more
//! once one has arrived) and applied in **one** PostgreSQL transaction, each record in a
//! savepoint of its own. The offsets of a batch are *stored* only after that transaction
//! committed (`enable.auto.offset.store=false`); librdkafka commits stored offsets in the
//! background and on shutdown. A crash replays at most the uncommitted tail, and replays are
//! harmless: every write is idempotent on the record's id.
//!
//! A record that cannot be applied because of its own data (not JSON, an unknown schema, ids
//! that do not belong to its bytes, a value a table refuses) is rolled back to its savepoint,
//! written to `store_errors` and skipped: it never blocks its partition. A failure of the
//! database itself (unreachable, a serialisation failure) rolls the whole batch back; it is
//! retried with back-off, and no offset moves until it succeeds.
//!
//! After every committed batch, and on a timer when idle, alerts are evaluated and pending
//! alerts published (see [`crate::alerts`]).
//!
//! Logs carry topics, partitions, offsets, ids and counts, never record content; error
//! texts have every address masked.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use arfwire_events::{Output, mask_addresses};
use arfwire_kafka::{KafkaConfig, RawRecord, Security};
use chrono::Utc;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::PgPool;

use crate::alerts::{self, AlertPublisher};
use crate::apply::{self, Applied, ApplyOptions, FailedRecord};
use crate::config::DeskConfig;
use crate::error::DeskError;

/// The librdkafka settings every desk client shares: brokers, client id, security, escape
/// hatch (the same rules as the worker's clients). Never log the result: it holds
/// credentials.
pub(crate) fn client_config(kafka: &KafkaConfig) -> Result<ClientConfig, DeskError> {
    kafka
        .validate()
        .map_err(|e| DeskError::Config(e.to_string()))?;
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", &kafka.client_id);
    match &kafka.security {
        Security::Plaintext => {
            client.set("security.protocol", "plaintext");
        }
        Security::SaslSsl(sasl) => {
            let credentials = sasl.credentials.as_ref().ok_or_else(|| {
                DeskError::Config(format!(
                    "kafka.security: SASL_SSL credentials are not loaded ({} is unset)",
                    sasl.username_env
                ))
            })?;
            client
                .set("security.protocol", "sasl_ssl")
                .set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", credentials.username.expose())
                .set("sasl.password", credentials.password.expose())
                .set("enable.ssl.certificate.verification", "true")
                .set("ssl.endpoint.identification.algorithm", "https");
            if let Some(ca) = &sasl.ca_location {
                client.set("ssl.ca.location", ca);
            }
        }
    }
    for (key, value) in &kafka.librdkafka_options {
        client.set(key.trim(), value);
    }
    Ok(client)
}

struct DeskContext;

impl ClientContext for DeskContext {}

impl ConsumerContext for DeskContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(p) => {
                tracing::info!(partitions = p.count(), "desk partitions assigned")
            }
            Rebalance::Revoke(p) => {
                tracing::info!(partitions = p.count(), "desk partitions revoked")
            }
            Rebalance::Error(error) => tracing::warn!(%error, "desk consumer rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(partitions = offsets.count(), "desk offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "desk offset commit failed"),
        }
    }
}

/// Counts of one [`StoreConsumer::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Batches committed.
    pub batches: u64,
    /// Records read.
    pub records: u64,
    /// Records that created a row.
    pub inserted: u64,
    /// Records already stored.
    pub duplicates: u64,
    /// Records written to `store_errors`.
    pub errors: u64,
    /// Alerts fired.
    pub alerts_fired: u64,
    /// Alerts published.
    pub alerts_published: u64,
}

/// The desk's consumer (see the module documentation).
pub struct StoreConsumer {
    consumer: StreamConsumer<DeskContext>,
    pool: PgPool,
    options: ApplyOptions,
    raw_topic: Option<String>,
    batch_size: usize,
    batch_wait: Duration,
    alerts_every: Option<Duration>,
    publisher: Option<AlertPublisher>,
}

/// Longest pause between retries of a failing batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl StoreConsumer {
    /// Join the desk's consumer group (`consumer.group_id`) on the events and rejected
    /// topics of `config.kafka`, and the raw topic when `consumer.consume_raw`. A group with
    /// no committed offsets starts at the earliest record. Writes the configuration's
    /// default alert rule into `alert_rules`. The schema must be migrated.
    pub async fn new(config: &DeskConfig, pool: PgPool) -> Result<Self, DeskError> {
        let kafka = config
            .kafka
            .as_ref()
            .ok_or_else(|| DeskError::Config("the [kafka] section is missing".into()))?;
        let mut client = client_config(kafka)?;
        client
            .set("group.id", &config.consumer.group_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "auto.commit.interval.ms",
                kafka.auto_commit_interval_ms.to_string(),
            )
            .set("fetch.wait.max.ms", kafka.fetch_wait_max_ms.to_string());
        let consumer: StreamConsumer<DeskContext> = client
            .create_with_context(DeskContext)
            .map_err(|e| DeskError::Kafka(e.to_string()))?;
        let mut topics = vec![kafka.topics.events.as_str(), kafka.topics.rejected.as_str()];
        let raw_topic = config
            .consumer
            .consume_raw
            .then(|| kafka.topics.raw.clone());
        if let Some(raw) = &raw_topic {
            topics.push(raw);
        }
        consumer
            .subscribe(&topics)
            .map_err(|e| DeskError::Kafka(e.to_string()))?;
        let (alerts_every, publisher) = if config.alerts.enabled {
            alerts::sync_config_rule(&pool, config.alerts.default_rule.as_ref()).await?;
            let publisher =
                AlertPublisher::new(kafka, &config.alerts.topic, &config.alerts.source)?;
            (
                Some(Duration::from_secs(config.alerts.evaluate_every_secs)),
                Some(publisher),
            )
        } else {
            (None, None)
        };
        Ok(StoreConsumer {
            consumer,
            pool,
            options: config.apply_options(),
            raw_topic,
            batch_size: config.consumer.batch_size,
            batch_wait: Duration::from_millis(config.consumer.batch_wait_ms),
            alerts_every,
            publisher,
        })
    }

    /// Consume until `shutdown` completes, then commit the stored offsets. Returns the
    /// counts. Errors are returned only when going on is pointless (a non-retryable
    /// database failure, a fatal Kafka error); everything else is logged and retried.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<RunStats, DeskError> {
        let mut stats = RunStats::default();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut ticker =
            tokio::time::interval(self.alerts_every.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let first = tokio::select! {
                () = &mut shutdown => break Ok(()),
                _ = ticker.tick(), if self.alerts_every.is_some() => {
                    self.alert_cycle(&mut stats).await;
                    continue;
                }
                received = self.consumer.recv() => received.map(|m| m.detach()),
            };
            let first = match first {
                Ok(message) => message,
                Err(error) => {
                    if let KafkaError::MessageConsumption(code) = &error
                        && is_fatal(*code)
                    {
                        break Err(DeskError::Kafka(error.to_string()));
                    }
                    tracing::warn!(%error, "desk consumer error");
                    continue;
                }
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.batch_wait;
            while batch.len() < self.batch_size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(Ok(message)) => batch.push(message.detach()),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "desk consumer error");
                        break;
                    }
                    Err(_elapsed) => break,
                }
            }
            stats.records += batch.len() as u64;
            let mut backoff = Duration::from_millis(200);
            let outcome = loop {
                match self.apply_batch(&batch).await {
                    Ok(counts) => break Ok(counts),
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(
                            error = %mask_addresses(&error.to_string()),
                            retry_in_ms = backoff.as_millis() as u64,
                            "desk batch failed; retrying"
                        );
                        tokio::select! {
                            () = &mut shutdown => break Err(None),
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    Err(error) => break Err(Some(error)),
                }
            };
            match outcome {
                Ok(counts) => {
                    stats.batches += 1;
                    stats.inserted += counts.inserted;
                    stats.duplicates += counts.duplicates;
                    stats.errors += counts.errors;
                    self.store_offsets(&batch);
                    if self.alerts_every.is_some() {
                        self.alert_cycle(&mut stats).await;
                    }
                }
                // Shut down while retrying: nothing stored, the batch is read again later.
                Err(None) => break Ok(()),
                Err(Some(error)) => break Err(error),
            }
        };
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(%error, "desk offsets not committed at shutdown"),
        }
        result.map(|()| stats)
    }

    async fn alert_cycle(&self, stats: &mut RunStats) {
        match alerts::evaluate(&self.pool, Utc::now()).await {
            Ok(report) => stats.alerts_fired += report.fired.len() as u64,
            Err(error) => tracing::warn!(%error, "alert evaluation failed"),
        }
        if let Some(publisher) = &self.publisher {
            match alerts::publish_pending(&self.pool, publisher).await {
                Ok(n) => stats.alerts_published += n as u64,
                Err(error) => tracing::warn!(%error, "alert publishing failed; will retry"),
            }
        }
    }

    /// Apply a batch in one transaction; per-record data errors go to `store_errors`.
    async fn apply_batch(&self, batch: &[OwnedMessage]) -> Result<BatchCounts, DeskError> {
        let mut counts = BatchCounts::default();
        let mut tx = self.pool.begin().await?;
        for message in batch {
            let mut savepoint = sqlx::Acquire::begin(&mut tx).await?;
            match self.apply_message(&mut savepoint, message).await {
                Ok(Applied::Inserted) => {
                    savepoint.commit().await?;
                    counts.inserted += 1;
                }
                Ok(Applied::Duplicate) => {
                    savepoint.commit().await?;
                    counts.duplicates += 1;
                }
                Err(error) if error.is_data_error() => {
                    savepoint.rollback().await?;
                    let error = mask_addresses(&error.to_string()).into_owned();
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        %error,
                        "record not applied; recorded in store_errors"
                    );
                    apply::record_store_error(
                        &mut tx,
                        FailedRecord {
                            topic: message.topic(),
                            partition: message.partition(),
                            offset: message.offset(),
                            key: message.key(),
                            payload: message.payload().unwrap_or_default(),
                        },
                        &error,
                        &self.options,
                    )
                    .await?;
                    counts.errors += 1;
                }
                Err(error) => return Err(error),
            }
        }
        tx.commit().await?;
        Ok(counts)
    }

    async fn apply_message(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        message: &OwnedMessage,
    ) -> Result<Applied, DeskError> {
        if self.raw_topic.as_deref() == Some(message.topic()) {
            let record = RawRecord::from_message(message);
            return match record.submission() {
                Ok(raw) => apply::apply_raw(tx, raw, &self.options).await,
                Err(error) => Err(DeskError::Malformed(format!("raw record: {error}"))),
            };
        }
        let payload = message
            .payload()
            .ok_or_else(|| DeskError::Malformed("the record has no value".into()))?;
        let text = std::str::from_utf8(payload)
            .map_err(|_| DeskError::Malformed("the record value is not UTF-8".into()))?;
        let output = Output::from_json(text)
            .map_err(|e| DeskError::Malformed(format!("not a v1 record: {e}")))?;
        apply::apply(tx, &output, &self.options).await
    }

    /// Store the offsets of a committed batch: one past the highest offset per partition.
    fn store_offsets(&self, batch: &[OwnedMessage]) {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for message in batch {
            let entry = next
                .entry((message.topic(), message.partition()))
                .or_insert(message.offset() + 1);
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut list = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in next {
            if let Err(error) = list.add_partition_offset(topic, partition, Offset::Offset(offset))
            {
                tracing::warn!(%error, "offset not stored");
            }
        }
        match self.consumer.store_offsets(&list) {
            Ok(()) => {}
            // Revoked meanwhile: the new owner reads the batch again (idempotent).
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                tracing::debug!("offsets not stored: partitions no longer assigned");
            }
            Err(error) => tracing::warn!(%error, "desk offsets not stored"),
        }
    }
}

#[derive(Debug, Default)]
struct BatchCounts {
    inserted: u64,
    duplicates: u64,
    errors: u64,
}

fn is_fatal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
    )
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the shutdown future for [`StoreConsumer::run`]
/// in a service.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
