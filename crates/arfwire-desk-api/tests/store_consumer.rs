//! The desk reads what the store consumer writes: the three real events of the Exchange
//! Online fixtures and their raw submissions go in through `arfwire_desk::apply` and
//! `apply_raw` (as the consumer applies them from the topics) and come out of the API.

mod common;

use arfwire_desk_api::{DeskConfig, RateLimit, Role};
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use common::{TestDb, get};

#[tokio::test]
async fn api_reads_rows_written_by_the_store_consumer() {
    let db = TestDb::new().await;
    let options = arfwire_desk::ApplyOptions::default();
    let received = Utc.with_ymd_and_hms(2024, 3, 21, 15, 30, 0).unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    for (line, raw) in include_str!("data/exchange-events.jsonl")
        .lines()
        .zip(common::exchange_raw())
    {
        let output = arfwire_events::Output::from_json(line).expect("event JSON");
        arfwire_desk::apply(&mut tx, &output, &options)
            .await
            .expect("event applied");
        let submission =
            arfwire_raw::RawSubmission::new(raw.to_vec(), arfwire_raw::Channel::Lmtp, received);
        arfwire_desk::apply_raw(&mut tx, &submission, &options)
            .await
            .expect("raw applied");
    }
    tx.commit().await.unwrap();

    let state = db.state_with(DeskConfig {
        fixed_now: Some(Utc.with_ymd_and_hms(2024, 3, 22, 0, 0, 0).unwrap()),
        rate_limit: RateLimit::default(),
        ..DeskConfig::default()
    });
    let analyst = db.token(Role::Analyst, "reader").await;

    let board = get(&state, "/api/v1/tenants?window=24h", &analyst)
        .await
        .json();
    assert_eq!(board["total"], 3, "{board}");
    let names: Vec<&str> = board["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_name"].as_str().unwrap())
        .collect();
    // One report each: ties are ordered by tenant id.
    assert_eq!(
        names,
        [
            "Northwind Traders",
            "Contoso Parcel Service",
            "Fabrikam Offers"
        ]
    );
    for t in board["tenants"].as_array().unwrap() {
        assert_eq!(t["by_confidence"]["HIGH"], 1, "{t}");
        assert_eq!(t["by_feedback_type"]["abuse"], 1, "{t}");
    }

    let contoso = "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f";
    let tenant = get(&state, &format!("/api/v1/tenants/{contoso}"), &analyst)
        .await
        .json();
    assert_eq!(tenant["totals"]["24h"], 1);
    assert_eq!(tenant["source_ips"][0]["value"], "198.51.100.171");
    assert_eq!(tenant["egress_ips"][0]["value"], "198.51.100.171");
    assert_eq!(tenant["origin_ips"][0]["value"], "203.0.113.40");
    assert_eq!(tenant["reporters"][0]["domain"], "feedback.example.org");
    assert_eq!(
        tenant["top_subjects"][0]["value"],
        "Your parcel could not be delivered"
    );
    assert_eq!(
        tenant["clusters"].as_array().unwrap().len(),
        1,
        "the consumer clusters reports"
    );

    let id = tenant_report_id(&state, &analyst, contoso).await;
    let detail = get(&state, &format!("/api/v1/reports/{id}"), &analyst)
        .await
        .json();
    assert_eq!(detail["confidence"], "HIGH");
    assert!(
        detail["attribution"]["explanation"][0]
            .as_str()
            .unwrap()
            .contains("egress hop")
    );
    assert!(detail["attribution"]["evidence"].as_array().unwrap().len() >= 10);
    assert_eq!(detail["raw"]["available"], true);
    assert_eq!(detail["arrival_at"], "2024-03-21T15:20:08Z");

    let raw = get(&state, &format!("/api/v1/reports/{id}/raw"), &analyst).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, common::exchange_raw()[0]);
    assert_eq!(db.audit_rows("raw_view").await.len(), 1);

    let xarf = get(&state, &format!("/api/v1/reports/{id}/xarf"), &analyst)
        .await
        .json();
    assert_eq!(xarf["source_identifier"], "198.51.100.171");
    assert_eq!(xarf["timestamp"], "2024-03-21T15:20:08Z");
}

async fn tenant_report_id(state: &arfwire_desk_api::AppState, token: &str, tenant: &str) -> String {
    let list = get(state, &format!("/api/v1/tenants/{tenant}/reports"), token)
        .await
        .json();
    list["reports"][0]["id"]
        .as_str()
        .expect("a report")
        .to_owned()
}
