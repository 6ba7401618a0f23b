//! Kafka commands for a person: `arfwire topics create` and `arfwire tail`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use arfwire_kafka::{RawConsumer, RawRecord, StartPosition, TopicNames, TopicStatus};
use chrono::SecondsFormat;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::config::ServiceConfig;
use crate::telemetry::{self, Shutdown};

/// Arguments of `arfwire topics`.
#[derive(Debug, Args)]
pub(crate) struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Create the raw, events, rejected and DLQ topics; existing topics are left as they
    /// are
    Create {
        /// Partitions per topic (bounds how many workers share the raw topic)
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Replicas per partition (3 in production; 1 on a single test broker)
        #[arg(long, default_value_t = 3)]
        replication: i32,
        /// The service configuration file
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// `arfwire topics create`.
pub(crate) fn topics(args: &TopicsArgs) -> anyhow::Result<()> {
    let TopicsCommand::Create {
        partitions,
        replication,
        config,
    } = &args.command;
    let config = ServiceConfig::load(config)?;
    telemetry::install_logging(&config.log)?;
    let runtime = telemetry::runtime()?;
    let created = runtime
        .block_on(arfwire_kafka::ensure_topics(
            &config.kafka,
            *partitions,
            *replication,
        ))
        .context("creating the topics")?;
    for (topic, status) in created {
        let status = match status {
            TopicStatus::Created => "created",
            TopicStatus::Existed => "exists (left unchanged)",
        };
        println!("{topic}: {status}");
    }
    Ok(())
}

/// Which topic `tail` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TopicChoice {
    /// Abuse events.
    Events,
    /// Rejection records.
    Rejected,
    /// Dead letters (raw records the worker gave up on).
    Dlq,
    /// Raw submissions.
    Raw,
}

/// Arguments of `arfwire tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// The service configuration file
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// The topic to print
    #[arg(long, value_enum, default_value_t = TopicChoice::Events)]
    topic: TopicChoice,

    /// Start at the earliest record instead of printing only records written from now on
    #[arg(long)]
    from_beginning: bool,

    /// Stop after printing this many records
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// Stop once no record arrived for this many seconds (default: run until interrupted)
    #[arg(long, value_name = "SECONDS")]
    idle_exit: Option<f64>,
}

/// `arfwire tail`: print records as JSON lines with their headers. Events and rejection
/// records are printed whole; raw records and dead letters (mail content) by size and
/// SHA-256 only.
pub(crate) fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let config = ServiceConfig::load(&args.config)?;
    telemetry::install_logging(&config.log)?;
    let idle = args
        .idle_exit
        .map(Duration::try_from_secs_f64)
        .transpose()
        .map_err(|_| crate::UsageError("--idle-exit takes a number of seconds".to_owned()))?;
    let runtime = telemetry::runtime()?;
    let topic = match args.topic {
        TopicChoice::Events => config.kafka.topics.events.clone(),
        TopicChoice::Rejected => config.kafka.topics.rejected.clone(),
        TopicChoice::Dlq => config.kafka.topics.dlq.clone(),
        TopicChoice::Raw => config.kafka.topics.raw.clone(),
    };
    // The consumer reads "the raw topic" of its configuration: point that at the topic
    // asked for (the other names only have to differ from it).
    let mut kafka = config.kafka.clone();
    kafka.topics = TopicNames::with_suffix("not-read-by-tail");
    kafka.topics.raw = topic.clone();
    let group = format!(
        "arfwire-tail-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let start = if args.from_beginning {
        StartPosition::Beginning
    } else {
        StartPosition::End
    };
    let content_is_mail = matches!(args.topic, TopicChoice::Dlq | TopicChoice::Raw);
    runtime.block_on(async {
        let shutdown = Shutdown::on_signals()?;
        let consumer = RawConsumer::assign(&kafka, &group, start, Duration::from_secs(10))
            .await
            .with_context(|| format!("reading {topic}"))?;
        let stop = shutdown.clone().wait();
        tokio::pin!(stop);
        let mut printed = 0u64;
        let mut stdout = std::io::stdout().lock();
        loop {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            let next = async {
                match idle {
                    Some(idle) => tokio::time::timeout(idle, consumer.recv()).await.ok(),
                    None => Some(consumer.recv().await),
                }
            };
            let received = tokio::select! {
                () = &mut stop => break,
                received = next => received,
            };
            let record = match received {
                None => break,
                Some(Ok(record)) => record,
                Some(Err(error)) if error.is_fatal() => return Err(error.into()),
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    continue;
                }
            };
            let line = render(&record, content_is_mail).to_string();
            if writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // The reader went away (e.g. `| head`).
                break;
            }
            printed += 1;
        }
        drop(stdout);
        let _ = consumer.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// One record as a JSON object: where it is, its key, its headers (a repeated header
/// becomes a list) and its value.
fn render(record: &RawRecord, content_is_mail: bool) -> Value {
    let mut headers = Map::new();
    for header in &record.headers {
        let value = header.value.as_deref().map_or(Value::Null, |v| {
            Value::String(String::from_utf8_lossy(v).into_owned())
        });
        match headers.get_mut(&header.key) {
            Some(Value::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                headers.insert(header.key.clone(), value);
            }
        }
    }
    let payload = record.payload();
    let value = if content_is_mail {
        json!({ "bytes": payload.len(), "sha256": arfwire_raw::sha256_hex(payload) })
    } else {
        serde_json::from_slice::<Value>(payload)
            .unwrap_or_else(|_| json!({ "unparsed_bytes": payload.len() }))
    };
    json!({
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record
            .timestamp
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        "key": record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        "value": value,
    })
}
