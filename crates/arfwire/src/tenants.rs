//! `arfwire tenants`: manage the tenant directory stored in PostgreSQL.

use std::path::PathBuf;

use anyhow::Context;
use arfwire_store::{ImportMode, Store};
use clap::{Args, Subcommand, ValueEnum};

/// Arguments of `arfwire tenants`.
#[derive(Debug, Args)]
pub(crate) struct TenantsArgs {
    /// PostgreSQL URL of the directory database
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,

    #[command(subcommand)]
    command: TenantsCommand,
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Create or upgrade the database tables (idempotent)
    Migrate,
    /// Import a tenant directory from a CSV, JSON or TOML file, in one transaction
    Import {
        /// The file (format by extension: .csv, .json, .toml)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// replace: the file becomes the whole directory; merge: insert or update only
        #[arg(long, value_enum, default_value_t = Mode::Merge)]
        mode: Mode,
    },
    /// Print the stored directory as TOML
    Export,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Replace,
    Merge,
}

/// A current-thread runtime for the one-shot database commands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(crate) fn run(args: &TenantsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let store = Store::connect(&args.database_url)
            .await
            .context("connecting to the directory database")?;
        store.migrate().await.context("migrating the database")?;
        match &args.command {
            TenantsCommand::Migrate => {
                println!("the directory database is up to date");
            }
            TenantsCommand::Import { file, mode } => {
                let mode = match mode {
                    Mode::Replace => ImportMode::Replace,
                    Mode::Merge => ImportMode::Merge,
                };
                let report = store
                    .import_file(file, mode)
                    .await
                    .with_context(|| format!("importing {}", file.display()))?;
                println!("{report}");
            }
            TenantsCommand::Export => {
                let snapshot = store
                    .load_directory()
                    .await
                    .context("loading the directory")?;
                let text = toml::to_string_pretty(snapshot.data())
                    .context("formatting the directory as TOML")?;
                print!("{text}");
            }
        }
        anyhow::Ok(())
    })
}

/// Load a directory snapshot once from a PostgreSQL URL.
pub(crate) fn load_from_database(
    url: &str,
) -> anyhow::Result<arfwire_attribution::DirectorySnapshot> {
    runtime()?.block_on(async {
        let store = Store::connect(url)
            .await
            .context("connecting to the directory database")?;
        store.migrate().await.context("migrating the database")?;
        store
            .load_directory()
            .await
            .context("loading the directory")
    })
}
