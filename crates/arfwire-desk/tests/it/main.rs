//! The desk's store against a real PostgreSQL server (and, for the consumer, a real Kafka
//! broker: `KAFKA_BOOTSTRAP`, default 127.0.0.1:9092). Services missing fail the tests;
//! start them with `scripts/services.sh up`.

mod alerts;
mod apply;
mod consumer;
mod privacy;
mod roles;
mod support;
