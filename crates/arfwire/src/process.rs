//! `arfwire process`: walk inputs, parse each submission, write one JSON line per record.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arfwire_events::{Intake, Output};
use arfwire_intake::{IntakeError, Item, WalkOptions};
use arfwire_parse::Outcome;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{debug, warn};

use crate::summary::Summary;
use crate::{ProcessArgs, UsageError, submission};

/// Where records go: one stream, or events and rejections apart.
struct Sinks {
    events: Sink,
    rejected: Option<Sink>,
}

struct Sink {
    name: String,
    writer: Box<dyn Write>,
}

impl Sink {
    fn stdout() -> Self {
        Sink {
            name: "standard output".to_owned(),
            writer: Box::new(BufWriter::new(io::stdout().lock())),
        }
    }

    fn create(path: &Path) -> anyhow::Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Sink {
            name: path.display().to_string(),
            writer: Box::new(BufWriter::new(file)),
        })
    }

    fn write_line(&mut self, line: &str) -> anyhow::Result<()> {
        writeln!(self.writer, "{line}").with_context(|| format!("cannot write to {}", self.name))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.writer
            .flush()
            .with_context(|| format!("cannot write to {}", self.name))
    }
}

impl Sinks {
    fn open(args: &ProcessArgs) -> anyhow::Result<Self> {
        let events = match &args.out {
            Some(path) => Sink::create(path)?,
            None => Sink::stdout(),
        };
        // The same file named twice is one stream, not two writers truncating each other.
        let rejected = match &args.rejected {
            Some(path) if Some(path) != args.out.as_ref() => Some(Sink::create(path)?),
            Some(_) | None => None,
        };
        Ok(Sinks { events, rejected })
    }

    fn write(&mut self, output: &Output) -> anyhow::Result<()> {
        let sink = match (output, self.rejected.as_mut()) {
            (Output::Rejected(_), Some(rejected)) => rejected,
            _ => &mut self.events,
        };
        sink.write_line(&output.to_json_line())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.events.flush()?;
        if let Some(rejected) = self.rejected.as_mut() {
            rejected.flush()?;
        }
        Ok(())
    }
}

/// The progress spinner, when there is a terminal to draw it on.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(wanted: bool) -> Self {
        if !wanted || !io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {pos} submissions  {msg}  [{elapsed}]")
            .expect("the progress template is valid");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(Some(bar))
    }

    fn tick(&self, summary: &Summary) {
        if let Some(bar) = &self.0 {
            bar.set_position(summary.submissions + summary.input_errors);
            bar.set_message(format!(
                "{} events, {} rejected, {} unreadable",
                summary.events, summary.rejected, summary.input_errors
            ));
        }
    }

    /// Run `f` (which prints) with the bar out of the way.
    fn suspend(&self, f: impl FnOnce()) {
        match &self.0 {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Every named path must exist: a typo is a usage error, found before any output is made.
fn check_paths(paths: &[PathBuf]) -> anyhow::Result<()> {
    for path in paths {
        if let Err(error) = path.symlink_metadata()
            && error.kind() == io::ErrorKind::NotFound
        {
            let message = format!("no such file or directory: {}", path.display());
            return Err(UsageError(message).into());
        }
    }
    Ok(())
}

/// The output files, resolved, so the walk does not read back what this run writes.
fn output_paths(args: &ProcessArgs) -> Vec<PathBuf> {
    [&args.out, &args.rejected]
        .into_iter()
        .flatten()
        .filter_map(|path| std::fs::canonicalize(path).ok())
        .collect()
}

fn is_output(path: &Path, outputs: &[PathBuf]) -> bool {
    outputs.iter().any(|output| {
        output.file_name() == path.file_name()
            && std::fs::canonicalize(path).is_ok_and(|p| &p == output)
    })
}

pub(crate) fn run(args: &ProcessArgs) -> anyhow::Result<()> {
    check_paths(&args.paths)?;
    let started = Instant::now();
    let mut sinks = Sinks::open(args)?;
    let outputs = output_paths(args);
    let progress = Progress::new(!args.no_progress);
    let attributor = crate::attribution::Attributor::load(&args.attribution)?;
    let mut summary = Summary::default();

    let options = WalkOptions {
        max_file_bytes: args.max_bytes,
    };
    for result in arfwire_intake::walk_with(args.paths.iter().cloned(), options) {
        let decided = match result {
            Ok(item) if is_output(item.origin.path(), &outputs) => {
                debug!(path = %item.origin, "Skipped this run's own output file.");
                continue;
            }
            Ok(item) => {
                let (outcome, intake) = decide(&item, args);
                Some((outcome, intake, Some(item.bytes)))
            }
            Err(error) => refused_input(error, args, &progress).map(|(o, i)| (o, i, None)),
        };
        match decided {
            Some((outcome, intake, raw)) => {
                summary.record(&outcome);
                let mut outputs = arfwire_events::derive_with(
                    &outcome,
                    &intake,
                    crate::desk_store::offline_pseudonymizer()?,
                );
                if let Some(attributor) = attributor.as_ref() {
                    let received_at = chrono::DateTime::parse_from_rfc3339(&intake.received_at)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .unwrap_or_else(|_| chrono::Utc::now());
                    attributor.enrich(&outcome, raw.as_deref(), &mut outputs, received_at);
                }
                for output in &outputs {
                    sinks.write(output)?;
                }
            }
            None => summary.input_errors += 1,
        }
        progress.tick(&summary);
    }
    sinks.flush()?;
    progress.finish();
    eprint!("{}", summary.render(started.elapsed()));
    Ok(())
}

/// Parse one item read from disk.
fn decide(item: &Item, args: &ProcessArgs) -> (Outcome, Intake) {
    let received_at = submission::received_at(args.received_at, item.modified);
    let intake = submission::intake(&item.origin, &item.bytes, received_at);
    let outcome = submission::parse(&item.bytes, received_at);
    debug!(
        origin = %item.origin,
        size = item.bytes.len(),
        outcome = outcome_label(&outcome),
        "Parsed a submission."
    );
    (outcome, intake)
}

/// An input the intake could not hand over: a rejection to record when its bytes can be
/// named (too large), nothing otherwise. Logged either way.
fn refused_input(
    error: IntakeError,
    args: &ProcessArgs,
    progress: &Progress,
) -> Option<(Outcome, Intake)> {
    match error {
        IntakeError::TooLarge {
            origin,
            size,
            limit,
            modified,
            sha256,
        } => {
            progress.suspend(|| {
                warn!(input = %origin, size, limit, "Refused an input larger than the limit.");
            });
            let sha256 = sha256?;
            let received_at = submission::received_at(args.received_at, modified);
            Some(submission::too_large(
                &origin,
                size,
                limit,
                sha256,
                received_at,
            ))
        }
        error => {
            progress.suspend(|| warn!(error = %error, "Skipped an input that cannot be read."));
            None
        }
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Report(submission) => submission.kind.as_str(),
        Outcome::NotReport(not_report) => not_report.reason.as_str(),
        Outcome::Rejected(rejection) => rejection.reason.as_str(),
    }
}
