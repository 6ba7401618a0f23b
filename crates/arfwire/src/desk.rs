//! `arfwire desk`: the abuse desk's triage API and pages (`serve`) and its tokens (`token`);
//! the store's commands (`consume`, `retention`, ...) come from `desk_store`.

use std::net::SocketAddr;

use anyhow::Context;
use arfwire_desk_api::{AppState, DeskConfig, RateLimit, Role};
use clap::{Args, Subcommand};

/// Arguments of `arfwire desk`.
#[derive(Debug, Args)]
pub(crate) struct DeskArgs {
    /// PostgreSQL URL of the store
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    database_url: String,

    #[command(subcommand)]
    command: DeskCommand,
}

#[derive(Debug, Subcommand)]
enum DeskCommand {
    /// Serve the triage API (/api/v1/...), the web pages (/), /healthz and /metrics
    Serve(ServeArgs),
    /// Manage API tokens
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The store: consume, retention, erase, alerts, migrate
    #[command(flatten)]
    Store(crate::desk_store::StoreCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Sustained requests per second allowed per token
    #[arg(long, value_name = "N", default_value_t = 20.0)]
    rate_per_second: f64,

    /// Requests allowed at once per token after a quiet period
    #[arg(long, value_name = "N", default_value_t = 60.0)]
    rate_burst: f64,

    /// Send the session cookie without the Secure attribute (only for plain-HTTP use on a
    /// trusted machine; behind TLS leave it off)
    #[arg(long)]
    insecure_cookie: bool,

    /// Do not install the Prometheus recorder (GET /metrics then answers 404)
    #[arg(long)]
    no_metrics: bool,

    /// Do not apply migrations at start-up: for a database role that may not change the
    /// schema (arfwire_desk_api); run `arfwire desk migrate` as the owner first
    #[arg(long)]
    no_migrate: bool,

    /// A second PostgreSQL URL, for a role with arfwire_desk_raw, used only to read raw
    /// messages for analysts; without it the main connection reads them
    #[arg(
        long,
        env = "ARFWIRE_DESK_RAW_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    raw_database_url: Option<String>,

    /// The organisation XARF exports name as the reporter
    #[arg(long, value_name = "NAME", default_value = "arfwire abuse desk")]
    xarf_org: String,

    /// The reporter's domain in XARF exports
    #[arg(long, value_name = "DOMAIN")]
    xarf_domain: Option<String>,

    /// The reporter's contact address in XARF exports
    #[arg(long, value_name = "ADDRESS")]
    xarf_email: Option<String>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once (only its SHA-256 is stored)
    Create {
        /// viewer (read), analyst (read, case status and notes, raw messages), admin (all,
        /// plus tokens and the audit log)
        #[arg(long, value_name = "ROLE")]
        role: Role,
        /// How long the token is valid, e.g. 12h, 30d, 2w
        #[arg(long, value_name = "DURATION", default_value = "90d",
              value_parser = arfwire_desk_api::auth::parse_duration)]
        expires_in: std::time::Duration,
        /// A unique name for the token: the actor in the audit log (default: role and a few
        /// characters of the token)
        #[arg(long, value_name = "TEXT", default_value = "")]
        name: String,
    },
    /// List tokens (never their values)
    List,
    /// Revoke a token by id
    Revoke {
        /// The token id shown by `list`
        #[arg(value_name = "ID")]
        id: i64,
    },
}

pub(crate) fn run(args: &DeskArgs) -> anyhow::Result<()> {
    match &args.command {
        DeskCommand::Serve(serve) => serve_blocking(&args.database_url, serve),
        DeskCommand::Store(command) => crate::desk_store::run(&args.database_url, command),
        DeskCommand::Token { command } => crate::tenants::runtime()?.block_on(async {
            let pool = arfwire_desk_api::connect(&args.database_url)
                .await
                .context("connecting to the database")?;
            arfwire_desk_api::migrate(&pool)
                .await
                .context("migrating the database")?;
            match command {
                TokenCommand::Create {
                    role,
                    expires_in,
                    name,
                } => {
                    let created =
                        arfwire_desk_api::tokens::create(&pool, *role, name, *expires_in, "cli")
                            .await
                            .context("creating the token")?;
                    eprintln!(
                        "token {} {:?} ({}, expires {}): shown once, store it now",
                        created.id,
                        created.name,
                        created.role,
                        created.expires_at.to_rfc3339()
                    );
                    println!("{}", created.token);
                }
                TokenCommand::List => {
                    for t in arfwire_desk_api::tokens::list(&pool)
                        .await
                        .context("listing tokens")?
                    {
                        println!(
                            "{}\t{}\t{}\texpires {}\t{}",
                            t.id,
                            t.role,
                            t.name,
                            t.expires_at.to_rfc3339(),
                            if t.revoked { "revoked" } else { "active" }
                        );
                    }
                }
                TokenCommand::Revoke { id } => {
                    if arfwire_desk_api::tokens::revoke(&pool, *id, "cli")
                        .await
                        .context("revoking the token")?
                    {
                        println!("token {id} revoked");
                    } else {
                        anyhow::bail!("no active token with id {id}");
                    }
                }
            }
            anyhow::Ok(())
        }),
    }
}

fn serve_blocking(database_url: &str, args: &ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let pool = arfwire_desk_api::connect(database_url)
            .await
            .context("connecting to the database")?;
        if !args.no_migrate {
            arfwire_desk_api::migrate(&pool)
                .await
                .context("migrating the database")?;
        }
        let raw_pool = match &args.raw_database_url {
            Some(url) => Some(
                arfwire_desk_api::connect(url)
                    .await
                    .context("connecting to the database for raw messages")?,
            ),
            None => None,
        };
        let metrics = if args.no_metrics {
            None
        } else {
            Some(
                arfwire_desk_api::install_prometheus()
                    .map_err(anyhow::Error::msg)
                    .context("installing the metrics recorder")?,
            )
        };
        let config = DeskConfig {
            rate_limit: RateLimit {
                per_second: args.rate_per_second,
                burst: args.rate_burst,
            },
            cookie_secure: !args.insecure_cookie,
            metrics,
            xarf_reporter: arfwire_desk_api::export::XarfReporter {
                org: args.xarf_org.clone(),
                domain: args.xarf_domain.clone(),
                email: args.xarf_email.clone(),
            },
            ..DeskConfig::default()
        };
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!("abuse desk listening on http://{}", listener.local_addr()?);
        let state = AppState::with_raw_pool(pool, raw_pool, config);
        arfwire_desk_api::serve(listener, state, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
    })
}
