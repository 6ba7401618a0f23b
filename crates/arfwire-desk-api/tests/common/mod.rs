//! Shared test support: a PostgreSQL database per test, seeded reports, tokens and requests
//! through the router with `tower::ServiceExt::oneshot`.
//!
//! The server comes from `DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`). Each test creates its own database
//! and drops it afterwards, also when the test fails. An unreachable server fails the test.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arfwire_desk_api::{AppState, DeskConfig, RateLimit, Role};
use arfwire_store::testing::{TestDatabase, server_url, unreachable};
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt as _;

/// "Now" for every test: the windows are computed from it.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 15, 12, 0, 0).unwrap()
}

/// A migrated database of its own for one test (see [`TestDatabase`]).
pub struct TestDb {
    pub pool: PgPool,
    db: TestDatabase,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let db = TestDatabase::migrated("arfwire_desk_api_test", 6).await;
        TestDb {
            pool: db.pool().clone(),
            db,
        }
    }

    /// A pool on this database whose connections act as `role` (`SET ROLE`), so the
    /// privileges of the migration's group roles are what the queries get.
    pub async fn pool_as(&self, role: &'static str) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let statement = match role {
                        "arfwire_desk_api" => "SET ROLE arfwire_desk_api",
                        "arfwire_desk_raw" => "SET ROLE arfwire_desk_raw",
                        "arfwire_desk_ingest" => "SET ROLE arfwire_desk_ingest",
                        other => panic!("unknown role {other}"),
                    };
                    sqlx::query(statement).execute(conn).await?;
                    Ok(())
                })
            })
            .connect_with(self.db.connect_options())
            .await
            .unwrap_or_else(|e| unreachable(&server_url(), e))
    }

    /// The desk over this database, with a fixed clock and a generous rate limit.
    pub fn state(&self) -> AppState {
        self.state_with(DeskConfig {
            fixed_now: Some(now()),
            rate_limit: RateLimit {
                per_second: 1000.0,
                burst: 1000.0,
            },
            cookie_secure: false,
            ..DeskConfig::default()
        })
    }

    pub fn state_with(&self, config: DeskConfig) -> AppState {
        AppState::new(self.pool.clone(), config)
    }

    /// A new token of `role` named `name`.
    pub async fn token(&self, role: Role, name: &str) -> String {
        arfwire_desk_api::tokens::create(&self.pool, role, name, Duration::from_secs(3600), "test")
            .await
            .expect("token created")
            .token
    }

    /// A token of `role` limited to some tenants.
    pub async fn scoped_token(&self, role: Role, name: &str, tenants: &[&str]) -> String {
        arfwire_desk_api::tokens::create_scoped(
            &self.pool,
            role,
            name,
            Duration::from_secs(3600),
            Some(tenants.iter().map(|t| (*t).to_owned()).collect()),
            "test",
            &Default::default(),
        )
        .await
        .expect("token created")
        .token
    }

    /// A token that expired an hour ago.
    pub async fn expired_token(&self, role: Role) -> String {
        let secret = arfwire_desk_api::auth::generate_token().expect("random");
        let hash = hex(&Sha256::digest(secret.as_bytes()));
        sqlx::query(
            "INSERT INTO api_tokens (name, token_sha256, role, created_by, created_at, expires_at) \
             VALUES ('expired', $1, $2, 'test', now() - interval '2 hours', now() - interval '1 hour')",
        )
        .bind(hash)
        .bind(role.as_str())
        .execute(&self.pool)
        .await
        .expect("expired token inserted");
        secret
    }

    /// Audit rows of one action, oldest first: (actor, object_id, detail).
    pub async fn audit_rows(&self, action: &str) -> Vec<(String, String, Value)> {
        sqlx::query_as(
            "SELECT actor, object_id, detail FROM audit_log WHERE action = $1 ORDER BY id",
        )
        .bind(action)
        .fetch_all(&self.pool)
        .await
        .expect("audit rows")
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The three real events the fixtures of the Exchange Online profile produce (attributed to
/// Contoso, Fabrikam and Northwind, with evidence and explanation lines).
pub fn exchange_events() -> Vec<Value> {
    include_str!("../data/exchange-events.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("event JSON"))
        .collect()
}

/// The raw submissions those events came from, in the same order.
pub fn exchange_raw() -> [&'static [u8]; 3] {
    [
        include_bytes!("../../../../fixtures/exchange/001-connector-contoso.eml"),
        include_bytes!("../../../../fixtures/exchange/002-relay-connector-fabrikam.eml"),
        include_bytes!("../../../../fixtures/exchange/003-hosted-mailbox-northwind.eml"),
    ]
}

/// One report row to insert.
#[derive(Debug, Clone)]
pub struct Seed {
    pub event_id: String,
    pub raw: Option<Vec<u8>>,
    pub received_at: DateTime<Utc>,
    pub arrival_at: Option<DateTime<Utc>>,
    pub tenant_id: Option<String>,
    pub tenant_name: Option<String>,
    pub kind: String,
    pub feedback_type: Option<String>,
    pub complaint_type: String,
    pub reporter_domain: Option<String>,
    pub reporter_tier: Option<String>,
    pub confidence: Option<String>,
    pub score: Option<f64>,
    pub source_ip: Option<String>,
    pub egress_ip: Option<String>,
    pub origin_ip: Option<String>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub sender_domain: Option<String>,
    pub status: String,
    pub cluster_id: Option<i64>,
    pub event: Value,
}

static SEQ: AtomicU32 = AtomicU32::new(1);

impl Seed {
    /// A plain ARF abuse report attributed to `tenant` with `confidence`, received `at`.
    pub fn new(tenant: &str, confidence: &str, at: DateTime<Utc>) -> Seed {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let event_id = uuid::Uuid::new_v4().to_string();
        Seed {
            event_id,
            raw: Some(
                format!("From: fbl@isp.example\r\nSubject: report {n}\r\n\r\nbody {n}\r\n")
                    .into_bytes(),
            ),
            received_at: at,
            arrival_at: None,
            tenant_id: Some(tenant.to_owned()),
            tenant_name: Some(format!("{tenant} Inc")),
            kind: "arf".to_owned(),
            feedback_type: Some("abuse".to_owned()),
            complaint_type: "abuse".to_owned(),
            reporter_domain: Some("isp.example".to_owned()),
            reporter_tier: Some("T3".to_owned()),
            confidence: Some(confidence.to_owned()),
            score: Some(0.8),
            source_ip: Some("198.51.100.7".to_owned()),
            egress_ip: Some("198.51.100.7".to_owned()),
            origin_ip: Some("203.0.113.9".to_owned()),
            message_id: Some(format!("m{n}@sender.example")),
            subject: Some(format!("Offer number {n}")),
            sender_domain: Some("sender.example".to_owned()),
            status: "new".to_owned(),
            cluster_id: None,
            event: serde_json::json!({
                "schema": "arfwire.abuse-event.v1",
                "attribution": {
                    "sending_tenant": { "id": tenant, "name": format!("{tenant} Inc") },
                    "confidence": confidence,
                    "score": 0.8,
                    "path_class": "provider_outbound",
                    "origin_kind": "hosted_mailbox",
                    "provenance": "attached",
                    "flags": [],
                    "evidence": [],
                    "explanation": [format!("seeded report {n} for {tenant}")],
                },
            }),
        }
    }

    /// The seed of a real event (its columns read the way the store consumer reads them).
    pub fn from_event(event: &Value, raw: &[u8], at: DateTime<Utc>) -> Seed {
        let s = |p: &str| event.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let mut seed = Seed::new("x", "NONE", at);
        seed.event_id = s("/event_id").expect("event_id");
        seed.raw = Some(raw.to_vec());
        seed.tenant_id = s("/attribution/sending_tenant/id");
        seed.tenant_name = s("/attribution/sending_tenant/name");
        seed.kind = s("/kind").expect("kind");
        seed.feedback_type = s("/feedback/feedback_type");
        seed.complaint_type = s("/complaint_type").expect("complaint_type");
        seed.reporter_domain = s("/reporter/from/domain");
        seed.reporter_tier = s("/reporter_trust/tier");
        seed.confidence = s("/attribution/confidence");
        seed.score = event.pointer("/attribution/score").and_then(Value::as_f64);
        seed.source_ip = s("/feedback/source_ip");
        seed.egress_ip = s("/attribution/egress_ip/ip");
        seed.origin_ip = s("/attribution/origin_ip/ip");
        seed.message_id = s("/reported_message/message_id");
        seed.subject = s("/reported_message/subject");
        seed.sender_domain = s("/reported_message/sender_domain");
        seed.arrival_at = s("/feedback/arrival_date_parsed")
            .or_else(|| s("/reported_message/date_parsed"))
            .map(|t| t.parse().expect("RFC 3339"));
        seed.event = event.clone();
        seed
    }

    pub fn tenant(mut self, id: Option<&str>) -> Seed {
        self.tenant_id = id.map(str::to_owned);
        self.tenant_name = id.map(|t| format!("{t} Inc"));
        self
    }

    pub fn subject(mut self, subject: &str) -> Seed {
        self.subject = Some(subject.to_owned());
        self
    }

    pub fn complaint(mut self, kind: &str, complaint_type: &str) -> Seed {
        self.kind = kind.to_owned();
        self.complaint_type = complaint_type.to_owned();
        self.feedback_type = Some(complaint_type.to_owned());
        self
    }

    pub fn reporter(mut self, domain: &str) -> Seed {
        self.reporter_domain = Some(domain.to_owned());
        self
    }

    pub fn source_ip(mut self, ip: &str) -> Seed {
        self.source_ip = Some(ip.to_owned());
        self
    }

    pub fn no_raw(mut self) -> Seed {
        self.raw = None;
        self
    }

    /// Insert the report and its submission; returns the event id.
    pub async fn insert(self, pool: &PgPool) -> String {
        let raw_sha256 = hex(&Sha256::digest(
            self.raw.as_deref().unwrap_or(self.event_id.as_bytes()),
        ));
        let submission_id = uuid::Uuid::new_v4().to_string();
        let size = self.raw.as_ref().map_or(0, |r| r.len() as i64);
        sqlx::query(
            "INSERT INTO submissions (raw_sha256, submission_id, raw, raw_size, received_at, \
                                      channel, retain_until, raw_stored_at) \
             VALUES ($1, $2::uuid, $3, $4, $5, 'lmtp', $5 + interval '90 days', $5) \
             ON CONFLICT (raw_sha256) DO NOTHING",
        )
        .bind(&raw_sha256)
        .bind(&submission_id)
        .bind(self.raw.as_deref())
        .bind(size)
        .bind(self.received_at)
        .execute(pool)
        .await
        .expect("submission inserted");
        sqlx::query(
            "INSERT INTO reports (event_id, submission_id, raw_sha256, report_index, report_count, \
                 kind, format, feedback_type, complaint_type, reporter_domain, reporter_tier, \
                 tenant_id, tenant_name, confidence, score, path_class, origin_kind, source_ip, \
                 egress_ip, origin_ip, message_id, subject, sender_domain, received_at, event, \
                 parser_version, status, cluster_id, arrival_at) \
             VALUES ($1::uuid, (SELECT submission_id FROM submissions WHERE raw_sha256 = $2), $2, \
                 0, 1, $3, 'rfc5965', $4, $5, $6, $7, $8, $9, $10, $11, 'provider_outbound', \
                 'hosted_mailbox', $12::inet, $13::inet, $14::inet, $15, $16, $17, $18, $19, \
                 'test', $20, $21, $22)",
        )
        .bind(&self.event_id)
        .bind(&raw_sha256)
        .bind(&self.kind)
        .bind(self.feedback_type.as_deref())
        .bind(&self.complaint_type)
        .bind(self.reporter_domain.as_deref())
        .bind(self.reporter_tier.as_deref())
        .bind(self.tenant_id.as_deref())
        .bind(self.tenant_name.as_deref())
        .bind(self.confidence.as_deref())
        .bind(self.score)
        .bind(self.source_ip.as_deref())
        .bind(self.egress_ip.as_deref())
        .bind(self.origin_ip.as_deref())
        .bind(self.message_id.as_deref())
        .bind(self.subject.as_deref())
        .bind(self.sender_domain.as_deref())
        .bind(self.received_at)
        .bind(&self.event)
        .bind(&self.status)
        .bind(self.cluster_id)
        .bind(self.arrival_at)
        .execute(pool)
        .await
        .expect("report inserted");
        if self.raw.is_none() {
            sqlx::query(
                "UPDATE submissions SET raw_deleted_at = now(), raw_deleted_reason = 'retention', \
                        raw_stored_at = NULL WHERE raw_sha256 = $1",
            )
            .bind(&raw_sha256)
            .execute(pool)
            .await
            .expect("raw marked deleted");
        }
        self.event_id
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Send one request through the router.
pub async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some(json) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("request");
    send_request(state, request).await
}

pub async fn send_request(state: &AppState, request: Request<Body>) -> Reply {
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        arfwire_desk_api::app(state.clone()).oneshot(request),
    )
    .await
    .expect("request answered within 20 s")
    .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .expect("body")
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(state: &AppState, uri: &str, token: &str) -> Reply {
    send(state, Method::GET, uri, Some(token), None).await
}

pub async fn post(state: &AppState, uri: &str, token: &str, body: Value) -> Reply {
    send(state, Method::POST, uri, Some(token), Some(body)).await
}
