//! The JSON API under `/api/v1`, and the authentication every route of the desk shares.
//!
//! | route | role |
//! |---|---|
//! | `GET /me` | viewer |
//! | `GET /tenants` (leaderboard) | viewer |
//! | `GET /tenants/{tenant}` | viewer |
//! | `GET /tenants/{tenant}/reports` | viewer |
//! | `GET /tenants/{tenant}/reports.csv` | viewer |
//! | `GET /tenants/{tenant}/case` | viewer |
//! | `GET /reports/{id}` | viewer |
//! | `GET /alerts` | viewer |
//! | `GET /reports/{id}/raw` (audited) | analyst |
//! | `GET /reports/{id}/xarf` (audited) | analyst |
//! | `POST /reports/{id}/status`, `POST /reports/status` (bulk) | analyst |
//! | `POST /reports/{id}/notes` | analyst |
//! | `POST /tenants/{tenant}/status`, `POST /tenants/status` (bulk) | analyst |
//! | `POST /tenants/{tenant}/notes` | analyst |
//! | `GET /audit` | admin |
//! | `GET /tokens`, `POST /tokens`, `DELETE /tokens/{id}` | admin |

use std::net::SocketAddr;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{AuthVia, Caller, Role, bearer, hash_token};
use crate::db::{self, ReportFilter, RequestMeta, Window};
use crate::error::{ApiError, ApiResult};
use crate::{AppState, export};

/// A JSON body whose rejection is an [`ApiError`] (JSON, not plain text).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    ApiError::BadRequest(e.body_text())
}

/// A JSON response in which `<`, `>` and `&` are written as `\u003c`, `\u003e` and `\u0026`,
/// so report text stays inert even where a client pastes the JSON into HTML.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(bytes) => {
                let mut out = Vec::with_capacity(bytes.len() + 16);
                for b in bytes {
                    // Outside strings JSON has none of these bytes, so this only touches text.
                    match b {
                        b'<' => out.extend_from_slice(b"\\u003c"),
                        b'>' => out.extend_from_slice(b"\\u003e"),
                        b'&' => out.extend_from_slice(b"\\u0026"),
                        other => out.push(other),
                    }
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    out,
                )
                    .into_response()
            }
            Err(e) => ApiError::Internal(e.to_string()).into_response(),
        }
    }
}

/// Query parameters whose rejection is an [`ApiError`].
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::BadRequest(e.body_text())
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestMeta {
            client_ip: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
            request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
        })
    }
}

/// The id of a request, sent back as `X-Request-Id` and written to the audit log.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Look a presented token up: charge its rate bucket, then check it exists, is unrevoked and
/// unexpired.
pub(crate) async fn authenticate(state: &AppState, token: &str, via: AuthVia) -> ApiResult<Caller> {
    let hash = hash_token(token);
    state
        .limiter()
        .check(&hash)
        .map_err(ApiError::TooManyRequests)?;
    let row = db::token_by_hash(state.pool(), &hash)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if row.expired || row.revoked {
        return Err(ApiError::Unauthorized);
    }
    let role: Role = row
        .role
        .parse()
        .map_err(|_| ApiError::Internal(format!("token {} has an unknown role", row.id)))?;
    if row.stale_use {
        db::touch_token(state.pool(), row.id).await?;
    }
    Ok(Caller {
        token_id: row.id,
        label: row.name,
        role,
        tenant_scope: row.tenant_scope,
        via,
        csrf: crate::auth::csrf_value(token),
    })
}

/// Bearer authentication for the API.
async fn require_bearer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .map(str::to_owned);
    let Some(token) = token else {
        return ApiError::Unauthorized.into_response();
    };
    match authenticate(&state, &token, AuthVia::Bearer).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Refuse callers below `role` before the handler reads anything.
pub(crate) async fn require_role(role: Role, request: Request, next: Next) -> Response {
    match request.extensions().get::<Caller>() {
        Some(caller) if caller.role >= role => next.run(request).await,
        Some(_) => ApiError::Forbidden(role.as_str()).into_response(),
        None => ApiError::Unauthorized.into_response(),
    }
}

/// The API router (mounted at `/api/v1`).
pub fn router(state: AppState) -> Router<AppState> {
    let read = Router::new()
        .route("/me", get(me))
        .route("/tenants", get(leaderboard))
        .route("/tenants/{tenant}", get(tenant))
        .route("/tenants/{tenant}/reports", get(tenant_reports))
        .route("/tenants/{tenant}/reports.csv", get(tenant_csv))
        .route("/tenants/{tenant}/case", get(tenant_case))
        .route("/reports/{id}", get(report))
        .route("/alerts", get(alerts));
    let analyst = Router::new()
        .route("/reports/{id}/raw", get(raw))
        .route("/reports/{id}/xarf", get(xarf))
        .route("/reports/{id}/status", post(report_status))
        .route("/reports/{id}/notes", post(report_note))
        .route("/reports/status", post(reports_bulk_status))
        .route("/tenants/{tenant}/status", post(tenant_status))
        .route("/tenants/{tenant}/notes", post(tenant_note))
        .route("/tenants/status", post(tenants_bulk_status))
        .route_layer(middleware::from_fn(|r, n| {
            require_role(Role::Analyst, r, n)
        }));
    let admin = Router::new()
        .route("/audit", get(audit))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route_layer(middleware::from_fn(|r, n| require_role(Role::Admin, r, n)));
    Router::new()
        .merge(read)
        .merge(analyst)
        .merge(admin)
        .fallback(|| async { ApiError::NotFound("endpoint") })
        // A layer, not a route layer: unknown endpoints need a token too.
        .layer(middleware::from_fn_with_state(state, require_bearer))
}

/// Page size and offset of a list.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Page {
    /// Page size (default 50, at most the configured maximum).
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

/// Largest offset accepted (deeper pages cost too much; narrow the filters instead).
pub const MAX_OFFSET: i64 = 100_000;

impl Page {
    pub(crate) fn resolve(self, state: &AppState) -> ApiResult<(i64, i64)> {
        let max = state.config().max_page_size;
        let limit = self.limit.unwrap_or(50.min(max));
        if limit < 1 {
            return Err(ApiError::BadRequest("limit must be at least 1".to_owned()));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=MAX_OFFSET).contains(&offset) {
            return Err(ApiError::BadRequest(format!(
                "offset must be between 0 and {MAX_OFFSET}"
            )));
        }
        Ok((limit.min(max), offset))
    }
}

/// Filters of the leaderboard and report lists, as query parameters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FilterParams {
    /// `24h`, `7d` (default) or `30d`.
    pub window: Option<String>,
    /// At least this confidence: NONE, LOW, MEDIUM, HIGH, CONFIRMED.
    pub min_confidence: Option<String>,
    /// Effective complaint type.
    pub feedback_type: Option<String>,
    /// Reporter domain.
    pub reporter: Option<String>,
    /// Report kind.
    pub kind: Option<String>,
    /// Report status (report lists only).
    pub status: Option<String>,
    /// Days of history (tenant detail and report lists; default 30, at most 90).
    pub days: Option<i64>,
    /// Page size.
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl FilterParams {
    pub(crate) fn filter(&self) -> ApiResult<ReportFilter> {
        let min_confidence = non_empty(&self.min_confidence);
        let min_confidence_rank = min_confidence
            .as_deref()
            .map(db::confidence_rank)
            .transpose()?;
        Ok(ReportFilter {
            min_confidence_rank,
            min_confidence: min_confidence.map(|c| c.to_ascii_uppercase()),
            feedback_type: non_empty(&self.feedback_type).map(|s| s.to_ascii_lowercase()),
            reporter: non_empty(&self.reporter).map(|s| s.to_ascii_lowercase()),
            kind: non_empty(&self.kind),
        })
    }

    pub(crate) fn window(&self) -> ApiResult<Window> {
        non_empty(&self.window).map_or(Ok(Window::default()), |w| Window::parse(&w))
    }

    pub(crate) fn days(&self) -> ApiResult<i64> {
        let days = self.days.unwrap_or(30);
        if !(1..=90).contains(&days) {
            return Err(ApiError::BadRequest(
                "days must be between 1 and 90".to_owned(),
            ));
        }
        Ok(days)
    }

    pub(crate) fn status(&self) -> ApiResult<Option<&'static str>> {
        non_empty(&self.status)
            .map(|s| db::parse_status(&s))
            .transpose()
    }

    pub(crate) fn page(&self) -> Page {
        Page {
            limit: self.limit,
            offset: self.offset,
        }
    }
}

async fn me(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    Json(json!({
        "token_id": caller.token_id,
        "name": caller.label,
        "role": caller.role,
        "tenant_scope": caller.tenant_scope,
    }))
}

async fn leaderboard(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<FilterParams>,
) -> ApiResult<Json<db::Leaderboard>> {
    let (limit, offset) = params.page().resolve(&state)?;
    let board = db::leaderboard(
        state.pool(),
        &caller,
        state.now(),
        params.window()?,
        &params.filter()?,
        limit,
        offset,
    )
    .await?;
    Ok(Json(board))
}

async fn tenant(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    Params(params): Params<FilterParams>,
) -> ApiResult<Json<db::TenantDetail>> {
    let detail = db::tenant(state.pool(), &caller, state.now(), &tenant, params.days()?).await?;
    Ok(Json(detail))
}

async fn tenant_reports(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    Params(params): Params<FilterParams>,
) -> ApiResult<Json<serde_json::Value>> {
    if !db::in_scope(&caller, &tenant) {
        return Err(ApiError::NotFound("tenant"));
    }
    let (limit, offset) = params.page().resolve(&state)?;
    let now = state.now();
    let from = now - chrono::Duration::days(params.days()?);
    let (total, reports) = db::tenant_reports(
        state.pool(),
        &caller,
        &tenant,
        from,
        now,
        &params.filter()?,
        params.status()?,
        limit,
        offset,
    )
    .await?;
    Ok(Json(json!({
        "tenant_id": tenant,
        "from": from,
        "to": now,
        "limit": limit,
        "offset": offset,
        "total": total,
        "reports": reports,
    })))
}

pub(crate) async fn tenant_csv_response(
    state: &AppState,
    caller: &Caller,
    tenant: &str,
    days: i64,
) -> ApiResult<Response> {
    let now = state.now();
    let from = now - chrono::Duration::days(days);
    let rows = db::export_rows(state.pool(), caller, tenant, from, now).await?;
    let body = export::csv(&rows).map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = format!(
        "reports-{}-{}.csv",
        export::safe_filename_part(tenant),
        now.format("%Y%m%d")
    );
    Ok(attachment("text/csv; charset=utf-8", &name, body))
}

async fn tenant_csv(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    Params(params): Params<FilterParams>,
) -> ApiResult<Response> {
    tenant_csv_response(&state, &caller, &tenant, params.days()?).await
}

async fn tenant_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    if !db::in_scope(&caller, &tenant) {
        return Err(ApiError::NotFound("tenant"));
    }
    let case = db::tenant_case(state.pool(), &tenant).await?;
    Ok(Json(json!({ "tenant_id": tenant, "case": case })))
}

async fn report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<db::ReportDetail>> {
    let id = db::parse_event_id(&id)?;
    Ok(Json(db::report(state.pool(), &caller, &id).await?))
}

/// A download: `Content-Disposition: attachment` with a name we chose, never one from a report.
pub(crate) fn attachment(content_type: &'static str, filename: &str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) async fn raw_response(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    id: &str,
) -> ApiResult<Response> {
    let id = db::parse_event_id(id)?;
    let (_, bytes) = db::raw_for_report(
        state.pool(),
        state.raw_pool(),
        caller,
        meta,
        &id,
        "download",
    )
    .await?;
    Ok(attachment(
        "message/rfc822",
        &format!("report-{id}.eml"),
        bytes,
    ))
}

async fn raw(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    raw_response(&state, &caller, &meta, &id).await
}

pub(crate) async fn xarf_response(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    id: &str,
) -> ApiResult<Response> {
    let id = db::parse_event_id(id)?;
    let detail = db::report(state.pool(), caller, &id).await?;
    let raw = if detail.raw.available {
        Some(
            db::raw_for_report(state.pool(), state.raw_pool(), caller, meta, &id, "xarf")
                .await?
                .1,
        )
    } else {
        None
    };
    let doc = export::xarf(&detail, raw.as_deref(), &state.config().xarf_reporter);
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(attachment(
        "application/json",
        &format!("report-{id}.xarf.json"),
        body,
    ))
}

async fn xarf(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    xarf_response(&state, &caller, &meta, &id).await
}

/// A status change, with an optional note.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusChange {
    /// new, investigating, actioned or dismissed.
    pub status: String,
    /// A note to add.
    #[serde(default)]
    pub note: Option<String>,
}

/// A bulk status change of reports.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkReports {
    /// Event ids.
    pub ids: Vec<String>,
    /// new, investigating, actioned or dismissed.
    pub status: String,
    /// A note to add to each.
    #[serde(default)]
    pub note: Option<String>,
}

/// A bulk status change of tenants' cases.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkTenants {
    /// Tenant ids.
    pub tenant_ids: Vec<String>,
    /// new, investigating, actioned or dismissed.
    pub status: String,
    /// A note to add to each case.
    #[serde(default)]
    pub note: Option<String>,
}

/// A note.
#[derive(Debug, Clone, Deserialize)]
pub struct NoteBody {
    /// Plain text.
    pub body: String,
}

/// One object's status change: 404 when unknown, 409 when the move is not allowed.
fn single(outcome: db::BulkOutcome, what: &'static str) -> ApiResult<Json<db::BulkOutcome>> {
    if !outcome.not_found.is_empty() {
        return Err(ApiError::NotFound(what));
    }
    if !outcome.refused.is_empty() {
        return Err(ApiError::Conflict(format!(
            "this {what} cannot move to {} from its current status",
            outcome.status
        )));
    }
    Ok(Json(outcome))
}

async fn report_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<String>,
    Body(change): Body<StatusChange>,
) -> ApiResult<Json<db::BulkOutcome>> {
    let id = db::parse_event_id(&id)?;
    let outcome = db::set_report_status(
        state.pool(),
        &caller,
        &meta,
        &[id],
        &change.status,
        change.note.as_deref(),
    )
    .await?;
    single(outcome, "report")
}

async fn reports_bulk_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Body(change): Body<BulkReports>,
) -> ApiResult<Json<db::BulkOutcome>> {
    let outcome = db::set_report_status(
        state.pool(),
        &caller,
        &meta,
        &change.ids,
        &change.status,
        change.note.as_deref(),
    )
    .await?;
    Ok(Json(outcome))
}

async fn report_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<String>,
    Body(note): Body<NoteBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let note_id = db::add_report_note(state.pool(), &caller, &meta, &id, &note.body).await?;
    Ok((StatusCode::CREATED, Json(json!({ "note_id": note_id }))))
}

async fn tenant_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(tenant): Path<String>,
    Body(change): Body<StatusChange>,
) -> ApiResult<Json<db::BulkOutcome>> {
    let outcome = db::set_tenant_status(
        state.pool(),
        &caller,
        &meta,
        &[tenant],
        &change.status,
        change.note.as_deref(),
    )
    .await?;
    single(outcome, "tenant")
}

async fn tenants_bulk_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Body(change): Body<BulkTenants>,
) -> ApiResult<Json<db::BulkOutcome>> {
    let outcome = db::set_tenant_status(
        state.pool(),
        &caller,
        &meta,
        &change.tenant_ids,
        &change.status,
        change.note.as_deref(),
    )
    .await?;
    Ok(Json(outcome))
}

async fn tenant_note(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(tenant): Path<String>,
    Body(note): Body<NoteBody>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let note_id = db::add_tenant_note(state.pool(), &caller, &meta, &tenant, &note.body).await?;
    Ok((StatusCode::CREATED, Json(json!({ "note_id": note_id }))))
}

/// Filters of the alert list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertParams {
    /// open, acknowledged or resolved.
    pub status: Option<String>,
    /// One tenant.
    pub tenant: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

async fn alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<AlertParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let (limit, offset) = Page {
        limit: params.limit,
        offset: params.offset,
    }
    .resolve(&state)?;
    let status = non_empty(&params.status);
    if let Some(s) = &status
        && !["open", "acknowledged", "resolved"].contains(&s.as_str())
    {
        return Err(ApiError::BadRequest(
            "status must be open, acknowledged or resolved".to_owned(),
        ));
    }
    let (total, alerts) = db::alerts(
        state.pool(),
        &caller,
        status.as_deref(),
        non_empty(&params.tenant).as_deref(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(json!({
        "limit": limit, "offset": offset, "total": total, "alerts": alerts,
    })))
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditParams {
    /// One action (`raw_view`, `report_status`, ...).
    pub action: Option<String>,
    /// One object id (a raw SHA-256, an event id, a case id).
    pub object_id: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Rows to skip.
    pub offset: Option<i64>,
}

async fn audit(
    State(state): State<AppState>,
    Params(params): Params<AuditParams>,
) -> ApiResult<Json<serde_json::Value>> {
    let (limit, offset) = Page {
        limit: params.limit,
        offset: params.offset,
    }
    .resolve(&state)?;
    let entries = db::audit_entries(
        state.pool(),
        non_empty(&params.action).as_deref(),
        non_empty(&params.object_id).as_deref(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(
        json!({ "limit": limit, "offset": offset, "entries": entries }),
    ))
}

async fn list_tokens(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let tokens = crate::tokens::list(state.pool()).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

/// A token to create.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateToken {
    /// viewer, analyst or admin.
    pub role: Role,
    /// Unique name (the audit log's actor); generated when empty.
    #[serde(default)]
    pub name: String,
    /// Validity, e.g. `30d` (default 90d).
    #[serde(default)]
    pub expires_in: Option<String>,
    /// Tenants it may see (absent: all).
    #[serde(default)]
    pub tenant_scope: Option<Vec<String>>,
}

async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Body(request): Body<CreateToken>,
) -> ApiResult<(StatusCode, Json<crate::tokens::NewToken>)> {
    let expires_in = crate::auth::parse_duration(request.expires_in.as_deref().unwrap_or("90d"))
        .map_err(ApiError::BadRequest)?;
    if caller.tenant_scope.is_some() && request.tenant_scope.is_none() {
        return Err(ApiError::Forbidden("unscoped admin"));
    }
    let created = crate::tokens::create_scoped(
        state.pool(),
        request.role,
        &request.name,
        expires_in,
        request.tenant_scope,
        caller.actor(),
        &meta,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if crate::tokens::revoke_with(state.pool(), id, caller.actor(), &meta).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("token"))
    }
}
