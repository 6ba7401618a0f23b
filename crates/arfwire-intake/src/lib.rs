//! Turn paths into raw submissions: files, directory trees, Maildir folders and mbox files.
//!
//! This crate does the file IO in front of the parser and nothing else: it never looks inside
//! a message beyond the mbox framing. [`walk`] takes the paths a person named and yields one
//! [`Item`] per submission, or an [`IntakeError`] for an input that could not be read, and
//! goes on after an error.
//!
//! How a path is read:
//!
//! * **A directory** is walked recursively, its entries in byte order of their names, so the
//!   order is the same on every run. Entries whose names begin with `.` are skipped (Maildir++
//!   subfolders among them: name one explicitly to read it). A directory named explicitly is
//!   read whatever its name.
//! * **A Maildir folder** (a directory holding `cur/`, `new/` and `tmp/`) yields the messages
//!   in `cur/` and then `new/`; `tmp/` holds deliveries still being written and is never read,
//!   nor are the other files a mail server keeps beside those three. Naming a Maildir's `cur/`
//!   or `new/` directly reads it as Maildir too.
//! * **A file named `*.eml`** is one message, even when it begins with an mbox `From ` line
//!   (the parser skips that line itself) or quotes another message that has one.
//! * **An mbox file**, named `*.mbox` or `*.mbx`, or any other file whose first line begins
//!   with `From ` and that has a second such separator line, yields one item per message with
//!   its zero-based index (see the `mbox` module for what is removed from each message).
//! * **Any other file** is one message, bytes untouched.
//!
//! A file larger than [`WalkOptions::max_file_bytes`] (an mbox: a message larger than that)
//! is not read into memory; it yields [`IntakeError::TooLarge`].
//!
//! ```ignore
//! for item in arfwire_intake::walk(["inbox/", "old.mbox"]) {
//!     match item {
//!         Ok(item) => println!("{} ({} bytes)", item.origin, item.bytes.len()),
//!         Err(error) => eprintln!("{error}"),
//!     }
//! }
//! ```

mod error;
mod mbox;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use error::IntakeError;
use mbox::MboxSplitter;
use sha2::{Digest, Sha256};

/// The default cap on the size of one submission: the parser's default message limit
/// (25 MiB). Files up to this size are read; larger ones are refused without being read.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 25 * 1024 * 1024;

/// Where a submission came from.
///
/// Deliberately exhaustive: a caller maps every origin to an intake channel, and a new
/// origin should make it decide rather than fall through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A file holding one message.
    File {
        /// The file, as reached from the path given to [`walk`].
        path: PathBuf,
    },
    /// A message file in a Maildir's `cur/` or `new/`.
    Maildir {
        /// The message file.
        path: PathBuf,
    },
    /// One message of an mbox file.
    Mbox {
        /// The mbox file.
        path: PathBuf,
        /// Zero-based position of the message in the file.
        index: u64,
    },
}

impl Origin {
    /// The file the submission was read from (for an mbox message, the mbox file).
    pub fn path(&self) -> &Path {
        match self {
            Origin::File { path } | Origin::Maildir { path } | Origin::Mbox { path, .. } => path,
        }
    }

    /// The message's index in its mbox file, for mbox messages.
    pub fn mbox_index(&self) -> Option<u64> {
        match self {
            Origin::Mbox { index, .. } => Some(*index),
            Origin::File { .. } | Origin::Maildir { .. } => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path } | Origin::Maildir { path } => write!(f, "{}", path.display()),
            Origin::Mbox { path, index } => write!(f, "{} (message {index})", path.display()),
        }
    }
}

/// One raw submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Where it came from.
    pub origin: Origin,
    /// The message, byte for byte (for an mbox message: without its framing, see the crate
    /// documentation).
    pub bytes: Vec<u8>,
    /// The modification time of the file it was read from, when the file system gives one.
    pub modified: Option<SystemTime>,
}

/// Options for [`walk_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkOptions {
    /// The largest submission read, in bytes. A larger file, or a larger message of an mbox,
    /// yields [`IntakeError::TooLarge`] and is not read into memory.
    pub max_file_bytes: u64,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Walk `paths` with the default options. See the crate documentation for how each kind of
/// path is read.
pub fn walk<I>(paths: I) -> Walk
where
    I: IntoIterator,
    I::Item: Into<PathBuf>,
{
    walk_with(paths, WalkOptions::default())
}

/// Walk `paths` with the given options.
pub fn walk_with<I>(paths: I, options: WalkOptions) -> Walk
where
    I: IntoIterator,
    I::Item: Into<PathBuf>,
{
    let mut stack: Vec<Task> = paths
        .into_iter()
        .map(|path| Task::Visit {
            path: path.into(),
            explicit: true,
            in_maildir: false,
        })
        .collect();
    stack.reverse();
    Walk {
        stack,
        options,
        visited_dirs: HashSet::new(),
    }
}

/// The iterator [`walk`] returns. Lazy: each file is read when its item is asked for, so
/// memory holds one file or one mbox message at a time (each at most the cap, and a small
/// mbox read whole alongside the message split from it).
pub struct Walk {
    /// Work still to do; the next task is on top.
    stack: Vec<Task>,
    options: WalkOptions,
    /// Directories already walked, canonicalised, so a symbolic link cannot make a loop.
    visited_dirs: HashSet<PathBuf>,
}

impl fmt::Debug for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Walk")
            .field("pending", &self.stack.len())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

enum Task {
    /// Look at a path and read it or list it.
    Visit {
        path: PathBuf,
        /// Named by the caller, rather than found in a directory.
        explicit: bool,
        /// A file in a Maildir's `cur/` or `new/`.
        in_maildir: bool,
    },
    /// Yield the next message of an mbox file.
    Mbox(Box<MboxSplitter>),
    /// Yield an error found while listing a directory.
    Fail(IntakeError),
}

impl Iterator for Walk {
    type Item = Result<Item, IntakeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(task) = self.stack.pop() {
            match task {
                Task::Fail(error) => return Some(Err(error)),
                Task::Mbox(mut splitter) => {
                    if let Some(result) = splitter.next() {
                        self.stack.push(Task::Mbox(splitter));
                        return Some(result);
                    }
                }
                Task::Visit {
                    path,
                    explicit,
                    in_maildir,
                } => {
                    if let Some(result) = self.visit(path, explicit, in_maildir) {
                        return Some(result);
                    }
                }
            }
        }
        None
    }
}

fn is_hidden(name: &OsString) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

/// A Maildir folder has `cur/`, `new/` and `tmp/`.
fn is_maildir(dir: &Path) -> bool {
    ["cur", "new", "tmp"]
        .iter()
        .all(|sub| dir.join(sub).is_dir())
}

/// Is `dir` the `cur/` or `new/` of a Maildir?
fn is_maildir_message_dir(dir: &Path) -> bool {
    let name_fits = dir
        .file_name()
        .is_some_and(|name| name == "cur" || name == "new");
    name_fits && dir.parent().is_some_and(is_maildir)
}

fn extension_is(path: &Path, candidates: &[&str]) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| candidates.iter().any(|c| ext.eq_ignore_ascii_case(c)))
}

impl Walk {
    /// Handle one path: yield its item or error, or queue what it holds.
    fn visit(
        &mut self,
        path: PathBuf,
        explicit: bool,
        in_maildir: bool,
    ) -> Option<Result<Item, IntakeError>> {
        // Follows symbolic links: a link to a file is read as that file.
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(cause) => return Some(Err(IntakeError::io(&path, "inspect", cause))),
        };
        if metadata.is_dir() {
            if in_maildir {
                // Directories inside `cur/` or `new/` are not messages.
                return None;
            }
            self.queue_directory(&path, explicit);
            return None;
        }
        if !metadata.is_file() {
            return Some(Err(IntakeError::NotAFile { path }));
        }
        let modified = metadata.modified().ok();
        let size = metadata.len();
        let limit = self.options.max_file_bytes;
        let origin = if in_maildir {
            Origin::Maildir { path }
        } else {
            Origin::File { path }
        };
        let path = origin.path();

        let mbox_by_name = !in_maildir && extension_is(path, &["mbox", "mbx"]);
        let single_by_name = in_maildir || extension_is(path, &["eml"]);
        if mbox_by_name {
            return self.start_mbox(path, modified);
        }
        if size > limit {
            if !single_by_name && sniff_mbox_file(path).unwrap_or(false) {
                return self.start_mbox(path, modified);
            }
            return Some(Err(too_large(origin, size, limit, modified)));
        }
        let bytes = match read_capped(path, limit) {
            Ok(Some(bytes)) => bytes,
            // The file grew past the cap after it was inspected.
            Ok(None) => return Some(Err(too_large(origin, size, limit, modified))),
            Err(error) => return Some(Err(error)),
        };
        if !single_by_name && mbox::looks_like_mbox(&bytes) {
            let splitter = MboxSplitter::new(Box::new(Cursor::new(bytes)), path, modified, limit);
            self.stack.push(Task::Mbox(Box::new(splitter)));
            return None;
        }
        Some(Ok(Item {
            origin,
            bytes,
            modified,
        }))
    }

    /// Queue an mbox file for splitting.
    fn start_mbox(
        &mut self,
        path: &Path,
        modified: Option<SystemTime>,
    ) -> Option<Result<Item, IntakeError>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(cause) => return Some(Err(IntakeError::io(path, "open", cause))),
        };
        let reader = Box::new(BufReader::with_capacity(64 * 1024, file));
        let splitter = MboxSplitter::new(reader, path, modified, self.options.max_file_bytes);
        self.stack.push(Task::Mbox(Box::new(splitter)));
        None
    }

    /// Queue the entries of a directory, in order.
    fn queue_directory(&mut self, dir: &Path, explicit: bool) {
        if let Ok(canonical) = fs::canonicalize(dir)
            && !self.visited_dirs.insert(canonical)
        {
            return;
        }
        let mut tasks = Vec::new();
        if is_maildir(dir) {
            for sub in ["cur", "new"] {
                list_into(&dir.join(sub), true, &mut tasks);
            }
        } else {
            let in_maildir = explicit && is_maildir_message_dir(dir);
            list_into(dir, in_maildir, &mut tasks);
        }
        self.stack.extend(tasks.into_iter().rev());
    }
}

/// Append a task for each non-hidden entry of `dir`, sorted by name; a listing error becomes
/// a task that yields it.
fn list_into(dir: &Path, in_maildir: bool, tasks: &mut Vec<Task>) {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(cause) => {
            tasks.push(Task::Fail(IntakeError::io(dir, "list", cause)));
            return;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                if !is_hidden(&name) {
                    names.push(name);
                }
            }
            Err(cause) => tasks.push(Task::Fail(IntakeError::io(dir, "list", cause))),
        }
    }
    names.sort();
    tasks.extend(names.into_iter().map(|name| Task::Visit {
        path: dir.join(name),
        explicit: false,
        in_maildir,
    }));
}

/// Read a whole file, refusing to hold more than `limit` bytes: `Ok(None)` when the file
/// turned out larger.
fn read_capped(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, IntakeError> {
    let file = File::open(path).map_err(|cause| IntakeError::io(path, "open", cause))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|cause| IntakeError::io(path, "read", cause))?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// The refusal of a file over the cap. The file is streamed through SHA-256 (never held in
/// memory) so the refusal can name its bytes; its size is what was read.
fn too_large(origin: Origin, size: u64, limit: u64, modified: Option<SystemTime>) -> IntakeError {
    let (sha256, size) = match hash_file(origin.path()) {
        Ok((digest, read)) => (Some(digest), read),
        Err(_) => (None, size),
    };
    IntakeError::TooLarge {
        origin,
        size,
        limit,
        modified,
        sha256,
    }
}

fn hash_file(path: &Path) -> std::io::Result<([u8; 32], u64)> {
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut hasher = Sha256::new();
    let mut read = 0u64;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok((hasher.finalize().into(), read));
        }
        hasher.update(chunk);
        read += chunk.len() as u64;
        let n = chunk.len();
        reader.consume(n);
    }
}

/// Does a file too large to read whole look like an mbox? Reads it as a stream.
fn sniff_mbox_file(path: &Path) -> std::io::Result<bool> {
    let mut reader = BufReader::with_capacity(64 * 1024, File::open(path)?);
    mbox::stream_looks_like_mbox(&mut reader)
}
