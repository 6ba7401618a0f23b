//! The arfwire worker: consumes raw submissions from `abuse.raw.v1` and publishes what
//! each yields to `abuse.events.v1`, `abuse.rejected.v1` or `abuse.dlq.v1`.
//!
//! ```text
//! RawConsumer ──► Worker ──spawn_blocking + catch_unwind──► Processor ──► EventProducer
//!   (group)        │            (parse, reporter, attribute,           publish_all ─► ack
//!                  │             derive)                                   │
//!                  └──────────── mark_done only after every ack ◄──────────┘
//! ```
//!
//! * [`Worker`]: the consumer-group service ([`Worker::run`] until a shutdown future).
//!   At-least-once: a record is marked done only after every output was acknowledged,
//!   and ids are derived from the submission bytes, so a replay after a crash publishes
//!   the same ids. Poison records go to the dead-letter topic after
//!   [`WorkerConfig::max_attempts`]; the worker never crash-loops on one.
//! * [`Processor`]: what turns a submission into outputs. [`Pipeline`] is the production
//!   one: [`arfwire_parse::parse`], reporter verification ([`ReporterCheck`], optional,
//!   DNS), attribution against the current snapshot of a live
//!   [`arfwire_store::DirectoryHandle`], [`arfwire_events::derive_with`] (complainants
//!   pseudonymised with the deployment's key). Tests inject their
//!   own (any closure is a processor).
//! * [`replay()`]: re-read the raw topic from offsets or a time up to its end at the start
//!   and publish again with the current parser.
//! * [`stats::names`]: the metrics recorded through the `metrics` facade; the binary
//!   installs the recorder.
//!
//! Logs carry topic, partition, offset, outcome and counts, never message content or
//! addresses.

mod adapter;
mod config;
mod engine;
mod journal;
mod process;
mod replay;
mod run;
pub mod stats;

pub use config::WorkerConfig;
pub use journal::{CrashJournal, JournalError};
pub use process::{Pipeline, ProcessError, Processor, ReporterCheck, intake_of};
pub use replay::{ReplayFrom, ReplayPartition, ReplaySummary, replay};
pub use run::Worker;
pub use stats::{StatsSnapshot, WorkerStats};

/// Why the worker or a replay could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A setting is unusable.
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// A Kafka client could not be created.
    #[error(transparent)]
    Setup(#[from] arfwire_kafka::SetupError),
    /// The raw consumer failed (fatally, for a running worker).
    #[error(transparent)]
    Consume(#[from] arfwire_kafka::ConsumeError),
    /// A replay cannot run as asked.
    #[error("replay: {0}")]
    Replay(String),
}
