//! Topic setup: [`ensure_topics`].

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::SetupError;
use crate::config::KafkaConfig;

/// What [`ensure_topics`] found for a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    /// The topic was created now.
    Created,
    /// The topic existed already; it was left as it is.
    Existed,
}

/// Why the topics could not be ensured.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The request failed as a whole (broker unreachable, timeout, CreateTopics not
    /// supported).
    #[error("creating topics failed: {0}")]
    Request(KafkaError),
    /// The broker refused one topic.
    #[error("creating topic {topic} failed: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error.
        code: RDKafkaErrorCode,
    },
    /// An argument is out of range.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Create the raw, events, rejected and DLQ topics of `config` with `partitions`
/// partitions and `replication` replicas each; topics that exist are left as they are.
/// Idempotent. Returns each topic with whether it was created or existed, in the order
/// raw, events, rejected, dlq.
///
/// New topics get `max.message.bytes` = `message_max_bytes` and, when replicated,
/// `min.insync.replicas` = `replication - 1` (so `acks=all` survives one replica down).
/// Partition counts of existing topics are not checked or changed.
///
/// Needs a broker that implements CreateTopics (the in-process mock cluster does not: its
/// topics are made with `MockCluster::create_topic`).
pub async fn ensure_topics(
    config: &KafkaConfig,
    partitions: i32,
    replication: i32,
) -> Result<Vec<(String, TopicStatus)>, TopicError> {
    if partitions < 1 {
        return Err(TopicError::Invalid("a topic needs at least one partition"));
    }
    if replication < 1 {
        return Err(TopicError::Invalid("a topic needs at least one replica"));
    }
    let admin: AdminClient<DefaultClientContext> = config
        .base_client_config()
        .map_err(SetupError::Config)?
        .create()
        .map_err(SetupError::Client)?;
    let timeout = Duration::from_millis(config.produce_timeout_ms);
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let max_bytes = config.message_max_bytes.to_string();
    let min_isr = (replication - 1).max(1).to_string();
    let new_topics: Vec<NewTopic<'_>> = config
        .topics
        .all()
        .into_iter()
        .map(|name| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication))
                .set("max.message.bytes", &max_bytes);
            if replication > 1 {
                topic.set("min.insync.replicas", &min_isr)
            } else {
                topic
            }
        })
        .collect();
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(TopicError::Request)?;
    let mut out = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(topic) => {
                tracing::info!(%topic, partitions, replication, "topic created");
                out.push((topic, TopicStatus::Created));
            }
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push((topic, TopicStatus::Existed));
            }
            Err((topic, code)) => return Err(TopicError::Topic { topic, code }),
        }
    }
    Ok(out)
}
