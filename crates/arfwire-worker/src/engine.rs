//! One raw record from receipt to "done": process (contained), publish (retried until
//! acknowledged), dead-letter after `max_attempts` failures, and only then mark it done.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arfwire_events::Output;
use arfwire_kafka::{DlqFailure, EventProducer, PublishError, RawConsumer, RawRecord};
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::config::WorkerConfig;
use crate::journal::CrashJournal;
use crate::process::Processor;
use crate::stats::{WorkerStats, names};

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordOutcome {
    /// Every output acknowledged; marked done.
    Published,
    /// Sent to the dead-letter topic; marked done.
    DeadLettered,
    /// Shutdown came first: not marked done, so it is processed again later.
    Abandoned,
}

/// What one processing attempt produced.
enum Attempt {
    Outputs(Vec<Output>),
    Failed {
        cause: &'static str,
        error: String,
    },
    /// The blocking task could not be joined (the runtime is shutting down); the record
    /// is gone with it.
    Lost,
}

/// What publishing a record's outputs came to.
enum Publish {
    Done,
    /// A failure of this record's outputs (too large, not framable): counts as an attempt.
    RecordFailure(String),
    Abandoned,
}

/// Shared by every record task of a worker or a replay.
pub(crate) struct Engine<P> {
    pub(crate) config: WorkerConfig,
    pub(crate) consumer: Arc<RawConsumer>,
    pub(crate) producer: Arc<EventProducer>,
    pub(crate) processor: Arc<P>,
    pub(crate) stats: Arc<WorkerStats>,
    /// Becomes `true` when the shutdown grace period is over: retry loops give up.
    pub(crate) abandon: watch::Receiver<bool>,
    /// Fatal producer errors already counted in the metric.
    fatal_seen: AtomicU64,
    /// Where attempts are noted so that a record that kills the process is recognised
    /// after the restart (none: crashes are not counted).
    journal: Option<Arc<CrashJournal>>,
    /// Processing of ordinary records holds this shared; a suspect (a record that crashed
    /// the process before) holds it exclusively, so it is processed alone.
    isolation: tokio::sync::RwLock<()>,
    /// Set once a journal write failed, so the failure is logged once.
    journal_failed: std::sync::atomic::AtomicBool,
    /// Bounds the records in processing (CPU work) to `max_processing`.
    processing: tokio::sync::Semaphore,
}

impl<P: Processor> Engine<P> {
    pub(crate) fn new(
        config: WorkerConfig,
        consumer: Arc<RawConsumer>,
        producer: Arc<EventProducer>,
        processor: Arc<P>,
        stats: Arc<WorkerStats>,
        abandon: watch::Receiver<bool>,
        journal: Option<Arc<CrashJournal>>,
    ) -> Self {
        let fatal_seen = AtomicU64::new(producer.fatal_errors());
        Engine {
            consumer,
            producer,
            processor,
            stats,
            abandon,
            fatal_seen,
            journal,
            isolation: tokio::sync::RwLock::new(()),
            journal_failed: std::sync::atomic::AtomicBool::new(false),
            processing: tokio::sync::Semaphore::new(config.max_processing.max(1)),
            config,
        }
    }

    /// Take a record all the way: the task the worker spawns per record.
    pub(crate) async fn handle(self: Arc<Self>, record: RawRecord) -> RecordOutcome {
        self.stats.consumed();
        self.stats.started();
        let (topic, partition, offset) = (record.topic.clone(), record.partition, record.offset);
        let outcome = self.handle_inner(record).await;
        self.stats.finished();
        if outcome == RecordOutcome::Abandoned {
            self.stats.abandoned();
            info!(%topic, partition, offset, outcome = "abandoned", "raw record left for later: shutting down");
        }
        outcome
    }

    async fn handle_inner(&self, record: RawRecord) -> RecordOutcome {
        if let Err(decode) = record.submission() {
            let error = format!("the raw record cannot be decoded: {decode}");
            warn!(
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                %decode,
                "raw record cannot be decoded; dead-lettering it"
            );
            return self
                .dead_letter(&record, error, 1, Utc::now(), "decode")
                .await;
        }
        let key = journal_key(&record);
        let crashes = self.journal.as_ref().map_or(0, |j| j.crashes(&key));
        if crashes >= self.config.max_attempts {
            let error = format!(
                "processing this submission killed the worker process {crashes} times (it was \
                 being processed when the process died: an abort, a stack overflow, the OOM \
                 killer or a forced stop while stuck)"
            );
            let outcome = self
                .dead_letter(&record, error, crashes, Utc::now(), "crash")
                .await;
            if outcome == RecordOutcome::DeadLettered {
                self.clear_suspect(&key);
            }
            return outcome;
        }
        if crashes > 0 {
            warn!(
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                crashes,
                max_attempts = self.config.max_attempts,
                "this record was being processed when the worker process died; processing it alone"
            );
        }
        let suspect = crashes > 0;
        let mut record = record;
        let mut attempts: u32 = crashes;
        let mut first_failed_at: Option<DateTime<Utc>> = None;
        loop {
            attempts += 1;
            let (back, attempt) = self.process_once(record, &key, suspect).await;
            let Some(back) = back else {
                return RecordOutcome::Abandoned;
            };
            record = back;
            let (cause, error) = match attempt {
                Attempt::Outputs(outputs) => match self.publish(&record, &outputs).await {
                    Publish::Done => {
                        self.done(&record);
                        if suspect {
                            self.clear_suspect(&key);
                        }
                        let (events, rejected) = count(&outputs);
                        self.stats.published(events, rejected);
                        info!(
                            topic = %record.topic,
                            partition = record.partition,
                            offset = record.offset,
                            outcome = "published",
                            events,
                            rejected,
                            attempts,
                            submission_id = outputs.first().map_or("", |o| o.submission_id()),
                            "raw record done"
                        );
                        return RecordOutcome::Published;
                    }
                    Publish::Abandoned => return RecordOutcome::Abandoned,
                    Publish::RecordFailure(error) => ("publish", error),
                },
                Attempt::Failed { cause, error } => (cause, error),
                Attempt::Lost => return RecordOutcome::Abandoned,
            };
            let first = *first_failed_at.get_or_insert_with(Utc::now);
            self.stats.processing_failed(cause);
            warn!(
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                attempt = attempts,
                max_attempts = self.config.max_attempts,
                cause,
                error = %shorten(&error, 300),
                "processing attempt failed"
            );
            if attempts >= self.config.max_attempts {
                let outcome = self
                    .dead_letter(&record, error, attempts, first, "processing")
                    .await;
                if suspect && outcome == RecordOutcome::DeadLettered {
                    self.clear_suspect(&key);
                }
                return outcome;
            }
            if !self.pause(self.config.backoff(attempts)).await {
                return RecordOutcome::Abandoned;
            }
        }
    }

    /// One contained processing attempt on the blocking pool, noted in the crash journal
    /// around it; a `suspect` is processed with nothing else in processing. Hands the
    /// record back (`None` only when the blocking task could not be joined).
    async fn process_once(
        &self,
        record: RawRecord,
        key: &str,
        suspect: bool,
    ) -> (Option<RawRecord>, Attempt) {
        let (_shared, _alone) = if suspect {
            (None, Some(self.isolation.write().await))
        } else {
            (Some(self.isolation.read().await), None)
        };
        // Never closed: acquiring only waits.
        let _cpu = self.processing.acquire().await.ok();
        self.journal_write(|j| j.begin(key));
        let result = self.process_contained(record).await;
        self.journal_write(|j| j.end(key));
        result
    }

    /// Write to the crash journal, if there is one. A failed write is logged (once) and
    /// processing goes on: without the journal a crash is not counted, nothing else changes.
    fn journal_write(
        &self,
        write: impl FnOnce(&CrashJournal) -> Result<(), crate::journal::JournalError>,
    ) {
        let Some(journal) = &self.journal else {
            return;
        };
        if let Err(error) = write(journal)
            && !self.journal_failed.swap(true, Ordering::Relaxed)
        {
            error!(%error, "cannot write the crash journal; a record that kills the process would not be recognised");
        }
    }

    /// A suspect is finished: forget its crashes.
    fn clear_suspect(&self, key: &str) {
        self.journal_write(|j| j.clear(key));
        if let Some(journal) = &self.journal {
            metrics::gauge!(names::CRASH_SUSPECTS).set(journal.suspect_count() as f64);
        }
    }

    async fn process_contained(&self, record: RawRecord) -> (Option<RawRecord>, Attempt) {
        let processor = Arc::clone(&self.processor);
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let result = match record.submission() {
                Ok(submission) => {
                    std::panic::catch_unwind(AssertUnwindSafe(|| processor.process(submission)))
                }
                // Checked before the first attempt.
                Err(decode) => Ok(Err(crate::ProcessError::new(decode.to_string()))),
            };
            (record, result)
        })
        .await;
        metrics::histogram!(names::PROCESSING_DURATION).record(started.elapsed().as_secs_f64());
        match joined {
            Ok((record, Ok(Ok(outputs)))) => (Some(record), Attempt::Outputs(outputs)),
            Ok((record, Ok(Err(error)))) => (
                Some(record),
                Attempt::Failed {
                    cause: "error",
                    error: format!("processing failed: {error}"),
                },
            ),
            Ok((record, Err(panic))) => (
                Some(record),
                Attempt::Failed {
                    cause: "panic",
                    error: format!("processing panicked: {}", panic_message(panic.as_ref())),
                },
            ),
            Err(join) => {
                error!(%join, "a processing task could not be joined");
                (None, Attempt::Lost)
            }
        }
    }

    /// Publish until every output is acknowledged. Broker-side failures (unavailable,
    /// fatal producer error, refused by the broker: authorisation, missing topic) are
    /// retried with backoff and never mark the record done; failures of the outputs
    /// themselves (too large, not framable) are returned as the record's failure.
    async fn publish(&self, record: &RawRecord, outputs: &[Output]) -> Publish {
        let mut failures = 0;
        loop {
            let started = Instant::now();
            let result = self.producer.publish_all(outputs).await;
            self.count_fatal();
            let error = match result {
                Ok(()) => {
                    metrics::histogram!(names::PUBLISH_DURATION)
                        .record(started.elapsed().as_secs_f64());
                    count_published(outputs);
                    return Publish::Done;
                }
                Err(error @ (PublishError::TooLarge { .. } | PublishError::Invalid(_))) => {
                    return Publish::RecordFailure(format!("publishing failed: {error}"));
                }
                Err(error) => error,
            };
            failures += 1;
            let kind = match &error {
                PublishError::Fatal { .. } => "fatal",
                PublishError::Refused { .. } => "refused",
                _ => "unavailable",
            };
            self.stats.publish_retried(kind);
            let pause = if error.is_fatal() {
                // The producer was replaced already: send again at once.
                self.config.retry_min
            } else {
                self.config.backoff(failures)
            };
            let text = error.to_string();
            let log_error = shorten(&text, 300);
            if matches!(error, PublishError::Refused { .. }) {
                error!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    error = %log_error, retry_in_ms = pause.as_millis() as u64,
                    "the broker refused the outputs; check the topics and the ACLs (retrying, record not done)"
                );
            } else {
                warn!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    error = %log_error, retry_in_ms = pause.as_millis() as u64,
                    "outputs not acknowledged; retrying (record not done)"
                );
            }
            if !self.pause(pause).await {
                return Publish::Abandoned;
            }
        }
    }

    /// Send the record to the DLQ (retrying until the broker takes it), then mark it done.
    async fn dead_letter(
        &self,
        record: &RawRecord,
        error: String,
        attempts: u32,
        first_failed_at: DateTime<Utc>,
        cause: &'static str,
    ) -> RecordOutcome {
        let failure = DlqFailure {
            error,
            attempts,
            first_failed_at,
        };
        let mut failures = 0;
        loop {
            let result = self.producer.publish_dlq(record, &failure).await;
            self.count_fatal();
            match result {
                Ok(delivered) => {
                    self.done(record);
                    self.stats.dead_lettered(cause);
                    error!(
                        topic = %record.topic,
                        partition = record.partition,
                        offset = record.offset,
                        outcome = "dead_lettered",
                        cause,
                        attempts,
                        dlq_partition = delivered.partition,
                        dlq_offset = delivered.offset,
                        error = %shorten(&failure.error, 300),
                        "raw record done: sent to the dead-letter topic"
                    );
                    return RecordOutcome::DeadLettered;
                }
                Err(publish) => {
                    // Nothing is dropped: a record that cannot even be dead-lettered
                    // holds its partition's committed offset until it can.
                    failures += 1;
                    self.stats.publish_retried("dlq");
                    let pause = self.config.backoff(failures);
                    let text = publish.to_string();
                    error!(
                        topic = %record.topic, partition = record.partition, offset = record.offset,
                        error = %shorten(&text, 300),
                        retry_in_ms = pause.as_millis() as u64,
                        "dead-lettering failed; retrying (record not done)"
                    );
                    if !self.pause(pause).await {
                        return RecordOutcome::Abandoned;
                    }
                }
            }
        }
    }

    fn done(&self, record: &RawRecord) {
        if let Err(error) = self.consumer.mark_done(record) {
            // The offset is not stored: the record is processed again after a restart or
            // rebalance, with the same ids.
            warn!(
                topic = %record.topic, partition = record.partition, offset = record.offset,
                %error, "could not store the offset of a finished record"
            );
        } else {
            debug!(topic = %record.topic, partition = record.partition, offset = record.offset, "offset stored");
        }
    }

    fn count_fatal(&self) {
        let now = self.producer.fatal_errors();
        let before = self.fatal_seen.swap(now, Ordering::Relaxed);
        if now > before {
            metrics::counter!(names::PRODUCER_FATAL).increment(now - before);
        }
    }

    /// Sleep for `pause`; `false` when the grace period ended meanwhile.
    async fn pause(&self, pause: Duration) -> bool {
        let mut abandon = self.abandon.clone();
        if *abandon.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = abandon.wait_for(|gone| *gone) => return false,
        }
        !*self.abandon.borrow()
    }
}

/// How the crash journal names a record: the SHA-256 of its submission (the record key),
/// so a resent copy is the same record; the record's position when it has no usable key.
fn journal_key(record: &RawRecord) -> String {
    match &record.key {
        Some(key)
            if !key.is_empty()
                && key.len() <= 128
                && key.iter().all(|b| b.is_ascii_alphanumeric()) =>
        {
            String::from_utf8_lossy(key).into_owned()
        }
        _ => format!("{}/{}/{}", record.topic, record.partition, record.offset),
    }
}

fn count(outputs: &[Output]) -> (u64, u64) {
    let events = outputs
        .iter()
        .filter(|o| matches!(o, Output::Event(_)))
        .count() as u64;
    (events, outputs.len() as u64 - events)
}

fn count_published(outputs: &[Output]) {
    for output in outputs {
        match output {
            Output::Event(event) => {
                metrics::counter!(names::EVENTS_PUBLISHED, "kind" => event.kind.clone())
                    .increment(1);
            }
            Output::Rejected(rejected) => {
                let category = match rejected.category {
                    arfwire_events::RejectionCategory::NotReport => "not_report",
                    arfwire_events::RejectionCategory::Refused => "refused",
                };
                metrics::counter!(
                    names::REJECTED_PUBLISHED,
                    "category" => category,
                    "reason" => rejected.reason.clone()
                )
                .increment(1);
            }
        }
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// At most `max` bytes of `text`, cut on a character boundary, for logs.
pub(crate) fn shorten(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_become_text() {
        let caught = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "boom 7");
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(3_u8)).unwrap_err();
        assert_eq!(panic_message(caught.as_ref()), "a panic without a message");
    }

    #[test]
    fn shorten_respects_characters() {
        assert_eq!(shorten("héllo", 2), "h");
        assert_eq!(shorten("abc", 10), "abc");
    }
}
