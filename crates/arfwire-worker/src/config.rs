//! The worker's processing settings.

use std::time::Duration;

/// How the worker processes records: retries, concurrency, shutdown.
///
/// The defaults suit a small deployment; [`WorkerConfig::validate`] checks the values
/// (the worker calls it). The service configuration file maps its `[worker]` section
/// onto this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Processing attempts per record (a panic or an error in parsing, attribution or
    /// framing counts as one) before the record goes to the dead-letter topic. At least 1.
    /// Default 3.
    pub max_attempts: u32,
    /// Records in flight at the same time, across all partitions: being processed, or
    /// waiting for their outputs to be acknowledged. The consumer stops fetching while this
    /// many are in flight. Most of a record's time is the publish round trip, so this bounds
    /// throughput (about `max_in_flight` / round trip). At least 1. Default 64.
    pub max_in_flight: usize,
    /// Records parsed and attributed at the same time (CPU work, on the blocking pool). At
    /// least 1. Default: the number of CPUs available to the process.
    pub max_processing: usize,
    /// First pause before retrying a failed attempt or an unacknowledged publish; it
    /// doubles on each consecutive failure of the same record. Default 200 ms.
    pub retry_min: Duration,
    /// Longest pause between retries. Default 30 s.
    pub retry_max: Duration,
    /// After the shutdown signal: how long in-flight records may take to finish (publish
    /// and mark done). Records still unfinished then are abandoned without being marked
    /// done, so the next owner of their partition processes them again. Default 25 s.
    pub shutdown_grace: Duration,
    /// How often the consumer lag and the directory version are sampled for the metrics.
    /// Default 15 s.
    pub lag_interval: Duration,
    /// Bound on each blocking broker operation of the consumer (commit, lag query, close)
    /// and on the producer flush at shutdown. Default 10 s.
    pub kafka_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_attempts: 3,
            max_in_flight: 64,
            max_processing: std::thread::available_parallelism().map_or(2, |n| n.get()),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(25),
            lag_interval: Duration::from_secs(15),
            kafka_timeout: Duration::from_secs(10),
        }
    }
}

impl WorkerConfig {
    /// Check the values.
    pub fn validate(&self) -> Result<(), crate::WorkerError> {
        let invalid = |what: &str| Err(crate::WorkerError::Config(what.to_owned()));
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight must be at least 1");
        }
        if self.max_processing == 0 {
            return invalid("max_processing must be at least 1");
        }
        if self.retry_min.is_zero() {
            return invalid("the first retry pause must be above 0");
        }
        if self.retry_max < self.retry_min {
            return invalid("the longest retry pause must be at least the first");
        }
        if self.lag_interval.is_zero() {
            return invalid("the lag sampling interval must be above 0");
        }
        if self.kafka_timeout.is_zero() {
            return invalid("the Kafka operation timeout must be above 0");
        }
        Ok(())
    }

    /// The pause before retry number `failures` (1 for the first retry): `retry_min`
    /// doubled per earlier failure, capped at `retry_max`.
    pub fn backoff(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.retry_min
            .saturating_mul(1u32 << shift)
            .min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = WorkerConfig {
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(750),
            ..WorkerConfig::default()
        };
        let pauses: Vec<u128> = (1..=6).map(|n| config.backoff(n).as_millis()).collect();
        assert_eq!(pauses, vec![100, 200, 400, 750, 750, 750]);
        assert_eq!(config.backoff(u32::MAX), Duration::from_millis(750));
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_not() {
        assert!(WorkerConfig::default().validate().is_ok());
        for broken in [
            WorkerConfig {
                max_attempts: 0,
                ..WorkerConfig::default()
            },
            WorkerConfig {
                max_in_flight: 0,
                ..WorkerConfig::default()
            },
            WorkerConfig {
                retry_max: Duration::from_millis(1),
                ..WorkerConfig::default()
            },
        ] {
            assert!(broken.validate().is_err(), "{broken:?}");
        }
    }
}
