//! The crash journal: which raw records were being processed when the worker process died.
//!
//! Panics and errors in processing are caught and counted in memory, but a record that
//! kills the whole process (an abort, a stack overflow, the kernel's OOM killer) leaves no
//! trace there: after the restart it is fetched again, kills the process again, and the
//! worker crash-loops on its partition. The journal closes that gap. Before a processing
//! attempt the worker appends a `begin` line for the record, after it an `end` line; both
//! are plain `write` calls on a file opened for appending, so they reach the kernel before
//! processing starts and survive the death of the process (not of the machine, which a
//! poison record does not cause). When the journal is opened again, every record with a
//! `begin` and no `end` was in flight when the process died: its crash count goes up by
//! one.
//!
//! The worker then treats such a record as a suspect: it is processed alone, with no other
//! record in processing, so a second crash is pinned on it and not on whatever else was in
//! flight the first time; a crash counts as a processing attempt, and a record that has
//! crashed the worker `max_attempts` times goes to the dead-letter topic without being
//! processed again. Records are named by the SHA-256 of the submission (the raw record's
//! key), so a resent copy of the same poison is recognised too.
//!
//! The file is one line per fact, tab-separated: `begin <key>`, `end <key>`,
//! `crashed <key> <count>` and `cleared <key>` (the record was finished). Opening rewrites
//! it to its `crashed` lines; it is rewritten the same way whenever it grows past a bound
//! while running. A torn last line (the process died inside a write) is ignored. The file
//! is locked while open, so two workers cannot share one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Lines appended before the file is rewritten to what is still needed.
const COMPACT_AFTER_LINES: u64 = 200_000;

/// Why the crash journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or locking the file failed.
    #[error("crash journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another process holds the journal.
    #[error(
        "crash journal {0} is in use by another worker; give each worker process a file of its own"
    )]
    Locked(PathBuf),
}

#[derive(Debug, Default)]
struct State {
    /// Attempts in progress, by record key (a key can be in flight more than once when
    /// the same submission was sent twice).
    in_flight: HashMap<String, u32>,
    /// Crashes so far, by record key.
    crashes: HashMap<String, u32>,
    /// Lines appended since the last rewrite.
    lines: u64,
}

/// An open crash journal. Cheap to share behind an `Arc`; every method is synchronous and
/// does at most one small write.
#[derive(Debug)]
pub struct CrashJournal {
    path: PathBuf,
    inner: Mutex<(File, State)>,
}

impl CrashJournal {
    /// Open (or create) the journal at `path`, lock it, count the crashes the last process
    /// left behind and rewrite the file to its crash counts.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, JournalError> {
        let path = path.into();
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut state = State::default();
        let mut in_flight: HashMap<String, u32> = HashMap::new();
        for line in BufReader::new(&file).split(b'\n') {
            let line = line.map_err(io)?;
            let Ok(line) = std::str::from_utf8(&line) else {
                continue;
            };
            let mut fields = line.split('\t');
            match (fields.next(), fields.next(), fields.next(), fields.next()) {
                (Some("begin"), Some(key), None, None) => {
                    *in_flight.entry(key.to_owned()).or_default() += 1;
                }
                (Some("end"), Some(key), None, None) => {
                    if let Some(n) = in_flight.get_mut(key) {
                        *n = n.saturating_sub(1);
                    }
                }
                (Some("crashed"), Some(key), Some(count), None) => {
                    if let Ok(count) = count.parse::<u32>() {
                        state.crashes.insert(key.to_owned(), count);
                    }
                }
                (Some("cleared"), Some(key), None, None) => {
                    state.crashes.remove(key);
                }
                // A torn or foreign line.
                _ => {}
            }
        }
        for (key, n) in in_flight {
            if n > 0 {
                let count = state.crashes.entry(key).or_default();
                *count = count.saturating_add(1);
            }
        }
        let journal = CrashJournal {
            path: path.clone(),
            inner: Mutex::new((file, state)),
        };
        journal.compact()?;
        Ok(journal)
    }

    /// The file this journal writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times processing `key` has killed the process so far.
    pub fn crashes(&self, key: &str) -> u32 {
        let guard = self.lock();
        guard.1.crashes.get(key).copied().unwrap_or(0)
    }

    /// Every record with at least one crash: (key, count), sorted by key.
    pub fn suspects(&self) -> Vec<(String, u32)> {
        let guard = self.lock();
        let mut all: Vec<(String, u32)> = guard
            .1
            .crashes
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        all.sort();
        all
    }

    /// How many records have at least one crash.
    pub fn suspect_count(&self) -> usize {
        self.lock().1.crashes.len()
    }

    /// Note that an attempt on `key` starts. Call [`CrashJournal::end`] when it returns,
    /// whatever it returned.
    pub fn begin(&self, key: &str) -> Result<(), JournalError> {
        let mut guard = self.lock();
        *guard.1.in_flight.entry(key.to_owned()).or_default() += 1;
        self.append(&mut guard, &format!("begin\t{key}\n"))
    }

    /// Note that an attempt on `key` returned (the process survived it).
    pub fn end(&self, key: &str) -> Result<(), JournalError> {
        let mut guard = self.lock();
        if let Some(n) = guard.1.in_flight.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                guard.1.in_flight.remove(key);
            }
        }
        self.append(&mut guard, &format!("end\t{key}\n"))
    }

    /// Note that `key` is finished (published or dead-lettered): forget its crashes.
    pub fn clear(&self, key: &str) -> Result<(), JournalError> {
        let mut guard = self.lock();
        if guard.1.crashes.remove(key).is_none() {
            return Ok(());
        }
        self.append(&mut guard, &format!("cleared\t{key}\n"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (File, State)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn append(&self, guard: &mut (File, State), line: &str) -> Result<(), JournalError> {
        guard
            .0
            .write_all(line.as_bytes())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        guard.1.lines += 1;
        if guard.1.lines >= COMPACT_AFTER_LINES {
            self.rewrite(guard)?;
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), JournalError> {
        let mut guard = self.lock();
        self.rewrite(&mut guard)
    }

    /// Replace the file by what is still needed: the crash counts and the attempts in
    /// progress. The new file is written beside the old one, synced and renamed over it,
    /// then locked and used for appending.
    fn rewrite(&self, guard: &mut (File, State)) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = String::new();
        let mut crashes: Vec<_> = guard.1.crashes.iter().collect();
        crashes.sort();
        for (key, count) in crashes {
            text.push_str(&format!("crashed\t{key}\t{count}\n"));
        }
        let mut in_flight: Vec<_> = guard.1.in_flight.iter().collect();
        in_flight.sort();
        for (key, n) in in_flight {
            for _ in 0..*n {
                text.push_str(&format!("begin\t{key}\n"));
            }
        }
        let mut temp_name = self.path.as_os_str().to_owned();
        temp_name.push(".new");
        let temp = PathBuf::from(temp_name);
        {
            let mut file = File::create(&temp).map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&temp, &self.path).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked(self.path.clone()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        guard.0 = file;
        guard.1.lines = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "arfwire-journal-{}-{name}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("crashes")
    }

    #[test]
    fn an_attempt_that_never_ended_is_a_crash() {
        let path = temp_path("crash");
        {
            let journal = CrashJournal::open(&path).unwrap();
            journal.begin("aa").unwrap();
            journal.begin("bb").unwrap();
            journal.end("bb").unwrap();
            // The process "dies" here: `aa` never ends.
        }
        let journal = CrashJournal::open(&path).unwrap();
        assert_eq!(journal.crashes("aa"), 1);
        assert_eq!(journal.crashes("bb"), 0);
        journal.begin("aa").unwrap();
        drop(journal);
        let journal = CrashJournal::open(&path).unwrap();
        assert_eq!(journal.suspects(), vec![("aa".to_owned(), 2)]);
        // It survives this time and is finished.
        journal.begin("aa").unwrap();
        journal.end("aa").unwrap();
        journal.clear("aa").unwrap();
        drop(journal);
        let journal = CrashJournal::open(&path).unwrap();
        assert!(journal.suspects().is_empty());
    }

    #[test]
    fn opening_rewrites_the_file_to_what_is_needed() {
        let path = temp_path("compact");
        {
            let journal = CrashJournal::open(&path).unwrap();
            for i in 0..100 {
                let key = format!("k{i}");
                journal.begin(&key).unwrap();
                journal.end(&key).unwrap();
            }
            journal.begin("dead").unwrap();
        }
        let journal = CrashJournal::open(&path).unwrap();
        drop(journal);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "crashed\tdead\t1\n");
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let path = temp_path("torn");
        std::fs::write(&path, "crashed\tx\t2\nbegin\ty\nbeg").unwrap();
        let journal = CrashJournal::open(&path).unwrap();
        assert_eq!(
            journal.suspects(),
            vec![("x".to_owned(), 2), ("y".to_owned(), 1)]
        );
    }

    #[test]
    fn a_resent_copy_in_flight_twice_counts_once() {
        let path = temp_path("twice");
        {
            let journal = CrashJournal::open(&path).unwrap();
            journal.begin("same").unwrap();
            journal.begin("same").unwrap();
            journal.end("same").unwrap();
        }
        let journal = CrashJournal::open(&path).unwrap();
        assert_eq!(journal.crashes("same"), 1);
    }

    #[test]
    fn one_file_one_worker() {
        let path = temp_path("lock");
        let _first = CrashJournal::open(&path).unwrap();
        match CrashJournal::open(&path) {
            Err(JournalError::Locked(p)) => assert_eq!(p, path),
            other => panic!("expected a lock error, got {other:?}"),
        }
    }

    #[test]
    fn growth_is_bounded_while_running() {
        let path = temp_path("bounded");
        let journal = CrashJournal::open(&path).unwrap();
        journal.begin("held").unwrap();
        for i in 0..(COMPACT_AFTER_LINES / 2 + 10) {
            let key = format!("r{i}");
            journal.begin(&key).unwrap();
            journal.end(&key).unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 1_000_000, "journal is {size} bytes");
        drop(journal);
        // The attempt still in progress at the rewrite survived it.
        let journal = CrashJournal::open(&path).unwrap();
        assert_eq!(journal.crashes("held"), 1);
    }
}
