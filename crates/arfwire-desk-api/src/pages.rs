//! The server-rendered pages: leaderboard, tenant (with its chart), report (with the
//! attribution explanation), alerts, and the login form.
//!
//! Pages authenticate with an HttpOnly, `SameSite=Strict` session cookie holding the token,
//! set by the login form. Every form that changes something carries a CSRF value derived from
//! the session (checked in constant time) and is refused when its `Origin` is another site.
//! Every piece of text that came from a report is escaped by the template engine; the pages
//! run no script and the Content-Security-Policy allows none.

use std::collections::BTreeMap;

use axum::extract::{Path, RawForm, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::AppState;
use crate::api::{FilterParams, Params, authenticate};
use crate::auth::{AuthVia, Caller, Role, SESSION_COOKIE, constant_time_eq, session_cookie};
use crate::chart::{DayCount, bar_chart};
use crate::db::{self, RequestMeta, STATUSES, Window, status_allowed};
use crate::error::ApiError;

const STYLESHEET: &str = include_str!("desk.css");

/// Characters kept as they are in a path segment or query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

fn tenant_url(tenant: &str) -> String {
    format!("/tenants/{}", enc(tenant))
}

fn report_url(id: &str) -> String {
    format!("/reports/{}", enc(id))
}

/// An error shown as a page; 401 sends the browser to the login form.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        PageError(ApiError::Database(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        if matches!(e, ApiError::Unauthorized) {
            return login_redirect("/", true);
        }
        let status = e.status();
        let message = match &e {
            ApiError::Forbidden(role) => format!("This needs the {role} role."),
            ApiError::NotFound(what) => format!("No such {what}."),
            ApiError::TooManyRequests(_) => "Too many requests: wait a moment.".to_owned(),
            ApiError::Database(_) | ApiError::Internal(_) => {
                "Something went wrong on the server.".to_owned()
            }
            other => other.to_string(),
        };
        let body = page(
            &format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ),
            None,
            None,
            html! {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                p.error { (message) }
                p { a href="/" { "Back to the leaderboard" } }
            },
        );
        let mut response = (status, axum::response::Html(body.into_string())).into_response();
        e.decorate(&mut response);
        response
    }
}

type PageResult = Result<Response, PageError>;

fn html_response(markup: Markup) -> Response {
    axum::response::Html(markup.into_string()).into_response()
}

/// The pages' router.
pub fn router(state: AppState) -> Router<AppState> {
    let authed = Router::new()
        .route("/", get(leaderboard_page))
        .route("/tenants/status", post(tenants_bulk_form))
        .route("/tenants/{tenant}", get(tenant_page))
        .route("/tenants/{tenant}/status", post(tenant_status_form))
        .route("/tenants/{tenant}/reports.csv", get(tenant_csv))
        .route("/reports/status", post(reports_bulk_form))
        .route("/reports/{id}", get(report_page))
        .route("/reports/{id}/status", post(report_status_form))
        .route("/reports/{id}/raw", get(raw_download))
        .route("/reports/{id}/xarf", get(xarf_download))
        .route("/alerts", get(alerts_page))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(state, require_session));
    Router::new()
        .merge(authed)
        .route("/login", get(login_form).post(login))
        .route("/static/desk.css", get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Only local paths: no scheme, no host, no `//` or `/\` that a browser reads as a host.
fn safe_next(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control());
    if ok { next } else { "/" }
}

fn login_redirect(next: &str, clear: bool) -> Response {
    let target = format!("/login?next={}", enc(safe_next(next)));
    let mut response = Redirect::to(&target).into_response();
    if clear {
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static("arfwire_desk=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
    }
    response
}

/// Cookie authentication for the pages.
async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let token = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session_cookie)
        .map(str::to_owned);
    let Some(token) = token else {
        return login_redirect(&path, false);
    };
    match authenticate(&state, &token, AuthVia::Cookie).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(ApiError::Unauthorized) => login_redirect(&path, true),
        Err(e) => PageError(e).into_response(),
    }
}

/// The page frame.
fn page(title: &str, caller: Option<&Caller>, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · arfwire abuse desk" }
                link rel="stylesheet" href="/static/desk.css";
            }
            body {
                header.top {
                    a.brand href="/" { "arfwire abuse desk" }
                    @if let Some(caller) = caller {
                        nav {
                            a href="/" { "Tenants" }
                            a href="/alerts" { "Alerts" }
                        }
                        div.who {
                            span { (caller.label) " · " (caller.role) }
                            @if let Some(csrf) = csrf {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn status_badge(status: &str) -> Markup {
    html! { span class=(format!("badge status-{}", css_token(status))) { (status) } }
}

fn confidence_badge(confidence: Option<&str>) -> Markup {
    let label = confidence.unwrap_or("UNATTRIBUTED");
    html! { span class=(format!("badge conf-{}", css_token(label))) { (label) } }
}

/// A class-name-safe token (only our own vocabulary reaches here, but never trust that).
fn css_token(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .map(|c| c.to_ascii_lowercase())
        .take(32)
        .collect()
}

fn trend_cell(row: &db::LeaderboardRow) -> Markup {
    let arrow = match row.trend {
        "up" => "▲",
        "down" => "▼",
        "new" => "●",
        _ => "■",
    };
    html! {
        span class=(format!("trend trend-{}", row.trend)) title=(format!("{} in the previous window", row.previous_reports)) {
            (arrow) " "
            @if row.change > 0 { "+" } (row.change)
            @if let Some(pct) = row.change_pct { " (" @if pct > 0.0 { "+" } (format!("{pct:.0}")) "%)" }
            @else if row.trend == "new" { " (new)" }
        }
    }
}

fn breakdown(map: &db::Breakdown, max_items: usize) -> Markup {
    let mut items: Vec<(&String, &i64)> = map.iter().collect();
    items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let rest: i64 = items.iter().skip(max_items).map(|(_, n)| **n).sum();
    html! {
        ul.breakdown {
            @for (value, n) in items.iter().take(max_items) {
                li { span.v { (value) } " " span.n { (n) } }
            }
            @if rest > 0 { li.more { "others " (rest) } }
        }
    }
}

fn confidence_bar(map: &db::Breakdown) -> Markup {
    const ORDER: [&str; 6] = ["CONFIRMED", "HIGH", "MEDIUM", "LOW", "NONE", "UNATTRIBUTED"];
    const WIDTH: f64 = 120.0;
    let total: i64 = map.values().sum();
    let mut x = 0.0;
    let mut segments = Vec::new();
    for label in ORDER {
        if let Some(n) = map.get(label).filter(|n| **n > 0 && total > 0) {
            let w = WIDTH * (*n as f64) / (total as f64);
            segments.push((label, x, w, *n));
            x += w;
        }
    }
    html! {
        svg.confbar width=(WIDTH) height="10" viewBox=(format!("0 0 {WIDTH} 10")) role="img"
            aria-label=(map.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")) {
            @for (label, x, w, n) in &segments {
                rect class=(format!("conf-fill-{}", css_token(label))) x=(format!("{x:.1}")) y="0"
                    width=(format!("{w:.1}")) height="10" { title { (label) " " (n) } }
            }
        }
        div.conftext {
            @for (label, _, _, n) in &segments {
                span class=(format!("c conf-{}", css_token(label))) { (label) " " (n) } " "
            }
        }
    }
}

fn filter_query(window: Window, params: &FilterParams) -> Vec<(&'static str, String)> {
    let mut q = vec![("window", window.as_str().to_owned())];
    for (key, value) in [
        ("min_confidence", &params.min_confidence),
        ("feedback_type", &params.feedback_type),
        ("reporter", &params.reporter),
        ("kind", &params.kind),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            q.push((key, v.to_owned()));
        }
    }
    q
}

fn query_string(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn notice(params: &BTreeMap<String, String>) -> Markup {
    notice_for(params, &["status", "note", "bulk"])
}

/// The outcome of the form just posted, when it was one of `kinds`.
fn notice_for(params: &BTreeMap<String, String>, kinds: &[&str]) -> Markup {
    let done = params.get("done").map(String::as_str);
    if !done.is_some_and(|d| kinds.contains(&d)) {
        return html! {};
    }
    let text = match done {
        Some("status") => Some("Status updated."),
        Some("note") => Some("Note added."),
        Some("bulk") => Some("Bulk change applied."),
        _ => None,
    };
    let counts = ["changed", "unchanged", "refused", "not_found"]
        .iter()
        .filter_map(|k| {
            params
                .get(*k)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|n| *n > 0)
                .map(|n| format!("{} {n}", k.replace('_', " ")))
        })
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        @if let Some(text) = text {
            p.notice role="status" { (text) @if !counts.is_empty() { " " (counts) "." } }
        }
    }
}

fn status_options(current: Option<&str>) -> Markup {
    html! {
        @for s in STATUSES {
            @let allowed = current.is_none_or(|c| c != s && status_allowed(c, s));
            @if allowed {
                option value=(s) { (s) }
            }
        }
    }
}

async fn leaderboard_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(params): Params<FilterParams>,
    Params(extra): Params<BTreeMap<String, String>>,
) -> PageResult {
    let window = params.window()?;
    let (limit, offset) = params.page().resolve(&state)?;
    let board = db::leaderboard(
        state.pool(),
        &caller,
        state.now(),
        window,
        &params.filter()?,
        limit,
        offset,
    )
    .await?;
    let csrf = state.csrf_for(&caller);
    let analyst = caller.role >= Role::Analyst;
    let base = filter_query(window, &params);
    let page_link = |offset: i64| {
        let mut q = base.clone();
        q.push(("offset", offset.to_string()));
        q.push(("limit", limit.to_string()));
        format!("/?{}", query_string(&q))
    };
    let window_links: Vec<(Window, String)> = Window::ALL
        .into_iter()
        .map(|w| {
            let mut q = base.clone();
            q[0].1 = w.as_str().to_owned();
            (w, format!("/?{}", query_string(&q)))
        })
        .collect();
    let body = html! {
        h1 { "Tenants by complaints" }
        (notice(&extra))
        nav.tabs aria-label="Window" {
            @for (w, href) in &window_links {
                a class=(if *w == window { "tab active" } else { "tab" }) href=(href) {
                    "Last " (w.as_str())
                }
            }
        }
        form.filters method="get" action="/" {
            input type="hidden" name="window" value=(window.as_str());
            label { "Min. confidence "
                select name="min_confidence" {
                    option value="" { "any" }
                    @for c in db::CONFIDENCES {
                        option value=(c) selected[board.filters.min_confidence.as_deref() == Some(c)] { (c) }
                    }
                }
            }
            label { "Feedback type " input type="text" name="feedback_type" size="10" value=(board.filters.feedback_type.clone().unwrap_or_default()); }
            label { "Reporter " input type="text" name="reporter" size="16" value=(board.filters.reporter.clone().unwrap_or_default()); }
            label { "Kind " input type="text" name="kind" size="10" value=(board.filters.kind.clone().unwrap_or_default()); }
            button type="submit" { "Apply" }
            " " a href=(format!("/?window={}", window.as_str())) { "Clear" }
        }
        p.summary {
            strong { (board.total_reports) } " reports from " strong { (board.total) } " tenants between "
            (when(&board.from)) " and " (when(&board.to)) "; trend against the "
            (window.as_str()) " before."
        }
        @if board.tenants.is_empty() {
            p.empty { "No reports in this window." }
        } @else {
            form method="post" action="/tenants/status" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="back" value=(format!("/?{}", query_string(&base)));
                table.board {
                    thead { tr {
                        @if analyst { th.sel { span.sr { "Select" } } }
                        th { "Tenant" } th.num { "Reports" } th { "Trend" } th.num { "Untriaged" }
                        th { "Confidence" } th { "Feedback types" } th { "Reporters" } th { "Case" } th { "Last report" }
                    } }
                    tbody {
                        @for row in &board.tenants {
                            tr {
                                @if analyst {
                                    td.sel { input type="checkbox" name="tenant_ids" value=(row.tenant_id) aria-label=(format!("mark {}", row.tenant_id)); }
                                }
                                td.tenant {
                                    a href=(tenant_url(&row.tenant_id)) {
                                        (row.tenant_name.clone().unwrap_or_else(|| row.tenant_id.clone()))
                                    }
                                    @if row.tenant_name.is_some() { div.id { (row.tenant_id) } }
                                }
                                td.num { strong { (row.reports) } }
                                td { (trend_cell(row)) }
                                td.num { (row.untriaged) }
                                td { (confidence_bar(&row.by_confidence)) }
                                td { (breakdown(&row.by_feedback_type, 3)) }
                                td { (breakdown(&row.by_reporter, 3)) }
                                td { @match &row.case {
                                    Some(c) => { (status_badge(&c.status)) " " span.id { "#" (c.id) } }
                                    None => { span.muted { "no case" } }
                                } }
                                td.time { (when(&row.last_report_at)) }
                            }
                        }
                    }
                }
                @if analyst {
                    div.bulk {
                        label { "Set case status of the selected tenants to "
                            select name="status" { option value="" { "choose…" } (status_options(None)) }
                        }
                        label { " with note " input type="text" name="note" size="30" maxlength="2000"; }
                        " " button type="submit" { "Apply" }
                    }
                }
            }
            nav.pager {
                @if offset > 0 { a href=(page_link((offset - limit).max(0))) { "← Previous" } }
                span { "Tenants " (offset + 1) "–" (offset + board.tenants.len() as i64) " of " (board.total) }
                @if offset + limit < board.total { a href=(page_link(offset + limit)) { "Next →" } }
            }
        }
    };
    Ok(html_response(page(
        "Tenants",
        Some(&caller),
        Some(&csrf),
        body,
    )))
}

fn counted_table(title: &str, rows: &[db::Counted], value_title: &str, code: bool) -> Markup {
    html! {
        section.card {
            h3 { (title) }
            @if rows.is_empty() { p.muted { "none" } } @else {
                table.small {
                    thead { tr { th { (value_title) } th.num { "Reports" } } }
                    tbody { @for r in rows { tr {
                        td { @if code { code { (r.value) } } @else if r.value.is_empty() { span.muted { "(no subject)" } } @else { (r.value) } }
                        td.num { (r.count) }
                    } } }
                }
            }
        }
    }
}

fn breakdown_table(title: &str, map: &db::Breakdown) -> Markup {
    let mut items: Vec<(&String, &i64)> = map.iter().collect();
    items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    html! {
        section.card {
            h3 { (title) }
            @if items.is_empty() { p.muted { "none" } } @else {
                table.small { tbody { @for (k, v) in items { tr { td { (k) } td.num { (v) } } } } }
            }
        }
    }
}

async fn tenant_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    Params(params): Params<FilterParams>,
    Params(extra): Params<BTreeMap<String, String>>,
) -> PageResult {
    let days = params.days()?;
    let detail = db::tenant(state.pool(), &caller, state.now(), &tenant, days).await?;
    let (limit, offset) = params.page().resolve(&state)?;
    let status_filter = params.status()?;
    let (total, reports) = db::tenant_reports(
        state.pool(),
        &caller,
        &tenant,
        detail.from,
        detail.to,
        &params.filter()?,
        status_filter,
        limit,
        offset,
    )
    .await?;
    let csrf = state.csrf_for(&caller);
    let analyst = caller.role >= Role::Analyst;
    let name = detail
        .tenant_name
        .clone()
        .unwrap_or_else(|| detail.tenant_id.clone());
    let here = tenant_url(&tenant);
    let days_series: Vec<DayCount> = detail
        .daily
        .iter()
        .map(|d| DayCount {
            day: d.day,
            count: d.count,
        })
        .collect();
    let page_link = |offset: i64| {
        let mut q = vec![
            ("days", days.to_string()),
            ("offset", offset.to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(s) = status_filter {
            q.push(("status", s.to_owned()));
        }
        format!("{here}?{}#reports", query_string(&q))
    };
    let case_status = detail.case.as_ref().map(|c| c.status.as_str());
    let body = html! {
        p.crumbs { a href="/" { "Tenants" } " / " (name) }
        h1.tenant-name { (name) }
        p.sub {
            "Tenant id " code { (detail.tenant_id) } " · case "
            @match &detail.case {
                Some(c) => { (status_badge(&c.status)) " #" (c.id) }
                None => { span.muted { "none open" } }
            }
        }
        div.totals {
            @for label in ["24h", "7d", "30d"] {
                div.total { span.n { (detail.totals.get(label).copied().unwrap_or(0)) } span.l { "last " (label) } }
            }
        }
        section.card.chartcard {
            h2 { "Reports per day, last " (days) " days" }
            (bar_chart(&days_series, &format!("Reports per day for {name}")))
        }
        div.grid {
            (counted_table("Sending IPs (attributed origin)", &detail.origin_ips, "IP", true))
            (counted_table("Platform egress IPs", &detail.egress_ips, "IP", true))
            (counted_table("Source IPs stated by reporters", &detail.source_ips, "IP", true))
            section.card {
                h3 { "Reporters" }
                @if detail.reporters.is_empty() { p.muted { "none" } } @else {
                    table.small {
                        thead { tr { th { "Domain" } th { "Tier" } th.num { "Reports" } } }
                        tbody { @for r in &detail.reporters { tr {
                            td { (r.domain) @if let Some(op) = &r.operator { " (" (op) ")" } }
                            td { (r.tier.clone().unwrap_or_default()) }
                            td.num { (r.count) }
                        } } }
                    }
                }
            }
            (counted_table("Top subjects", &detail.top_subjects, "Subject", false))
            (breakdown_table("Confidence", &detail.by_confidence))
            (breakdown_table("Feedback types", &detail.by_feedback_type))
            (breakdown_table("Report status", &detail.by_status))
            section.card {
                h3 { "Clusters (same message reported)" }
                @if detail.clusters.is_empty() { p.muted { "none" } } @else {
                    table.small {
                        thead { tr { th { "Subject" } th.num { "Here" } th.num { "All" } th.num { "Reporters" } } }
                        tbody { @for c in &detail.clusters { tr {
                            td { (c.subject.clone().unwrap_or_default()) div.id { (c.message_id.clone().unwrap_or_default()) } }
                            td.num { (c.reports_in_period) }
                            td.num { (c.report_count) }
                            td.num { (c.distinct_reporters) }
                        } } }
                    }
                }
            }
        }
        section.card id="case" {
            h2 { "Case" }
            (notice_for(&extra, &["status", "note"]))
            @if let Some(c) = &detail.case {
                p { "Case #" (c.id) " " (status_badge(&c.status)) " opened by " (c.opened_by) " on " (when(&c.opened_at))
                    @if let (Some(by), Some(at)) = (&c.status_changed_by, &c.status_changed_at) { "; status set by " (by) " on " (when(at)) } }
                (notes_list(&c.notes))
            } @else {
                p.muted { "No case yet: setting a status or writing a note opens one." }
            }
            @if analyst {
                form.status method="post" action=(format!("{here}/status")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Status " select name="status" {
                        option value="" { "(keep " (case_status.unwrap_or("new")) ")" }
                        (status_options(case_status))
                    } }
                    label.note { "Note " textarea name="note" rows="2" cols="50" maxlength="10000" {} }
                    button type="submit" { "Save" }
                }
            }
        }
        section.card id="reports" {
            h2 { "Reports (" (total) ")" }
            (notice_for(&extra, &["bulk"]))
            p {
                "Show: "
                @for s in [None, Some("new"), Some("investigating"), Some("actioned"), Some("dismissed")] {
                    @let href = match s { Some(s) => format!("{here}?days={days}&status={s}#reports"), None => format!("{here}?days={days}#reports") };
                    a class=(if s == status_filter { "chip active" } else { "chip" }) href=(href) { (s.unwrap_or("all")) }
                    " "
                }
                " · " a href=(format!("{here}/reports.csv?days={days}")) { "Download CSV" }
            }
            form method="post" action="/reports/status" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="back" value=(format!("{here}?days={days}#reports"));
                table.reports {
                    thead { tr {
                        @if analyst { th.sel { span.sr { "Select" } } }
                        th { "Received" } th { "Subject" } th { "Reporter" } th { "Type" } th { "Confidence" } th { "Source IP" } th { "Status" }
                    } }
                    tbody {
                        @for r in &reports {
                            tr {
                                @if analyst { td.sel { input type="checkbox" name="ids" value=(r.id) aria-label="mark report"; } }
                                td.time { (when(&r.received_at)) }
                                td.subject { a href=(report_url(&r.id)) {
                                    @match r.subject.as_deref() { Some(s) if !s.is_empty() => { (s) } _ => { "(no subject)" } }
                                } }
                                td { (r.reporter_domain.clone().unwrap_or_else(|| "unknown".to_owned())) }
                                td { (r.complaint_type) }
                                td { (confidence_badge(r.confidence.as_deref())) }
                                td.nowrap { code { (r.source_ip.clone().unwrap_or_default()) } }
                                td { (status_badge(&r.status)) }
                            }
                        }
                    }
                }
                @if analyst && !reports.is_empty() {
                    div.bulk {
                        label { "Set status of the selected reports to " select name="status" { option value="" { "choose…" } (status_options(None)) } }
                        label { " with note " input type="text" name="note" size="30" maxlength="2000"; }
                        " " button type="submit" { "Apply" }
                    }
                }
            }
            nav.pager {
                @if offset > 0 { a href=(page_link((offset - limit).max(0))) { "← Newer" } }
                @if offset + limit < total { a href=(page_link(offset + limit)) { "Older →" } }
            }
        }
    };
    Ok(html_response(page(&name, Some(&caller), Some(&csrf), body)))
}

fn notes_list(notes: &[db::Note]) -> Markup {
    html! {
        @if notes.is_empty() { p.muted { "No notes." } } @else {
            ol.notes {
                @for n in notes {
                    li { div.meta { (n.author) " · " (when(&n.created_at)) } div.body { (n.body) } }
                }
            }
        }
    }
}

fn ip_row(label: &str, ip: Option<&db::IpView>) -> Markup {
    html! {
        @if let Some(ip) = ip {
            tr { th { (label) } td { code { (ip.ip) @if let Some(p) = ip.port { " port " (p) } } " " (confidence_badge(Some(&ip.confidence))) } }
        }
    }
}

async fn report_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Params(extra): Params<BTreeMap<String, String>>,
) -> PageResult {
    let id = db::parse_event_id(&id)?;
    let report = db::report(state.pool(), &caller, &id).await?;
    let r = &report.summary;
    let csrf = state.csrf_for(&caller);
    let analyst = caller.role >= Role::Analyst;
    let subject = r
        .subject
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(no subject)".to_owned());
    let tenant_label = r.tenant_name.clone().unwrap_or_else(|| r.tenant_id.clone());
    let here = report_url(&r.id);
    let body = html! {
        p.crumbs { a href="/" { "Tenants" } " / " a href=(tenant_url(&r.tenant_id)) { (tenant_label) } " / report" }
        h1.subject { (subject) }
        div.grid2 {
            section.card {
                h2 { "Report" }
                table.facts { tbody {
                    tr { th { "Sending tenant" } td { a href=(tenant_url(&r.tenant_id)) { (tenant_label) } " " code.id { (r.tenant_id) } } }
                    tr { th { "Confidence" } td { (confidence_badge(r.confidence.as_deref())) @if let Some(s) = r.score { " score " (format!("{s:.3}")) } } }
                    tr { th { "Status" } td { (status_badge(&r.status))
                        @if let (Some(by), Some(at)) = (&report.status_changed_by, &report.status_changed_at) { span.muted { " set by " (by) " on " (when(at)) } } } }
                    tr { th { "Received" } td { (when(&r.received_at)) } }
                    @if let Some(at) = &report.arrival_at { tr { th { "Arrived at complainant" } td { (when(at)) } } }
                    tr { th { "Kind" } td { (r.kind) " / " (report.format) } }
                    tr { th { "Complaint type" } td { (r.complaint_type) @if let Some(ft) = &r.feedback_type { @if ft != &r.complaint_type { " (Feedback-Type " (ft) ")" } } } }
                    tr { th { "Reporter" } td { (r.reporter_domain.clone().unwrap_or_else(|| "unknown".to_owned()))
                        @if let Some(t) = &r.reporter_tier { " · tier " (t) } @if let Some(op) = &report.reporter_operator { " · " (op) } } }
                    @if let Some(s) = &report.reporter_subject { tr { th { "Reporter's subject" } td { (s) } } }
                    tr { th { "Message-ID" } td { code { (r.message_id.clone().unwrap_or_default()) } } }
                    tr { th { "Sender domain" } td { (r.sender_domain.clone().unwrap_or_default()) } }
                    @if let Some(ip) = &r.source_ip { tr { th { "Source-IP (reporter)" } td { code { (ip) } } } }
                    tr { th { "Report id" } td { code { (r.id) } } }
                } }
            }
            section.card {
                h2 { "Attribution" }
                @if let Some(a) = &report.attribution {
                    table.facts { tbody {
                        tr { th { "Tenant" } td { @match &a.sending_tenant {
                            Some(t) => { (t.name.clone().unwrap_or_else(|| t.id.clone())) " " code.id { (t.id) } }
                            None => { span.muted { "none named" } }
                        } } }
                        tr { th { "Confidence" } td { (confidence_badge(Some(&a.confidence))) " score " (format!("{:.3}", a.score)) } }
                        tr { th { "Path" } td { (a.path_class) " · entered as " (a.origin_kind) " · judged from " (a.provenance) } }
                        (ip_row("Sending IP (origin)", a.origin_ip.as_ref()))
                        (ip_row("Ingress IP", a.ingress_ip.as_ref()))
                        (ip_row("Egress IP", a.egress_ip.as_ref()))
                        (ip_row("Reported Source-IP", a.reported_source_ip.as_ref()))
                        (ip_row("Delivered by", a.delivered_by_ip.as_ref()))
                        @if !a.flags.is_empty() { tr { th { "Flags" } td { @for f in &a.flags { span.flag { (f) } " " } } } }
                    } }
                } @else {
                    p.muted { "This report carries no attribution." }
                }
                @if let Some(t) = &report.reporter_trust {
                    h3 { "Reporter trust: " (t.tier) }
                    ul.reasons { @for reason in &t.reasons { li { (reason) } } }
                }
            }
        }
        @if let Some(a) = &report.attribution {
            section.card.explanation {
                h2 { "Why this tenant" }
                @if a.explanation.is_empty() { p.muted { "No explanation recorded." } } @else {
                    ol.explain { @for line in &a.explanation { li { (line) } } }
                }
            }
            section.card {
                h2 { "Evidence (" (a.evidence.len()) ")" }
                table.evidence {
                    thead { tr { th.num { "#" } th { "Kind" } th { "Value" } th { "Tenant" } th { "Read from" } th { "Written by" } th.num { "Weight" } } }
                    tbody { @for e in &a.evidence { tr {
                        td.num { (e.id) }
                        td { (e.kind) }
                        td class=(if e.value.len() <= 48 { "nowrap" } else { "" }) { code { (e.value) } }
                        td.nowrap { code.id { (e.tenant_id.clone().unwrap_or_default()) } }
                        td { (e.location.header) @if let Some(i) = e.location.index { "[" (i) "]" }
                            @if !e.location.raw.is_empty() { div.raw { code { (e.location.raw) } } } }
                        td { (e.trust) }
                        td.num { (format!("{:.3}", e.weight)) }
                    } } }
                }
            }
        }
        section.card id="triage" {
            h2 { "Triage" }
            (notice(&extra))
            (notes_list(&report.notes))
            @if analyst {
                form.status method="post" action=(format!("{here}/status")) {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Status " select name="status" {
                        option value="" { "(keep " (r.status) ")" }
                        (status_options(Some(&r.status)))
                    } }
                    label.note { "Note " textarea name="note" rows="2" cols="50" maxlength="10000" {} }
                    button type="submit" { "Save" }
                }
                p.downloads {
                    @if report.raw.available {
                        a href=(format!("{here}/raw")) download { "Download the raw submission (.eml)" }
                        span.muted { " (" (report.raw.size.unwrap_or(0)) " bytes; every download is written to the audit log)" }
                    } @else {
                        span.muted { "Raw submission not held"
                            @if let Some(reason) = &report.raw.deleted_reason { " (deleted: " (reason) ")" } "." }
                    }
                    " · " a href=(format!("{here}/xarf")) download { "XARF v4 export" }
                }
            } @else {
                p.muted { "Viewers cannot change the status or download raw messages." }
            }
        }
    };
    Ok(html_response(page(
        &subject,
        Some(&caller),
        Some(&csrf),
        body,
    )))
}

async fn alerts_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> PageResult {
    let (total, alerts) = db::alerts(state.pool(), &caller, None, None, 100, 0).await?;
    let csrf = state.csrf_for(&caller);
    let body = html! {
        h1 { "Alerts" }
        p.summary { (total) " alerts; the newest 100 are shown." }
        @if alerts.is_empty() { p.empty { "No alerts." } } @else {
            table.reports {
                thead { tr { th { "Fired" } th { "Tenant" } th { "Rule" } th.num { "Count" } th.num { "Peak" } th { "Threshold" } th { "Status" } } }
                tbody { @for a in &alerts { tr {
                    td.time { (when(&a.fired_at)) }
                    td { a href=(tenant_url(&a.tenant_id)) { (a.tenant_name.clone().unwrap_or_else(|| a.tenant_id.clone())) } }
                    td { (a.rule_name) }
                    td.num { (a.fired_count) }
                    td.num { (a.peak_count) }
                    td { (a.threshold) " in " (a.window_seconds / 3600) " h at ≥ " (a.min_confidence) }
                    td { (status_badge(&a.status)) }
                } } }
            }
        }
    };
    Ok(html_response(page(
        "Alerts",
        Some(&caller),
        Some(&csrf),
        body,
    )))
}

async fn tenant_csv(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(tenant): Path<String>,
    Params(params): Params<FilterParams>,
) -> PageResult {
    Ok(crate::api::tenant_csv_response(&state, &caller, &tenant, params.days()?).await?)
}

async fn raw_download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> PageResult {
    Ok(crate::api::raw_response(&state, &caller, &meta, &id).await?)
}

async fn xarf_download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    Path(id): Path<String>,
) -> PageResult {
    caller.require(Role::Analyst)?;
    Ok(crate::api::xarf_response(&state, &caller, &meta, &id).await?)
}

/// The fields of a posted form, repeated names kept.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Refuse a form post without the session's CSRF value or from another origin.
fn check_form(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    fields: &[(String, String)],
) -> Result<(), PageError> {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o == host);
        if !same {
            return Err(PageError(ApiError::Forbidden("same-origin form")));
        }
    }
    let presented = field(fields, "csrf").unwrap_or("");
    if !constant_time_eq(presented, &state.csrf_for(caller)) {
        return Err(PageError(ApiError::Forbidden(
            "valid form (reload the page)",
        )));
    }
    caller.require(Role::Analyst)?;
    Ok(())
}

fn outcome_redirect(back: &str, outcome: &db::BulkOutcome, done: &str) -> Response {
    let back = safe_next(back);
    let (path, fragment) = back.split_once('#').unwrap_or((back, ""));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| {
            !["done", "changed", "unchanged", "refused", "not_found"].contains(&k.as_str())
        })
        .collect();
    pairs.push(("done".into(), done.into()));
    pairs.push(("changed".into(), outcome.changed.len().to_string()));
    pairs.push(("unchanged".into(), outcome.unchanged.len().to_string()));
    pairs.push(("refused".into(), outcome.refused.len().to_string()));
    pairs.push(("not_found".into(), outcome.not_found.len().to_string()));
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let fragment = if fragment.is_empty() {
        String::new()
    } else {
        format!("#{}", enc(fragment))
    };
    Redirect::to(&format!("{path}?{query}{fragment}")).into_response()
}

fn wanted_status(fields: &[(String, String)]) -> Option<&str> {
    field(fields, "status").filter(|s| !s.is_empty())
}

fn note_field(fields: &[(String, String)]) -> Option<&str> {
    field(fields, "note")
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

async fn report_status_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawForm(body): RawForm,
) -> PageResult {
    let fields = form_fields(&body);
    check_form(&state, &caller, &headers, &fields)?;
    let id = db::parse_event_id(&id)?;
    let back = format!("{}#triage", report_url(&id));
    let note = note_field(&fields);
    match wanted_status(&fields) {
        Some(status) => {
            let outcome = db::set_report_status(
                state.pool(),
                &caller,
                &meta,
                std::slice::from_ref(&id),
                status,
                note,
            )
            .await?;
            if !outcome.not_found.is_empty() {
                return Err(ApiError::NotFound("report").into());
            }
            if !outcome.refused.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "This report cannot move to {status} from its current status."
                ))
                .into());
            }
            Ok(outcome_redirect(&back, &outcome, "status"))
        }
        None => {
            if let Some(note) = note {
                db::add_report_note(state.pool(), &caller, &meta, &id, note).await?;
            }
            Ok(outcome_redirect(&back, &db::BulkOutcome::default(), "note"))
        }
    }
}

async fn tenant_status_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    RawForm(body): RawForm,
) -> PageResult {
    let fields = form_fields(&body);
    check_form(&state, &caller, &headers, &fields)?;
    let back = format!("{}#case", tenant_url(&tenant));
    let note = note_field(&fields);
    match wanted_status(&fields) {
        Some(status) => {
            let outcome = db::set_tenant_status(
                state.pool(),
                &caller,
                &meta,
                std::slice::from_ref(&tenant),
                status,
                note,
            )
            .await?;
            if !outcome.not_found.is_empty() {
                return Err(ApiError::NotFound("tenant").into());
            }
            if !outcome.refused.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "This tenant's case cannot move to {status} from its current status."
                ))
                .into());
            }
            Ok(outcome_redirect(&back, &outcome, "status"))
        }
        None => {
            if let Some(note) = note {
                db::add_tenant_note(state.pool(), &caller, &meta, &tenant, note).await?;
            }
            Ok(outcome_redirect(&back, &db::BulkOutcome::default(), "note"))
        }
    }
}

fn all_fields(fields: &[(String, String)], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

async fn reports_bulk_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> PageResult {
    let fields = form_fields(&body);
    check_form(&state, &caller, &headers, &fields)?;
    let ids = all_fields(&fields, "ids");
    let status =
        wanted_status(&fields).ok_or_else(|| ApiError::BadRequest("choose a status".to_owned()))?;
    let outcome = db::set_report_status(
        state.pool(),
        &caller,
        &meta,
        &ids,
        status,
        note_field(&fields),
    )
    .await?;
    Ok(outcome_redirect(
        field(&fields, "back").unwrap_or("/"),
        &outcome,
        "bulk",
    ))
}

async fn tenants_bulk_form(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    meta: RequestMeta,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> PageResult {
    let fields = form_fields(&body);
    check_form(&state, &caller, &headers, &fields)?;
    let ids = all_fields(&fields, "tenant_ids");
    let status =
        wanted_status(&fields).ok_or_else(|| ApiError::BadRequest("choose a status".to_owned()))?;
    let outcome = db::set_tenant_status(
        state.pool(),
        &caller,
        &meta,
        &ids,
        status,
        note_field(&fields),
    )
    .await?;
    Ok(outcome_redirect(
        field(&fields, "back").unwrap_or("/"),
        &outcome,
        "bulk",
    ))
}

fn session_cookie_header(state: &AppState, token: &str) -> Option<HeaderValue> {
    let secure = if state.config().cookie_secure {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}"
    ))
    .ok()
}

fn login_page(next: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        None,
        html! {
            section.card.login {
                h1 { "Sign in" }
                p { "Paste your abuse desk token (ask an admin for one: " code { "arfwire desk token create" } ")." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="next" value=(safe_next(next));
                    label { "Token " input type="password" name="token" id="token" autocomplete="off" required size="50"; }
                    button type="submit" id="signin" { "Sign in" }
                }
            }
        },
    )
}

async fn login_form(Params(params): Params<BTreeMap<String, String>>) -> Response {
    let next = params.get("next").map_or("/", String::as_str);
    html_response(login_page(next, None))
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> Response {
    let fields = form_fields(&body);
    let next = safe_next(field(&fields, "next").unwrap_or("/")).to_owned();
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o == host);
        if !same {
            return PageError(ApiError::Forbidden("same-origin form")).into_response();
        }
    }
    let token = field(&fields, "token").unwrap_or("").trim().to_owned();
    let failed = |status: StatusCode, message: &str| {
        let mut response = html_response(login_page(&next, Some(message)));
        *response.status_mut() = status;
        response
    };
    if token.is_empty() || token.len() > 512 || !token.is_ascii() || token.contains(';') {
        return failed(StatusCode::UNAUTHORIZED, "That token is not valid.");
    }
    match authenticate(&state, &token, AuthVia::Cookie).await {
        Ok(_) => {
            let mut response = Redirect::to(&next).into_response();
            if let Some(cookie) = session_cookie_header(&state, &token) {
                response.headers_mut().insert(header::SET_COOKIE, cookie);
            }
            response
        }
        Err(ApiError::Unauthorized) => failed(
            StatusCode::UNAUTHORIZED,
            "That token is not valid, was revoked or has expired.",
        ),
        Err(ApiError::TooManyRequests(_)) => failed(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts: wait a moment.",
        ),
        Err(e) => PageError(e).into_response(),
    }
}

async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawForm(body): RawForm,
) -> PageResult {
    let fields = form_fields(&body);
    let presented = field(&fields, "csrf").unwrap_or("");
    if !constant_time_eq(presented, &state.csrf_for(&caller)) {
        return Err(PageError(ApiError::Forbidden(
            "valid form (reload the page)",
        )));
    }
    let _ = headers;
    Ok(login_redirect("/", true))
}
