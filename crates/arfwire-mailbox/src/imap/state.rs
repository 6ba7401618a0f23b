//! The IMAP poller's state file: which mailbox, its `UIDVALIDITY`, and the last UID done.
//!
//! A small JSON document, replaced atomically (written to a temporary file in the same
//! directory, flushed to disk, renamed over the old one, and the directory flushed), so a
//! crash leaves either the old state or the new one, never a torn file.
//!
//! "Done" means submitted, acknowledged to the log's satisfaction, and moved or flagged at
//! the server. A crash after the move or flag but before the state is written makes the next
//! run submit that message again, which is safe: downstream drops the duplicate.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// The version written to, and accepted from, the state file.
const STATE_VERSION: u32 = 1;

/// What the poller remembers about one mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapState {
    /// The format version, 1.
    pub version: u32,
    /// The login the state belongs to.
    pub username: String,
    /// The mailbox the state belongs to.
    pub mailbox: String,
    /// The mailbox's `UIDVALIDITY` when `last_uid` was recorded.
    pub uid_validity: u32,
    /// The highest UID that is done; every message above it is still to be read.
    pub last_uid: u32,
}

impl ImapState {
    /// A fresh state: nothing done yet.
    pub fn new(username: &str, mailbox: &str, uid_validity: u32) -> Self {
        ImapState {
            version: STATE_VERSION,
            username: username.to_owned(),
            mailbox: mailbox.to_owned(),
            uid_validity,
            last_uid: 0,
        }
    }

    /// Read the state file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<ImapState>, StateError> {
        let text = match fs::read(path) {
            Ok(text) => text,
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(state_io(path, "read", cause)),
        };
        let state: ImapState =
            serde_json::from_slice(&text).map_err(|cause| StateError::Invalid {
                path: path.to_path_buf(),
                reason: cause.to_string(),
            })?;
        if state.version != STATE_VERSION {
            return Err(StateError::Invalid {
                path: path.to_path_buf(),
                reason: format!("version {} is not {STATE_VERSION}", state.version),
            });
        }
        Ok(Some(state))
    }

    /// Replace the state file with this state, atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|cause| StateError::Invalid {
            path: path.to_path_buf(),
            reason: cause.to_string(),
        })?;
        text.push(b'\n');
        let temporary = temporary_path(path);
        let written = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(&text)?;
            file.sync_all()
        })();
        if let Err(cause) = written {
            let _ = fs::remove_file(&temporary);
            return Err(state_io(&temporary, "write", cause));
        }
        if let Err(cause) = fs::rename(&temporary, path) {
            let _ = fs::remove_file(&temporary);
            return Err(state_io(path, "replace", cause));
        }
        sync_directory(path).map_err(|cause| state_io(path, "flush the directory of", cause))
    }
}

/// `<dir>/.<name>.tmp`: beside the file, so the rename stays on one file system.
fn temporary_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(
        || "state".into(),
        |name| name.to_string_lossy().into_owned(),
    );
    path.with_file_name(format!(".{name}.tmp"))
}

#[cfg(unix)]
fn sync_directory(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_path: &Path) -> io::Result<()> {
    Ok(())
}

fn state_io(path: &Path, action: &'static str, cause: io::Error) -> StateError {
    StateError::Io {
        path: path.to_path_buf(),
        action,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(ImapState::load(&path).unwrap(), None);
        let mut state = ImapState::new("junk@example.net", "INBOX", 7);
        state.save(&path).unwrap();
        state.last_uid = 42;
        state.save(&path).unwrap();
        assert_eq!(ImapState::load(&path).unwrap(), Some(state));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file is left behind");
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs::write(&path, b"{\"version\":1,").unwrap();
        let error = ImapState::load(&path).unwrap_err();
        assert!(error.to_string().contains("remove it"), "{error}");
        fs::write(
            &path,
            br#"{"version":2,"username":"u","mailbox":"INBOX","uid_validity":1,"last_uid":0}"#,
        )
        .unwrap();
        assert!(matches!(
            ImapState::load(&path),
            Err(StateError::Invalid { .. })
        ));
    }
}
