//! The abuse desk's tool: a JSON triage API and server-rendered pages over the PostgreSQL
//! store, in one axum [`Router`].
//!
//! Every route but `/healthz`, `/metrics`, `/login` and the stylesheet needs a token:
//! `Authorization: Bearer <token>` for `/api/v1/...`, the HttpOnly session cookie set by the
//! login form for the pages. Tokens carry a role ([`Role`]): `viewer` reads, `analyst` also
//! changes case status, writes notes and downloads raw messages, `admin` also manages tokens
//! and reads the audit log. Every raw-message view and every status change is written to
//! `audit_log`.
//!
//! SQL is static text with bound parameters; the optional filters of the leaderboard are
//! bound parameters tested for NULL inside the statement, never text added to it.
//!
//! ```text
//! let pool = arfwire_desk_api::connect(&database_url).await?;
//! arfwire_desk_api::migrate(&pool).await?;                      // as the schema owner
//! let state = AppState::new(pool, DeskConfig::default());
//! let listener = tokio::net::TcpListener::bind(addr).await?;
//! arfwire_desk_api::serve(listener, state, shutdown_signal).await?;
//! ```

pub mod api;
pub mod auth;
pub mod chart;
pub mod db;
pub mod error;
pub mod export;
pub mod pages;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use auth::{Caller, RateLimit, Role};
pub use error::{ApiError, ApiResult};

/// How the desk behaves.
#[derive(Debug, Clone)]
pub struct DeskConfig {
    /// Per-token rate limit.
    pub rate_limit: RateLimit,
    /// Mark the session cookie `Secure` (leave on behind TLS).
    pub cookie_secure: bool,
    /// A fixed "now" for the time windows (tests); `None` reads the clock.
    pub fixed_now: Option<DateTime<Utc>>,
    /// Where `/metrics` renders from, when a Prometheus recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// Largest page size a list endpoint returns.
    pub max_page_size: i64,
    /// Who the XARF exports name as the reporter.
    pub xarf_reporter: export::XarfReporter,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            rate_limit: RateLimit::default(),
            cookie_secure: true,
            fixed_now: None,
            metrics: None,
            max_page_size: 200,
            xarf_reporter: export::XarfReporter::default(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    raw_pool: Option<PgPool>,
    config: DeskConfig,
    limiter: auth::RateLimiter,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("rate_limit", &self.inner.config.rate_limit)
            .field("cookie_secure", &self.inner.config.cookie_secure)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a connected (and migrated) pool.
    pub fn new(pool: PgPool, config: DeskConfig) -> Self {
        Self::with_raw_pool(pool, None, config)
    }

    /// State whose raw-message reads go through `raw_pool` (a connection with the
    /// `arfwire_desk_raw` role), everything else through `pool` (the `arfwire_desk_api` role).
    /// Without it, `pool` reads raw messages too.
    pub fn with_raw_pool(pool: PgPool, raw_pool: Option<PgPool>, config: DeskConfig) -> Self {
        AppState {
            inner: Arc::new(Inner {
                limiter: auth::RateLimiter::new(config.rate_limit),
                pool,
                raw_pool,
                config,
            }),
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The pool that reads raw messages.
    pub fn raw_pool(&self) -> &PgPool {
        self.inner.raw_pool.as_ref().unwrap_or(&self.inner.pool)
    }

    /// The configuration.
    pub fn config(&self) -> &DeskConfig {
        &self.inner.config
    }

    /// "Now" for the time windows.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.config.fixed_now.unwrap_or_else(Utc::now)
    }

    pub(crate) fn limiter(&self) -> &auth::RateLimiter {
        &self.inner.limiter
    }

    pub(crate) fn csrf_for(&self, caller: &Caller) -> String {
        caller.csrf.clone()
    }
}

/// Connect to PostgreSQL (no migration: the API's database role may not change the schema).
pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
}

/// Apply the store's migrations (the desk's tables included); needs the schema owner.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    arfwire_store::MIGRATOR.run(pool).await
}

/// Install the process-wide Prometheus recorder and return the handle `/metrics` renders.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let upkeep = handle.clone();
    // The recorder needs periodic upkeep to drain its histograms.
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(handle)
}

/// The whole desk: API, pages, health and metrics.
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", api::router(state.clone()))
        .merge(pages::router(state.clone()))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .layer(middleware::from_fn(observe))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Serve `app(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz(State(state): State<AppState>) -> Response {
    match sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(state.pool())
        .await
    {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    match &state.config().metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics recorder installed\n").into_response(),
    }
}

/// Request counts and latencies by route and status.
async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("desk_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("desk_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Give every request an id: the audit log records it and the response carries it as
/// `X-Request-Id`.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    request.extensions_mut().insert(api::RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The page's Content-Security-Policy: nothing but our own stylesheet; no script at all.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers every response carries.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
