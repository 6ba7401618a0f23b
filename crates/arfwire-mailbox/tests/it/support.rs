//! A scripted test double for the log, and small helpers.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arfwire_raw::{RawSubmission, SubmitError, Submitter};

/// What the test log does with one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Durable: return `Ok`.
    Accept,
    /// Refuse as unavailable.
    Refuse,
    /// Refuse as too large.
    TooLarge,
    /// Make it durable, then never answer: a crash between "durable" and "acknowledged".
    Hang,
}

type Check = Box<dyn Fn(&RawSubmission) -> Result<(), String> + Send + Sync>;

#[derive(Default)]
struct Inner {
    script: VecDeque<Outcome>,
    default: Option<Outcome>,
    attempts: Vec<RawSubmission>,
    durable: Vec<RawSubmission>,
    violations: Vec<String>,
}

/// A log that follows a script of outcomes, then a default, and records everything. Clones
/// share one record.
#[derive(Clone, Default)]
pub(crate) struct TestLog {
    inner: Arc<Mutex<Inner>>,
    check: Arc<Mutex<Option<Check>>>,
}

impl TestLog {
    /// A log that accepts everything.
    pub(crate) fn accepting() -> Self {
        TestLog::with_default(Outcome::Accept)
    }

    /// A log that refuses everything as unavailable.
    pub(crate) fn refusing() -> Self {
        TestLog::with_default(Outcome::Refuse)
    }

    /// A log that answers `outcomes` in order, then accepts.
    pub(crate) fn scripted(outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        let log = TestLog::accepting();
        log.lock().script.extend(outcomes);
        log
    }

    fn with_default(outcome: Outcome) -> Self {
        let log = TestLog::default();
        log.lock().default = Some(outcome);
        log
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on, answer `outcome` once the script is used up.
    pub(crate) fn set_default(&self, outcome: Outcome) {
        self.lock().default = Some(outcome);
    }

    /// Run `check` on every submission as it arrives; failures are collected in
    /// [`TestLog::violations`].
    pub(crate) fn check_each(
        &self,
        check: impl Fn(&RawSubmission) -> Result<(), String> + Send + Sync + 'static,
    ) {
        *self.check.lock().unwrap() = Some(Box::new(check));
    }

    /// Every submission attempted, in order.
    pub(crate) fn attempts(&self) -> Vec<RawSubmission> {
        self.lock().attempts.clone()
    }

    /// Every submission made durable (accepted, or durable and then hung), in order.
    pub(crate) fn durable(&self) -> Vec<RawSubmission> {
        self.lock().durable.clone()
    }

    /// The sources of the durable submissions, in order.
    pub(crate) fn durable_sources(&self) -> Vec<String> {
        self.durable()
            .into_iter()
            .map(|submission| submission.source.unwrap_or_default())
            .collect()
    }

    /// What the checks found wrong.
    pub(crate) fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }
}

impl Submitter for TestLog {
    fn submit(
        &self,
        submission: RawSubmission,
    ) -> impl Future<Output = Result<(), SubmitError>> + Send {
        let log = self.clone();
        async move {
            if let Some(check) = log.check.lock().unwrap().as_ref()
                && let Err(violation) = check(&submission)
            {
                log.lock().violations.push(violation);
            }
            let outcome = {
                let mut inner = log.lock();
                inner.attempts.push(submission.clone());
                let outcome = inner
                    .script
                    .pop_front()
                    .or(inner.default)
                    .unwrap_or(Outcome::Accept);
                if matches!(outcome, Outcome::Accept | Outcome::Hang) {
                    inner.durable.push(submission);
                }
                outcome
            };
            match outcome {
                Outcome::Accept => Ok(()),
                Outcome::Refuse => Err(SubmitError::Unavailable("the test log is down".into())),
                Outcome::TooLarge => Err(SubmitError::TooLarge("the test log says so".into())),
                Outcome::Hang => std::future::pending().await,
            }
        }
    }
}

/// Wait until `condition` holds, checking every 20 ms; panic naming `what` after `limit`.
pub(crate) async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small message with CRLF line ends (as IMAP returns them), unique by `tag`.
pub(crate) fn message(tag: &str) -> Vec<u8> {
    format!(
        "From: reporter@example.org\r\nTo: junk@example.net\r\nSubject: report {tag}\r\n\
         Message-ID: <{tag}@example.org>\r\n\r\nThis is spam {tag}.\r\n"
    )
    .into_bytes()
}

/// Turn on log output for a test run with `RUST_LOG` set.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
