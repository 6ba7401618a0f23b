//! Every query the desk runs. Statements are static text; every value (filters included) is a
//! bound parameter. Optional filters are written `($n::type IS NULL OR column = $n)`, so one
//! statement serves every combination without building SQL at run time.
//!
//! Tenant scope: a token may be limited to some tenants (`api_tokens.tenant_scope`). Every
//! statement that reads reports, cases, alerts or clusters takes the scope as a `text[]`
//! (NULL for every tenant) and filters on it, so an object outside the scope looks exactly
//! like an object that does not exist.
//!
//! Reports without a sending tenant are grouped under the key [`UNATTRIBUTED`].

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::auth::{Caller, Role, hex};
use crate::error::{ApiError, ApiResult};

/// The tenant key of reports that name no sending tenant.
pub const UNATTRIBUTED: &str = "unattributed";

/// Workflow statuses of reports and cases.
pub const STATUSES: [&str; 4] = ["new", "investigating", "actioned", "dismissed"];

/// Confidence labels, weakest first (their index is `confidence_rank`).
pub const CONFIDENCES: [&str; 5] = ["NONE", "LOW", "MEDIUM", "HIGH", "CONFIRMED"];

/// Most ids one bulk change takes.
pub const MAX_BULK: usize = 1000;

/// Most rows one CSV export holds.
pub const MAX_EXPORT_ROWS: i64 = 50_000;

/// A status value, checked.
pub fn parse_status(text: &str) -> ApiResult<&'static str> {
    STATUSES
        .iter()
        .find(|s| **s == text)
        .copied()
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown status {text:?}: use new, investigating, actioned or dismissed"
            ))
        })
}

/// The rank of a confidence label (case-insensitive).
pub fn confidence_rank(label: &str) -> ApiResult<i16> {
    CONFIDENCES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(label))
        .and_then(|p| i16::try_from(p).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown confidence {label:?}: use NONE, LOW, MEDIUM, HIGH or CONFIRMED"
            ))
        })
}

/// A report id: the event's UUID in canonical text. Anything else is "not found".
pub fn parse_event_id(text: &str) -> ApiResult<String> {
    uuid::Uuid::try_parse(text)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::NotFound("report"))
}

/// The leaderboard's time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Window {
    /// The last 24 hours.
    #[serde(rename = "24h")]
    Day,
    /// The last 7 days.
    #[serde(rename = "7d")]
    #[default]
    Week,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::Day, Window::Week, Window::Month];

    /// Its length.
    pub fn duration(self) -> Duration {
        match self {
            Window::Day => Duration::hours(24),
            Window::Week => Duration::days(7),
            Window::Month => Duration::days(30),
        }
    }

    /// Its name in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "24h",
            Window::Week => "7d",
            Window::Month => "30d",
        }
    }

    /// Parse `24h`, `7d` or `30d`.
    pub fn parse(text: &str) -> ApiResult<Window> {
        Window::ALL
            .into_iter()
            .find(|w| w.as_str() == text)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("unknown window {text:?}: use 24h, 7d or 30d"))
            })
    }
}

fn scope(caller: &Caller) -> Option<Vec<String>> {
    caller.tenant_scope.clone()
}

/// Whether the caller may see this tenant key.
pub fn in_scope(caller: &Caller, tenant_key: &str) -> bool {
    match &caller.tenant_scope {
        None => true,
        Some(list) => tenant_key != UNATTRIBUTED && list.iter().any(|t| t == tenant_key),
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

/// A token row, as the authentication needs it.
#[derive(Debug, Clone)]
pub(crate) struct TokenRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) tenant_scope: Option<Vec<String>>,
    pub(crate) expired: bool,
    pub(crate) revoked: bool,
    pub(crate) stale_use: bool,
}

pub(crate) async fn token_by_hash(pool: &PgPool, hash: &[u8; 32]) -> ApiResult<Option<TokenRow>> {
    let row = sqlx::query(
        "SELECT id, name, role, tenant_scope, expires_at <= now() AS expired, \
                revoked_at IS NOT NULL AS revoked, \
                (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale_use \
           FROM api_tokens WHERE token_sha256 = $1",
    )
    .bind(hex(hash))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| TokenRow {
        id: r.get("id"),
        name: r.get("name"),
        role: r.get("role"),
        tenant_scope: r.get("tenant_scope"),
        expired: r.get("expired"),
        revoked: r.get("revoked"),
        stale_use: r.get("stale_use"),
    }))
}

pub(crate) async fn touch_token(pool: &PgPool, id: i64) -> ApiResult<()> {
    sqlx::query("UPDATE api_tokens SET last_used_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------

/// Where an action came from, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The client's address, when known.
    pub client_ip: Option<std::net::IpAddr>,
    /// The request id (also sent back as `X-Request-Id`).
    pub request_id: Option<String>,
}

/// One audit row.
pub(crate) struct Audit<'a> {
    pub(crate) action: &'a str,
    pub(crate) object_type: &'a str,
    pub(crate) object_id: &'a str,
    pub(crate) tenant_id: Option<&'a str>,
    pub(crate) old_value: Option<&'a str>,
    pub(crate) new_value: Option<&'a str>,
    pub(crate) detail: Value,
}

pub(crate) async fn audit(
    tx: &mut Transaction<'_, Postgres>,
    actor: &str,
    meta: &RequestMeta,
    entry: Audit<'_>,
) -> ApiResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, object_type, object_id, tenant_id, old_value, \
                                new_value, detail, client_ip, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::inet, $10)",
    )
    .bind(actor)
    .bind(entry.action)
    .bind(entry.object_type)
    .bind(entry.object_id)
    .bind(entry.tenant_id)
    .bind(entry.old_value)
    .bind(entry.new_value)
    .bind(entry.detail)
    .bind(meta.client_ip.map(|ip| ip.to_string()))
    .bind(meta.request_id.as_deref())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Make the status triggers name this actor, and the request's address and id.
async fn set_actor(tx: &mut Transaction<'_, Postgres>, actor: &str) -> ApiResult<()> {
    sqlx::query("SELECT set_config('arfwire.actor', $1, true)")
        .bind(actor)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// One row of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Kind of object.
    pub object_type: String,
    /// Its id.
    pub object_id: String,
    /// The tenant concerned.
    pub tenant_id: Option<String>,
    /// Value before.
    pub old_value: Option<String>,
    /// Value after.
    pub new_value: Option<String>,
    /// Anything else.
    pub detail: Value,
    /// The client's address.
    pub client_ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}

/// Audit rows, newest first, optionally for one action or object id.
pub async fn audit_entries(
    pool: &PgPool,
    action: Option<&str>,
    object_id: Option<&str>,
    limit: i64,
    offset: i64,
) -> ApiResult<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, object_type, object_id, tenant_id, old_value, new_value, \
                detail, host(client_ip) AS client_ip, request_id \
           FROM audit_log \
          WHERE ($1::text IS NULL OR action = $1) AND ($2::text IS NULL OR object_id = $2) \
          ORDER BY at DESC, id DESC LIMIT $3 OFFSET $4",
    )
    .bind(action)
    .bind(object_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.get("id"),
            at: r.get("at"),
            actor: r.get("actor"),
            action: r.get("action"),
            object_type: r.get("object_type"),
            object_id: r.get("object_id"),
            tenant_id: r.get("tenant_id"),
            old_value: r.get("old_value"),
            new_value: r.get("new_value"),
            detail: r.get("detail"),
            client_ip: r.get("client_ip"),
            request_id: r.get("request_id"),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Leaderboard
// ---------------------------------------------------------------------------------------

/// Filters of the leaderboard and of report lists.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportFilter {
    /// At least this confidence (rank 0..=4).
    #[serde(skip)]
    pub min_confidence_rank: Option<i16>,
    /// The label of `min_confidence_rank`.
    pub min_confidence: Option<String>,
    /// Effective complaint type (`abuse`, `fraud`, `auth-failure`, ...).
    pub feedback_type: Option<String>,
    /// The reporter's domain.
    pub reporter: Option<String>,
    /// Report kind (`arf`, `jmrp`, ...).
    pub kind: Option<String>,
}

/// A count per value.
pub type Breakdown = BTreeMap<String, i64>;

/// The open (or else the latest) case of a tenant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CaseRef {
    /// Case number.
    pub id: i64,
    /// Its status.
    pub status: String,
}

/// One line of the leaderboard.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderboardRow {
    /// Tenant id, or [`UNATTRIBUTED`].
    pub tenant_id: String,
    /// Display name from the latest report that has one.
    pub tenant_name: Option<String>,
    /// Reports in the window.
    pub reports: i64,
    /// Reports in the window before it, of the same length.
    pub previous_reports: i64,
    /// `reports - previous_reports`.
    pub change: i64,
    /// Change in percent of the previous window; `None` when it had none.
    pub change_pct: Option<f64>,
    /// `up`, `down`, `flat` or `new` (nothing in the previous window).
    pub trend: &'static str,
    /// Reports in the window still in status `new`.
    pub untriaged: i64,
    /// The latest report.
    pub last_report_at: DateTime<Utc>,
    /// The tenant's open or latest case.
    pub case: Option<CaseRef>,
    /// Reports per effective complaint type.
    pub by_feedback_type: Breakdown,
    /// Reports per reporter domain.
    pub by_reporter: Breakdown,
    /// Reports per attribution confidence (`UNATTRIBUTED` when the event had none).
    pub by_confidence: Breakdown,
}

/// A page of the leaderboard.
#[derive(Debug, Clone, Serialize)]
pub struct Leaderboard {
    /// The window.
    pub window: Window,
    /// Its start (inclusive).
    pub from: DateTime<Utc>,
    /// Its end (exclusive): now.
    pub to: DateTime<Utc>,
    /// Start of the previous window the trend compares with.
    pub previous_from: DateTime<Utc>,
    /// The filters applied.
    pub filters: ReportFilter,
    /// Page size.
    pub limit: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Tenants with reports in the window (all pages).
    pub total: i64,
    /// Reports in the window (all tenants, all pages).
    pub total_reports: i64,
    /// This page.
    pub tenants: Vec<LeaderboardRow>,
}

fn trend(current: i64, previous: i64) -> (&'static str, Option<f64>) {
    if previous == 0 {
        return (if current == 0 { "flat" } else { "new" }, None);
    }
    let pct = ((current - previous) as f64 / previous as f64 * 1000.0).round() / 10.0;
    let label = match current.cmp(&previous) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => "flat",
    };
    (label, Some(pct))
}

/// The leaderboard: tenants ranked by reports in the window, with trend and breakdowns.
pub async fn leaderboard(
    pool: &PgPool,
    caller: &Caller,
    now: DateTime<Utc>,
    window: Window,
    filter: &ReportFilter,
    limit: i64,
    offset: i64,
) -> ApiResult<Leaderboard> {
    let from = now - window.duration();
    let previous_from = from - window.duration();
    let rows = sqlx::query(
        "WITH filtered AS ( \
             SELECT COALESCE(tenant_id, 'unattributed') AS tenant_key, tenant_name, \
                    received_at, status \
               FROM reports \
              WHERE received_at >= $1 AND received_at < $3 \
                AND ($4::smallint IS NULL OR confidence_rank >= $4) \
                AND ($5::text IS NULL OR complaint_type = $5) \
                AND ($6::text IS NULL OR reporter_domain = $6) \
                AND ($7::text IS NULL OR kind = $7) \
                AND ($8::text[] IS NULL OR tenant_id = ANY($8)) \
         ), per_tenant AS ( \
             SELECT tenant_key, \
                    count(*) FILTER (WHERE received_at >= $2) AS current, \
                    count(*) FILTER (WHERE received_at < $2) AS previous, \
                    count(*) FILTER (WHERE received_at >= $2 AND status = 'new') AS untriaged, \
                    max(received_at) AS last_report_at, \
                    (array_agg(tenant_name ORDER BY received_at DESC) \
                        FILTER (WHERE tenant_name IS NOT NULL))[1] AS tenant_name \
               FROM filtered GROUP BY tenant_key \
         ) \
         SELECT tenant_key, tenant_name, current, previous, untriaged, last_report_at, \
                count(*) OVER () AS total, (sum(current) OVER ())::bigint AS total_reports \
           FROM per_tenant WHERE current > 0 \
          ORDER BY current DESC, tenant_key ASC \
          LIMIT $9 OFFSET $10",
    )
    .bind(previous_from)
    .bind(from)
    .bind(now)
    .bind(filter.min_confidence_rank)
    .bind(filter.feedback_type.as_deref())
    .bind(filter.reporter.as_deref())
    .bind(filter.kind.as_deref())
    .bind(scope(caller))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;

    let mut total = 0;
    let mut total_reports = 0;
    let mut tenants = Vec::with_capacity(rows.len());
    for r in rows {
        total = r.get("total");
        total_reports = r.get("total_reports");
        let current: i64 = r.get("current");
        let previous: i64 = r.get("previous");
        let (label, pct) = trend(current, previous);
        tenants.push(LeaderboardRow {
            tenant_id: r.get("tenant_key"),
            tenant_name: r.get("tenant_name"),
            reports: current,
            previous_reports: previous,
            change: current - previous,
            change_pct: pct,
            trend: label,
            untriaged: r.get("untriaged"),
            last_report_at: r.get("last_report_at"),
            case: None,
            by_feedback_type: Breakdown::new(),
            by_reporter: Breakdown::new(),
            by_confidence: Breakdown::new(),
        });
    }
    if total == 0 && offset > 0 {
        // Past the last page: still tell the totals.
        let r = sqlx::query(
            "SELECT count(DISTINCT COALESCE(tenant_id, 'unattributed')) AS total, count(*) AS total_reports \
               FROM reports \
              WHERE received_at >= $1 AND received_at < $2 \
                AND ($3::smallint IS NULL OR confidence_rank >= $3) \
                AND ($4::text IS NULL OR complaint_type = $4) \
                AND ($5::text IS NULL OR reporter_domain = $5) \
                AND ($6::text IS NULL OR kind = $6) \
                AND ($7::text[] IS NULL OR tenant_id = ANY($7))",
        )
        .bind(from)
        .bind(now)
        .bind(filter.min_confidence_rank)
        .bind(filter.feedback_type.as_deref())
        .bind(filter.reporter.as_deref())
        .bind(filter.kind.as_deref())
        .bind(scope(caller))
        .fetch_one(pool)
        .await?;
        total = r.get("total");
        total_reports = r.get("total_reports");
    }

    let keys: Vec<String> = tenants.iter().map(|t| t.tenant_id.clone()).collect();
    if !keys.is_empty() {
        let breakdowns = sqlx::query(
            "SELECT COALESCE(tenant_id, 'unattributed') AS tenant_key, \
                    GROUPING(complaint_type) AS g_type, GROUPING(reporter_domain) AS g_reporter, \
                    complaint_type, reporter_domain, confidence, count(*) AS n \
               FROM reports \
              WHERE received_at >= $1 AND received_at < $2 \
                AND ($3::smallint IS NULL OR confidence_rank >= $3) \
                AND ($4::text IS NULL OR complaint_type = $4) \
                AND ($5::text IS NULL OR reporter_domain = $5) \
                AND ($6::text IS NULL OR kind = $6) \
                AND ($7::text[] IS NULL OR tenant_id = ANY($7)) \
                AND COALESCE(tenant_id, 'unattributed') = ANY($8) \
              GROUP BY GROUPING SETS ( \
                    (COALESCE(tenant_id, 'unattributed'), complaint_type), \
                    (COALESCE(tenant_id, 'unattributed'), reporter_domain), \
                    (COALESCE(tenant_id, 'unattributed'), confidence))",
        )
        .bind(from)
        .bind(now)
        .bind(filter.min_confidence_rank)
        .bind(filter.feedback_type.as_deref())
        .bind(filter.reporter.as_deref())
        .bind(filter.kind.as_deref())
        .bind(scope(caller))
        .bind(&keys)
        .fetch_all(pool)
        .await?;
        for r in breakdowns {
            let key: String = r.get("tenant_key");
            let Some(row) = tenants.iter_mut().find(|t| t.tenant_id == key) else {
                continue;
            };
            let n: i64 = r.get("n");
            let g_type: i32 = r.get("g_type");
            let g_reporter: i32 = r.get("g_reporter");
            if g_type == 0 {
                let value: String = r.get("complaint_type");
                *row.by_feedback_type.entry(value).or_default() += n;
            } else if g_reporter == 0 {
                let value: Option<String> = r.get("reporter_domain");
                *row.by_reporter
                    .entry(value.unwrap_or_else(|| "unknown".to_owned()))
                    .or_default() += n;
            } else {
                let value: Option<String> = r.get("confidence");
                *row.by_confidence
                    .entry(value.unwrap_or_else(|| "UNATTRIBUTED".to_owned()))
                    .or_default() += n;
            }
        }
        let cases = tenant_cases(pool, &keys).await?;
        for row in &mut tenants {
            row.case = cases.get(&row.tenant_id).cloned();
        }
    }

    Ok(Leaderboard {
        window,
        from,
        to: now,
        previous_from,
        filters: filter.clone(),
        limit,
        offset,
        total,
        total_reports,
        tenants,
    })
}

/// The open case of each tenant, else its latest one.
async fn tenant_cases(pool: &PgPool, keys: &[String]) -> ApiResult<BTreeMap<String, CaseRef>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (tenant_id) tenant_id, id, status FROM cases \
          WHERE tenant_id = ANY($1) \
          ORDER BY tenant_id, (status IN ('new', 'investigating')) DESC, opened_at DESC, id DESC",
    )
    .bind(keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get("tenant_id"),
                CaseRef {
                    id: r.get("id"),
                    status: r.get("status"),
                },
            )
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------

/// A report in a list.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSummary {
    /// The event id.
    pub id: String,
    /// When arfwire received the submission.
    pub received_at: DateTime<Utc>,
    /// Sending tenant id, or [`UNATTRIBUTED`].
    pub tenant_id: String,
    /// Its display name.
    pub tenant_name: Option<String>,
    /// Report kind.
    pub kind: String,
    /// The ARF Feedback-Type as written, when there was one.
    pub feedback_type: Option<String>,
    /// Effective complaint type.
    pub complaint_type: String,
    /// Domain of the reporter.
    pub reporter_domain: Option<String>,
    /// Reporter trust tier.
    pub reporter_tier: Option<String>,
    /// Attribution confidence.
    pub confidence: Option<String>,
    /// Attribution score.
    pub score: Option<f64>,
    /// The source IP the reporter states.
    pub source_ip: Option<String>,
    /// The IP that sent the message into the platform.
    pub origin_ip: Option<String>,
    /// The platform IP that handed it out.
    pub egress_ip: Option<String>,
    /// Subject of the reported message (untrusted text).
    pub subject: Option<String>,
    /// Message-ID of the reported message.
    pub message_id: Option<String>,
    /// Sending domain of the reported message.
    pub sender_domain: Option<String>,
    /// Triage status.
    pub status: String,
    /// Its cluster.
    pub cluster_id: Option<i64>,
}

fn summary(r: &sqlx::postgres::PgRow) -> ReportSummary {
    ReportSummary {
        id: r.get("id"),
        received_at: r.get("received_at"),
        tenant_id: r.get("tenant_key"),
        tenant_name: r.get("tenant_name"),
        kind: r.get("kind"),
        feedback_type: r.get("feedback_type"),
        complaint_type: r.get("complaint_type"),
        reporter_domain: r.get("reporter_domain"),
        reporter_tier: r.get("reporter_tier"),
        confidence: r.get("confidence"),
        score: r.get("score"),
        source_ip: r.get("source_ip"),
        origin_ip: r.get("origin_ip"),
        egress_ip: r.get("egress_ip"),
        subject: r.get("subject"),
        message_id: r.get("message_id"),
        sender_domain: r.get("sender_domain"),
        status: r.get("status"),
        cluster_id: r.get("cluster_id"),
    }
}

/// Reports of one tenant key in `[from, to)`, newest first, with the list filters.
#[allow(clippy::too_many_arguments)]
pub async fn tenant_reports(
    pool: &PgPool,
    caller: &Caller,
    tenant_key: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    filter: &ReportFilter,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> ApiResult<(i64, Vec<ReportSummary>)> {
    let rows = sqlx::query(
        "SELECT event_id::text AS id, received_at, COALESCE(tenant_id, 'unattributed') AS tenant_key, \
                tenant_name, kind, feedback_type, complaint_type, reporter_domain, reporter_tier, \
                confidence, score, host(source_ip) AS source_ip, host(origin_ip) AS origin_ip, \
                host(egress_ip) AS egress_ip, subject, message_id, sender_domain, status, \
                cluster_id, count(*) OVER () AS total \
           FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 \
            AND ($4::smallint IS NULL OR confidence_rank >= $4) \
            AND ($5::text IS NULL OR complaint_type = $5) \
            AND ($6::text IS NULL OR reporter_domain = $6) \
            AND ($7::text IS NULL OR kind = $7) \
            AND ($8::text[] IS NULL OR tenant_id = ANY($8)) \
            AND ($9::text IS NULL OR status = $9) \
          ORDER BY received_at DESC, event_id \
          LIMIT $10 OFFSET $11",
    )
    .bind(tenant_key)
    .bind(from)
    .bind(to)
    .bind(filter.min_confidence_rank)
    .bind(filter.feedback_type.as_deref())
    .bind(filter.reporter.as_deref())
    .bind(filter.kind.as_deref())
    .bind(scope(caller))
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total = rows.first().map_or(0, |r| r.get("total"));
    Ok((total, rows.iter().map(summary).collect()))
}

/// One evidence item of an attribution, read leniently from the stored event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceView {
    /// Id within the attribution.
    pub id: u64,
    /// Evidence kind.
    pub kind: String,
    /// The tenant it points to.
    pub tenant_id: Option<String>,
    /// The value.
    pub value: String,
    /// Where it was read.
    pub location: LocationView,
    /// Who could have written it.
    pub trust: String,
    /// Weight in the score.
    pub weight: f64,
}

/// Where a value was read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LocationView {
    /// Header or field name.
    pub header: String,
    /// Occurrence.
    pub index: Option<u64>,
    /// Raw value (shortened).
    pub raw: String,
}

/// An IP finding of the attribution.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IpView {
    /// The address.
    pub ip: String,
    /// Source port.
    pub port: Option<u16>,
    /// Confidence label.
    pub confidence: String,
}

/// A tenant reference.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantView {
    /// Tenant id.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
}

/// The attribution of a report, as the desk shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AttributionView {
    /// Path class.
    pub path_class: String,
    /// How the judged header block reached us.
    pub provenance: String,
    /// The sending tenant.
    pub sending_tenant: Option<TenantView>,
    /// Confidence label.
    pub confidence: String,
    /// Score.
    pub score: f64,
    /// The platform IP that handed the message out.
    pub egress_ip: Option<IpView>,
    /// The reporter's Source-IP.
    pub reported_source_ip: Option<IpView>,
    /// Ingress on the final pass.
    pub ingress_ip: Option<IpView>,
    /// Ingress on the earliest pass: the sending IP.
    pub origin_ip: Option<IpView>,
    /// Without an egress hop: who handed it on.
    pub delivered_by_ip: Option<IpView>,
    /// How the message entered the platform.
    pub origin_kind: String,
    /// Flags.
    pub flags: Vec<String>,
    /// Every piece of evidence.
    pub evidence: Vec<EvidenceView>,
    /// One line per decision.
    pub explanation: Vec<String>,
}

/// Reporter trust as stored in the event.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustView {
    /// T1, T2 or T3.
    pub tier: String,
    /// The known operator, for T1.
    pub operator: Option<String>,
    /// One line per check.
    pub reasons: Vec<String>,
}

/// A note on a report or case.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Note id.
    pub id: i64,
    /// Who wrote it.
    pub author: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Plain text.
    pub body: String,
}

/// What is known about the raw submission.
#[derive(Debug, Clone, Serialize)]
pub struct RawInfo {
    /// SHA-256 of the submission.
    pub sha256: String,
    /// Size in bytes.
    pub size: Option<i64>,
    /// Whether the bytes are held (an analyst may download them).
    pub available: bool,
    /// Why they are gone: `retention` or `erasure`.
    pub deleted_reason: Option<String>,
    /// Intake channel.
    pub channel: Option<String>,
}

/// Everything about one report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportDetail {
    /// The list fields.
    #[serde(flatten)]
    pub summary: ReportSummary,
    /// The submission id.
    pub submission_id: String,
    /// Finer format.
    pub format: String,
    /// ARF Incidents.
    pub incidents: Option<i64>,
    /// The known feedback-loop operator.
    pub reporter_operator: Option<String>,
    /// Path class.
    pub path_class: Option<String>,
    /// Origin kind.
    pub origin_kind: Option<String>,
    /// Attribution flags.
    pub flags: Vec<String>,
    /// When the reported message reached the complainant.
    pub arrival_at: Option<DateTime<Utc>>,
    /// Who made the last status change.
    pub status_changed_by: Option<String>,
    /// When.
    pub status_changed_at: Option<DateTime<Utc>>,
    /// The case the report belongs to.
    pub case_id: Option<i64>,
    /// The attribution (evidence list and explanation lines).
    pub attribution: Option<AttributionView>,
    /// Reporter trust.
    pub reporter_trust: Option<TrustView>,
    /// The reporter's own subject line (untrusted text).
    pub reporter_subject: Option<String>,
    /// The raw submission.
    pub raw: RawInfo,
    /// Notes, oldest first.
    pub notes: Vec<Note>,
    /// The whole stored event.
    pub event: Value,
}

/// One report, if it exists and is in the caller's scope.
pub async fn report(pool: &PgPool, caller: &Caller, event_id: &str) -> ApiResult<ReportDetail> {
    let r = sqlx::query(
        "SELECT r.event_id::text AS id, r.received_at, COALESCE(r.tenant_id, 'unattributed') AS tenant_key, \
                r.tenant_name, r.kind, r.feedback_type, r.complaint_type, r.reporter_domain, \
                r.reporter_tier, r.confidence, r.score, host(r.source_ip) AS source_ip, \
                host(r.origin_ip) AS origin_ip, host(r.egress_ip) AS egress_ip, r.subject, \
                r.message_id, r.sender_domain, r.status, r.cluster_id, \
                r.submission_id::text AS submission_id, r.format, r.incidents, \
                r.reporter_operator, r.path_class, r.origin_kind, r.flags, r.arrival_at, \
                r.status_changed_by, r.status_changed_at, r.case_id, r.event, r.raw_sha256, \
                s.raw_size, (s.raw_stored_at IS NOT NULL AND s.raw_deleted_at IS NULL) AS raw_available, \
                s.raw_deleted_reason, s.channel \
           FROM reports r LEFT JOIN submissions s ON s.raw_sha256 = r.raw_sha256 \
          WHERE r.event_id = $1::uuid AND ($2::text[] IS NULL OR r.tenant_id = ANY($2))",
    )
    .bind(event_id)
    .bind(scope(caller))
    .fetch_optional(pool)
    .await?
    .ok_or(ApiError::NotFound("report"))?;
    let event: Value = r.get("event");
    let attribution = event
        .get("attribution")
        .filter(|a| !a.is_null())
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    let reporter_trust = event
        .get("reporter_trust")
        .filter(|a| !a.is_null())
        .and_then(|a| serde_json::from_value(a.clone()).ok());
    let reporter_subject = event
        .pointer("/reporter/subject")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let notes = sqlx::query(
        "SELECT id, author, created_at, body FROM report_notes \
          WHERE event_id = $1::uuid ORDER BY created_at, id",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(note)
    .collect();
    Ok(ReportDetail {
        summary: summary(&r),
        submission_id: r.get("submission_id"),
        format: r.get("format"),
        incidents: r.get("incidents"),
        reporter_operator: r.get("reporter_operator"),
        path_class: r.get("path_class"),
        origin_kind: r.get("origin_kind"),
        flags: r.get("flags"),
        arrival_at: r.get("arrival_at"),
        status_changed_by: r.get("status_changed_by"),
        status_changed_at: r.get("status_changed_at"),
        case_id: r.get("case_id"),
        attribution,
        reporter_trust,
        reporter_subject,
        raw: RawInfo {
            sha256: r.get("raw_sha256"),
            size: r.get("raw_size"),
            available: r.get::<Option<bool>, _>("raw_available").unwrap_or(false),
            deleted_reason: r.get("raw_deleted_reason"),
            channel: r.get("channel"),
        },
        notes,
        event,
    })
}

fn note(r: &sqlx::postgres::PgRow) -> Note {
    Note {
        id: r.get("id"),
        author: r.get("author"),
        created_at: r.get("created_at"),
        body: r.get("body"),
    }
}

/// The raw bytes of a report's submission, audited: the audit row is written in a
/// transaction that commits only after the bytes were read, and the bytes are returned only
/// after it committed. `raw_pool` reads `submissions.raw` (the database role
/// `arfwire_desk_raw`); everything else, the audit row included, goes through `pool`.
pub async fn raw_for_report(
    pool: &PgPool,
    raw_pool: &PgPool,
    caller: &Caller,
    meta: &RequestMeta,
    event_id: &str,
    via: &str,
) -> ApiResult<(String, Vec<u8>)> {
    caller.require(Role::Analyst)?;
    let mut tx = pool.begin().await?;
    let r = sqlx::query(
        "SELECT r.raw_sha256, r.tenant_id, \
                (s.raw_stored_at IS NOT NULL AND s.raw_deleted_at IS NULL) AS held \
           FROM reports r LEFT JOIN submissions s ON s.raw_sha256 = r.raw_sha256 \
          WHERE r.event_id = $1::uuid AND ($2::text[] IS NULL OR r.tenant_id = ANY($2))",
    )
    .bind(event_id)
    .bind(scope(caller))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ApiError::NotFound("report"))?;
    let sha: String = r.get("raw_sha256");
    let tenant: Option<String> = r.get("tenant_id");
    if !r.get::<Option<bool>, _>("held").unwrap_or(false) {
        return Err(ApiError::NotFound("raw message"));
    }
    let raw: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT raw FROM submissions WHERE raw_sha256 = $1")
            .bind(&sha)
            .fetch_optional(raw_pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("42501") => {
                    ApiError::Internal(
                        "the database role may not read raw messages: give the desk a \
                         connection with the arfwire_desk_raw role for them"
                            .to_owned(),
                    )
                }
                _ => ApiError::Database(e),
            })?
            .flatten();
    let raw = raw.ok_or(ApiError::NotFound("raw message"))?;
    audit(
        &mut tx,
        caller.actor(),
        meta,
        Audit {
            action: "raw_view",
            object_type: "submission",
            object_id: &sha,
            tenant_id: tenant.as_deref(),
            old_value: None,
            new_value: None,
            detail: serde_json::json!({ "event_id": event_id, "bytes": raw.len(), "via": via }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((sha, raw))
}

// ---------------------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------------------

/// A value and its count.
#[derive(Debug, Clone, Serialize)]
pub struct Counted {
    /// The value.
    pub value: String,
    /// How many reports.
    pub count: i64,
}

/// A reporter and its count.
#[derive(Debug, Clone, Serialize)]
pub struct ReporterCount {
    /// Reporter domain (`unknown` when none).
    pub domain: String,
    /// Best trust tier seen (T1 best).
    pub tier: Option<String>,
    /// Known operator.
    pub operator: Option<String>,
    /// How many reports.
    pub count: i64,
}

/// A cluster of the tenant's reports.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// Cluster id.
    pub id: i64,
    /// Key kind.
    pub key_kind: String,
    /// Message-ID of the reported message.
    pub message_id: Option<String>,
    /// Subject (untrusted text).
    pub subject: Option<String>,
    /// Sending domain.
    pub sender_domain: Option<String>,
    /// Reports of the tenant in the period in this cluster.
    pub reports_in_period: i64,
    /// All reports in the cluster.
    pub report_count: i64,
    /// Distinct reporters.
    pub distinct_reporters: i64,
    /// First seen.
    pub first_seen_at: DateTime<Utc>,
    /// Last seen.
    pub last_seen_at: DateTime<Utc>,
}

/// A case with its notes.
#[derive(Debug, Clone, Serialize)]
pub struct CaseDetail {
    /// Case number.
    pub id: i64,
    /// Status.
    pub status: String,
    /// Title.
    pub title: String,
    /// Assignee.
    pub assignee: Option<String>,
    /// Who opened it.
    pub opened_by: String,
    /// When.
    pub opened_at: DateTime<Utc>,
    /// Who changed the status last.
    pub status_changed_by: Option<String>,
    /// When.
    pub status_changed_at: Option<DateTime<Utc>>,
    /// Notes, oldest first.
    pub notes: Vec<Note>,
}

/// Everything about one tenant over a period.
#[derive(Debug, Clone, Serialize)]
pub struct TenantDetail {
    /// Tenant id or [`UNATTRIBUTED`].
    pub tenant_id: String,
    /// Display name.
    pub tenant_name: Option<String>,
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end (now).
    pub to: DateTime<Utc>,
    /// Reports in the last 24 hours, 7 days and 30 days.
    pub totals: BTreeMap<&'static str, i64>,
    /// Reports in the period.
    pub reports_in_period: i64,
    /// Reports per UTC day, oldest first, every day of the period.
    pub daily: Vec<DailyCount>,
    /// The source IPs reporters state (ARF Source-IP), most reported first.
    pub source_ips: Vec<Counted>,
    /// The IPs that sent the messages into the platform (attribution).
    pub origin_ips: Vec<Counted>,
    /// The platform IPs that handed them out (attribution).
    pub egress_ips: Vec<Counted>,
    /// Reporters.
    pub reporters: Vec<ReporterCount>,
    /// Most reported subjects (untrusted text).
    pub top_subjects: Vec<Counted>,
    /// Reports per status.
    pub by_status: Breakdown,
    /// Reports per confidence.
    pub by_confidence: Breakdown,
    /// Reports per effective complaint type.
    pub by_feedback_type: Breakdown,
    /// Clusters of its reports in the period.
    pub clusters: Vec<ClusterSummary>,
    /// The open or latest case.
    pub case: Option<CaseDetail>,
}

/// Reports on one UTC day.
#[derive(Debug, Clone, Serialize)]
pub struct DailyCount {
    /// The day.
    pub day: NaiveDate,
    /// How many.
    pub count: i64,
}

const TOP: i64 = 20;

async fn counted(
    pool: &PgPool,
    query: sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>,
    key: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<Counted>> {
    Ok(query
        .bind(key.to_owned())
        .bind(from)
        .bind(to)
        .bind(TOP)
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|r| Counted {
            value: r.get("value"),
            count: r.get("n"),
        })
        .collect())
}

/// A tenant's detail over the `days` days before `now`. `NotFound` when the tenant has no
/// report at all (in scope) and no case.
pub async fn tenant(
    pool: &PgPool,
    caller: &Caller,
    now: DateTime<Utc>,
    tenant_key: &str,
    days: i64,
) -> ApiResult<TenantDetail> {
    if !in_scope(caller, tenant_key) {
        return Err(ApiError::NotFound("tenant"));
    }
    let to = now;
    let first_day = (now - Duration::days(days - 1)).date_naive();
    let from = first_day.and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc());

    let head = sqlx::query(
        "SELECT count(*) AS all_time, \
                count(*) FILTER (WHERE received_at >= $2 - interval '24 hours' AND received_at < $2) AS d1, \
                count(*) FILTER (WHERE received_at >= $2 - interval '7 days' AND received_at < $2) AS d7, \
                count(*) FILTER (WHERE received_at >= $2 - interval '30 days' AND received_at < $2) AS d30, \
                count(*) FILTER (WHERE received_at >= $3 AND received_at < $2) AS period, \
                (array_agg(tenant_name ORDER BY received_at DESC) \
                    FILTER (WHERE tenant_name IS NOT NULL))[1] AS tenant_name \
           FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL))",
    )
    .bind(tenant_key)
    .bind(now)
    .bind(from)
    .fetch_one(pool)
    .await?;
    let all_time: i64 = head.get("all_time");
    let case = tenant_case(pool, tenant_key).await?;
    if all_time == 0 && case.is_none() {
        return Err(ApiError::NotFound("tenant"));
    }
    let mut tenant_name: Option<String> = head.get("tenant_name");
    if tenant_name.is_none() {
        tenant_name = sqlx::query_scalar("SELECT display_name FROM tenants WHERE id = $1")
            .bind(tenant_key)
            .fetch_optional(pool)
            .await?
            .filter(|n: &String| !n.is_empty());
    }
    let mut totals = BTreeMap::new();
    totals.insert("24h", head.get("d1"));
    totals.insert("7d", head.get("d7"));
    totals.insert("30d", head.get("d30"));

    let daily = sqlx::query(
        "SELECT d::date AS day, count(r.event_id) AS n \
           FROM generate_series($2::date, $3::date, interval '1 day') AS d \
           LEFT JOIN reports r \
             ON (r.tenant_id = $1 OR ($1 = 'unattributed' AND r.tenant_id IS NULL)) \
            AND r.received_at >= d AND r.received_at < d + interval '1 day' AND r.received_at < $4 \
          GROUP BY d ORDER BY d",
    )
    .bind(tenant_key)
    .bind(first_day)
    .bind(now.date_naive())
    .bind(now)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| DailyCount {
        day: r.get("day"),
        count: r.get("n"),
    })
    .collect();

    let source_ips = counted(
        pool,
        sqlx::query(
            "SELECT host(source_ip) AS value, count(*) AS n FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 AND source_ip IS NOT NULL \
          GROUP BY source_ip ORDER BY n DESC, value LIMIT $4",
        ),
        tenant_key,
        from,
        to,
    )
    .await?;
    let origin_ips = counted(
        pool,
        sqlx::query(
            "SELECT host(origin_ip) AS value, count(*) AS n FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 AND origin_ip IS NOT NULL \
          GROUP BY origin_ip ORDER BY n DESC, value LIMIT $4",
        ),
        tenant_key,
        from,
        to,
    )
    .await?;
    let egress_ips = counted(
        pool,
        sqlx::query(
            "SELECT host(egress_ip) AS value, count(*) AS n FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 AND egress_ip IS NOT NULL \
          GROUP BY egress_ip ORDER BY n DESC, value LIMIT $4",
        ),
        tenant_key,
        from,
        to,
    )
    .await?;
    let top_subjects = counted(
        pool,
        sqlx::query(
            "SELECT COALESCE(subject, '') AS value, count(*) AS n FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 \
          GROUP BY COALESCE(subject, '') ORDER BY n DESC, value LIMIT $4",
        ),
        tenant_key,
        from,
        to,
    )
    .await?;
    let reporters = sqlx::query(
        "SELECT COALESCE(reporter_domain, 'unknown') AS domain, min(reporter_tier) AS tier, \
                max(reporter_operator) AS operator, count(*) AS n FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 \
          GROUP BY COALESCE(reporter_domain, 'unknown') ORDER BY n DESC, domain LIMIT $4",
    )
    .bind(tenant_key)
    .bind(from)
    .bind(to)
    .bind(TOP)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| ReporterCount {
        domain: r.get("domain"),
        tier: r.get("tier"),
        operator: r.get("operator"),
        count: r.get("n"),
    })
    .collect();

    let mut by_status = Breakdown::new();
    let mut by_confidence = Breakdown::new();
    let mut by_feedback_type = Breakdown::new();
    let mut reports_in_period = 0;
    for r in sqlx::query(
        "SELECT GROUPING(status) AS g_status, GROUPING(confidence) AS g_conf, \
                status, confidence, complaint_type, count(*) AS n FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND received_at >= $2 AND received_at < $3 \
          GROUP BY GROUPING SETS ((status), (confidence), (complaint_type))",
    )
    .bind(tenant_key)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?
    {
        let n: i64 = r.get("n");
        if r.get::<i32, _>("g_status") == 0 {
            reports_in_period += n;
            by_status.insert(r.get("status"), n);
        } else if r.get::<i32, _>("g_conf") == 0 {
            let c: Option<String> = r.get("confidence");
            by_confidence.insert(c.unwrap_or_else(|| "UNATTRIBUTED".to_owned()), n);
        } else {
            by_feedback_type.insert(r.get("complaint_type"), n);
        }
    }

    let clusters = sqlx::query(
        "SELECT c.id, c.key_kind, c.message_id, c.subject, c.sender_domain, c.report_count, \
                c.distinct_reporters, c.first_seen_at, c.last_seen_at, t.n \
           FROM (SELECT cluster_id, count(*) AS n FROM reports \
                  WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
                    AND received_at >= $2 AND received_at < $3 AND cluster_id IS NOT NULL \
                  GROUP BY cluster_id) t \
           JOIN clusters c ON c.id = t.cluster_id \
          ORDER BY t.n DESC, c.last_seen_at DESC LIMIT $4",
    )
    .bind(tenant_key)
    .bind(from)
    .bind(to)
    .bind(TOP)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|r| ClusterSummary {
        id: r.get("id"),
        key_kind: r.get("key_kind"),
        message_id: r.get("message_id"),
        subject: r.get("subject"),
        sender_domain: r.get("sender_domain"),
        reports_in_period: r.get("n"),
        report_count: r.get("report_count"),
        distinct_reporters: r.get("distinct_reporters"),
        first_seen_at: r.get("first_seen_at"),
        last_seen_at: r.get("last_seen_at"),
    })
    .collect();

    Ok(TenantDetail {
        tenant_id: tenant_key.to_owned(),
        tenant_name,
        from,
        to,
        totals,
        reports_in_period,
        daily,
        source_ips,
        origin_ips,
        egress_ips,
        reporters,
        top_subjects,
        by_status,
        by_confidence,
        by_feedback_type,
        clusters,
        case,
    })
}

/// The open case of a tenant, else its latest, with notes.
pub async fn tenant_case(pool: &PgPool, tenant_key: &str) -> ApiResult<Option<CaseDetail>> {
    let Some(r) = sqlx::query(
        "SELECT id, status, title, assignee, opened_by, opened_at, status_changed_by, \
                status_changed_at FROM cases WHERE tenant_id = $1 \
          ORDER BY (status IN ('new', 'investigating')) DESC, opened_at DESC, id DESC LIMIT 1",
    )
    .bind(tenant_key)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let id: i64 = r.get("id");
    let notes = sqlx::query(
        "SELECT id, author, created_at, body FROM case_notes WHERE case_id = $1 \
          ORDER BY created_at, id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(note)
    .collect();
    Ok(Some(CaseDetail {
        id,
        status: r.get("status"),
        title: r.get("title"),
        assignee: r.get("assignee"),
        opened_by: r.get("opened_by"),
        opened_at: r.get("opened_at"),
        status_changed_by: r.get("status_changed_by"),
        status_changed_at: r.get("status_changed_at"),
        notes,
    }))
}

/// Rows for a tenant's CSV export (newest first, at most [`MAX_EXPORT_ROWS`]).
pub async fn export_rows(
    pool: &PgPool,
    caller: &Caller,
    tenant_key: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<ReportSummary>> {
    if !tenant_exists(pool, caller, tenant_key).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    let (_, rows) = tenant_reports(
        pool,
        caller,
        tenant_key,
        from,
        to,
        &ReportFilter::default(),
        None,
        MAX_EXPORT_ROWS,
        0,
    )
    .await?;
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// Status changes and notes
// ---------------------------------------------------------------------------------------

/// What a bulk status change did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BulkOutcome {
    /// The status asked for.
    pub status: String,
    /// Changed to it.
    pub changed: Vec<String>,
    /// Already in it.
    pub unchanged: Vec<String>,
    /// The move is not allowed from their current status.
    pub refused: Vec<String>,
    /// Unknown, or outside the caller's scope.
    pub not_found: Vec<String>,
}

/// Set the status of reports (and add a note to each changed one). One transaction; the
/// trigger checks each move and audits each change.
pub async fn set_report_status(
    pool: &PgPool,
    caller: &Caller,
    meta: &RequestMeta,
    event_ids: &[String],
    status: &str,
    note_body: Option<&str>,
) -> ApiResult<BulkOutcome> {
    caller.require(Role::Analyst)?;
    let status = parse_status(status)?;
    if event_ids.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BULK} reports per request"
        )));
    }
    let mut outcome = BulkOutcome {
        status: status.to_owned(),
        ..BulkOutcome::default()
    };
    let mut valid = Vec::new();
    for id in event_ids {
        match parse_event_id(id) {
            Ok(id) if !valid.contains(&id) => valid.push(id),
            Ok(_) => {}
            Err(_) => outcome.not_found.push(id.clone()),
        }
    }
    let mut tx = pool.begin().await?;
    set_actor(&mut tx, caller.actor()).await?;
    let current = sqlx::query(
        "SELECT event_id::text AS id, status FROM reports \
          WHERE event_id = ANY($1::uuid[]) AND ($2::text[] IS NULL OR tenant_id = ANY($2)) \
          FOR UPDATE",
    )
    .bind(&valid)
    .bind(scope(caller))
    .fetch_all(&mut *tx)
    .await?;
    let found: BTreeMap<String, String> = current
        .iter()
        .map(|r| (r.get("id"), r.get("status")))
        .collect();
    let mut to_change = Vec::new();
    for id in valid {
        match found.get(&id) {
            None => outcome.not_found.push(id),
            Some(old) if old == status => outcome.unchanged.push(id),
            Some(old) if !status_allowed(old, status) => outcome.refused.push(id),
            Some(_) => to_change.push(id),
        }
    }
    if !to_change.is_empty() {
        let changed: Vec<String> = sqlx::query_scalar(
            "UPDATE reports SET status = $1, status_changed_by = $2 \
              WHERE event_id = ANY($3::uuid[]) RETURNING event_id::text",
        )
        .bind(status)
        .bind(caller.actor())
        .bind(&to_change)
        .fetch_all(&mut *tx)
        .await
        .map_err(transition_error)?;
        outcome.changed = changed;
        outcome.changed.sort();
    }
    if let Some(body) = note_body.map(str::trim).filter(|b| !b.is_empty()) {
        let targets: Vec<String> = outcome
            .changed
            .iter()
            .chain(&outcome.unchanged)
            .cloned()
            .collect();
        for id in &targets {
            add_report_note_tx(&mut tx, caller, meta, id, body).await?;
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

/// The moves the desk allows (the same table as the database's `desk_status_allowed`).
pub fn status_allowed(old: &str, new: &str) -> bool {
    old == new
        || matches!(
            (old, new),
            ("new", "investigating" | "dismissed" | "actioned")
                | ("investigating", "actioned" | "dismissed" | "new")
                | ("actioned" | "dismissed", "investigating")
        )
}

fn transition_error(e: sqlx::Error) -> ApiError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23514") => {
            ApiError::Conflict(db.message().to_owned())
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            ApiError::Conflict("the tenant already has an open case".to_owned())
        }
        _ => ApiError::Database(e),
    }
}

async fn add_report_note_tx(
    tx: &mut Transaction<'_, Postgres>,
    caller: &Caller,
    meta: &RequestMeta,
    event_id: &str,
    body: &str,
) -> ApiResult<i64> {
    let r = sqlx::query(
        "INSERT INTO report_notes (event_id, author, body) \
         SELECT event_id, $2, $3 FROM reports WHERE event_id = $1::uuid \
         RETURNING id, (SELECT tenant_id FROM reports WHERE event_id = $1::uuid) AS tenant_id",
    )
    .bind(event_id)
    .bind(caller.actor())
    .bind(body)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(ApiError::NotFound("report"))?;
    let id: i64 = r.get("id");
    let tenant: Option<String> = r.get("tenant_id");
    audit(
        tx,
        caller.actor(),
        meta,
        Audit {
            action: "report_note",
            object_type: "report",
            object_id: event_id,
            tenant_id: tenant.as_deref(),
            old_value: None,
            new_value: None,
            detail: serde_json::json!({ "note_id": id, "length": body.chars().count() }),
        },
    )
    .await?;
    Ok(id)
}

/// Add a note to a report.
pub async fn add_report_note(
    pool: &PgPool,
    caller: &Caller,
    meta: &RequestMeta,
    event_id: &str,
    body: &str,
) -> ApiResult<i64> {
    caller.require(Role::Analyst)?;
    let body = checked_note(body)?;
    let event_id = parse_event_id(event_id)?;
    let visible: Option<bool> = sqlx::query_scalar(
        "SELECT true FROM reports WHERE event_id = $1::uuid \
            AND ($2::text[] IS NULL OR tenant_id = ANY($2))",
    )
    .bind(&event_id)
    .bind(scope(caller))
    .fetch_optional(pool)
    .await?;
    if visible.is_none() {
        return Err(ApiError::NotFound("report"));
    }
    let mut tx = pool.begin().await?;
    let id = add_report_note_tx(&mut tx, caller, meta, &event_id, body).await?;
    tx.commit().await?;
    Ok(id)
}

/// Longest note accepted, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;

fn checked_note(body: &str) -> ApiResult<&str> {
    let body = body.trim();
    if body.is_empty() {
        return Err(ApiError::BadRequest("the note is empty".to_owned()));
    }
    if body.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a note holds at most {MAX_NOTE_CHARS} characters"
        )));
    }
    if body.contains('\0') {
        return Err(ApiError::BadRequest("a note cannot hold NUL".to_owned()));
    }
    Ok(body)
}

/// The open case of a tenant, opening one (status `new`) when it has none.
async fn open_case_tx(
    tx: &mut Transaction<'_, Postgres>,
    caller: &Caller,
    meta: &RequestMeta,
    tenant_key: &str,
) -> ApiResult<(i64, String)> {
    let existing = sqlx::query(
        "SELECT id, status FROM cases WHERE tenant_id = $1 \
          ORDER BY (status IN ('new', 'investigating')) DESC, opened_at DESC, id DESC \
          LIMIT 1 FOR UPDATE",
    )
    .bind(tenant_key)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(r) = existing {
        return Ok((r.get("id"), r.get("status")));
    }
    let name: Option<String> = sqlx::query_scalar(
        "SELECT tenant_name FROM reports \
          WHERE (tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            AND tenant_name IS NOT NULL ORDER BY received_at DESC LIMIT 1",
    )
    .bind(tenant_key)
    .fetch_optional(&mut **tx)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO cases (tenant_id, tenant_name, title, opened_by) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(tenant_key)
    .bind(name.as_deref())
    .bind(match &name {
        Some(n) => format!("Complaints about {n}"),
        None => format!("Complaints about {tenant_key}"),
    })
    .bind(caller.actor())
    .fetch_one(&mut **tx)
    .await
    .map_err(transition_error)?;
    let case_id = id.to_string();
    audit(
        tx,
        caller.actor(),
        meta,
        Audit {
            action: "case_open",
            object_type: "case",
            object_id: &case_id,
            tenant_id: Some(tenant_key),
            old_value: None,
            new_value: Some("new"),
            detail: serde_json::json!({}),
        },
    )
    .await?;
    Ok((id, "new".to_owned()))
}

async fn tenant_exists(pool: &PgPool, caller: &Caller, tenant_key: &str) -> ApiResult<bool> {
    if !in_scope(caller, tenant_key) {
        return Ok(false);
    }
    let found: Option<bool> = sqlx::query_scalar(
        "SELECT true WHERE EXISTS (SELECT 1 FROM reports \
                 WHERE tenant_id = $1 OR ($1 = 'unattributed' AND tenant_id IS NULL)) \
            OR EXISTS (SELECT 1 FROM cases WHERE tenant_id = $1)",
    )
    .bind(tenant_key)
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Set the case status of tenants (opening a case where there is none) and add a note to each
/// case. One transaction; the trigger checks each move and audits each change.
pub async fn set_tenant_status(
    pool: &PgPool,
    caller: &Caller,
    meta: &RequestMeta,
    tenant_keys: &[String],
    status: &str,
    note_body: Option<&str>,
) -> ApiResult<BulkOutcome> {
    caller.require(Role::Analyst)?;
    let status = parse_status(status)?;
    if tenant_keys.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BULK} tenants per request"
        )));
    }
    let note_body = match note_body.map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) => Some(checked_note(b)?),
        None => None,
    };
    let mut outcome = BulkOutcome {
        status: status.to_owned(),
        ..BulkOutcome::default()
    };
    let mut keys: Vec<&String> = Vec::new();
    for key in tenant_keys {
        if keys.contains(&key) {
            continue;
        }
        if tenant_exists(pool, caller, key).await? {
            keys.push(key);
        } else {
            outcome.not_found.push(key.clone());
        }
    }
    let mut tx = pool.begin().await?;
    set_actor(&mut tx, caller.actor()).await?;
    for key in keys {
        let (case_id, old) = open_case_tx(&mut tx, caller, meta, key).await?;
        if old == status {
            outcome.unchanged.push(key.clone());
        } else if !status_allowed(&old, status) {
            outcome.refused.push(key.clone());
            continue;
        } else {
            sqlx::query("UPDATE cases SET status = $1, status_changed_by = $2 WHERE id = $3")
                .bind(status)
                .bind(caller.actor())
                .bind(case_id)
                .execute(&mut *tx)
                .await
                .map_err(transition_error)?;
            outcome.changed.push(key.clone());
        }
        if let Some(body) = note_body {
            add_case_note_tx(&mut tx, caller, meta, case_id, key, body).await?;
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

async fn add_case_note_tx(
    tx: &mut Transaction<'_, Postgres>,
    caller: &Caller,
    meta: &RequestMeta,
    case_id: i64,
    tenant_key: &str,
    body: &str,
) -> ApiResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO case_notes (case_id, author, body) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(case_id)
    .bind(caller.actor())
    .bind(body)
    .fetch_one(&mut **tx)
    .await?;
    let object_id = case_id.to_string();
    audit(
        tx,
        caller.actor(),
        meta,
        Audit {
            action: "case_note",
            object_type: "case",
            object_id: &object_id,
            tenant_id: Some(tenant_key),
            old_value: None,
            new_value: None,
            detail: serde_json::json!({ "note_id": id, "length": body.chars().count() }),
        },
    )
    .await?;
    Ok(id)
}

/// Add a note to a tenant's case (opening one when it has none).
pub async fn add_tenant_note(
    pool: &PgPool,
    caller: &Caller,
    meta: &RequestMeta,
    tenant_key: &str,
    body: &str,
) -> ApiResult<i64> {
    caller.require(Role::Analyst)?;
    let body = checked_note(body)?;
    if !tenant_exists(pool, caller, tenant_key).await? {
        return Err(ApiError::NotFound("tenant"));
    }
    let mut tx = pool.begin().await?;
    let (case_id, _) = open_case_tx(&mut tx, caller, meta, tenant_key).await?;
    let id = add_case_note_tx(&mut tx, caller, meta, case_id, tenant_key, body).await?;
    tx.commit().await?;
    Ok(id)
}

// ---------------------------------------------------------------------------------------
// Alerts
// ---------------------------------------------------------------------------------------

/// An alert raised by the alert rules.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Row id.
    pub id: i64,
    /// Published alert id.
    pub alert_id: String,
    /// Rule name.
    pub rule_name: String,
    /// Tenant.
    pub tenant_id: String,
    /// Its display name.
    pub tenant_name: Option<String>,
    /// Threshold when fired.
    pub threshold: i32,
    /// Window in seconds.
    pub window_seconds: i32,
    /// Minimum confidence.
    pub min_confidence: String,
    /// Count when fired.
    pub fired_count: i64,
    /// When it fired.
    pub fired_at: DateTime<Utc>,
    /// Count at the latest evaluation.
    pub last_count: i64,
    /// Peak count.
    pub peak_count: i64,
    /// open, acknowledged or resolved.
    pub status: String,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// Sample event ids.
    pub sample_event_ids: Vec<String>,
}

/// Alerts, newest first, optionally of one status or tenant.
pub async fn alerts(
    pool: &PgPool,
    caller: &Caller,
    status: Option<&str>,
    tenant: Option<&str>,
    limit: i64,
    offset: i64,
) -> ApiResult<(i64, Vec<AlertView>)> {
    let rows = sqlx::query(
        "SELECT id, alert_id::text AS alert_id, rule_name, tenant_id, tenant_name, threshold, \
                window_seconds, min_confidence, fired_count, fired_at, last_count, peak_count, \
                status, resolved_at, acknowledged_by, \
                sample_event_ids::text[] AS sample_event_ids, count(*) OVER () AS total \
           FROM alerts \
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR tenant_id = $2) \
            AND ($3::text[] IS NULL OR tenant_id = ANY($3)) \
          ORDER BY fired_at DESC, id DESC LIMIT $4 OFFSET $5",
    )
    .bind(status)
    .bind(tenant)
    .bind(scope(caller))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total = rows.first().map_or(0, |r| r.get("total"));
    Ok((
        total,
        rows.into_iter()
            .map(|r| AlertView {
                id: r.get("id"),
                alert_id: r.get("alert_id"),
                rule_name: r.get("rule_name"),
                tenant_id: r.get("tenant_id"),
                tenant_name: r.get("tenant_name"),
                threshold: r.get("threshold"),
                window_seconds: r.get("window_seconds"),
                min_confidence: r.get("min_confidence"),
                fired_count: r.get("fired_count"),
                fired_at: r.get("fired_at"),
                last_count: r.get("last_count"),
                peak_count: r.get("peak_count"),
                status: r.get("status"),
                resolved_at: r.get("resolved_at"),
                acknowledged_by: r.get("acknowledged_by"),
                sample_event_ids: r.get("sample_event_ids"),
            })
            .collect(),
    ))
}
