//! The Maildir watcher: submit what is in `new/`, then move it to `cur/`.
//!
//! Delivery into a Maildir is complete by construction (maildir(5): the MDA writes into
//! `tmp/` and renames into `new/`), so every file in `new/` is a whole message. A scan lists
//! `new/` (and, with `include_cur`, the messages in `cur/` without the `S` flag), sorts the
//! names, and for each message in that order:
//!
//! 1. reads the file and hands the bytes to [`Submitter::submit`], with the file name as the
//!    submission's source;
//! 2. only after `Ok` renames it to `cur/<unique>:2,S` (adding `S` to the flags it had), or
//!    into the `cur/` of the configured `processed` folder.
//!
//! On a refusal from the log (`SubmitError::Unavailable`) the scan stops at that message and
//! the next scan, after a backoff, starts again from it, so submissions keep file-name order.
//! A crash (or a dropped watcher) between step 1 and step 2 leaves the file in `new/`, and the
//! next run submits the same bytes again: Maildir files never change, so the submission has
//! the same SHA-256, hence the same submission and event ids, and downstream drops the
//! duplicate.
//!
//! Files that vanish before they are read (another consumer took them) are skipped quietly;
//! files that cannot be read are logged and tried again on the next scan. A file larger than
//! `max_message_bytes`, or one the log refuses as too large, is left in place with an error
//! logged and not tried again until the watcher restarts. When the move after an `Ok` fails,
//! only the move is retried on later scans: the message is not submitted again.
//!
//! The watcher polls (every `poll_interval_secs`); it does not use inotify, which would save
//! at most one interval of latency and does not work on every file system a Maildir lives on.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use arfwire_raw::{Channel, RawSubmission, SubmitError, Submitter};
use chrono::Utc;
use tokio::io::AsyncReadExt;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::MaildirConfig;
use crate::error::MaildirError;

/// The subfolder of a Maildir a message sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Sub {
    New,
    Cur,
}

impl Sub {
    fn dir(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// One message file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry {
    sub: Sub,
    name: String,
}

/// What one scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ScanReport {
    /// Messages the log accepted.
    pub submitted: usize,
    /// Messages moved out of `new/` (or flagged `S` in `cur/`) after the log accepted them.
    pub moved: usize,
    /// Messages left where they are for now: vanished, unreadable, too large, or durable but
    /// not yet moved.
    pub skipped: usize,
    /// The refusal that stopped the scan, when the log refused a message; that message and
    /// the ones after it are tried again on the next scan.
    pub blocked: Option<SubmitError>,
}

/// Watches one Maildir and submits each message before moving it. See the module
/// documentation for the order of events and what happens on failure.
pub struct MaildirWatcher<S> {
    config: MaildirConfig,
    submitter: S,
    prepared: bool,
    /// Durable in the log, not yet moved: only the move is retried.
    unmoved: HashSet<Entry>,
    /// Left in place until restart (too large, not a regular file, not a UTF-8 name).
    refused: HashSet<Entry>,
    /// Unreadable files already warned about, so a stuck file does not flood the log.
    warned: HashSet<Entry>,
}

impl<S> std::fmt::Debug for MaildirWatcher<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirWatcher")
            .field("config", &self.config)
            .field("unmoved", &self.unmoved.len())
            .field("refused", &self.refused.len())
            .finish_non_exhaustive()
    }
}

impl<S: Submitter> MaildirWatcher<S> {
    /// A watcher for the Maildir in `config`, submitting through `submitter`. Checks the
    /// configuration; the folders are checked when it starts.
    pub fn new(config: MaildirConfig, submitter: S) -> Result<Self, MaildirError> {
        config.validate()?;
        Ok(MaildirWatcher {
            config,
            submitter,
            prepared: false,
            unmoved: HashSet::new(),
            refused: HashSet::new(),
            warned: HashSet::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MaildirConfig {
        &self.config
    }

    /// Scan until `shutdown` completes: at once, then every `poll_interval_secs`, or after a
    /// backoff when the log refused a message. Returns an error only when the Maildir (or the
    /// processed folder) is missing or unusable at the start; later failures are logged and
    /// retried.
    ///
    /// Stopping (through `shutdown`, or by dropping the future) is safe at any point: a
    /// message whose submission was cut short stays in `new/` and is submitted again by the
    /// next run.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), MaildirError> {
        self.prepare().await?;
        info!(maildir = %self.config.path.display(), "watching the Maildir");
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.retry_min, self.config.retry_max);
        loop {
            let outcome = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                outcome = self.scan_once() => outcome,
            };
            let wait = match outcome {
                Ok(ScanReport {
                    blocked: Some(refusal),
                    ..
                }) => {
                    let wait = backoff.next_wait();
                    warn!(
                        maildir = %self.config.path.display(),
                        error = %refusal,
                        retry_in_ms = wait.as_millis(),
                        "the log refused a Maildir message; it stays in place and is retried"
                    );
                    wait
                }
                Ok(_) => {
                    backoff.reset();
                    self.config.poll_interval
                }
                Err(failure) => {
                    let wait = backoff.next_wait();
                    warn!(
                        error = %failure,
                        retry_in_ms = wait.as_millis(),
                        "cannot scan the Maildir; retrying"
                    );
                    wait
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One scan: submit and move every message found, in file-name order, stopping at the
    /// first message the log refuses as unavailable. Fails only when a folder cannot be
    /// listed.
    pub async fn scan_once(&mut self) -> Result<ScanReport, MaildirError> {
        if !self.prepared {
            self.prepare().await?;
        }
        let mut report = ScanReport::default();
        let entries = self.list().await?;
        let listed: HashSet<&Entry> = entries.iter().collect();
        // Forget files that are gone, so the sets cannot grow without bound.
        self.unmoved.retain(|entry| listed.contains(entry));
        self.refused.retain(|entry| listed.contains(entry));
        self.warned.retain(|entry| listed.contains(entry));
        drop(listed);

        for entry in entries {
            if self.refused.contains(&entry) {
                report.skipped += 1;
                continue;
            }
            if self.unmoved.contains(&entry) {
                self.acknowledge(&entry, &mut report).await;
                continue;
            }
            let Some(bytes) = self.read(&entry).await else {
                report.skipped += 1;
                continue;
            };
            let mut submission = RawSubmission::new(bytes, Channel::Maildir, Utc::now());
            submission.source = Some(entry.name.clone());
            let sha256 = submission.sha256_hex();
            match self.submitter.submit(submission).await {
                Ok(()) => {
                    debug!(file = %entry.name, %sha256, "Maildir message submitted");
                    report.submitted += 1;
                    self.acknowledge(&entry, &mut report).await;
                }
                Err(SubmitError::TooLarge(why)) => {
                    error!(
                        file = %self.path_of(&entry).display(),
                        %sha256,
                        reason = %why,
                        "the log refused a Maildir message as too large; it stays in place"
                    );
                    self.refused.insert(entry);
                    report.skipped += 1;
                }
                Err(refusal) => {
                    report.blocked = Some(refusal);
                    break;
                }
            }
        }
        Ok(report)
    }

    /// Check the Maildir and create the processed folder.
    async fn prepare(&mut self) -> Result<(), MaildirError> {
        let root = &self.config.path;
        for sub in ["new", "cur"] {
            let dir = root.join(sub);
            let metadata = tokio::fs::metadata(&dir)
                .await
                .map_err(|cause| io_error(&dir, "open the Maildir folder", cause))?;
            if !metadata.is_dir() {
                return Err(io_error(
                    &dir,
                    "open the Maildir folder",
                    io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                ));
            }
        }
        if let Some(processed) = &self.config.processed {
            for sub in ["cur", "new", "tmp"] {
                let dir = processed.join(sub);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|cause| io_error(&dir, "create the processed folder", cause))?;
            }
            same_file_system(root, processed).await?;
        }
        self.prepared = true;
        Ok(())
    }

    /// The messages to look at, sorted by file name.
    async fn list(&self) -> Result<Vec<Entry>, MaildirError> {
        let mut entries = Vec::new();
        let mut subs = vec![Sub::New];
        if self.config.include_cur {
            subs.push(Sub::Cur);
        }
        for sub in subs {
            let dir = self.config.path.join(sub.dir());
            let mut listing = tokio::fs::read_dir(&dir)
                .await
                .map_err(|cause| io_error(&dir, "list", cause))?;
            while let Some(item) = listing
                .next_entry()
                .await
                .map_err(|cause| io_error(&dir, "list", cause))?
            {
                let Ok(name) = item.file_name().into_string() else {
                    debug!(dir = %dir.display(), "skipping a file whose name is not UTF-8");
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                if sub == Sub::Cur && has_flag(&name, 'S') {
                    continue;
                }
                entries.push(Entry { sub, name });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.sub.cmp(&b.sub)));
        Ok(entries)
    }

    fn path_of(&self, entry: &Entry) -> PathBuf {
        self.config.path.join(entry.sub.dir()).join(&entry.name)
    }

    /// Read a message, or log why not and return `None`.
    async fn read(&mut self, entry: &Entry) -> Option<Vec<u8>> {
        let path = self.path_of(entry);
        let limit = self.config.max_message_bytes;
        match read_capped(&path, limit).await {
            Ok(Read::Bytes(bytes)) => {
                self.warned.remove(entry);
                Some(bytes)
            }
            Ok(Read::TooLarge(size)) => {
                error!(
                    file = %path.display(),
                    size,
                    limit,
                    "a Maildir message is larger than max_message_bytes; it stays in place"
                );
                self.refused.insert(entry.clone());
                None
            }
            Ok(Read::NotAFile) => {
                debug!(file = %path.display(), "skipping an entry that is not a regular file");
                self.refused.insert(entry.clone());
                None
            }
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => {
                debug!(file = %path.display(), "a Maildir message vanished before it was read");
                None
            }
            Err(cause) => {
                if self.warned.insert(entry.clone()) {
                    warn!(
                        file = %path.display(),
                        error = %cause,
                        "cannot read a Maildir message; it stays in place and is retried"
                    );
                } else {
                    debug!(file = %path.display(), error = %cause, "still cannot read");
                }
                None
            }
        }
    }

    /// Move a durable message out of the way: `cur/` with `S`, or the processed folder.
    async fn acknowledge(&mut self, entry: &Entry, report: &mut ScanReport) {
        let from = self.path_of(entry);
        let target_root = self.config.processed.as_ref().unwrap_or(&self.config.path);
        let to = target_root.join("cur").join(seen_name(&entry.name));
        let outcome = match tokio::fs::symlink_metadata(&to).await {
            // rename() would replace it: never overwrite another message.
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already exists", to.display()),
            )),
            Err(_) => tokio::fs::rename(&from, &to).await,
        };
        match outcome {
            Ok(()) => {
                self.unmoved.remove(entry);
                report.moved += 1;
            }
            Err(cause)
                if cause.kind() == io::ErrorKind::NotFound
                    && tokio::fs::symlink_metadata(&from).await.is_err() =>
            {
                info!(
                    file = %from.display(),
                    "a submitted Maildir message vanished before it was moved"
                );
                self.unmoved.remove(entry);
            }
            Err(cause) => {
                warn!(
                    file = %from.display(),
                    to = %to.display(),
                    error = %cause,
                    "cannot move a submitted Maildir message; the move is retried"
                );
                self.unmoved.insert(entry.clone());
                report.skipped += 1;
            }
        }
    }
}

fn io_error(path: &Path, action: &'static str, cause: io::Error) -> MaildirError {
    MaildirError::Io {
        path: path.to_path_buf(),
        action,
        cause,
    }
}

#[cfg(unix)]
async fn same_file_system(maildir: &Path, processed: &Path) -> Result<(), MaildirError> {
    use std::os::unix::fs::MetadataExt;
    let device = |path: PathBuf| async move {
        tokio::fs::metadata(&path)
            .await
            .map(|metadata| metadata.dev())
            .map_err(|cause| io_error(&path, "inspect", cause))
    };
    let here = device(maildir.join("cur")).await?;
    let there = device(processed.join("cur")).await?;
    if here != there {
        return Err(MaildirError::CrossDevice {
            maildir: maildir.to_path_buf(),
            processed: processed.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
async fn same_file_system(_maildir: &Path, _processed: &Path) -> Result<(), MaildirError> {
    Ok(())
}

enum Read {
    Bytes(Vec<u8>),
    TooLarge(u64),
    NotAFile,
}

/// Read a whole file, refusing one larger than `limit` without holding it in memory.
async fn read_capped(path: &Path, limit: u64) -> io::Result<Read> {
    let file = tokio::fs::File::open(path).await?;
    let metadata = file.metadata().await?;
    if !metadata.is_file() {
        return Ok(Read::NotAFile);
    }
    if metadata.len() > limit {
        return Ok(Read::TooLarge(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() as u64 > limit {
        return Ok(Read::TooLarge(bytes.len() as u64));
    }
    Ok(Read::Bytes(bytes))
}

/// The flags of a Maildir file name: the letters after `:2,`.
fn flags_of(name: &str) -> &str {
    match name.split_once(':') {
        Some((_, info)) => info.strip_prefix("2,").unwrap_or(""),
        None => "",
    }
}

fn has_flag(name: &str, flag: char) -> bool {
    flags_of(name).contains(flag)
}

/// The name a message gets once seen: its unique part, then `:2,` and its flags with `S`
/// added, in ASCII order as maildir(5) asks.
fn seen_name(name: &str) -> String {
    let unique = name.split_once(':').map_or(name, |(unique, _)| unique);
    let mut flags: Vec<char> = flags_of(name).chars().collect();
    flags.push('S');
    flags.sort_unstable();
    flags.dedup();
    let mut out = String::with_capacity(unique.len() + 3 + flags.len());
    out.push_str(unique);
    out.push_str(":2,");
    out.extend(flags);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_name_adds_the_s_flag_in_order() {
        assert_eq!(seen_name("1700.M1P2.host"), "1700.M1P2.host:2,S");
        assert_eq!(seen_name("1700.M1P2.host:2,"), "1700.M1P2.host:2,S");
        assert_eq!(seen_name("1700.M1P2.host:2,FT"), "1700.M1P2.host:2,FST");
        assert_eq!(seen_name("1700.M1P2.host:2,RS"), "1700.M1P2.host:2,RS");
        assert_eq!(seen_name("1700.M1P2.host:1,x"), "1700.M1P2.host:2,S");
        assert_eq!(seen_name("a,S=30,W=34:2,a"), "a,S=30,W=34:2,Sa");
    }

    #[test]
    fn flags_are_read_only_from_version_2_info() {
        assert!(has_flag("x:2,FS", 'S'));
        assert!(!has_flag("x:2,F", 'S'));
        assert!(!has_flag("x,S=12", 'S'));
        assert!(!has_flag("x:1,S", 'S'));
    }
}
