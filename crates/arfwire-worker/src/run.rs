//! The worker loop: fetch raw records while fewer than `max_in_flight` are in flight, hand
//! each to its own task, sample lag, and shut down cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arfwire_kafka::{ConsumeError, EventProducer, RawConsumer, RawRecord};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, info, warn};

use crate::WorkerError;
use crate::config::WorkerConfig;
use crate::engine::{Engine, RecordOutcome};
use crate::journal::CrashJournal;
use crate::process::Processor;
use crate::stats::{StatsSnapshot, WorkerStats, names};

/// How long to wait for record tasks to notice the end of the grace period.
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// Pause after a consumer error that is not fatal, so a broker outage does not spin.
const CONSUMER_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The record tasks of a worker or a replay, and the engine they share.
pub(crate) struct Pool<P> {
    engine: Arc<Engine<P>>,
    tasks: JoinSet<RecordOutcome>,
    abandon: watch::Sender<bool>,
}

impl<P: Processor> Pool<P> {
    pub(crate) fn new(
        config: WorkerConfig,
        consumer: Arc<RawConsumer>,
        producer: Arc<EventProducer>,
        processor: Arc<P>,
        stats: Arc<WorkerStats>,
        journal: Option<Arc<CrashJournal>>,
    ) -> Self {
        let (abandon, abandon_rx) = watch::channel(false);
        let engine = Engine::new(
            config, consumer, producer, processor, stats, abandon_rx, journal,
        );
        Pool {
            engine: Arc::new(engine),
            tasks: JoinSet::new(),
            abandon,
        }
    }

    pub(crate) fn config(&self) -> &WorkerConfig {
        &self.engine.config
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub(crate) fn has_room(&self) -> bool {
        self.tasks.len() < self.engine.config.max_in_flight
    }

    pub(crate) fn spawn(&mut self, record: RawRecord) {
        let engine = Arc::clone(&self.engine);
        self.tasks.spawn(engine.handle(record));
    }

    /// Wait for the next record task to end. `None` when there is none.
    pub(crate) async fn join_next(&mut self) -> Option<()> {
        let joined = self.tasks.join_next().await?;
        if let Err(join) = joined
            && join.is_panic()
        {
            // The engine contains processing panics; this is a bug in the engine itself.
            // The record was not marked done and is processed again later.
            error!(%join, "a record task panicked");
        }
        Some(())
    }

    /// Let in-flight records finish for up to the grace period, then make the rest give
    /// up (not marked done) and wait a little for them.
    pub(crate) async fn drain(&mut self) {
        let grace = self.engine.config.shutdown_grace;
        if !self.tasks.is_empty() {
            info!(
                in_flight = self.tasks.len(),
                grace_ms = grace.as_millis() as u64,
                "finishing in-flight records"
            );
        }
        let finished =
            tokio::time::timeout(grace, async { while self.join_next().await.is_some() {} }).await;
        if finished.is_ok() {
            return;
        }
        warn!(
            in_flight = self.tasks.len(),
            "grace period over: abandoning unfinished records (they are processed again later)"
        );
        self.abandon.send_replace(true);
        let gave_up = tokio::time::timeout(ABANDON_WAIT, async {
            while self.join_next().await.is_some() {}
        })
        .await;
        if gave_up.is_err() {
            // Stuck in processing (a blocking call): cancel the tasks; their records are
            // not marked done.
            self.tasks.abort_all();
            while self.join_next().await.is_some() {}
        }
    }

    /// After [`Pool::drain`]: commit the stored offsets, close the consumer and flush the
    /// producer, each bounded by `kafka_timeout`.
    pub(crate) async fn close(self) -> Result<(), ConsumeError> {
        let timeout = self.engine.config.kafka_timeout;
        drop(self.tasks);
        let engine = match Arc::try_unwrap(self.engine) {
            Ok(engine) => engine,
            Err(shared) => {
                warn!("record tasks still hold the consumer; committing without closing it");
                return shared.consumer.commit_now(timeout).await;
            }
        };
        let producer = Arc::clone(&engine.producer);
        let consumer = engine.consumer;
        drop(engine.processor);
        let closed = match Arc::try_unwrap(consumer) {
            Ok(consumer) => consumer.shutdown(timeout).await,
            Err(shared) => {
                warn!(
                    holders = Arc::strong_count(&shared),
                    "the consumer is still shared; committing without closing it"
                );
                shared.commit_now(timeout).await
            }
        };
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "the event producer did not flush"),
            Err(join) => warn!(%join, "the event producer flush task failed"),
        }
        closed
    }
}

/// The worker: consumes `abuse.raw.v1` in a consumer group and publishes what each
/// submission yields, at least once, with deterministic ids.
///
/// # Offsets
///
/// A record is marked done (its offset stored for the consumer's periodic commit) only
/// after **every** output was acknowledged by the broker, or after it went to the
/// dead-letter topic. After a crash, the records after the committed position are
/// processed again and yield the same ids.
///
/// # Concurrency
///
/// Records are processed concurrently, up to `max_in_flight` across all partitions, and
/// may finish out of order; the consumer stores, per partition, the lowest offset still in
/// flight, so the committed position never passes an unfinished record. Why not one record
/// at a time per partition: raw records are keyed by the SHA-256 of their bytes, so their
/// order within a partition means nothing, and a single-partition raw topic would otherwise
/// use one core. What it costs: a crash replays the records finished after the oldest
/// unfinished one, which the deterministic ids make harmless. Events of one tenant are not
/// published in receive order (they never were across raw partitions); consumers order by
/// the event's own times, not by offsets.
///
/// # Poison records
///
/// Processing runs on the blocking pool under `catch_unwind`. A record whose processing
/// panics or fails is tried `max_attempts` times, then published to the dead-letter topic
/// with the last error and the attempt count, then marked done: one bad record never
/// stops the worker or its partition. A record that cannot be decoded goes to the
/// dead-letter topic at once.
///
/// # Broker failures
///
/// A publish the broker did not acknowledge is retried with backoff, for as long as it
/// takes, without marking the record done; meanwhile at most `max_in_flight` records are
/// held and fetching pauses. A fatal error of the idempotent producer replaces the
/// producer (inside [`EventProducer`]) and the outputs are sent again.
pub struct Worker<P> {
    config: WorkerConfig,
    consumer: Arc<RawConsumer>,
    producer: Arc<EventProducer>,
    processor: Arc<P>,
    stats: Arc<WorkerStats>,
    journal: Option<Arc<CrashJournal>>,
}

impl<P> std::fmt::Debug for Worker<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

impl<P: Processor> Worker<P> {
    /// A worker reading from `consumer` (subscribed with
    /// [`RawConsumer::subscribe`]), publishing through `producer`, and turning each
    /// submission into outputs with `processor` (the production one is
    /// [`crate::Pipeline`]).
    pub fn new(
        config: WorkerConfig,
        consumer: RawConsumer,
        producer: EventProducer,
        processor: P,
    ) -> Result<Self, WorkerError> {
        config.validate()?;
        Ok(Worker {
            config,
            consumer: Arc::new(consumer),
            producer: Arc::new(producer),
            processor: Arc::new(processor),
            stats: Arc::new(WorkerStats::default()),
            journal: None,
        })
    }

    /// Note every processing attempt in `journal`, so that a record that kills the
    /// process is recognised after the restart, processed alone, and dead-lettered once
    /// it has done so `max_attempts` times (see [`CrashJournal`]). Without a journal a
    /// crash is not counted and such a record is fetched and processed again after every
    /// restart.
    #[must_use]
    pub fn with_crash_journal(mut self, journal: CrashJournal) -> Self {
        let suspects = journal.suspects();
        if !suspects.is_empty() {
            warn!(
                journal = %journal.path().display(),
                suspects = suspects.len(),
                most_crashes = suspects.iter().map(|(_, n)| *n).max().unwrap_or(0),
                "records were being processed when the last worker process died; they will be processed alone"
            );
        }
        metrics::gauge!(names::CRASH_SUSPECTS).set(suspects.len() as f64);
        self.journal = Some(Arc::new(journal));
        self
    }

    /// The worker's running totals, readable while it runs.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Run until `shutdown` completes, then stop fetching, let in-flight records finish
    /// within the grace period, commit the offsets and close the consumer. Returns the
    /// totals, or the consumer's error when it failed fatally (after the same clean-up).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<StatsSnapshot, WorkerError> {
        let Worker {
            config,
            consumer,
            producer,
            processor,
            stats,
            journal,
        } = self;
        let sampler = spawn_sampler(
            Arc::clone(&consumer),
            Arc::clone(&processor),
            Arc::clone(&stats),
            config.lag_interval,
            config.kafka_timeout,
        );
        let source = Arc::clone(&consumer);
        if journal.is_none() {
            warn!(
                "no crash journal: a record that kills the worker process is not recognised after a restart"
            );
        }
        let mut pool = Pool::new(
            config,
            consumer,
            producer,
            processor,
            Arc::clone(&stats),
            journal,
        );
        info!(
            max_in_flight = pool.config().max_in_flight,
            max_attempts = pool.config().max_attempts,
            "worker running"
        );
        let mut fatal: Option<ConsumeError> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!("shutdown requested: no more records are fetched");
                    break;
                }
                Some(()) = pool.join_next(), if !pool.is_empty() => {}
                received = source.recv(), if pool.has_room() => match received {
                    Ok(record) => pool.spawn(record),
                    Err(error) if error.is_fatal() => {
                        error!(%error, "the raw consumer failed fatally; stopping");
                        fatal = Some(error);
                        break;
                    }
                    Err(error) => {
                        warn!(%error, "raw consumer error");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(CONSUMER_ERROR_PAUSE) => {}
                        }
                    }
                },
            }
        }
        pool.drain().await;
        drop(source);
        sampler.abort();
        let _ = sampler.await;
        let closed = pool.close().await;
        let totals = stats.snapshot();
        info!(
            consumed = totals.consumed,
            done = totals.done,
            events = totals.events,
            rejected = totals.rejected,
            dead_lettered = totals.dead_lettered,
            abandoned = totals.abandoned,
            "worker stopped"
        );
        if let Some(error) = fatal {
            return Err(error.into());
        }
        if let Err(error) = closed {
            warn!(%error, "closing the raw consumer failed; offsets may be committed late");
        }
        Ok(totals)
    }
}

/// Sample consumer lag and the directory version into the gauges, and log the totals,
/// every `interval`.
fn spawn_sampler<P: Processor>(
    consumer: Arc<RawConsumer>,
    processor: Arc<P>,
    stats: Arc<WorkerStats>,
    interval: Duration,
    timeout: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Some(version) = processor.directory_version() {
                metrics::gauge!(names::DIRECTORY_VERSION).set(version as f64);
            }
            match consumer.lag(timeout).await {
                Ok(lags) => {
                    let mut total = 0;
                    for lag in &lags {
                        total += lag.lag;
                        metrics::gauge!(
                            names::CONSUMER_LAG,
                            "topic" => lag.topic.clone(),
                            "partition" => lag.partition.to_string()
                        )
                        .set(lag.lag as f64);
                    }
                    let totals = stats.snapshot();
                    info!(
                        partitions = lags.len(),
                        lag = total,
                        consumed = totals.consumed,
                        done = totals.done,
                        in_flight = totals.in_flight,
                        dead_lettered = totals.dead_lettered,
                        "worker progress"
                    );
                }
                Err(error) => warn!(%error, "consumer lag query failed"),
            }
        }
    })
}
