//! `arfwire`: turn mail sent to an abuse mailbox into versioned JSON abuse events.
//!
//! The offline commands live here: `process` reads files, directories, Maildir folders and
//! mbox files and writes one JSON line per abuse event or rejection; `parse` shows a person
//! what the parser makes of one submission.

mod attribution;
mod config;
mod desk;
mod desk_store;
mod explain;
mod kafka_tools;
mod process;
mod services;
mod show;
mod submission;
mod summary;
mod telemetry;
mod tenants;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Turn mail sent to an abuse mailbox (ARF feedback reports, authentication-failure
/// reports, JMRP complaints, forwarded spam) into versioned JSON abuse events.
#[derive(Debug, Parser)]
#[command(name = "arfwire", version, propagate_version = true)]
#[command(
    after_help = "Logging goes to standard error; set RUST_LOG (e.g. RUST_LOG=debug) \
                        to see more than warnings."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse submissions and write one JSON line per abuse event or rejection
    #[command(long_about = PROCESS_LONG_ABOUT)]
    Process(ProcessArgs),
    /// Show what the parser makes of one submission, for a person
    Parse(ParseArgs),
    /// Explain, for a person, which tenant and IPs sent each reported message, and why
    Explain(explain::ExplainArgs),
    /// Manage the tenant directory stored in PostgreSQL (migrate, import, export)
    Tenants(tenants::TenantsArgs),
    /// The abuse desk: serve the triage API and pages, manage API tokens
    Desk(desk::DeskArgs),
    /// Create the Kafka topics (raw, events, rejected, DLQ)
    Topics(kafka_tools::TopicsArgs),
    /// Run the LMTP front door: accept reports, answer 250 once the raw topic has them
    Lmtp(services::ServiceArgs),
    /// Run the worker: raw submissions in; abuse events, rejections, dead letters out
    Worker(services::ServiceArgs),
    /// Watch a Maildir folder and hand its messages to the raw topic
    Maildir(services::ServiceArgs),
    /// Poll an IMAP mailbox and hand its messages to the raw topic
    Imap(services::ServiceArgs),
    /// Re-read the raw topic from offsets or a time and publish again with the current parser
    Replay(services::ReplayArgs),
    /// Print the records of a topic as JSON lines, with their headers
    Tail(kafka_tools::TailArgs),
}

/// The long help of `arfwire process`.
const PROCESS_LONG_ABOUT: &str = "Parse submissions and write one JSON line per abuse event or rejection.\n\n\
Each PATH may be a file holding one message, a directory (walked recursively in name order, \
hidden entries skipped), a Maildir folder (cur/ and new/ are read, tmp/ never) or an mbox \
file (*.mbox, *.mbx, or any file whose first line and at least one later line begin with \
\"From \"); a *.eml file is always one message.\n\n\
Every submission yields either one abuse event per reported message \
(\"schema\": \"arfwire.abuse-event.v1\") or one rejection record \
(\"schema\": \"arfwire.rejected.v1\") giving the reason: not a report (a bounce, an \
auto-reply, ...) or refused (empty, not mail, too large, ...). Inputs that cannot be read are \
logged and counted, and the run goes on. A summary is printed on standard error at the end.\n\n\
The exit status is 0 when every record was written, whatever was rejected; it is 1 when \
output could not be written and 2 on a usage error.";

/// Arguments of `arfwire process`.
#[derive(Debug, Args)]
struct ProcessArgs {
    /// Files, directories, Maildir folders or mbox files to read
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// Write abuse events to FILE instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,

    /// Write rejection records to FILE. Without it they go to the same stream as the
    /// events, one JSON line each, told apart by their "schema" field
    #[arg(long, value_name = "FILE")]
    rejected: Option<PathBuf>,

    /// Receive time recorded for every submission (RFC 3339, e.g. 2024-05-01T12:00:00Z).
    /// Without it: the file's modification time, else the current time
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    received_at: Option<DateTime<Utc>>,

    /// Do not draw a progress bar (one is drawn only when standard error is a terminal)
    #[arg(long)]
    no_progress: bool,

    /// Largest submission read, in bytes; a larger file (or mbox message) is refused with
    /// reason "too_large" without being read into memory
    #[arg(long, value_name = "BYTES", default_value_t = arfwire_intake::DEFAULT_MAX_FILE_BYTES)]
    max_bytes: u64,

    #[command(flatten)]
    attribution: attribution::AttributionArgs,
}

/// Arguments of `arfwire parse`.
#[derive(Debug, Args)]
struct ParseArgs {
    /// The submission: a message file, an mbox file (every message is shown), or - for
    /// standard input
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Print the derived records (abuse events or the rejection record) as pretty JSON
    /// instead
    #[arg(long)]
    json: bool,

    /// Receive time to record (RFC 3339). Without it: the file's modification time, else
    /// the current time
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    received_at: Option<DateTime<Utc>>,

    /// Largest submission read, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = arfwire_intake::DEFAULT_MAX_FILE_BYTES)]
    max_bytes: u64,
}

pub(crate) fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| format!("not an RFC 3339 time ({error}); e.g. 2024-05-01T12:00:00Z"))
}

/// A mistake in how the command was called, as opposed to a failure while running it.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The services and Kafka tools install logging from their configuration file.
    let configured_logging = matches!(
        cli.command,
        Command::Topics(_)
            | Command::Lmtp(_)
            | Command::Worker(_)
            | Command::Maildir(_)
            | Command::Imap(_)
            | Command::Replay(_)
            | Command::Tail(_)
    );
    if !configured_logging {
        init_logging();
    }
    let result = match cli.command {
        Command::Process(args) => process::run(&args),
        Command::Parse(args) => show::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Tenants(args) => tenants::run(&args),
        Command::Desk(args) => desk::run(&args),
        Command::Topics(args) => kafka_tools::topics(&args),
        Command::Lmtp(args) => services::lmtp(&args),
        Command::Worker(args) => services::worker(&args),
        Command::Maildir(args) => services::maildir(&args),
        Command::Imap(args) => services::imap(&args),
        Command::Replay(args) => services::replay(&args),
        Command::Tail(args) => kafka_tools::tail(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
