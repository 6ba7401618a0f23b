//! Throwaway PostgreSQL databases for tests: one database per test, created on the server
//! of `DATABASE_URL` (default `postgres://postgres:postgres@127.0.0.1:5432/postgres`) and
//! dropped when the value is, also when the test fails. An unreachable server fails the test
//! with how to start one; it never skips.
//!
//! ```ignore
//! let db = TestDatabase::migrated("arfwire_desk_test", 4).await;
//! sqlx::query("SELECT 1").execute(db.pool()).await?;
//! ```

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};

use crate::MIGRATOR;

/// The server when `DATABASE_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

/// The server tests use: `DATABASE_URL`, else [`DEFAULT_SERVER_URL`].
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// Fail the test: the server at `url` cannot be used.
pub fn unreachable(url: &str, error: impl std::fmt::Display) -> ! {
    panic!(
        "PostgreSQL is not reachable at {url}: {error}\n\
         Start it with `scripts/services.sh up` (then `source .services.env`), or point \
         DATABASE_URL at a server where this role may create databases."
    )
}

/// The connection options of `url`, failing the test when they do not parse.
pub fn server_options(url: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url).unwrap_or_else(|e| unreachable(url, e))
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, dropped (`WITH (FORCE)`) when the value is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    pool: PgPool,
}

impl TestDatabase {
    /// An empty database named `<prefix>_<pid>_<n>_<nanos>`, with a pool of up to
    /// `max_connections`. `prefix` holds lower-case letters, digits and `_` only (the name
    /// goes into `CREATE DATABASE`, which takes no parameters).
    pub async fn create(prefix: &str, max_connections: u32) -> TestDatabase {
        assert!(
            !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "a test database prefix is lower-case letters, digits and _: {prefix:?}"
        );
        let url = server_url();
        let options = server_options(&url);
        let mut admin = match tokio::time::timeout(
            Duration::from_secs(10),
            PgConnection::connect_with(&options),
        )
        .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => unreachable(&url, e),
            Err(_) => unreachable(&url, "timed out after 10 s"),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "{prefix}_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let _ = admin.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.database(&name))
            .await
            .unwrap_or_else(|e| unreachable(&url, e));
        TestDatabase { name, pool }
    }

    /// [`TestDatabase::create`], then every migration applied.
    pub async fn migrated(prefix: &str, max_connections: u32) -> TestDatabase {
        let db = TestDatabase::create(prefix, max_connections).await;
        MIGRATOR.run(&db.pool).await.expect("migrations apply");
        db
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pool on the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connection options for this database, for pools of other settings.
    pub fn connect_options(&self) -> PgConnectOptions {
        server_options(&server_url()).database(&self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Runs during a failing test's unwinding too, so use a runtime of its own. The pool
        // is left alone: its tasks live on the test's runtime, which this thread blocks;
        // WITH (FORCE) ends its connections from the server side.
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok(options) = PgConnectOptions::from_str(&server_url()) else {
                    return;
                };
                let Ok(mut admin) = PgConnection::connect_with(&options).await else {
                    return;
                };
                let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(e) = sqlx::query(AssertSqlSafe(statement))
                    .execute(&mut admin)
                    .await
                {
                    eprintln!("could not drop test database {name}: {e}");
                }
                let _ = admin.close().await;
            });
        });
        let _ = dropper.join();
    }
}
