//! The long-running commands: `lmtp`, `maildir`, `imap` (intake into the raw topic),
//! `worker` (raw topic to events) and `replay`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arfwire_attribution::{DirectorySnapshot, Profile};
use arfwire_kafka::{EventProducer, RawConsumer, RawProducer};
use arfwire_raw::{RawSubmission, SubmitError, Submitter};
use arfwire_store::{DirectoryHandle, Store};
use arfwire_worker::{Pipeline, ReplayFrom, ReporterCheck, Worker};
use chrono::{DateTime, Utc};
use clap::Args;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{ServiceConfig, TenantsSource};
use crate::telemetry::{self, Shutdown};

/// The reference profile (Exchange Online), used when `[worker] profile` is not set.
const DEFAULT_PROFILE: &str = include_str!("../../../deploy/profiles/exchange-online.toml");
/// The built-in list of known feedback-loop operators.
const DEFAULT_FEEDBACK_LOOPS: &str = include_str!("../../../deploy/feedback-loops.toml");

/// Arguments of `arfwire lmtp`, `worker`, `maildir` and `imap`.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// The service configuration file (TOML; see deploy/arfwire.example.toml)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Serve metrics on this address instead of the configured [metrics] listen address
    /// (give each service on one host its own; port 0 picks a free one)
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

/// Arguments of `arfwire replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    service: ServiceArgs,

    /// Replay this partition from this offset (repeat for several partitions; partitions
    /// not named are not replayed)
    #[arg(
        long = "from-offset",
        value_name = "PARTITION:OFFSET",
        value_parser = parse_partition_offset,
        required_unless_present = "from_time",
        conflicts_with = "from_time"
    )]
    from_offset: Vec<(i32, i64)>,

    /// Replay every partition from the first record written at or after this time
    /// (RFC 3339, e.g. 2024-05-01T12:00:00Z)
    #[arg(long, value_name = "RFC3339", value_parser = crate::parse_rfc3339)]
    from_time: Option<DateTime<Utc>>,

    /// Consumer group the replay reads under (never the worker's). Default: the worker's
    /// group followed by "-replay"
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

fn parse_partition_offset(text: &str) -> Result<(i32, i64), String> {
    let (partition, offset) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?} is not PARTITION:OFFSET (e.g. 0:1200)"))?;
    let partition: i32 = partition
        .trim()
        .parse()
        .map_err(|_| format!("{partition:?} is not a partition number"))?;
    let offset: i64 = offset
        .trim()
        .parse()
        .map_err(|_| format!("{offset:?} is not an offset"))?;
    if partition < 0 || offset < 0 {
        return Err("partitions and offsets are not negative".to_owned());
    }
    Ok((partition, offset))
}

/// Load the configuration, install logging, metrics and the signal handlers, and run
/// `service` on a multi-threaded runtime until it returns.
fn run_service<F, Fut>(args: &ServiceArgs, service: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<ServiceConfig>, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = Arc::new(ServiceConfig::load(&args.config)?);
    telemetry::install_logging(&config.log)?;
    let runtime = telemetry::runtime()?;
    let result = runtime.block_on(async {
        let shutdown = Shutdown::on_signals()?;
        telemetry::start_metrics(&config.metrics, args.metrics_listen, shutdown.clone()).await?;
        let result = service(Arc::clone(&config), shutdown.clone()).await;
        // Stop the metrics endpoint too when the service ended on its own.
        shutdown.trigger();
        result
    });
    // Processing threads stuck in a blocking call must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(5));
    if let Err(error) = &result {
        tracing::error!(error = %format!("{error:#}"), "stopped with an error");
    }
    result
}

/// The raw producer of an intake channel, with the intake metrics.
struct MeteredProducer {
    inner: RawProducer,
    channel: &'static str,
    fatal_seen: AtomicU64,
}

impl MeteredProducer {
    fn new(config: &ServiceConfig, channel: &'static str) -> anyhow::Result<Self> {
        let inner = RawProducer::new(&config.kafka).context("creating the raw producer")?;
        Ok(MeteredProducer {
            inner,
            channel,
            fatal_seen: AtomicU64::new(0),
        })
    }
}

impl Submitter for MeteredProducer {
    async fn submit(&self, submission: RawSubmission) -> Result<(), SubmitError> {
        let started = Instant::now();
        let result = self.inner.submit(submission).await;
        let outcome = match &result {
            Ok(()) => "durable",
            Err(SubmitError::Unavailable(_)) => "unavailable",
            Err(SubmitError::TooLarge(_)) => "too_large",
        };
        metrics::counter!(
            "arfwire_intake_submissions_total",
            "channel" => self.channel,
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("arfwire_intake_submit_duration_seconds", "channel" => self.channel)
            .record(started.elapsed().as_secs_f64());
        let fatal = self.inner.fatal_errors();
        let before = self.fatal_seen.swap(fatal, Ordering::Relaxed);
        if fatal > before {
            metrics::counter!("arfwire_intake_producer_fatal_total", "channel" => self.channel)
                .increment(fatal - before);
        }
        result
    }
}

/// `arfwire lmtp`: the front door; 250 only once the raw topic acknowledged.
pub(crate) fn lmtp(args: &ServiceArgs) -> anyhow::Result<()> {
    run_service(args, |config, shutdown| async move {
        let lmtp = config.lmtp()?.clone();
        let producer = MeteredProducer::new(&config, "lmtp")?;
        let server = arfwire_lmtp::Server::new(lmtp, producer).context("[lmtp]")?;
        let listener = server
            .bind()
            .await
            .with_context(|| format!("binding the LMTP listener {}", server.config().listen))?;
        server
            .serve(listener, shutdown.wait())
            .await
            .context("the LMTP server failed")?;
        info!("LMTP front door stopped");
        Ok(())
    })
}

/// `arfwire maildir`: submit each new message of a Maildir folder, then move it.
pub(crate) fn maildir(args: &ServiceArgs) -> anyhow::Result<()> {
    run_service(args, |config, shutdown| async move {
        let section = config
            .maildir
            .clone()
            .context("the configuration has no [maildir] section")?;
        let producer = MeteredProducer::new(&config, "maildir")?;
        let watcher =
            arfwire_mailbox::MaildirWatcher::new(section, producer).context("[maildir]")?;
        watcher
            .run(shutdown.wait())
            .await
            .context("the Maildir watcher failed")?;
        info!("Maildir watcher stopped");
        Ok(())
    })
}

/// `arfwire imap`: submit each new message of an IMAP mailbox, then move or flag it.
pub(crate) fn imap(args: &ServiceArgs) -> anyhow::Result<()> {
    run_service(args, |config, shutdown| async move {
        let section = config
            .imap
            .clone()
            .context("the configuration has no [imap] section")?;
        let producer = MeteredProducer::new(&config, "imap")?;
        let poller = arfwire_mailbox::ImapPoller::new(section, producer).context("[imap]")?;
        poller
            .run(shutdown.wait())
            .await
            .context("the IMAP poller failed")?;
        info!("IMAP poller stopped");
        Ok(())
    })
}

/// `arfwire worker`.
pub(crate) fn worker(args: &ServiceArgs) -> anyhow::Result<()> {
    run_service(args, |config, shutdown| async move {
        let (pipeline, refresh) = pipeline(&config).await?;
        let group = config.worker_group().to_owned();
        let consumer =
            RawConsumer::subscribe(&config.kafka, &group).context("creating the raw consumer")?;
        let producer = EventProducer::new(&config.kafka).context("creating the event producer")?;
        let mut worker = Worker::new(config.worker.worker_config(), consumer, producer, pipeline)?;
        if let Some(path) = &config.worker.crash_journal {
            let journal =
                arfwire_worker::CrashJournal::open(path).context("[worker] crash_journal")?;
            worker = worker.with_crash_journal(journal);
        }
        info!(group = %group, topic = %config.kafka.topics.raw, "worker starting");
        let result = worker.run(shutdown.wait()).await;
        if let Some(refresh) = refresh {
            refresh.abort();
        }
        result.context("the worker stopped")?;
        Ok(())
    })
}

/// `arfwire replay`.
pub(crate) fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let from = match args.from_time {
        Some(at) => ReplayFrom::Time(at),
        None => ReplayFrom::Offsets(args.from_offset.clone()),
    };
    run_service(&args.service, |config, shutdown| async move {
        let group = args
            .group
            .clone()
            .unwrap_or_else(|| format!("{}-replay", config.worker_group()));
        if group == config.worker_group() {
            anyhow::bail!("the replay group {group:?} is the worker's group; pick another");
        }
        let (pipeline, refresh) = pipeline(&config).await?;
        let producer = EventProducer::new(&config.kafka).context("creating the event producer")?;
        let summary = arfwire_worker::replay(
            &config.kafka,
            &group,
            from,
            config.worker.worker_config(),
            producer,
            pipeline,
            shutdown.wait(),
        )
        .await;
        if let Some(refresh) = refresh {
            refresh.abort();
        }
        let summary = summary.context("the replay failed")?;
        for partition in &summary.partitions {
            println!(
                "partition {}: offsets {}..{}",
                partition.partition, partition.start, partition.end
            );
        }
        let stats = summary.stats;
        println!(
            "replayed {} records: {} events, {} rejections, {} dead-lettered",
            stats.done, stats.events, stats.rejected, stats.dead_lettered
        );
        if !summary.complete {
            anyhow::bail!("the replay was interrupted before the end; run it again to finish");
        }
        Ok(())
    })
}

/// The worker's processor from `[worker]`: profile, tenant directory (with its refresh
/// task, for the database) and reporter verification.
async fn pipeline(config: &ServiceConfig) -> anyhow::Result<(Pipeline, Option<JoinHandle<()>>)> {
    let section = &config.worker;
    let key = section.pseudonym_key.as_ref().with_context(|| {
        format!(
            "{} is not set: the worker needs the deployment's pseudonym key (hex, at least 16 \
             bytes) so that complainant tokens stay the same across restarts and replays",
            section.pseudonym_key_env
        )
    })?;
    let pseudonymizer = arfwire_events::Pseudonymizer::from_hex(key.expose())
        .map_err(|e| anyhow::anyhow!("{}: {e}", section.pseudonym_key_env))?;
    info!(key_id = %pseudonymizer.key_id(), "complainant pseudonym key loaded");
    let profile = match &section.profile {
        Some(path) => Profile::from_toml(&read(path)?)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("loading the provider profile {}", path.display()))?,
        None => Profile::from_toml(DEFAULT_PROFILE)
            .map_err(anyhow::Error::msg)
            .context("loading the built-in provider profile")?,
    };
    let (directory, refresh) = match &section.tenants {
        TenantsSource::None => {
            warn!("no tenant directory configured ([worker] tenants): no event will name a tenant");
            (DirectoryHandle::new(0, DirectorySnapshot::default()), None)
        }
        TenantsSource::File { path } => {
            let snapshot = crate::attribution::load_directory(path)?;
            (DirectoryHandle::new(0, snapshot), None)
        }
        TenantsSource::Database => {
            let url = config.database.url().with_context(|| {
                format!(
                    "[worker] tenants come from the database, but {} is not set (nor [database] url)",
                    config.database.url_env
                )
            })?;
            let store = Store::connect(url.expose())
                .await
                .context("connecting to the directory database")?;
            let handle = DirectoryHandle::load(&store).await.context(
                "loading the tenant directory (create it with `arfwire tenants migrate` or `import`)",
            )?;
            info!(
                version = handle.version(),
                tenants = handle.current().tenants().len(),
                "tenant directory loaded"
            );
            let refresh = handle.spawn_refresh(store, section.directory_refresh);
            (handle, Some(refresh))
        }
    };
    let mut pipeline = Pipeline::new(profile, directory).with_pseudonymizer(pseudonymizer);
    if section.verify_reporters {
        let policy = match &section.feedback_loops {
            Some(path) => arfwire_auth::ReporterPolicy::load(path),
            None => arfwire_auth::ReporterPolicy::from_toml(DEFAULT_FEEDBACK_LOOPS),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading the list of known feedback-loop operators")?;
        let authenticator = arfwire_auth::Authenticator::system()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("setting up the DNS resolver")?;
        let receiving_host = section
            .receiving_host
            .clone()
            .or_else(|| config.lmtp.as_ref().map(|l| l.hostname.clone()))
            .unwrap_or_else(|| "localhost".to_owned());
        pipeline = pipeline.with_reporter_check(ReporterCheck {
            authenticator: Arc::new(authenticator),
            policy,
            spf_from_envelope: section.spf_from_envelope,
            receiving_host,
            timeout: section.reporter_timeout,
        });
    }
    Ok((pipeline, refresh))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_offsets_parse() {
        assert_eq!(parse_partition_offset("0:1200"), Ok((0, 1200)));
        assert_eq!(parse_partition_offset(" 3 : 7 "), Ok((3, 7)));
        assert!(parse_partition_offset("3").is_err());
        assert!(parse_partition_offset("a:1").is_err());
        assert!(parse_partition_offset("-1:1").is_err());
    }
}
