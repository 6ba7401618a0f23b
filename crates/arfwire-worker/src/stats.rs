//! Counters: in-process ([`WorkerStats`], for tests, logs and the final summary) and the
//! metrics the worker records through the `metrics` facade ([`names`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Metric names. Counters end in `_total`; the unit precedes it.
pub mod names {
    /// Counter: raw records received from the raw topic.
    pub const SUBMISSIONS_CONSUMED: &str = "arfwire_worker_submissions_consumed_total";
    /// Counter, label `kind` (the event's `kind`): abuse events acknowledged by the broker.
    pub const EVENTS_PUBLISHED: &str = "arfwire_worker_events_published_total";
    /// Counter, labels `category` and `reason`: rejection records acknowledged.
    pub const REJECTED_PUBLISHED: &str = "arfwire_worker_rejected_published_total";
    /// Counter, label `cause` (`decode`, `processing` or `crash`): raw records
    /// dead-lettered.
    pub const DLQ_RECORDS: &str = "arfwire_worker_dlq_records_total";
    /// Counter, label `cause` (`panic`, `error` or `publish`): failed processing
    /// attempts.
    pub const PROCESSING_ERRORS: &str = "arfwire_worker_processing_errors_total";
    /// Counter, label `error` (`unavailable`, `fatal` or `refused`): publishes retried
    /// without marking the record done.
    pub const PUBLISH_RETRIES: &str = "arfwire_worker_publish_retries_total";
    /// Counter: fatal errors of the idempotent producer (each replaced the producer).
    pub const PRODUCER_FATAL: &str = "arfwire_worker_producer_fatal_total";
    /// Counter, label `outcome` (`published` or `dead_lettered`): records marked done.
    pub const RECORDS_DONE: &str = "arfwire_worker_records_done_total";
    /// Counter: records left unfinished at shutdown (they are processed again later).
    pub const RECORDS_ABANDONED: &str = "arfwire_worker_records_abandoned_total";
    /// Counter: reporter verifications that hit their timeout.
    pub const REPORTER_CHECK_TIMEOUTS: &str = "arfwire_worker_reporter_check_timeouts_total";
    /// Histogram, seconds: from handing a record's outputs to the producer until every one
    /// is acknowledged (successful publishes only).
    pub const PUBLISH_DURATION: &str = "arfwire_worker_publish_duration_seconds";
    /// Histogram, seconds: one processing attempt (parse, reporter check, attribution).
    pub const PROCESSING_DURATION: &str = "arfwire_worker_processing_duration_seconds";
    /// Gauge, labels `topic` and `partition`: records of an assigned raw partition not
    /// yet done.
    pub const CONSUMER_LAG: &str = "arfwire_worker_consumer_lag_records";
    /// Gauge: version of the tenant directory in use.
    pub const DIRECTORY_VERSION: &str = "arfwire_worker_directory_version";
    /// Gauge: records that were in processing when a worker process died (per the crash
    /// journal) and are not finished yet; each is processed alone.
    pub const CRASH_SUSPECTS: &str = "arfwire_worker_crash_suspect_records";
    /// Gauge: records being processed or published now.
    pub const IN_FLIGHT: &str = "arfwire_worker_in_flight_records";
}

/// Running totals of one worker (or replay). Cheap to read at any time.
#[derive(Debug, Default)]
pub struct WorkerStats {
    consumed: AtomicU64,
    in_flight: AtomicU64,
    done: AtomicU64,
    events: AtomicU64,
    rejected: AtomicU64,
    dead_lettered: AtomicU64,
    processing_failures: AtomicU64,
    publish_retries: AtomicU64,
    abandoned: AtomicU64,
}

/// A copy of [`WorkerStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Raw records received.
    pub consumed: u64,
    /// Records being processed now.
    pub in_flight: u64,
    /// Records marked done (published or dead-lettered).
    pub done: u64,
    /// Abuse events acknowledged.
    pub events: u64,
    /// Rejection records acknowledged.
    pub rejected: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Failed processing attempts.
    pub processing_failures: u64,
    /// Publishes retried because the broker did not acknowledge.
    pub publish_retries: u64,
    /// Records left unfinished at shutdown.
    pub abandoned: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl WorkerStats {
    /// The totals now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            consumed: get(&self.consumed),
            in_flight: get(&self.in_flight),
            done: get(&self.done),
            events: get(&self.events),
            rejected: get(&self.rejected),
            dead_lettered: get(&self.dead_lettered),
            processing_failures: get(&self.processing_failures),
            publish_retries: get(&self.publish_retries),
            abandoned: get(&self.abandoned),
        }
    }

    pub(crate) fn consumed(&self) {
        add(&self.consumed, 1);
        metrics::counter!(names::SUBMISSIONS_CONSUMED).increment(1);
    }

    pub(crate) fn started(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(names::IN_FLIGHT).set(now as f64);
    }

    pub(crate) fn finished(&self) {
        let now = self
            .in_flight
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!(names::IN_FLIGHT).set(now as f64);
    }

    pub(crate) fn published(&self, events: u64, rejected: u64) {
        add(&self.events, events);
        add(&self.rejected, rejected);
        add(&self.done, 1);
        metrics::counter!(names::RECORDS_DONE, "outcome" => "published").increment(1);
    }

    pub(crate) fn dead_lettered(&self, cause: &'static str) {
        add(&self.dead_lettered, 1);
        add(&self.done, 1);
        metrics::counter!(names::DLQ_RECORDS, "cause" => cause).increment(1);
        metrics::counter!(names::RECORDS_DONE, "outcome" => "dead_lettered").increment(1);
    }

    pub(crate) fn processing_failed(&self, cause: &'static str) {
        add(&self.processing_failures, 1);
        metrics::counter!(names::PROCESSING_ERRORS, "cause" => cause).increment(1);
    }

    pub(crate) fn publish_retried(&self, error: &'static str) {
        add(&self.publish_retries, 1);
        metrics::counter!(names::PUBLISH_RETRIES, "error" => error).increment(1);
    }

    pub(crate) fn abandoned(&self) {
        add(&self.abandoned, 1);
        metrics::counter!(names::RECORDS_ABANDONED).increment(1);
    }
}
