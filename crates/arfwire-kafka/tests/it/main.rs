//! Integration tests of the Kafka adapter: `mock` against librdkafka's in-process mock
//! cluster, `broker` against a real Kafka-wire broker (the one `scripts/services.sh up`
//! starts; `KAFKA_BOOTSTRAP`, default `127.0.0.1:9092`).

mod broker;
mod common;
mod mock;
