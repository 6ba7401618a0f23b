//! PostgreSQL store for the tenant directory: the schema (`migrations/`), loading it into an
//! [`arfwire_attribution::DirectorySnapshot`], importing directory files in one transaction,
//! and a [`DirectoryHandle`] that picks up changes while the process runs.
//!
//! The migrations also hold the abuse desk's tables (`0002_abuse_desk.sql`: raw evidence,
//! reports, rejections, clusters, cases, notes, alerts, audit log, API tokens;
//! `0003_abuse_desk_roles.sql`: database roles), every table and column described in SQL
//! comments. The `arfwire-desk` crate writes them; the triage API reads them.
//!
//! Queries are checked at run time (no database is needed to build) and every value is a bound
//! parameter.
//!
//! Wiring for a `tenants import FILE` command:
//!
//! ```text
//! let store = Store::connect(&database_url).await?;
//! store.migrate().await?;
//! let report = store.import_file(path, ImportMode::Merge).await?;   // .csv, .json or .toml
//! println!("{report}");
//! ```
//!
//! and for a long-running attributor:
//!
//! ```text
//! let directory = DirectoryHandle::load(&store).await?;
//! let _refresh = directory.spawn_refresh(store.clone(), Duration::from_secs(30));
//! let snapshot = directory.current();   // Arc, cheap; re-take it per message
//! ```

pub mod error;
pub mod handle;
pub mod import;
pub mod store;
pub mod testing;

pub use error::{CsvIssue, CsvIssues, StoreError};
pub use handle::{DirectoryHandle, VersionedDirectory};
pub use import::{
    DirectoryFormat, DirectoryImport, parse, parse_csv, parse_json, parse_toml, read_file,
};
pub use store::{ChangeCounts, ImportMode, ImportReport, MIGRATOR, Store};
