//! A shared, live copy of the tenant directory that refreshes without a restart.

use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arfwire_attribution::DirectorySnapshot;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::error::StoreError;
use crate::store::Store;

/// A directory snapshot and the `directory_version` it was read at.
#[derive(Debug, Default, PartialEq)]
pub struct VersionedDirectory {
    /// The stored version the snapshot reflects.
    pub version: i64,
    /// The directory.
    pub snapshot: DirectorySnapshot,
}

impl Deref for VersionedDirectory {
    type Target = DirectorySnapshot;

    fn deref(&self) -> &DirectorySnapshot {
        &self.snapshot
    }
}

/// A cheaply cloneable holder of the current directory.
///
/// Readers take [`DirectoryHandle::current`] (an `Arc`, so a reader keeps a consistent
/// snapshot for as long as it needs it while newer ones are published) or
/// [`DirectoryHandle::subscribe`] to be woken on every change.
#[derive(Debug, Clone)]
pub struct DirectoryHandle {
    sender: Arc<watch::Sender<Arc<VersionedDirectory>>>,
}

impl DirectoryHandle {
    /// A handle holding the given directory.
    pub fn new(version: i64, snapshot: DirectorySnapshot) -> Self {
        let (sender, _) = watch::channel(Arc::new(VersionedDirectory { version, snapshot }));
        DirectoryHandle {
            sender: Arc::new(sender),
        }
    }

    /// A handle holding the directory as stored now.
    pub async fn load(store: &Store) -> Result<Self, StoreError> {
        let (version, snapshot) = store.load_directory_versioned().await?;
        Ok(DirectoryHandle::new(version, snapshot))
    }

    /// The current directory.
    pub fn current(&self) -> Arc<VersionedDirectory> {
        self.sender.borrow().clone()
    }

    /// The version of the current directory.
    pub fn version(&self) -> i64 {
        self.sender.borrow().version
    }

    /// A receiver that sees every directory published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<VersionedDirectory>> {
        self.sender.subscribe()
    }

    /// Publish a directory (for callers that load it some other way, and for tests).
    pub fn publish(&self, version: i64, snapshot: DirectorySnapshot) {
        self.sender
            .send_replace(Arc::new(VersionedDirectory { version, snapshot }));
    }

    /// Reload from the store if its version differs from the one held. Returns whether a new
    /// directory was published.
    pub async fn refresh(&self, store: &Store) -> Result<bool, StoreError> {
        if store.directory_version().await? == self.version() {
            return Ok(false);
        }
        let (version, snapshot) = store.load_directory_versioned().await?;
        let published = self.sender.send_if_modified(|current| {
            if current.version == version {
                return false;
            }
            *current = Arc::new(VersionedDirectory { version, snapshot });
            true
        });
        Ok(published)
    }

    /// Poll the store every `interval` and publish each new directory. Errors are logged and
    /// retried at the next tick; the old directory stays in use meanwhile. The task ends when
    /// every clone of this handle is dropped, or when aborted through the returned handle.
    pub fn spawn_refresh(&self, store: Store, interval: Duration) -> JoinHandle<()> {
        let weak: Weak<watch::Sender<Arc<VersionedDirectory>>> = Arc::downgrade(&self.sender);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(sender) = weak.upgrade() else { break };
                let handle = DirectoryHandle { sender };
                match handle.refresh(&store).await {
                    Ok(true) => tracing::info!(
                        version = handle.version(),
                        tenants = handle.current().tenants().len(),
                        "tenant directory reloaded"
                    ),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(
                        %error,
                        retryable = error.is_retryable(),
                        "tenant directory refresh failed; keeping the loaded directory"
                    ),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_read() {
        let handle = DirectoryHandle::new(1, DirectorySnapshot::default());
        let mut receiver = handle.subscribe();
        let held = handle.current();
        let td = DirectorySnapshot::from_toml("[[tenants]]\nid = \"a\"\n").expect("valid");
        handle.publish(2, td.clone());
        assert_eq!(held.version, 1, "readers keep the snapshot they took");
        assert_eq!(handle.version(), 2);
        assert!(receiver.has_changed().unwrap_or(false));
        assert_eq!(receiver.borrow_and_update().snapshot, td);
        assert!(handle.current().tenant("a").is_some());
    }
}
