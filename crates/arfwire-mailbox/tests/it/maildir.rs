//! The Maildir watcher against temporary Maildirs and the scripted test log.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arfwire_mailbox::{MaildirConfig, MaildirError, MaildirWatcher};
use arfwire_raw::Channel;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::support::{Outcome, TestLog, eventually, init_tracing, message};

const LIMIT: Duration = Duration::from_secs(10);

/// A Maildir in a temporary directory.
struct Maildir {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Maildir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("junk");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        Maildir { _dir: dir, root }
    }

    /// Deliver as an MDA does: write into `tmp/`, rename into `new/`.
    fn deliver(&self, name: &str, bytes: &[u8]) {
        let tmp = self.root.join("tmp").join(name);
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.root.join("new").join(name)).unwrap();
    }

    fn put_cur(&self, name: &str, bytes: &[u8]) {
        fs::write(self.root.join("cur").join(name), bytes).unwrap();
    }

    fn names(&self, sub: &str) -> BTreeSet<String> {
        names_in(&self.root.join(sub))
    }

    /// A configuration that polls and retries fast.
    fn config(&self) -> MaildirConfig {
        let mut config = MaildirConfig::new(&self.root);
        config.poll_interval = Duration::from_millis(30);
        config.retry_min = Duration::from_millis(10);
        config.retry_max = Duration::from_millis(40);
        config
    }
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// Record, at each submission, what is where: the file must still be in `new/` (or unseen
/// in `cur/`), and nothing may have been moved that the log has not accepted.
fn check_nothing_moves_early(log: &TestLog, root: &Path) {
    let root = root.to_path_buf();
    let observer = log.clone();
    log.check_each(move |submission| {
        let name = submission.source.clone().unwrap_or_default();
        let in_new = root.join("new").join(&name).exists();
        let in_cur = root.join("cur").join(&name).exists();
        if !in_new && !in_cur {
            return Err(format!("{name} was moved before the log accepted it"));
        }
        let accepted: BTreeSet<String> = observer
            .durable_sources()
            .into_iter()
            .map(|source| format!("{source}:2,S"))
            .collect();
        let moved: BTreeSet<String> = names_in(&root.join("cur"))
            .into_iter()
            .filter(|name| name.ends_with(":2,S"))
            .collect();
        if !moved.is_subset(&accepted) {
            return Err(format!(
                "at the submission of {name}, cur/ held {moved:?} but the log had only {accepted:?}"
            ));
        }
        Ok(())
    });
}

/// A watcher running in its own task.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), MaildirError>>,
}

fn start(config: MaildirConfig, log: &TestLog) -> Running {
    let watcher = MaildirWatcher::new(config, log.clone()).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(watcher.run(async move {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the watcher stops promptly")
            .expect("the watcher task does not panic")
            .expect("the watcher ends without error");
    }

    /// Drop the watcher wherever it is, as a crash would.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test]
async fn submits_new_messages_in_file_name_order_and_moves_them_only_after_ok() {
    init_tracing();
    let maildir = Maildir::new();
    // Delivered out of order; submitted in name order.
    for name in [
        "1700000003.M3P9.test",
        "1700000001.M1P9.test",
        "1700000002.M2P9.test",
    ] {
        maildir.deliver(name, &message(name));
    }
    let log = TestLog::accepting();
    check_nothing_moves_early(&log, &maildir.root);
    let mut watcher = MaildirWatcher::new(maildir.config(), log.clone()).unwrap();

    let report = watcher.scan_once().await.unwrap();

    assert_eq!((report.submitted, report.moved, report.skipped), (3, 3, 0));
    assert_eq!(
        log.durable_sources(),
        [
            "1700000001.M1P9.test",
            "1700000002.M2P9.test",
            "1700000003.M3P9.test"
        ]
    );
    for submission in log.durable() {
        assert_eq!(submission.channel, Channel::Maildir);
        assert_eq!(
            submission.bytes,
            message(submission.source.as_deref().unwrap())
        );
    }
    assert!(maildir.names("new").is_empty());
    assert_eq!(
        maildir.names("cur"),
        set(&[
            "1700000001.M1P9.test:2,S",
            "1700000002.M2P9.test:2,S",
            "1700000003.M3P9.test:2,S"
        ])
    );
    assert_eq!(log.violations(), Vec::<String>::new());

    // Nothing left: a second scan does nothing.
    let report = watcher.scan_once().await.unwrap();
    assert_eq!((report.submitted, report.moved), (0, 0));
}

#[tokio::test]
async fn nothing_moves_while_the_log_refuses_and_everything_goes_once_it_accepts() {
    init_tracing();
    let maildir = Maildir::new();
    let names = ["a.1", "b.2", "c.3"];
    for name in names {
        maildir.deliver(name, &message(name));
    }
    let log = TestLog::refusing();
    check_nothing_moves_early(&log, &maildir.root);
    let running = start(maildir.config(), &log);

    eventually("several refused attempts", LIMIT, || {
        log.attempts().len() >= 4
    })
    .await;
    // The watcher retries the first message and goes no further while the log is down.
    assert!(
        log.attempts()
            .iter()
            .all(|attempt| attempt.source.as_deref() == Some("a.1"))
    );
    assert_eq!(maildir.names("new"), set(&names));
    assert!(maildir.names("cur").is_empty());

    log.set_default(Outcome::Accept);
    eventually("all messages moved", LIMIT, || {
        maildir.names("new").is_empty()
    })
    .await;
    running.stop().await;

    assert_eq!(log.durable_sources(), names);
    assert_eq!(
        maildir.names("cur"),
        set(&["a.1:2,S", "b.2:2,S", "c.3:2,S"])
    );
    assert_eq!(log.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_flaky_log_gets_every_message_at_least_once_in_order() {
    init_tracing();
    let maildir = Maildir::new();
    let names: Vec<String> = (1..=6)
        .map(|n| format!("17000000{n:02}.M{n}P1.test"))
        .collect();
    for name in &names {
        maildir.deliver(name, &message(name));
    }
    use Outcome::{Accept, Refuse};
    let log = TestLog::scripted([
        Refuse, Accept, Refuse, Refuse, Accept, Accept, Refuse, Accept, Refuse, Accept,
    ]);
    check_nothing_moves_early(&log, &maildir.root);
    let running = start(maildir.config(), &log);

    eventually("all messages moved", LIMIT, || {
        maildir.names("new").is_empty()
    })
    .await;
    running.stop().await;

    // Each accepted once, in name order, whatever the refusals in between.
    assert_eq!(log.durable_sources(), names);
    let moved: BTreeSet<String> = names.iter().map(|name| format!("{name}:2,S")).collect();
    assert_eq!(maildir.names("cur"), moved);
    assert_eq!(log.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_crash_between_submit_and_move_submits_the_same_bytes_again() {
    init_tracing();
    let maildir = Maildir::new();
    for name in ["m.1", "m.2", "m.3"] {
        maildir.deliver(name, &message(name));
    }
    // m.1 is accepted and moved; m.2 becomes durable, then the process "dies" before the
    // acknowledgement arrives.
    let log = TestLog::scripted([Outcome::Accept, Outcome::Hang]);
    let running = start(maildir.config(), &log);
    eventually("m.2 durable", LIMIT, || log.durable().len() == 2).await;
    running.crash().await;

    assert_eq!(maildir.names("cur"), set(&["m.1:2,S"]));
    assert_eq!(maildir.names("new"), set(&["m.2", "m.3"]));
    let before = log.durable()[1].clone();
    assert_eq!(before.source.as_deref(), Some("m.2"));

    // The next run submits m.2 again, byte for byte, and does not touch m.1.
    let after_restart = TestLog::accepting();
    let mut watcher = MaildirWatcher::new(maildir.config(), after_restart.clone()).unwrap();
    let report = watcher.scan_once().await.unwrap();
    assert_eq!((report.submitted, report.moved), (2, 2));
    assert_eq!(after_restart.durable_sources(), ["m.2", "m.3"]);
    let again = &after_restart.durable()[0];
    assert_eq!(again.bytes, before.bytes);
    assert_eq!(again.sha256_hex(), before.sha256_hex());
    assert!(maildir.names("new").is_empty());
}

#[tokio::test]
async fn unseen_messages_in_cur_are_taken_when_asked() {
    init_tracing();
    let maildir = Maildir::new();
    maildir.put_cur("a.1:2,", &message("a"));
    maildir.put_cur("b.2:2,S", &message("b"));
    maildir.put_cur("c.3:2,F", &message("c"));
    maildir.deliver("d.4", &message("d"));

    let log = TestLog::accepting();
    let mut only_new = MaildirWatcher::new(maildir.config(), log.clone()).unwrap();
    only_new.scan_once().await.unwrap();
    assert_eq!(log.durable_sources(), ["d.4"]);

    let mut config = maildir.config();
    config.include_cur = true;
    let log = TestLog::accepting();
    let mut with_cur = MaildirWatcher::new(config, log.clone()).unwrap();
    with_cur.scan_once().await.unwrap();
    assert_eq!(log.durable_sources(), ["a.1:2,", "c.3:2,F"]);
    assert_eq!(
        maildir.names("cur"),
        set(&["a.1:2,S", "b.2:2,S", "c.3:2,FS", "d.4:2,S"])
    );
}

#[tokio::test]
async fn a_processed_folder_receives_the_messages() {
    init_tracing();
    let maildir = Maildir::new();
    maildir.deliver("x.1", &message("x"));
    let processed = maildir.root.join(".Processed");
    let mut config = maildir.config();
    config.processed = Some(processed.clone());
    let log = TestLog::accepting();
    let mut watcher = MaildirWatcher::new(config, log.clone()).unwrap();

    watcher.scan_once().await.unwrap();

    assert_eq!(names_in(&processed.join("cur")), set(&["x.1:2,S"]));
    assert!(processed.join("new").is_dir() && processed.join("tmp").is_dir());
    assert!(maildir.names("new").is_empty() && maildir.names("cur").is_empty());
}

#[tokio::test]
async fn a_failed_move_is_retried_without_submitting_again() {
    init_tracing();
    let maildir = Maildir::new();
    let processed = maildir.root.join(".Processed");
    let mut config = maildir.config();
    config.processed = Some(processed.clone());
    let log = TestLog::accepting();
    let mut watcher = MaildirWatcher::new(config, log.clone()).unwrap();
    watcher.scan_once().await.unwrap();

    // The destination disappears: the move fails after the log accepted the message.
    fs::remove_dir(processed.join("cur")).unwrap();
    maildir.deliver("y.1", &message("y"));
    let report = watcher.scan_once().await.unwrap();
    assert_eq!((report.submitted, report.moved, report.skipped), (1, 0, 1));
    assert_eq!(maildir.names("new"), set(&["y.1"]));

    fs::create_dir(processed.join("cur")).unwrap();
    let report = watcher.scan_once().await.unwrap();
    assert_eq!((report.submitted, report.moved), (0, 1));
    assert_eq!(names_in(&processed.join("cur")), set(&["y.1:2,S"]));
    assert_eq!(
        log.attempts().len(),
        1,
        "submitted once, moved on the retry"
    );
}

#[tokio::test]
async fn vanished_oversized_refused_and_odd_entries_are_skipped() {
    init_tracing();
    let maildir = Maildir::new();
    maildir.deliver("1.ok", &message("1"));
    maildir.deliver("2.gone", &message("2"));
    maildir.deliver("3.big", &vec![b'x'; 4096]);
    maildir.deliver("4.refused", &message("4"));
    maildir.deliver("5.ok", &message("5"));
    fs::create_dir(maildir.root.join("new").join("6.directory")).unwrap();
    fs::write(maildir.root.join("new").join(".hidden"), b"not mail").unwrap();

    let mut config = maildir.config();
    config.max_message_bytes = 1024;
    // 1.ok accepted; 4.refused refused as too large; 5.ok accepted.
    let log = TestLog::scripted([Outcome::Accept, Outcome::TooLarge, Outcome::Accept]);
    // Another consumer takes 2.gone while 1.ok is being submitted.
    let gone = maildir.root.join("new").join("2.gone");
    log.check_each(move |submission| {
        if submission.source.as_deref() == Some("1.ok") {
            fs::remove_file(&gone).map_err(|error| error.to_string())?;
        }
        Ok(())
    });
    let mut watcher = MaildirWatcher::new(config, log.clone()).unwrap();

    let report = watcher.scan_once().await.unwrap();
    assert_eq!((report.submitted, report.moved), (2, 2));
    assert!(report.blocked.is_none());
    assert_eq!(log.durable_sources(), ["1.ok", "5.ok"]);
    assert_eq!(
        maildir.names("new"),
        set(&[".hidden", "3.big", "4.refused", "6.directory"])
    );

    // What was refused for good is not tried again.
    let report = watcher.scan_once().await.unwrap();
    assert_eq!(report.submitted, 0);
    assert_eq!(log.attempts().len(), 3);
    assert_eq!(log.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_maildir_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MaildirConfig::new(dir.path().join("absent"));
    config.poll_interval = Duration::from_millis(10);
    let watcher = MaildirWatcher::new(config, TestLog::accepting()).unwrap();
    let error = tokio::time::timeout(LIMIT, watcher.run(std::future::pending()))
        .await
        .expect("fails at once")
        .unwrap_err();
    assert!(matches!(error, MaildirError::Io { .. }), "{error}");
}

#[tokio::test]
async fn an_invalid_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MaildirConfig::new(dir.path());
    config.retry_max = Duration::from_millis(1);
    config.retry_min = Duration::from_secs(1);
    let error = MaildirWatcher::new(config, TestLog::accepting()).unwrap_err();
    assert!(error.to_string().contains("retry_max_secs"), "{error}");
}
