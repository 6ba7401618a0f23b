//! API authorisation (test plan S5), injection (S4) and the triage workflow, against a real
//! PostgreSQL database.

mod common;

use arfwire_desk_api::{DeskConfig, RateLimit, Role};
use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::{Seed, TestDb, get, now, post, send};
use serde_json::json;

#[tokio::test]
async fn no_token_bad_token_and_expired_token_are_401() {
    let db = TestDb::new().await;
    let state = db.state();
    let id = Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    for uri in [
        "/api/v1/tenants".to_owned(),
        format!("/api/v1/reports/{id}"),
        format!("/api/v1/reports/{id}/raw"),
        "/api/v1/tokens".to_owned(),
        "/api/v1/no-such-endpoint".to_owned(),
    ] {
        let reply = send(&state, Method::GET, &uri, None, None).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{uri} without token"
        );
        assert!(reply.header("www-authenticate").starts_with("Bearer"));
        assert_eq!(reply.json()["error"], "unauthorized");
    }
    let reply = send(
        &state,
        Method::POST,
        &format!("/api/v1/reports/{id}/status"),
        None,
        Some(json!({"status": "dismissed"})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let reply = get(&state, "/api/v1/tenants", "arfdesk_not-a-real-token").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let expired = db.expired_token(Role::Admin).await;
    let reply = get(&state, "/api/v1/tenants", &expired).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "expired token replayed"
    );

    // A revoked token stops working at once.
    let admin = db.token(Role::Admin, "admin").await;
    let viewer = db.token(Role::Viewer, "viewer").await;
    assert_eq!(
        get(&state, "/api/v1/me", &viewer).await.status,
        StatusCode::OK
    );
    let tokens = get(&state, "/api/v1/tokens", &admin).await.json();
    let viewer_id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "viewer")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let reply = send(
        &state,
        Method::DELETE,
        &format!("/api/v1/tokens/{viewer_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&state, "/api/v1/me", &viewer).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Health needs no token.
    let reply = send(&state, Method::GET, "/healthz", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn viewer_is_refused_writes_raw_and_admin_endpoints() {
    let db = TestDb::new().await;
    let state = db.state();
    let id = Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let viewer = db.token(Role::Viewer, "viewer").await;
    assert_eq!(
        get(&state, &format!("/api/v1/reports/{id}"), &viewer)
            .await
            .status,
        StatusCode::OK
    );
    let forbidden = [
        (
            Method::POST,
            format!("/api/v1/reports/{id}/status"),
            Some(json!({"status": "dismissed"})),
        ),
        (
            Method::POST,
            "/api/v1/reports/status".to_owned(),
            Some(json!({"ids": [id], "status": "dismissed"})),
        ),
        (
            Method::POST,
            format!("/api/v1/reports/{id}/notes"),
            Some(json!({"body": "x"})),
        ),
        (
            Method::POST,
            "/api/v1/tenants/t-a/status".to_owned(),
            Some(json!({"status": "investigating"})),
        ),
        (
            Method::POST,
            "/api/v1/tenants/status".to_owned(),
            Some(json!({"tenant_ids": ["t-a"], "status": "investigating"})),
        ),
        (
            Method::POST,
            "/api/v1/tenants/t-a/notes".to_owned(),
            Some(json!({"body": "x"})),
        ),
        (Method::GET, format!("/api/v1/reports/{id}/raw"), None),
        (Method::GET, format!("/api/v1/reports/{id}/xarf"), None),
        (Method::GET, "/api/v1/audit".to_owned(), None),
        (Method::GET, "/api/v1/tokens".to_owned(), None),
        (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            Some(json!({"role": "admin"})),
        ),
        // Even a malformed body is refused for the role first.
        (
            Method::POST,
            format!("/api/v1/reports/{id}/status"),
            Some(json!("nonsense")),
        ),
    ];
    for (method, uri, body) in forbidden {
        let reply = send(&state, method.clone(), &uri, Some(&viewer), body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "viewer {method} {uri}");
        assert_eq!(reply.json()["error"], "forbidden");
    }
    // Nothing changed and nothing was viewed.
    let status: String = sqlx::query_scalar("SELECT status FROM reports")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, "new");
    assert!(db.audit_rows("raw_view").await.is_empty());

    // An analyst may not manage tokens either.
    let analyst = db.token(Role::Analyst, "analyst").await;
    assert_eq!(
        get(&state, "/api/v1/tokens", &analyst).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn analyst_changes_status_and_every_change_is_audited() {
    let db = TestDb::new().await;
    let state = db.state();
    let id = Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "alice").await;

    let reply = post(
        &state,
        &format!("/api/v1/reports/{id}/status"),
        &analyst,
        json!({"status": "investigating", "note": "looking at the connector"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["changed"], json!([id]));

    let detail = get(&state, &format!("/api/v1/reports/{id}"), &analyst)
        .await
        .json();
    assert_eq!(detail["status"], "investigating");
    assert_eq!(detail["status_changed_by"], "alice");
    assert_eq!(detail["notes"][0]["body"], "looking at the connector");
    assert_eq!(detail["notes"][0]["author"], "alice");

    // A move the workflow does not allow is a conflict, and nothing changes.
    post(
        &state,
        &format!("/api/v1/reports/{id}/status"),
        &analyst,
        json!({"status": "actioned"}),
    )
    .await;
    let reply = post(
        &state,
        &format!("/api/v1/reports/{id}/status"),
        &analyst,
        json!({"status": "new"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    let reply = post(
        &state,
        &format!("/api/v1/reports/{id}/status"),
        &analyst,
        json!({"status": "closed"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    let audit = db.audit_rows("report_status").await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|(actor, object, _)| actor == "alice" && object == &id)
    );
    assert_eq!(db.audit_rows("report_note").await.len(), 1);

    // Tenant case: opened on first status change, moved, noted, audited.
    let reply = post(
        &state,
        "/api/v1/tenants/t-a/status",
        &analyst,
        json!({"status": "investigating", "note": "first look"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let case = get(&state, "/api/v1/tenants/t-a/case", &analyst)
        .await
        .json();
    assert_eq!(case["case"]["status"], "investigating");
    assert_eq!(case["case"]["notes"][0]["body"], "first look");
    let reply = post(
        &state,
        "/api/v1/tenants/t-a/notes",
        &analyst,
        json!({"body": "second"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let audit = db.audit_rows("case_status").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "alice");
    assert_eq!(db.audit_rows("case_note").await.len(), 2);

    // An empty note is refused.
    let reply = post(
        &state,
        &format!("/api/v1/reports/{id}/notes"),
        &analyst,
        json!({"body": "  "}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn bulk_changes_report_what_happened_to_each_id() {
    let db = TestDb::new().await;
    let state = db.state();
    let a = Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let b = Seed::new("t-a", "LOW", now() - Duration::hours(2))
        .insert(&db.pool)
        .await;
    let c = Seed::new("t-b", "LOW", now() - Duration::hours(3))
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "bob").await;
    post(
        &state,
        &format!("/api/v1/reports/{c}/status"),
        &analyst,
        json!({"status": "actioned"}),
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let reply = post(
        &state,
        "/api/v1/reports/status",
        &analyst,
        json!({"ids": [a, b, c, unknown, "not-a-uuid"], "status": "dismissed", "note": "bulk"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let outcome = reply.json();
    let mut changed = vec![a.clone(), b.clone()];
    changed.sort();
    assert_eq!(outcome["changed"], json!(changed));
    assert_eq!(
        outcome["refused"],
        json!([c]),
        "actioned -> dismissed is not a move"
    );
    assert_eq!(outcome["not_found"], json!(["not-a-uuid", unknown]));
    assert_eq!(db.audit_rows("report_status").await.len(), 3);
    assert_eq!(db.audit_rows("report_note").await.len(), 2);

    let reply = post(
        &state,
        "/api/v1/tenants/status",
        &analyst,
        json!({"tenant_ids": ["t-a", "t-b", "t-missing"], "status": "investigating"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let outcome = reply.json();
    assert_eq!(outcome["changed"], json!(["t-a", "t-b"]));
    assert_eq!(outcome["not_found"], json!(["t-missing"]));
    let board = get(&state, "/api/v1/tenants?window=24h", &analyst)
        .await
        .json();
    for t in board["tenants"].as_array().unwrap() {
        assert_eq!(t["case"]["status"], "investigating", "{t}");
    }
    // Too many ids at once.
    let ids: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let reply = post(
        &state,
        "/api/v1/reports/status",
        &analyst,
        json!({"ids": ids, "status": "new"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_ids_are_404() {
    let db = TestDb::new().await;
    let state = db.state();
    Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "analyst").await;
    let unknown = uuid::Uuid::new_v4();
    for uri in [
        format!("/api/v1/reports/{unknown}"),
        format!("/api/v1/reports/{unknown}/raw"),
        format!("/api/v1/reports/{unknown}/xarf"),
        "/api/v1/reports/12345".to_owned(),
        "/api/v1/reports/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/api/v1/tenants/no-such-tenant".to_owned(),
        "/api/v1/tenants/no-such-tenant/reports.csv".to_owned(),
    ] {
        let reply = get(&state, &uri, &analyst).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{uri}: {}",
            reply.text()
        );
    }
    let reply = post(
        &state,
        &format!("/api/v1/reports/{unknown}/status"),
        &analyst,
        json!({"status": "dismissed"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = post(
        &state,
        "/api/v1/tenants/nobody/status",
        &analyst,
        json!({"status": "investigating"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tenant_scoped_token_cannot_see_other_tenants() {
    let db = TestDb::new().await;
    let state = db.state();
    let a = Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let b = Seed::new("t-b", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let unattributed = Seed::new("t-x", "NONE", now() - Duration::hours(1))
        .tenant(None)
        .insert(&db.pool)
        .await;
    let scoped = db.scoped_token(Role::Analyst, "a-analyst", &["t-a"]).await;
    assert_eq!(
        get(&state, &format!("/api/v1/reports/{a}"), &scoped)
            .await
            .status,
        StatusCode::OK
    );
    for uri in [
        format!("/api/v1/reports/{b}"),
        format!("/api/v1/reports/{b}/raw"),
        format!("/api/v1/reports/{unattributed}"),
        "/api/v1/tenants/t-b".to_owned(),
        "/api/v1/tenants/t-b/reports".to_owned(),
        "/api/v1/tenants/unattributed".to_owned(),
    ] {
        assert_eq!(
            get(&state, &uri, &scoped).await.status,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
    let reply = post(
        &state,
        &format!("/api/v1/reports/{b}/status"),
        &scoped,
        json!({"status": "dismissed"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let board = get(&state, "/api/v1/tenants?window=24h", &scoped)
        .await
        .json();
    let ids: Vec<&str> = board["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t-a"]);
    assert!(db.audit_rows("raw_view").await.is_empty());
}

#[tokio::test]
async fn rate_limit_answers_429_per_token() {
    let db = TestDb::new().await;
    let state = db.state_with(DeskConfig {
        fixed_now: Some(now()),
        rate_limit: RateLimit {
            per_second: 0.01,
            burst: 5.0,
        },
        ..DeskConfig::default()
    });
    let one = db.token(Role::Viewer, "one").await;
    let two = db.token(Role::Viewer, "two").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&state, "/api/v1/me", &one).await.status);
    }
    assert_eq!(&statuses[..5], &[StatusCode::OK; 5]);
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let reply = get(&state, "/api/v1/me", &one).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(reply.json()["error"], "rate_limited");
    // Another token has its own bucket.
    assert_eq!(get(&state, "/api/v1/me", &two).await.status, StatusCode::OK);
}

#[tokio::test]
async fn rate_limit_holds_under_a_burst_of_concurrent_requests() {
    let db = TestDb::new().await;
    let state = db.state_with(DeskConfig {
        fixed_now: Some(now()),
        rate_limit: RateLimit {
            per_second: 0.01,
            burst: 20.0,
        },
        ..DeskConfig::default()
    });
    let token = db.token(Role::Viewer, "burst").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let state = state.clone();
        let token = token.clone();
        tasks.spawn(async move { get(&state, "/api/v1/me", &token).await.status });
    }
    let mut ok = 0;
    let mut limited = 0;
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!((20..=21).contains(&ok), "ok {ok}");
    assert_eq!(ok + limited, 200);
}

#[tokio::test]
async fn raw_download_is_an_audited_attachment() {
    let db = TestDb::new().await;
    let state = db.state();
    let events = common::exchange_events();
    let raws = common::exchange_raw();
    let id = Seed::from_event(&events[0], raws[0], now() - Duration::hours(2))
        .insert(&db.pool)
        .await;
    let gone = Seed::new("t-a", "LOW", now() - Duration::hours(2))
        .no_raw()
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "carol").await;

    let reply = get(&state, &format!("/api/v1/reports/{id}/raw"), &analyst).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, raws[0]);
    assert_eq!(reply.header("content-type"), "message/rfc822");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(
        reply.header("content-disposition"),
        format!("attachment; filename=\"report-{id}.eml\"")
    );
    let request_id = reply.header("x-request-id").to_owned();
    assert!(!request_id.is_empty());

    let audit = db.audit_rows("raw_view").await;
    assert_eq!(audit.len(), 1);
    let (actor, object, detail) = &audit[0];
    assert_eq!(actor, "carol");
    assert_eq!(object, &common::sha256_hex(raws[0]));
    assert_eq!(detail["event_id"], id.as_str());
    assert_eq!(detail["bytes"], raws[0].len());
    let row: (
        chrono::DateTime<chrono::Utc>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as("SELECT at, tenant_id, request_id FROM audit_log WHERE action = 'raw_view'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        (chrono::Utc::now() - row.0).num_seconds().abs() < 60,
        "when"
    );
    assert_eq!(
        row.1.as_deref(),
        Some("6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f")
    );
    assert_eq!(row.2.as_deref(), Some(request_id.as_str()));

    // The admin reads the audit log through the API.
    let admin = db.token(Role::Admin, "admin").await;
    let log = get(&state, "/api/v1/audit?action=raw_view", &admin)
        .await
        .json();
    assert_eq!(log["entries"][0]["actor"], "carol");

    // Bytes deleted by retention: 404, and no audit row.
    let reply = get(&state, &format!("/api/v1/reports/{gone}/raw"), &analyst).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(db.audit_rows("raw_view").await.len(), 1);
    let detail = get(&state, &format!("/api/v1/reports/{gone}"), &analyst)
        .await
        .json();
    assert_eq!(detail["raw"]["available"], false);
    assert_eq!(detail["raw"]["deleted_reason"], "retention");
}

#[tokio::test]
async fn report_detail_has_attribution_evidence_and_explanation() {
    let db = TestDb::new().await;
    let state = db.state();
    let events = common::exchange_events();
    let raws = common::exchange_raw();
    let id = Seed::from_event(&events[1], raws[1], now() - Duration::hours(2))
        .insert(&db.pool)
        .await;
    let viewer = db.token(Role::Viewer, "v").await;
    let detail = get(&state, &format!("/api/v1/reports/{id}"), &viewer)
        .await
        .json();
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["tenant_name"], "Fabrikam Offers");
    assert_eq!(detail["confidence"], "HIGH");
    let attribution = &detail["attribution"];
    assert_eq!(attribution["sending_tenant"]["name"], "Fabrikam Offers");
    assert_eq!(
        attribution["evidence"].as_array().unwrap().len(),
        events[1]["attribution"]["evidence"]
            .as_array()
            .unwrap()
            .len()
    );
    assert!(
        attribution["explanation"][0]
            .as_str()
            .unwrap()
            .contains("egress hop")
    );
    assert_eq!(attribution["egress_ip"]["ip"], "198.51.100.199");
    assert_eq!(detail["raw"]["available"], true);
}

#[tokio::test]
async fn sql_injection_payloads_are_data() {
    let db = TestDb::new().await;
    let state = db.state();
    let payloads = [
        "'); DROP TABLE reports; --",
        "\" OR 1=1 --",
        "x' UNION SELECT token_sha256 FROM api_tokens --",
        "<script>alert(1)</script>",
    ];
    let mut ids = Vec::new();
    for p in payloads {
        ids.push(
            Seed::new("t-a", "HIGH", now() - Duration::hours(1))
                .subject(p)
                .reporter(&p.to_lowercase())
                .insert(&db.pool)
                .await,
        );
    }
    let viewer = db.token(Role::Viewer, "viewer").await;
    for (id, p) in ids.iter().zip(payloads) {
        let reply = get(&state, &format!("/api/v1/reports/{id}"), &viewer).await;
        assert_eq!(reply.json()["subject"], p, "stored and returned as written");
        // The JSON never carries a raw angle bracket.
        assert!(!reply.text().contains('<'), "{}", reply.text());
    }
    // Payloads in filters match nothing (or exactly the row that holds the same text).
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    for p in ["' OR '1'='1", "x'; DELETE FROM reports; --", "%", "_"] {
        for param in ["reporter", "feedback_type", "kind"] {
            let reply = get(
                &state,
                &format!("/api/v1/tenants?window=30d&{param}={}", enc(p)),
                &viewer,
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{param}={p}");
            assert_eq!(reply.json()["total"], 0, "{param}={p}");
        }
    }
    let reply = get(
        &state,
        &format!(
            "/api/v1/tenants?window=30d&reporter={}",
            enc(&payloads[0].to_lowercase())
        ),
        &viewer,
    )
    .await;
    assert_eq!(reply.json()["total_reports"], 1);
    for p in ["HIGH' OR '1'='1", "1; DROP TABLE reports"] {
        let reply = get(
            &state,
            &format!("/api/v1/tenants?min_confidence={}", enc(p)),
            &viewer,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let reply = get(
            &state,
            &format!("/api/v1/tenants?window={}", enc(p)),
            &viewer,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    }
    let reply = get(
        &state,
        &format!("/api/v1/tenants/{}", enc("t-a' OR '1'='1")),
        &viewer,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = get(
        &state,
        &format!(
            "/api/v1/tenants?window=30d&limit={}",
            enc("1; DROP TABLE reports")
        ),
        &viewer,
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // Everything is still there.
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM reports")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 4);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM api_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(tokens, 1);
    // A note with a payload is stored as written.
    let analyst = db.token(Role::Analyst, "analyst").await;
    let reply = post(
        &state,
        &format!("/api/v1/reports/{}/notes", ids[0]),
        &analyst,
        json!({"body": payloads[0]}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let detail = get(&state, &format!("/api/v1/reports/{}", ids[0]), &analyst)
        .await
        .json();
    assert_eq!(detail["notes"][0]["body"], payloads[0]);
}

#[tokio::test]
async fn admin_creates_tokens_whose_secret_is_shown_once() {
    let db = TestDb::new().await;
    let state = db.state();
    let admin = db.token(Role::Admin, "root").await;
    let reply = post(
        &state,
        "/api/v1/tokens",
        &admin,
        json!({"role": "analyst", "name": "dave", "expires_in": "1d"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let created = reply.json();
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("arfdesk_"));
    let me = get(&state, "/api/v1/me", &secret).await.json();
    assert_eq!(me["role"], "analyst");
    assert_eq!(me["name"], "dave");
    let list = get(&state, "/api/v1/tokens", &admin).await;
    assert!(
        !list.text().contains(&secret),
        "the list never shows a secret"
    );
    let stored: String =
        sqlx::query_scalar("SELECT token_sha256 FROM api_tokens WHERE name = 'dave'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored, common::sha256_hex(secret.as_bytes()));
    // Names are unique.
    let reply = post(
        &state,
        "/api/v1/tokens",
        &admin,
        json!({"role": "viewer", "name": "dave"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let reply = post(&state, "/api/v1/tokens", &admin, json!({"role": "root"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    // Both creations are audited: the fixture's and the API's.
    let created = db.audit_rows("token_create").await;
    assert_eq!(created.len(), 2);
    assert_eq!(created[1].0, "root");
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let db = TestDb::new().await;
    let state = db.state();
    let viewer = db.token(Role::Viewer, "v").await;
    let reply = get(&state, "/api/v1/tenants", &viewer).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(reply.header("cache-control"), "no-store");
    assert!(
        reply
            .header("content-security-policy")
            .contains("default-src 'none'")
    );
    // Without a recorder, /metrics says so.
    let reply = send(&state, Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
