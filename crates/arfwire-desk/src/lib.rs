//! The abuse desk's store: a PostgreSQL projection of arfwire's topics, read by the triage
//! API.
//!
//! * [`apply`] writes one published record (an abuse event or a rejection) inside the
//!   caller's transaction: idempotent on the record's id, clusters updated in the same
//!   transaction, never double-counting. [`apply_raw`] keeps the raw evidence bytes,
//!   deduplicated by their SHA-256. Both are what the consumer runs, and what tests call
//!   without Kafka.
//! * [`StoreConsumer`] reads `abuse.events.v1`, `abuse.rejected.v1` and `abuse.raw.v1` with
//!   its own consumer group, applies a batch in one transaction and stores the offsets only
//!   after the commit. A record it cannot apply is written to `store_errors` and skipped: it
//!   never blocks its partition.
//! * [`alerts`]: complaint threshold rules per tenant, evaluated with hysteresis, published
//!   to `abuse.alerts.v1` from the `alerts` table (a transactional outbox).
//! * [`privacy`]: retention of raw evidence and erasure of one complainant.
//!
//! The schema is `arfwire-store`'s migrations (`0002_abuse_desk.sql` and later): every
//! table and column is described there.
//!
//! **Invariant:** SQL is static text with bound parameters; no value is formatted into a
//! statement.

pub mod alerts;
pub mod apply;
pub mod config;
pub mod consumer;
pub mod error;
pub mod privacy;
mod text;

pub use alerts::{
    AlertPublisher, AlertRule, AlertV1, EvaluationReport, Fired, alert_id, evaluate,
    publish_pending, sync_config_rule,
};
pub use apply::{
    Applied, ApplyOptions, FailedRecord, apply, apply_raw, cluster_key, record_store_error,
};
pub use config::{AlertsConfig, ConsumerConfig, DeskConfig, PrivacyConfig, RuleConfig};
pub use consumer::{RunStats, StoreConsumer, shutdown_signal};
pub use error::DeskError;
pub use privacy::{ErasureReport, RetentionReport, erase, retention};

/// The `schema` value of alert records (`abuse.alerts.v1`).
pub const ALERT_SCHEMA: &str = "arfwire.alert.v1";

/// The JSON Schema of alert records (`schemas/alert.v1.json`).
pub const ALERT_SCHEMA_JSON: &str = include_str!("../../../schemas/alert.v1.json");
