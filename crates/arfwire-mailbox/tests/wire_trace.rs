//! The IMAP poller refuses to log in while async-imap's wire trace, which echoes the `LOGIN`
//! command and so the password, would reach a logger.
//!
//! A test binary of its own: it installs a process-wide `log` logger, which would make every
//! other IMAP test refuse to log in too.

use std::future::pending;
use std::time::Duration;

use arfwire_mailbox::{Disposition, ImapConfig, ImapError, ImapPoller, Secret, TlsMode};
use arfwire_raw::{RawSubmission, SubmitError, Submitter};

struct EverythingLogger;

impl log::Log for EverythingLogger {
    fn enabled(&self, _metadata: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, _record: &log::Record<'_>) {}
    fn flush(&self) {}
}

struct NeverCalled;

impl Submitter for NeverCalled {
    async fn submit(&self, _submission: RawSubmission) -> Result<(), SubmitError> {
        panic!("nothing is submitted")
    }
}

#[tokio::test]
async fn the_poller_will_not_log_in_while_the_wire_trace_is_on() {
    log::set_logger(&EverythingLogger).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ImapConfig::new(
        "127.0.0.1",
        "junk",
        "UNUSED",
        Disposition::Flag {
            flag: "\\Seen".into(),
        },
        dir.path().join("state.json"),
    );
    config.password_env = None;
    config.password = Some(Secret::new("p"));
    config.tls = TlsMode::None;
    config.port = Some(1);
    let poller = ImapPoller::new(config, NeverCalled).unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), poller.run(pending()))
        .await
        .expect("stops at once")
        .unwrap_err();
    assert!(matches!(error, ImapError::PasswordWouldBeLogged), "{error}");
}
