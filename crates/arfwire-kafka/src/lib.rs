//! The Kafka adapter of arfwire.
//!
//! ```text
//! intake ──RawProducer──► abuse.raw.v1 ──RawConsumer──► worker ──EventProducer──► abuse.events.v1
//!                                                                             ├─► abuse.rejected.v1
//!                                                                             └─► abuse.dlq.v1
//! ```
//!
//! * [`framing`]: how a [`arfwire_raw::RawSubmission`] is written to and read from the raw
//!   topic (value = the bytes, key = their SHA-256, intake facts in headers).
//! * [`RawProducer`]: the front door's durability point. It implements
//!   [`arfwire_raw::Submitter`]; `Ok` means the broker acknowledged the record through an
//!   idempotent producer with `acks=all`.
//! * [`EventProducer`]: the worker's output. [`EventProducer::publish_all`] publishes the
//!   records derived from one submission concurrently, with CloudEvents binary-mode
//!   headers, and returns `Ok` only when all are acknowledged;
//!   [`EventProducer::publish_dlq`] dead-letters a raw record with its original bytes and
//!   headers.
//! * [`RawConsumer`]: the worker's input, with offsets stored only for finished records
//!   (see [`consume`] for the offset strategy), replay by offset or time, and lag figures.
//! * [`ensure_topics`]: creates the four topics.
//! * [`testing::MockKafka`]: an in-process mock cluster with the topics, for tests.
//!
//! Delivery is at-least-once. There are no Kafka transactions: duplicates after a retry or
//! a crash carry the same ids (derived from the submission bytes), and consumers
//! de-duplicate on them.

pub mod config;
pub mod consume;
pub mod framing;
pub mod produce;
pub mod testing;
pub mod topics;

#[cfg(test)]
mod tests;

pub use config::{
    ConfigError, Credentials, KafkaConfig, SaslMechanism, SaslSsl, Secret, Security, TopicNames,
};
pub use consume::{ConsumeError, PartitionLag, RawConsumer, RawRecord, StartPosition};
pub use framing::{
    DecodeError, EncodeError, EncodedRaw, HeaderField, RAW_SCHEMA, decode_raw, encode_raw,
};
pub use produce::{
    Delivered, DlqFailure, EventProducer, PublishError, RawProducer, cloudevents_headers,
};
pub use topics::{TopicError, TopicStatus, ensure_topics};

/// Why a Kafka client could not be created.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SetupError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// librdkafka refused the settings or could not create the client.
    #[error("kafka client: {0}")]
    Client(rdkafka::error::KafkaError),
}
