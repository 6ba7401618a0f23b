//! A small adapter over rdkafka for what the Kafka crate does not offer: the offset of the
//! first record at or after a time, per partition, asked *before* a consumer is assigned
//! (a replay must know where each partition starts to know when it is finished).

use std::collections::BTreeMap;
use std::time::Duration;

use arfwire_kafka::{KafkaConfig, Security};
use chrono::{DateTime, Utc};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::WorkerError;

/// The librdkafka settings of a plain client of `kafka`: brokers, client id, security and
/// the extra options, as the Kafka crate sets them for its own clients.
fn client_config(kafka: &KafkaConfig) -> Result<ClientConfig, WorkerError> {
    kafka
        .validate()
        .map_err(|e| WorkerError::Setup(arfwire_kafka::SetupError::Config(e)))?;
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
                WorkerError::Setup(arfwire_kafka::SetupError::Config(
                    arfwire_kafka::ConfigError::MissingCredentials(sasl.password_env.clone()),
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

/// For each of `partitions` of the raw topic: the offset of the first record whose
/// timestamp is at or after `at`, or `None` when there is none.
pub(crate) async fn offsets_for_time(
    kafka: &KafkaConfig,
    at: DateTime<Utc>,
    partitions: Vec<i32>,
    timeout: Duration,
) -> Result<BTreeMap<i32, Option<i64>>, WorkerError> {
    let client = client_config(kafka)?;
    let topic = kafka.topics.raw.clone();
    let task = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| WorkerError::Setup(arfwire_kafka::SetupError::Client(e)))?;
        let mut query = TopicPartitionList::with_capacity(partitions.len());
        for &partition in &partitions {
            query
                .add_partition_offset(&topic, partition, Offset::Offset(at.timestamp_millis()))
                .map_err(|e| WorkerError::Consume(e.into()))?;
        }
        let found = consumer
            .offsets_for_times(query, timeout)
            .map_err(|e| WorkerError::Consume(e.into()))?;
        Ok(partitions
            .iter()
            .map(|&partition| {
                let offset = match found.find_partition(&topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) if offset >= 0 => Some(offset),
                    _ => None,
                };
                (partition, offset)
            })
            .collect())
    });
    match tokio::time::timeout(timeout * 2 + Duration::from_secs(1), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(WorkerError::Replay(format!(
            "the time query failed: {join}"
        ))),
        Err(_) => Err(WorkerError::Replay(
            "the broker did not answer the time query in time".to_owned(),
        )),
    }
}
