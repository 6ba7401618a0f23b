//! `arfwire desk consume | retention | erase | alerts evaluate`: the abuse desk's store
//! (the `arfwire-desk` crate), and the pseudonym key of the offline commands.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context;
use arfwire_desk::{DeskConfig, StoreConsumer};
use arfwire_events::Pseudonymizer;
use arfwire_store::Store;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

/// The environment variable holding the pseudonym key (hex) when no configuration names
/// another.
const KEY_ENV: &str = "ARFWIRE_PSEUDONYM_KEY";

/// The pseudonymizer of the offline commands (`process`, `parse --json`): the key in
/// `ARFWIRE_PSEUDONYM_KEY` when it is set, so tokens match the desk's; otherwise a random
/// key for this run only (tokens then correlate within the run and with nothing else).
pub(crate) fn offline_pseudonymizer() -> anyhow::Result<&'static Pseudonymizer> {
    static KEY: OnceLock<Pseudonymizer> = OnceLock::new();
    if let Some(p) = KEY.get() {
        return Ok(p);
    }
    let p = match std::env::var(KEY_ENV) {
        Ok(hex) if !hex.trim().is_empty() => {
            Pseudonymizer::from_hex(&hex).with_context(|| format!("{KEY_ENV} is not usable"))?
        }
        _ => Pseudonymizer::ephemeral().context("drawing a pseudonym key for this run")?,
    };
    Ok(KEY.get_or_init(|| p))
}

/// The store commands, merged into `arfwire desk`.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Create or upgrade the desk's tables (idempotent; every other command does it too)
    Migrate,
    /// Consume the event, rejection and raw topics into the desk's tables with the desk's
    /// own consumer group, evaluate and publish alerts; runs until Ctrl-C or SIGTERM
    Consume(ConfigArg),
    /// Delete raw evidence past its retention date (reports, clusters and counts stay)
    Retention {
        #[command(flatten)]
        config: ConfigArg,
        /// The clock to judge retention by (RFC 3339); default now
        #[arg(long, value_name = "RFC3339", value_parser = crate::parse_rfc3339)]
        now: Option<DateTime<Utc>>,
    },
    /// Erase one complainant: delete the raw evidence naming them, replace their pseudonym
    /// by "erased" everywhere, redact their address from notes; counts stay
    Erase {
        #[command(flatten)]
        config: ConfigArg,
        /// The complainant's address, or - to read it from standard input (keeps it out of
        /// the shell history and the process list)
        #[arg(long, value_name = "ADDRESS")]
        complainant: String,
        /// Who asked, for the audit log
        #[arg(long, value_name = "NAME", default_value = "cli")]
        actor: String,
    },
    /// Alert rules
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
}

/// `arfwire desk alerts ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// Evaluate every alert rule once and print what fired or resolved
    Evaluate {
        #[command(flatten)]
        config: ConfigArg,
        /// The clock to evaluate at (RFC 3339); default now
        #[arg(long, value_name = "RFC3339", value_parser = crate::parse_rfc3339)]
        now: Option<DateTime<Utc>>,
        /// Also publish pending alerts to the alerts topic (needs the [kafka] section)
        #[arg(long)]
        publish: bool,
    },
}

/// `--config FILE`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConfigArg {
    /// The service configuration file (its [desk] and [kafka] sections) or a file of the
    /// desk's own (TOML: privacy, consumer, alerts, kafka); default settings without it
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<DeskConfig> {
        match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                crate::config::desk_config(&text)
                    .with_context(|| format!("the desk configuration in {}", path.display()))
            }
            None => Ok(DeskConfig::default()),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

async fn store(database_url: &str) -> anyhow::Result<Store> {
    let store = Store::connect(database_url)
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

fn kafka_of(config: &mut DeskConfig) -> anyhow::Result<()> {
    let kafka = config
        .kafka
        .as_mut()
        .context("the configuration has no [kafka] section")?;
    kafka
        .resolve_credentials(env)
        .context("reading the Kafka credentials")?;
    Ok(())
}

pub(crate) fn run(database_url: &str, command: &StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Consume(config) => {
            let mut config = config.load()?;
            kafka_of(&mut config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(async {
                let store = store(database_url).await?;
                let consumer = StoreConsumer::new(&config, store.pool().clone())
                    .await
                    .context("starting the desk consumer")?;
                eprintln!(
                    "desk consumer running (group {}); Ctrl-C stops it",
                    config.consumer.group_id
                );
                let stats = consumer
                    .run(arfwire_desk::shutdown_signal())
                    .await
                    .context("consuming")?;
                eprintln!(
                    "desk consumer stopped: {} records, {} new, {} duplicates, {} errors, \
                     {} alerts fired, {} published",
                    stats.records,
                    stats.inserted,
                    stats.duplicates,
                    stats.errors,
                    stats.alerts_fired,
                    stats.alerts_published
                );
                anyhow::Ok(())
            })
        }
        other => crate::tenants::runtime()?.block_on(async {
            let store = store(database_url).await?;
            let pool = store.pool();
            match other {
                StoreCommand::Consume(_) => unreachable!("handled above"),
                StoreCommand::Migrate => println!("desk tables are up to date"),
                StoreCommand::Retention { config, now } => {
                    config.load()?;
                    let report = arfwire_desk::retention(pool, now.unwrap_or_else(Utc::now))
                        .await
                        .context("retention")?;
                    println!("{report}");
                }
                StoreCommand::Erase {
                    config,
                    complainant,
                    actor,
                } => {
                    let config = config.load()?;
                    let pseudonymizer = config.pseudonymizer(env)?;
                    let address = if complainant == "-" {
                        let mut line = String::new();
                        std::io::stdin()
                            .read_line(&mut line)
                            .context("reading the address from standard input")?;
                        line.trim().to_owned()
                    } else {
                        complainant.clone()
                    };
                    let report =
                        arfwire_desk::erase(pool, &address, &pseudonymizer, actor, Utc::now())
                            .await
                            .context("erasure")?;
                    println!("{report}");
                }
                StoreCommand::Alerts {
                    command:
                        AlertsCommand::Evaluate {
                            config,
                            now,
                            publish,
                        },
                } => {
                    let mut config = config.load()?;
                    arfwire_desk::sync_config_rule(pool, config.alerts.default_rule.as_ref())
                        .await
                        .context("writing the configured rule")?;
                    let report = arfwire_desk::evaluate(pool, now.unwrap_or_else(Utc::now))
                        .await
                        .context("evaluating alerts")?;
                    for fired in &report.fired {
                        println!(
                            "fired {} rule {} tenant {} count {}",
                            fired.alert_id, fired.rule, fired.tenant_id, fired.count
                        );
                    }
                    println!(
                        "{} rules: {} fired, {} still open, {} resolved",
                        report.rules,
                        report.fired.len(),
                        report.updated,
                        report.resolved
                    );
                    if *publish {
                        kafka_of(&mut config)?;
                        let kafka = config.kafka.as_ref().context("no [kafka] section")?;
                        let publisher = arfwire_desk::AlertPublisher::new(
                            kafka,
                            &config.alerts.topic,
                            &config.alerts.source,
                        )?;
                        let n = arfwire_desk::publish_pending(pool, &publisher)
                            .await
                            .context("publishing alerts")?;
                        println!("{n} alerts published to {}", config.alerts.topic);
                    }
                }
            }
            anyhow::Ok(())
        }),
    }
}
