//! The service configuration file: one TOML document read by `arfwire lmtp`, `worker`,
//! `maildir`, `imap`, `replay`, `tail` and `topics` (`--config FILE`).
//!
//! Every section rejects unknown fields, so a misspelt option stops the service at startup
//! instead of silently falling back to a default. Secrets never have to be written in the
//! file: each names the environment variable that holds it (`[kafka.security]
//! password_env`, `[imap] password_env`, `[database] url_env`), and `Debug` prints
//! `[REDACTED]` for them. `deploy/arfwire.example.toml` shows every field.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use arfwire_kafka::KafkaConfig;
use arfwire_lmtp::LmtpConfig;
use arfwire_mailbox::{ImapConfig, MaildirConfig};
use arfwire_worker::WorkerConfig;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceConfig {
    /// `[kafka]`: brokers, topic names, producer and consumer settings, transport
    /// security. Required by every service.
    pub(crate) kafka: KafkaConfig,
    /// `[lmtp]`: the LMTP/SMTP front door. Required by `arfwire lmtp`.
    #[serde(default)]
    pub(crate) lmtp: Option<LmtpConfig>,
    /// `[maildir]`: the Maildir watcher. Required by `arfwire maildir`.
    #[serde(default)]
    pub(crate) maildir: Option<MaildirConfig>,
    /// `[imap]`: the IMAP poller. Required by `arfwire imap`.
    #[serde(default)]
    pub(crate) imap: Option<ImapConfig>,
    /// `[worker]`: processing, attribution and reporter verification of the worker (and of
    /// `arfwire replay`).
    #[serde(default)]
    pub(crate) worker: WorkerSection,
    /// `[database]`: the PostgreSQL database holding the tenant directory.
    #[serde(default)]
    pub(crate) database: DatabaseSection,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub(crate) metrics: MetricsSection,
    /// `[log]`: log format and filter.
    #[serde(default)]
    pub(crate) log: LogSection,
    /// `[desk]`: the abuse desk's settings (`development`, `[desk.privacy]`,
    /// `[desk.consumer]`, `[desk.alerts]`; see the `arfwire-desk` crate), read by
    /// `arfwire desk consume | retention | erase | alerts` when given this file. They share
    /// `[kafka]`. Checked with the rest of the file.
    #[serde(default)]
    pub(crate) desk: Option<toml::Table>,
}

/// Sections of the abuse desk's own configuration file (when it is not the service file).
const DESK_FILE_SECTIONS: &[&str] = &["development", "privacy", "consumer", "alerts", "kafka"];

/// The desk's configuration from the text of a configuration file: either the service file
/// (its `[desk]` section with its `[kafka]`) or a file of the desk's own
/// (`development`, `[privacy]`, `[consumer]`, `[alerts]`, `[kafka]`).
pub(crate) fn desk_config(text: &str) -> anyhow::Result<arfwire_desk::DeskConfig> {
    let table: toml::Table = toml::from_str(text).context("not TOML")?;
    if table
        .keys()
        .all(|k| DESK_FILE_SECTIONS.contains(&k.as_str()))
    {
        return Ok(arfwire_desk::DeskConfig::parse(text)?);
    }
    let mut desk = match table.get("desk") {
        Some(toml::Value::Table(desk)) => desk.clone(),
        Some(_) => anyhow::bail!("[desk] must be a table"),
        None => toml::Table::new(),
    };
    if let Some(key) = desk.keys().find(|k| k.as_str() == "kafka") {
        anyhow::bail!("[desk] has no {key} of its own: the desk uses the file's [kafka]");
    }
    if let Some(kafka) = table.get("kafka") {
        desk.insert("kafka".to_owned(), kafka.clone());
    }
    let text = toml::to_string(&desk).context("re-encoding [desk]")?;
    arfwire_desk::DeskConfig::parse(&text).context("[desk]")
}

/// `[worker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkerSection {
    /// Consumer group of the worker. Default: `kafka.group_id` (itself `arfwire-worker` by
    /// default).
    #[serde(default)]
    pub(crate) group_id: Option<String>,
    /// Processing attempts per raw record (a panic or an error counts as one) before the
    /// record is sent to the dead-letter topic. Default 3.
    #[serde(default = "defaults::max_attempts")]
    pub(crate) max_attempts: u32,
    /// Raw records in flight at the same time, across partitions (in processing or waiting
    /// for their outputs' acknowledgements); fetching pauses at this many. It bounds a
    /// worker's throughput to about this many per publish round trip. Default 64.
    #[serde(default = "defaults::max_in_flight")]
    pub(crate) max_in_flight: usize,
    /// Raw records parsed and attributed at the same time (CPU work). Default: the number
    /// of CPUs available to the process.
    #[serde(default)]
    pub(crate) max_processing: Option<usize>,
    /// Crash journal: a file where the worker notes each processing attempt, so that a
    /// record that kills the process (abort, stack overflow, OOM kill) is recognised after
    /// the restart, processed alone, and sent to the dead-letter topic once it has done so
    /// `max_attempts` times. One file per worker process, on storage that outlives the
    /// process (in Kubernetes an `emptyDir`, which survives container restarts). Default:
    /// none, and such a record is processed again after every restart (a crash loop).
    #[serde(default)]
    pub(crate) crash_journal: Option<PathBuf>,
    /// Provider profile (TOML). Default: the built-in Exchange Online reference profile.
    #[serde(default)]
    pub(crate) profile: Option<PathBuf>,
    /// Where the tenant directory comes from: `{ source = "database" }` (the `[database]`
    /// directory, re-read when it changes), `{ source = "file", path = "tenants.toml" }`
    /// (TOML or JSON, read once) or `{ source = "none" }` (no event names a tenant; IPs,
    /// path classes and flags are still derived). Default `none`.
    #[serde(default)]
    pub(crate) tenants: TenantsSource,
    /// How often the database directory's version is checked, in seconds; a new version is
    /// loaded and used for the next records without a restart. Default 30.
    #[serde(
        rename = "directory_refresh_secs",
        default = "defaults::directory_refresh",
        deserialize_with = "seconds"
    )]
    pub(crate) directory_refresh: Duration,
    /// Verify each reporter's DKIM, SPF and DMARC with DNS and assign a trust tier (T1
    /// known feedback loop, T2 authenticated, T3 not). Off: every reporter is T3 "not
    /// checked". Default false.
    #[serde(default)]
    pub(crate) verify_reporters: bool,
    /// With `verify_reporters`: evaluate SPF against the SMTP/LMTP envelope (client IP,
    /// HELO, MAIL FROM) when the submission has one. Behind a local MTA relaying over
    /// LMTP the client is that MTA, so SPF tells nothing there; DKIM and DMARC decide the
    /// tier either way. Default true.
    #[serde(default = "defaults::yes")]
    pub(crate) spf_from_envelope: bool,
    /// Our host name as the receiving MTA, for SPF's `%{r}` macro. Default: the `[lmtp]`
    /// hostname, else `localhost`.
    #[serde(default)]
    pub(crate) receiving_host: Option<String>,
    /// Known feedback-loop operators (TOML) for tier T1. Default: the built-in list.
    #[serde(default)]
    pub(crate) feedback_loops: Option<PathBuf>,
    /// Environment variable holding the deployment's pseudonym key (hex, at least 16
    /// bytes): complainant addresses in events become `anon:` tokens under it. Required by
    /// the worker and `replay`, so tokens stay the same across restarts and replays and
    /// match the abuse desk's. Default `ARFWIRE_PSEUDONYM_KEY`.
    #[serde(default = "defaults::pseudonym_key_env")]
    pub(crate) pseudonym_key_env: String,
    /// The key, once resolved; never read from the file.
    #[serde(skip)]
    pub(crate) pseudonym_key: Option<Secret>,
    /// Bound on one reporter verification, in seconds; past it the reporter is T3 "not
    /// checked". Default 10.
    #[serde(
        rename = "reporter_timeout_secs",
        default = "defaults::reporter_timeout",
        deserialize_with = "seconds"
    )]
    pub(crate) reporter_timeout: Duration,
    /// First pause before retrying a failed attempt or an unacknowledged publish, in
    /// seconds; it doubles per consecutive failure. Default 0.2.
    #[serde(
        rename = "retry_min_secs",
        default = "defaults::retry_min",
        deserialize_with = "seconds"
    )]
    pub(crate) retry_min: Duration,
    /// Longest pause between retries, in seconds. Default 30.
    #[serde(
        rename = "retry_max_secs",
        default = "defaults::retry_max",
        deserialize_with = "seconds"
    )]
    pub(crate) retry_max: Duration,
    /// After SIGTERM/SIGINT: how long in-flight records may take to finish, in seconds.
    /// Records still unfinished then are not marked done and are processed again by the
    /// next owner of their partition. Default 25.
    #[serde(
        rename = "shutdown_grace_secs",
        default = "defaults::shutdown_grace",
        deserialize_with = "seconds"
    )]
    pub(crate) shutdown_grace: Duration,
    /// How often consumer lag and the directory version are sampled into the metrics, in
    /// seconds. Default 15.
    #[serde(
        rename = "lag_interval_secs",
        default = "defaults::lag_interval",
        deserialize_with = "seconds"
    )]
    pub(crate) lag_interval: Duration,
    /// Bound on each blocking broker operation at shutdown and for lag queries (commit,
    /// close, flush), in seconds. Default 10.
    #[serde(
        rename = "kafka_timeout_secs",
        default = "defaults::kafka_timeout",
        deserialize_with = "seconds"
    )]
    pub(crate) kafka_timeout: Duration,
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            group_id: None,
            max_attempts: defaults::max_attempts(),
            max_in_flight: defaults::max_in_flight(),
            max_processing: None,
            crash_journal: None,
            profile: None,
            tenants: TenantsSource::default(),
            directory_refresh: defaults::directory_refresh(),
            verify_reporters: false,
            spf_from_envelope: true,
            receiving_host: None,
            feedback_loops: None,
            pseudonym_key_env: defaults::pseudonym_key_env(),
            pseudonym_key: None,
            reporter_timeout: defaults::reporter_timeout(),
            retry_min: defaults::retry_min(),
            retry_max: defaults::retry_max(),
            shutdown_grace: defaults::shutdown_grace(),
            lag_interval: defaults::lag_interval(),
            kafka_timeout: defaults::kafka_timeout(),
        }
    }
}

impl WorkerSection {
    /// The worker crate's settings.
    pub(crate) fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            max_attempts: self.max_attempts,
            max_in_flight: self.max_in_flight,
            max_processing: self
                .max_processing
                .unwrap_or_else(|| WorkerConfig::default().max_processing),
            retry_min: self.retry_min,
            retry_max: self.retry_max,
            shutdown_grace: self.shutdown_grace,
            lag_interval: self.lag_interval,
            kafka_timeout: self.kafka_timeout,
        }
    }
}

/// Where the worker's tenant directory comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum TenantsSource {
    /// No directory.
    #[default]
    None,
    /// A TOML or JSON directory file, read at startup.
    File {
        /// The file (format by extension: `.json`, else TOML).
        path: PathBuf,
    },
    /// The PostgreSQL directory of `[database]`, refreshed while running.
    Database,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatabaseSection {
    /// Environment variable holding the connection URL (with its password). When it is set
    /// and not empty it wins over `url`. Default `DATABASE_URL`.
    #[serde(default = "defaults::database_url_env")]
    pub(crate) url_env: String,
    /// Connection URL written in the file, used when the variable is unset. Prefer the
    /// variable: the URL carries the password.
    #[serde(default)]
    pub(crate) url: Option<Secret>,
    /// The URL in use, once resolved; never read from the file.
    #[serde(skip)]
    resolved: Option<Secret>,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        DatabaseSection {
            url_env: defaults::database_url_env(),
            url: None,
            resolved: None,
        }
    }
}

impl DatabaseSection {
    /// The connection URL, from the environment variable or the file.
    pub(crate) fn url(&self) -> Option<&Secret> {
        self.resolved.as_ref()
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    /// Serve Prometheus metrics on `GET /metrics`. Default true.
    #[serde(default = "defaults::yes")]
    pub(crate) enabled: bool,
    /// Address of the metrics endpoint. Give each service on one host its own (the
    /// `--metrics-listen` option overrides it). Default `127.0.0.1:9464`.
    #[serde(default = "defaults::metrics_listen")]
    pub(crate) listen: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            listen: defaults::metrics_listen(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSection {
    /// `json` (one JSON object per line, for log shippers) or `pretty` (for a person at a
    /// terminal). Default `json`.
    #[serde(default)]
    pub(crate) format: LogFormat,
    /// Which events to log, in `tracing` filter syntax (e.g. `info,librdkafka=warn`). The
    /// `RUST_LOG` environment variable, when set, wins. Default `info`.
    #[serde(default = "defaults::log_filter")]
    pub(crate) filter: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::default(),
            filter: defaults::log_filter(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Pretty,
}

/// A string that `Debug` prints as `[REDACTED]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret text. Never log it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl ServiceConfig {
    /// Read, parse, resolve secrets from the environment, and check a configuration file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the configuration file {}", path.display()))?;
        let mut config = ServiceConfig::parse(&text)
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        config
            .resolve_secrets(|name| std::env::var(name).ok())
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("in the configuration file {}", path.display()))?;
        Ok(config)
    }

    /// Parse the TOML text (no environment, no checks beyond the types).
    pub(crate) fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Read the secrets named by the file through `lookup` (the environment).
    pub(crate) fn resolve_secrets(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<()> {
        self.kafka.resolve_credentials(&lookup).context("[kafka]")?;
        self.database.resolved = lookup(&self.database.url_env)
            .filter(|url| !url.is_empty())
            .map(Secret::new)
            .or_else(|| self.database.url.clone());
        self.worker.pseudonym_key = lookup(&self.worker.pseudonym_key_env)
            .filter(|key| !key.trim().is_empty())
            .map(Secret::new);
        Ok(())
    }

    /// Check every section's values.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate().context("[kafka]")?;
        if let Some(lmtp) = &self.lmtp {
            lmtp.validate().context("[lmtp]")?;
        }
        if let Some(maildir) = &self.maildir {
            maildir.validate().context("[maildir]")?;
        }
        if let Some(imap) = &self.imap {
            imap.validate().context("[imap]")?;
        }
        self.worker.worker_config().validate().context("[worker]")?;
        if let Some(desk) = &self.desk {
            let text = toml::to_string(desk).context("re-encoding [desk]")?;
            arfwire_desk::DeskConfig::parse(&text).context("[desk]")?;
        }
        if self
            .worker
            .group_id
            .as_deref()
            .is_some_and(|g| g.trim().is_empty())
        {
            anyhow::bail!("[worker]: group_id must not be empty");
        }
        if self.worker.directory_refresh.is_zero() || self.worker.reporter_timeout.is_zero() {
            anyhow::bail!(
                "[worker]: directory_refresh_secs and reporter_timeout_secs must be above 0"
            );
        }
        Ok(())
    }

    /// The worker's consumer group.
    pub(crate) fn worker_group(&self) -> &str {
        self.worker
            .group_id
            .as_deref()
            .unwrap_or(&self.kafka.group_id)
    }

    /// The `[lmtp]` section, or an error naming it.
    pub(crate) fn lmtp(&self) -> anyhow::Result<&LmtpConfig> {
        self.lmtp
            .as_ref()
            .context("the configuration has no [lmtp] section")
    }
}

/// A number of seconds, fractional allowed.
fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| D::Error::custom("expected a non-negative, finite number of seconds"))
}

mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn max_attempts() -> u32 {
        3
    }
    pub(super) fn max_in_flight() -> usize {
        64
    }
    pub(super) fn directory_refresh() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn reporter_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn retry_min() -> Duration {
        Duration::from_millis(200)
    }
    pub(super) fn retry_max() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn shutdown_grace() -> Duration {
        Duration::from_secs(25)
    }
    pub(super) fn lag_interval() -> Duration {
        Duration::from_secs(15)
    }
    pub(super) fn kafka_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn pseudonym_key_env() -> String {
        "ARFWIRE_PSEUDONYM_KEY".to_owned()
    }
    pub(super) fn database_url_env() -> String {
        "DATABASE_URL".to_owned()
    }
    pub(super) fn metrics_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9464))
    }
    pub(super) fn log_filter() -> String {
        "info".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../deploy/arfwire.example.toml");

    /// The environment the example expects, with sentinel secrets.
    fn example_env(name: &str) -> Option<String> {
        match name {
            "ARFWIRE_KAFKA_SASL_USERNAME" => Some("arfwire-svc".to_owned()),
            "ARFWIRE_KAFKA_SASL_PASSWORD" => Some("sentinel-kafka-secret".to_owned()),
            "ARFWIRE_PSEUDONYM_KEY" => Some("5e471ee1".repeat(8)),
            "DATABASE_URL" => {
                Some("postgres://arfwire:sentinel-db-secret@db.example.net/arfwire".to_owned())
            }
            _ => None,
        }
    }

    #[test]
    fn the_example_configuration_parses_and_is_valid() {
        let mut config = ServiceConfig::parse(EXAMPLE).expect("the example parses");
        config
            .resolve_secrets(example_env)
            .expect("secrets resolve");
        config.validate().expect("the example is valid");
        assert!(config.lmtp.is_some() && config.maildir.is_some() && config.imap.is_some());
        assert_eq!(config.worker.tenants, TenantsSource::Database);
        assert_eq!(config.worker_group(), "arfwire-worker");
        assert_eq!(
            config.database.url().map(Secret::expose),
            Some("postgres://arfwire:sentinel-db-secret@db.example.net/arfwire")
        );
        assert_eq!(config.worker.worker_config().max_attempts, 3);
        // Every field the example sets differs from nothing it does not know: the example
        // also documents the defaults.
        assert_eq!(config.log.format, LogFormat::Json);
    }

    /// Every configuration `deploy/` ships parses, resolves with the environment its
    /// deployment provides, and is valid: the compose file's, and the one inside the
    /// Kubernetes config map.
    #[test]
    fn the_deployment_configurations_are_valid() {
        let compose_yaml = include_str!("../../../deploy/compose.yaml");
        assert!(
            compose_yaml.contains("./arfwire.compose.toml:/etc/arfwire/arfwire.toml"),
            "compose.yaml mounts arfwire.compose.toml"
        );
        let compose = include_str!("../../../deploy/arfwire.compose.toml");
        let configmap = include_str!("../../../deploy/kubernetes/configmap.yaml");
        let (_, embedded) = configmap
            .split_once("arfwire.toml: |\n")
            .expect("the config map holds arfwire.toml");
        let kubernetes: String = embedded
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        // What each deployment puts in the environment: compose.yaml's `environment`, the
        // Kubernetes Secret of deploy/kubernetes/README.md.
        let compose_env: &[&str] = &["DATABASE_URL", "ARFWIRE_PSEUDONYM_KEY"];
        let kubernetes_env: &[&str] = &[
            "DATABASE_URL",
            "ARFWIRE_PSEUDONYM_KEY",
            "ARFWIRE_KAFKA_SASL_USERNAME",
            "ARFWIRE_KAFKA_SASL_PASSWORD",
        ];
        let readme = include_str!("../../../deploy/kubernetes/README.md");
        for name in kubernetes_env {
            assert!(
                readme.contains(name),
                "the Secret in the README sets {name}"
            );
        }
        for name in compose_env {
            assert!(compose_yaml.contains(name), "compose.yaml sets {name}");
        }
        for (name, text, env) in [
            ("compose", compose, compose_env),
            ("kubernetes", kubernetes.as_str(), kubernetes_env),
        ] {
            let mut config = ServiceConfig::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            config
                .resolve_secrets(|var| {
                    if env.contains(&var) {
                        example_env(var)
                    } else {
                        None
                    }
                })
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(config.lmtp.is_some(), "{name}: [lmtp]");
            assert_eq!(config.worker.tenants, TenantsSource::Database, "{name}");
            assert!(config.worker.crash_journal.is_some(), "{name}");
            assert!(config.database.url().is_some(), "{name}: the database URL");
            assert!(desk_config(text).is_ok(), "{name}: the desk reads it");
        }
    }

    #[test]
    fn the_desk_reads_its_settings_from_the_service_file_or_a_file_of_its_own() {
        let desk = desk_config(EXAMPLE).expect("the example's [desk]");
        assert_eq!(desk.consumer.group_id, "arfwire-desk");
        assert_eq!(desk.privacy.raw_retention_days, 90);
        let kafka = desk.kafka.expect("the shared [kafka]");
        assert_eq!(kafka.topics.events, "abuse.events.v1");
        // The local file has no [desk]: defaults, with its [kafka].
        let local = include_str!("../../../deploy/arfwire.local.toml");
        let desk = desk_config(local).expect("the local file");
        assert_eq!(desk.consumer.group_id, "arfwire-desk");
        assert_eq!(
            desk.kafka.expect("[kafka]").bootstrap_servers,
            "127.0.0.1:9092"
        );
        // A file of the desk's own still works.
        let own = "[consumer]\ngroup_id = \"desk-2\"\n[kafka]\nbootstrap_servers = \"k:9092\"\n";
        assert_eq!(desk_config(own).unwrap().consumer.group_id, "desk-2");
        // Typos in [desk] are errors, for the desk and for every service reading the file.
        let typo = format!("{EXAMPLE}\n[desk.consumers]\ngroup_id = \"x\"\n");
        assert!(desk_config(&typo).is_err());
        let mut config = ServiceConfig::parse(&typo).expect("parses");
        config.resolve_secrets(example_env).unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut config = ServiceConfig::parse(EXAMPLE).unwrap();
        config.resolve_secrets(example_env).unwrap();
        let mut imap = config.imap.clone().unwrap();
        imap.password_env = None;
        imap.password = Some(arfwire_mailbox::Secret::new("sentinel-imap-secret"));
        config.imap = Some(imap);
        let printed = format!("{config:?}");
        assert!(config.worker.pseudonym_key.is_some());
        let key = "5e471ee1".repeat(8);
        for secret in [
            "sentinel-kafka-secret",
            "sentinel-db-secret",
            "sentinel-imap-secret",
            key.as_str(),
        ] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(printed.contains("[REDACTED]"));
    }

    #[test]
    fn an_unknown_field_is_rejected_with_its_name() {
        let text = EXAMPLE.replacen("max_attempts = 3", "max_attempt = 3", 1);
        assert_ne!(text, EXAMPLE, "the example sets max_attempts");
        let error = ServiceConfig::parse(&text).unwrap_err().to_string();
        assert!(error.contains("unknown field `max_attempt`"), "{error}");
        assert!(
            error.contains("max_attempts"),
            "the message lists the valid names: {error}"
        );

        let error = ServiceConfig::parse("[kafka]\nbootstrap_servers = \"k:9092\"\n[wroker]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `wroker`"), "{error}");
    }

    #[test]
    fn the_environment_wins_over_the_file_for_the_database_url() {
        let text =
            "[kafka]\nbootstrap_servers = \"k:9092\"\n[database]\nurl = \"postgres://file\"\n";
        let mut config = ServiceConfig::parse(text).unwrap();
        config.resolve_secrets(|_| None).unwrap();
        assert_eq!(
            config.database.url().map(Secret::expose),
            Some("postgres://file")
        );
        config
            .resolve_secrets(|name| (name == "DATABASE_URL").then(|| "postgres://env".to_owned()))
            .unwrap();
        assert_eq!(
            config.database.url().map(Secret::expose),
            Some("postgres://env")
        );
    }

    #[test]
    fn a_minimal_file_takes_the_defaults() {
        let mut config = ServiceConfig::parse("[kafka]\nbootstrap_servers = \"k:9092\"\n").unwrap();
        config.resolve_secrets(|_| None).unwrap();
        config.validate().unwrap();
        assert!(config.lmtp().is_err());
        assert_eq!(config.worker.tenants, TenantsSource::None);
        assert_eq!(config.worker.worker_config(), WorkerConfig::default());
        assert!(config.metrics.enabled);
        assert_eq!(config.log.filter, "info");
    }

    #[test]
    fn missing_kafka_credentials_are_named() {
        let text = "[kafka]\nbootstrap_servers = \"k:9093\"\n[kafka.security]\nprotocol = \"SASL_SSL\"\npassword_env = \"X_PASS\"\n";
        let mut config = ServiceConfig::parse(text).unwrap();
        let error = format!("{:#}", config.resolve_secrets(|_| None).unwrap_err());
        assert!(error.contains("ARFWIRE_KAFKA_USERNAME"), "{error}");
    }
}
