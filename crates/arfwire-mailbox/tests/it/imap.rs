//! The IMAP poller against a private Dovecot (see the `dovecot` module).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arfwire_mailbox::{Disposition, ImapConfig, ImapError, ImapPoller, ImapState, Secret, TlsMode};
use arfwire_raw::Channel;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dovecot::{Dovecot, Options, PASSWORD, USER};
use crate::support::{Outcome, TestLog, eventually, init_tracing, message};

const LIMIT: Duration = Duration::from_secs(10);
const PROCESSED: &str = "Processed";
const KEYWORD: &str = "$ArfwireProcessed";

fn move_to_processed() -> Disposition {
    Disposition::Move {
        mailbox: PROCESSED.into(),
    }
}

fn flag(flag: &str) -> Disposition {
    Disposition::Flag { flag: flag.into() }
}

/// A configuration for the test server over plain TCP, retrying fast. `IDLE` is used; the
/// poll interval is long, so only `IDLE` can notice new mail quickly.
fn config(dovecot: &Dovecot, dir: &Path, on_success: Disposition) -> ImapConfig {
    let mut config = ImapConfig::new(
        "127.0.0.1",
        USER,
        "UNUSED",
        on_success,
        dir.join("imap-state.json"),
    );
    config.password_env = None;
    config.password = Some(Secret::new(PASSWORD));
    config.tls = TlsMode::None;
    config.port = Some(dovecot.port());
    config.retry_min = Duration::from_millis(20);
    config.retry_max = Duration::from_millis(100);
    config.timeout = Duration::from_secs(5);
    config.poll_interval = Duration::from_secs(60);
    config.fetch_batch = 2;
    config
}

/// A poller running in its own task.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ImapError>>,
}

fn start(config: ImapConfig, log: &TestLog) -> Running {
    let poller = ImapPoller::new(config, log.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(poller.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the poller stops promptly")
            .expect("the poller task does not panic")
            .expect("the poller ends without error");
    }

    /// Drop the poller wherever it is, as a crash would.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn uid_of(source: &str) -> u32 {
    source
        .rsplit_once(";UID=")
        .and_then(|(_, uid)| uid.parse().ok())
        .unwrap_or_else(|| panic!("no UID in {source}"))
}

fn durable_uids(log: &TestLog) -> Vec<u32> {
    log.durable_sources().iter().map(|s| uid_of(s)).collect()
}

fn saved_state(dir: &Path) -> Option<ImapState> {
    ImapState::load(&dir.join("imap-state.json")).unwrap()
}

/// At each submission: the message is still in the INBOX, without the disposition applied.
fn check_untouched_until_accepted(log: &TestLog, dovecot: &Arc<Dovecot>, marker: &'static str) {
    let dovecot = Arc::clone(dovecot);
    log.check_each(move |submission| {
        let uid = uid_of(submission.source.as_deref().unwrap_or_default());
        match dovecot.messages("INBOX").iter().find(|m| m.uid == uid) {
            None => Err(format!(
                "UID {uid} left the INBOX before the log accepted it"
            )),
            Some(stored) if stored.has_flag(marker) => Err(format!(
                "UID {uid} was flagged {marker} before the log accepted it"
            )),
            Some(_) => Ok(()),
        }
    });
}

#[tokio::test]
async fn messages_delivered_before_start_are_submitted_in_uid_order_then_moved() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    let tags = ["first", "second", "third", "fourth", "fifth"];
    let uids: Vec<u32> = tags
        .iter()
        .map(|tag| dovecot.deliver(&message(tag)))
        .collect();
    let log = TestLog::accepting();
    check_untouched_until_accepted(&log, &dovecot, "\\Seen");

    let running = start(config(&dovecot, dir.path(), move_to_processed()), &log);
    eventually("all messages moved and recorded", LIMIT, || {
        dovecot.uids(PROCESSED).len() == tags.len()
            && dovecot.uids("INBOX").is_empty()
            && saved_state(dir.path()).map(|state| state.last_uid) == uids.last().copied()
    })
    .await;
    running.stop().await;

    assert_eq!(durable_uids(&log), uids);
    let bodies: Vec<Vec<u8>> = log.durable().into_iter().map(|s| s.bytes).collect();
    let expected: Vec<Vec<u8>> = tags.iter().map(|tag| message(tag)).collect();
    assert_eq!(bodies, expected, "byte-exact, in UID order");
    for submission in log.durable() {
        assert_eq!(submission.channel, Channel::Imap);
        let source = submission.source.unwrap();
        assert!(
            source.starts_with(&format!(
                "imap://{USER}@127.0.0.1:{}/INBOX;UIDVALIDITY=",
                dovecot.port()
            )),
            "{source}"
        );
    }
    // Fetched with PEEK: nothing was marked seen on the way.
    assert!(
        dovecot
            .messages(PROCESSED)
            .iter()
            .all(|m| !m.has_flag("\\Seen"))
    );
    let state = saved_state(dir.path()).unwrap();
    assert_eq!(state.last_uid, *uids.last().unwrap());
    assert_eq!(state.uid_validity, dovecot.uid_validity("INBOX"));
    assert_eq!(log.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_refusing_log_leaves_messages_untouched_and_a_later_run_takes_them() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    let uids: Vec<u32> = ["a", "b", "c"]
        .iter()
        .map(|tag| dovecot.deliver(&message(tag)))
        .collect();

    let refusing = TestLog::refusing();
    check_untouched_until_accepted(&refusing, &dovecot, "\\Seen");
    let running = start(config(&dovecot, dir.path(), flag("\\Seen")), &refusing);
    eventually("several refused attempts", LIMIT, || {
        refusing.attempts().len() >= 3
    })
    .await;
    running.stop().await;

    // Only the first message was tried, again and again; nothing was flagged or recorded.
    assert!(
        refusing
            .attempts()
            .iter()
            .all(|s| uid_of(s.source.as_deref().unwrap()) == uids[0])
    );
    assert!(
        dovecot
            .messages("INBOX")
            .iter()
            .all(|m| !m.has_flag("\\Seen"))
    );
    assert_eq!(saved_state(dir.path()).map(|s| s.last_uid), Some(0));

    let accepting = TestLog::accepting();
    let running = start(config(&dovecot, dir.path(), flag("\\Seen")), &accepting);
    eventually("all messages flagged", LIMIT, || {
        dovecot
            .messages("INBOX")
            .iter()
            .all(|m| m.has_flag("\\Seen"))
    })
    .await;
    running.stop().await;
    assert_eq!(durable_uids(&accepting), uids);
    assert_eq!(refusing.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn mail_arriving_during_idle_is_picked_up_quickly() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::accepting();
    let running = start(config(&dovecot, dir.path(), flag(KEYWORD)), &log);
    // The state file appears once the mailbox is selected; then the poller goes idle.
    eventually("the mailbox selected", LIMIT, || {
        saved_state(dir.path()).is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    for round in 1..=2 {
        let delivered = Instant::now();
        let uid = dovecot.deliver(&message(&format!("idle-{round}")));
        eventually("the new message submitted", LIMIT, || {
            durable_uids(&log).contains(&uid)
        })
        .await;
        // The poll interval is a minute: only IDLE explains a quick pick-up.
        assert!(
            delivered.elapsed() < Duration::from_secs(5),
            "picked up after {:?}",
            delivered.elapsed()
        );
        eventually("the new message flagged", LIMIT, || {
            dovecot
                .messages("INBOX")
                .iter()
                .any(|m| m.uid == uid && m.has_flag(KEYWORD))
        })
        .await;
    }
    running.stop().await;
    assert_eq!(log.durable().len(), 2);
}

#[tokio::test]
async fn state_survives_a_restart() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<u32> = ["one", "two"]
        .iter()
        .map(|tag| dovecot.deliver(&message(tag)))
        .collect();

    let log = TestLog::accepting();
    let running = start(config(&dovecot, dir.path(), flag(KEYWORD)), &log);
    eventually("both submitted", LIMIT, || log.durable().len() == 2).await;
    eventually("both flagged", LIMIT, || {
        dovecot
            .messages("INBOX")
            .iter()
            .all(|m| m.has_flag(KEYWORD))
    })
    .await;
    running.stop().await;
    assert_eq!(durable_uids(&log), first);

    let third = dovecot.deliver(&message("three"));
    let after_restart = TestLog::accepting();
    let running = start(config(&dovecot, dir.path(), flag(KEYWORD)), &after_restart);
    eventually("the new message submitted", LIMIT, || {
        !after_restart.durable().is_empty()
    })
    .await;
    // Give a wrong re-read time to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(durable_uids(&after_restart), [third]);
    assert_eq!(saved_state(dir.path()).unwrap().last_uid, third);
}

#[tokio::test]
async fn a_uidvalidity_change_makes_the_poller_read_the_mailbox_again() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    for tag in ["old-1", "old-2"] {
        dovecot.deliver(&message(tag));
    }
    let log = TestLog::accepting();
    let running = start(config(&dovecot, dir.path(), flag(KEYWORD)), &log);
    eventually("both submitted", LIMIT, || log.durable().len() == 2).await;
    eventually("both flagged", LIMIT, || {
        dovecot
            .messages("INBOX")
            .iter()
            .all(|m| m.has_flag(KEYWORD))
    })
    .await;
    running.stop().await;
    let old = saved_state(dir.path()).unwrap();

    let renewed = old.uid_validity.wrapping_add(1000);
    dovecot.set_uid_validity("INBOX", renewed);
    assert_eq!(dovecot.uid_validity("INBOX"), renewed);

    let after_change = TestLog::accepting();
    let running = start(config(&dovecot, dir.path(), flag(KEYWORD)), &after_change);
    eventually("both submitted again", LIMIT, || {
        after_change.durable().len() == 2
    })
    .await;
    running.stop().await;
    // The same bytes, so downstream sees the same ids and drops the duplicates.
    let hashes =
        |log: &TestLog| -> Vec<String> { log.durable().iter().map(|s| s.sha256_hex()).collect() };
    assert_eq!(hashes(&after_change), hashes(&log));
    let state = saved_state(dir.path()).unwrap();
    assert_eq!(state.uid_validity, renewed);
    assert!(after_change.durable_sources()[0].contains(&format!(";UIDVALIDITY={renewed}/")));
}

#[tokio::test]
async fn a_crash_after_submit_submits_the_same_bytes_again() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    let uids: Vec<u32> = ["c-1", "c-2", "c-3"]
        .iter()
        .map(|tag| dovecot.deliver(&message(tag)))
        .collect();

    // c-1 is accepted and moved; c-2 becomes durable, then the process "dies".
    let log = TestLog::scripted([Outcome::Accept, Outcome::Hang]);
    let running = start(config(&dovecot, dir.path(), move_to_processed()), &log);
    eventually("c-2 durable", LIMIT, || log.durable().len() == 2).await;
    running.crash().await;

    assert_eq!(dovecot.uids("INBOX"), uids[1..]);
    assert_eq!(dovecot.uids(PROCESSED).len(), 1);
    assert_eq!(saved_state(dir.path()).unwrap().last_uid, uids[0]);
    let hung = log.durable()[1].clone();

    let after_restart = TestLog::accepting();
    let running = start(
        config(&dovecot, dir.path(), move_to_processed()),
        &after_restart,
    );
    eventually("the INBOX emptied", LIMIT, || {
        dovecot.uids("INBOX").is_empty()
    })
    .await;
    running.stop().await;
    assert_eq!(durable_uids(&after_restart), uids[1..]);
    assert_eq!(after_restart.durable()[0].bytes, hung.bytes);
    assert_eq!(after_restart.durable()[0].sha256_hex(), hung.sha256_hex());
    assert_eq!(dovecot.uids(PROCESSED).len(), 3);
}

#[tokio::test]
async fn without_move_or_idle_the_poller_copies_expunges_and_polls() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start_with(Options {
        capabilities: Some("IMAP4rev1 LITERAL+ SASL-IR UIDPLUS"),
        ..Options::default()
    }));
    let dir = tempfile::tempdir().unwrap();
    let before = dovecot.deliver(&message("before"));
    let log = TestLog::accepting();
    check_untouched_until_accepted(&log, &dovecot, "\\Deleted");
    let mut config = config(&dovecot, dir.path(), move_to_processed());
    config.poll_interval = Duration::from_millis(200);
    let running = start(config, &log);
    eventually("the first message moved", LIMIT, || {
        dovecot.uids("INBOX").is_empty() && dovecot.uids(PROCESSED).len() == 1
    })
    .await;

    let after = dovecot.deliver(&message("after"));
    eventually("the second message moved", LIMIT, || {
        dovecot.uids("INBOX").is_empty() && dovecot.uids(PROCESSED).len() == 2
    })
    .await;
    running.stop().await;
    assert_eq!(durable_uids(&log), [before, after]);
    assert!(
        dovecot
            .messages(PROCESSED)
            .iter()
            .all(|m| !m.has_flag("\\Deleted"))
    );
    assert_eq!(log.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn tls_works_both_implicit_and_with_starttls() {
    init_tracing();
    let dovecot = Arc::new(Dovecot::start_with(Options {
        tls: true,
        ..Options::default()
    }));
    let first = dovecot.deliver(&message("tls-1"));
    for (mode, port) in [
        (TlsMode::Implicit, dovecot.tls_port()),
        (TlsMode::Starttls, dovecot.port()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dovecot, dir.path(), flag(KEYWORD));
        config.host = "localhost".into();
        config.tls = mode;
        config.port = Some(port);
        config.ca_file = Some(dovecot.ca_file());
        let log = TestLog::accepting();
        let running = start(config, &log);
        eventually("the message submitted over TLS", LIMIT, || {
            !log.durable().is_empty()
        })
        .await;
        running.stop().await;
        assert_eq!(durable_uids(&log), [first], "{mode:?}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_retried_not_fatal_and_never_logged() {
    let logs = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let _capture = capture_logs(&logs);
    let dovecot = Arc::new(Dovecot::start());
    let dir = tempfile::tempdir().unwrap();
    dovecot.deliver(&message("x"));
    let mut config = config(&dovecot, dir.path(), flag(KEYWORD));
    config.password = Some(Secret::new("wrong-password-123"));
    assert!(!format!("{config:?}").contains("wrong-password-123"));
    assert!(format!("{config:?}").contains("[REDACTED]"));
    let log = TestLog::accepting();
    let running = start(config, &log);
    let logged = || String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    // Dovecot delays failed logins; the poller keeps trying without giving up.
    eventually("a logged login failure", LIMIT, || {
        logged().contains("LOGIN") && logged().contains("reconnecting")
    })
    .await;
    assert!(!running.task.is_finished(), "a login failure is not fatal");
    running.stop().await;
    assert!(log.attempts().is_empty());
    assert!(saved_state(dir.path()).is_none());
    let logged = logged();
    assert!(!logged.contains("wrong-password-123"), "{logged}");
}

/// Send this thread's log output, at every level, into `buffer` (the test runtime runs the
/// poller's task on the test's own thread).
fn capture_logs(buffer: &Arc<std::sync::Mutex<Vec<u8>>>) -> tracing::dispatcher::DefaultGuard {
    use tracing_subscriber::util::SubscriberInitExt;
    struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::clone(buffer);
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_ansi(false)
        .with_writer(move || Capture(Arc::clone(&buffer)))
        .finish()
        .set_default()
}
