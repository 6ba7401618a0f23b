//! The desk under the least-privilege database roles of the store's migrations: the API's
//! connection acts as `arfwire_desk_api` (no access to raw bytes), raw messages are read
//! through a second connection acting as `arfwire_desk_raw` (test plan S4).

mod common;

use arfwire_desk_api::{AppState, DeskConfig, RateLimit, Role};
use axum::http::{Method, StatusCode};
use chrono::Duration;
use common::{Seed, TestDb, get, now, post, send};
use serde_json::json;

fn config() -> DeskConfig {
    DeskConfig {
        fixed_now: Some(now()),
        rate_limit: RateLimit {
            per_second: 1000.0,
            burst: 1000.0,
        },
        ..DeskConfig::default()
    }
}

#[tokio::test]
async fn every_endpoint_works_with_the_api_and_raw_roles() {
    let db = TestDb::new().await;
    let events = common::exchange_events();
    let raws = common::exchange_raw();
    let id = Seed::from_event(&events[0], raws[0], now() - Duration::hours(2))
        .insert(&db.pool)
        .await;
    let other = Seed::new("t-b", "LOW", now() - Duration::hours(3))
        .insert(&db.pool)
        .await;
    let admin = db.token(Role::Admin, "root").await;

    let api_pool = db.pool_as("arfwire_desk_api").await;
    let raw_pool = db.pool_as("arfwire_desk_raw").await;
    // The roles bite: the API's role cannot read the bytes, the raw role nothing else.
    let denied = sqlx::query("SELECT raw FROM submissions")
        .fetch_all(&api_pool)
        .await;
    assert!(denied.is_err(), "arfwire_desk_api reads no raw bytes");
    let denied = sqlx::query("SELECT count(*) FROM reports")
        .fetch_all(&raw_pool)
        .await;
    assert!(
        denied.is_err(),
        "arfwire_desk_raw reads nothing but the bytes"
    );

    let state = AppState::with_raw_pool(api_pool.clone(), Some(raw_pool), config());
    let contoso = "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f";
    let created = post(
        &state,
        "/api/v1/tokens",
        &admin,
        json!({"role": "analyst", "name": "ana"}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let analyst = created.json()["token"].as_str().unwrap().to_owned();

    for uri in [
        "/api/v1/me".to_owned(),
        "/api/v1/tenants?window=30d&min_confidence=LOW".to_owned(),
        format!("/api/v1/tenants/{contoso}"),
        format!("/api/v1/tenants/{contoso}/reports"),
        format!("/api/v1/tenants/{contoso}/reports.csv"),
        format!("/api/v1/tenants/{contoso}/case"),
        format!("/api/v1/reports/{id}"),
        "/api/v1/alerts".to_owned(),
    ] {
        let reply = get(&state, &uri, &analyst).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    }
    let detail = get(&state, &format!("/api/v1/reports/{id}"), &analyst)
        .await
        .json();
    assert_eq!(detail["raw"]["available"], true);

    let reply = post(
        &state,
        &format!("/api/v1/reports/{id}/status"),
        &analyst,
        json!({"status": "investigating", "note": "n"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = post(
        &state,
        &format!("/api/v1/reports/{id}/notes"),
        &analyst,
        json!({"body": "more"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let reply = post(
        &state,
        "/api/v1/reports/status",
        &analyst,
        json!({"ids": [id, other], "status": "dismissed"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = post(
        &state,
        &format!("/api/v1/tenants/{contoso}/status"),
        &analyst,
        json!({"status": "investigating", "note": "case"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = post(
        &state,
        "/api/v1/tenants/status",
        &analyst,
        json!({"tenant_ids": [contoso, "t-b"], "status": "actioned"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = post(
        &state,
        "/api/v1/tenants/t-b/notes",
        &analyst,
        json!({"body": "x"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());

    let raw = get(&state, &format!("/api/v1/reports/{id}/raw"), &analyst).await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.text());
    assert_eq!(raw.body, raws[0]);
    let xarf = get(&state, &format!("/api/v1/reports/{id}/xarf"), &analyst).await;
    assert_eq!(xarf.status, StatusCode::OK, "{}", xarf.text());
    assert_eq!(db.audit_rows("raw_view").await.len(), 2);

    let audit = get(&state, "/api/v1/audit", &admin).await;
    assert_eq!(audit.status, StatusCode::OK);
    let tokens = get(&state, "/api/v1/tokens", &admin).await.json();
    let ana_id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ana")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let reply = send(
        &state,
        Method::DELETE,
        &format!("/api/v1/tokens/{ana_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        send(&state, Method::GET, "/healthz", None, None)
            .await
            .status,
        StatusCode::OK
    );

    // Without the raw connection the API's role cannot serve raw bytes: an error, and no
    // audit row claims a view that did not happen.
    let analyst = db.token(Role::Analyst, "ana2").await;
    let without_raw = AppState::new(api_pool, config());
    let reply = get(&without_raw, &format!("/api/v1/reports/{id}/raw"), &analyst).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(db.audit_rows("raw_view").await.len(), 2);
    // The report itself still reads.
    assert_eq!(
        get(&without_raw, &format!("/api/v1/reports/{id}"), &analyst)
            .await
            .status,
        StatusCode::OK
    );
}
