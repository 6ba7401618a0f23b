//! The one error type of this crate.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::Origin;

/// Why one input could not be turned into a submission.
///
/// Every variant names the path it is about. The walk goes on after yielding one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntakeError {
    /// Inspecting, opening, listing or reading a path failed.
    #[error("cannot {action} {}: {cause}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// What was being done: `inspect`, `open`, `read` or `list`.
        action: &'static str,
        /// The cause, as the operating system reported it.
        cause: io::Error,
    },
    /// A file, or one message of an mbox, is larger than the configured cap; it was not read
    /// into memory.
    #[error("{origin} is too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// The file, or the mbox file and the message's index in it.
        origin: Origin,
        /// Size in bytes (for an mbox message: as far as it was counted).
        size: u64,
        /// The cap in bytes.
        limit: u64,
        /// The file's modification time, when known.
        modified: Option<SystemTime>,
        /// SHA-256 of the input's bytes (for an mbox message: as it would have been
        /// yielded), computed as they streamed past; `None` when they could not all be read.
        sha256: Option<[u8; 32]>,
    },
    /// The path is neither a regular file nor a directory (a socket, a FIFO, a device).
    #[error("{} is not a regular file or directory", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
}

impl IntakeError {
    /// The path this error is about (for an mbox message, the mbox file).
    pub fn path(&self) -> &Path {
        match self {
            IntakeError::Io { path, .. } | IntakeError::NotAFile { path } => path,
            IntakeError::TooLarge { origin, .. } => origin.path(),
        }
    }

    /// True when trying again later could succeed (an interrupted or timed-out read); false
    /// when the input itself is the problem.
    pub fn is_retryable(&self) -> bool {
        match self {
            IntakeError::Io { cause, .. } => matches!(
                cause.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            IntakeError::TooLarge { .. } | IntakeError::NotAFile { .. } => false,
        }
    }

    pub(crate) fn io(path: &Path, action: &'static str, cause: io::Error) -> Self {
        IntakeError::Io {
            path: path.to_path_buf(),
            action,
            cause,
        }
    }
}
