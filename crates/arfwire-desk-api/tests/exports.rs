//! Exports: XARF v4 JSON for one report and CSV for a tenant's reports.

mod common;

use arfwire_desk_api::Role;
use axum::http::StatusCode;
use base64::Engine as _;
use chrono::Duration;
use common::{Seed, TestDb, get, now};
use serde_json::Value;

#[tokio::test]
async fn xarf_document_has_the_v4_shape_and_the_sample() {
    let db = TestDb::new().await;
    let state = db.state();
    let events = common::exchange_events();
    let raws = common::exchange_raw();
    let id = Seed::from_event(&events[0], raws[0], now() - Duration::hours(3))
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "erin").await;
    let reply = get(&state, &format!("/api/v1/reports/{id}/xarf"), &analyst).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert!(
        reply
            .header("content-disposition")
            .starts_with("attachment; filename=\"report-")
    );
    let doc = reply.json();

    assert_eq!(doc["xarf_version"], "4.0.0");
    assert_eq!(doc["report_id"], id.as_str());
    assert!(doc["reporter"].is_object());
    assert!(doc["reporter"]["org"].is_string());
    assert_eq!(doc["reporter"]["type"], "automated");
    let report = &doc;
    assert_eq!(report["class"], "messaging");
    assert_eq!(report["type"], "spam");
    assert_eq!(report["protocol"], "smtp");
    assert_eq!(report["evidence_source"], "user_complaint");
    assert_eq!(
        report["source_identifier"], "198.51.100.171",
        "the platform's egress IP"
    );
    let ip: std::net::IpAddr = report["source_identifier"]
        .as_str()
        .unwrap()
        .parse()
        .expect("an IP");
    assert!(ip.is_ipv4());
    let date = report["timestamp"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(date).expect("Date is RFC 3339");
    assert_eq!(date, "2024-03-21T15:20:08Z", "the ARF Arrival-Date");
    assert_eq!(report["subject"], "Your parcel could not be delivered");
    assert_eq!(report["smtp_from"], "notify@contoso.example.com");
    assert!(
        report["x_arfwire"]["explanation"][0]
            .as_str()
            .unwrap()
            .contains("egress hop")
    );
    let samples = report["evidence"].as_array().unwrap();
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0]["content_type"], "message/rfc822");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(samples[0]["payload"].as_str().unwrap())
        .expect("base64");
    assert_eq!(payload, raws[0]);
    assert_eq!(
        samples[0]["hash"],
        format!("sha256:{}", common::sha256_hex(raws[0]))
    );

    // The sample is a raw view: audited.
    let audit = db.audit_rows("raw_view").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "erin");
    assert_eq!(audit[0].2["via"], "xarf");

    // The reporter block comes from the configuration.
    let configured = db.state_with(arfwire_desk_api::DeskConfig {
        fixed_now: Some(now()),
        xarf_reporter: arfwire_desk_api::export::XarfReporter {
            org: "Example Mail Abuse Team".to_owned(),
            domain: Some("mail.example".to_owned()),
            email: Some("abuse@mail.example".to_owned()),
        },
        ..arfwire_desk_api::DeskConfig::default()
    });
    let doc = get(&configured, &format!("/api/v1/reports/{id}/xarf"), &analyst)
        .await
        .json();
    assert_eq!(doc["reporter"]["org"], "Example Mail Abuse Team");
    assert_eq!(doc["reporter"]["domain"], "mail.example");
    assert_eq!(doc["reporter"]["contact"], "abuse@mail.example");
    assert_eq!(db.audit_rows("raw_view").await.len(), 2);

    // Without raw bytes the document has no sample and no raw view is recorded.
    let gone = Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .no_raw()
        .insert(&db.pool)
        .await;
    let doc = get(&state, &format!("/api/v1/reports/{gone}/xarf"), &analyst)
        .await
        .json();
    assert_eq!(doc["evidence"], Value::Array(vec![]));
    assert_eq!(doc["source_identifier"], "198.51.100.7");
    assert_eq!(db.audit_rows("raw_view").await.len(), 2);
}

#[tokio::test]
async fn csv_round_trips_and_neutralises_formulas() {
    let db = TestDb::new().await;
    let state = db.state();
    let subjects = [
        "=HYPERLINK(\"http://evil.example\",\"click\")",
        "+1-555-0100",
        "-2+3",
        "@SUM(A1:A9)",
        "plain, with comma",
        "quote \" inside",
        "line\nbreak",
        "<script>alert(1)</script>",
        "ünïcödé ✓",
    ];
    for (i, s) in subjects.iter().enumerate() {
        Seed::new("t-a", "HIGH", now() - Duration::hours(i as i64 + 1))
            .subject(s)
            .insert(&db.pool)
            .await;
    }
    Seed::new("t-a", "LOW", now() - Duration::days(40))
        .insert(&db.pool)
        .await;
    Seed::new("t-b", "LOW", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let viewer = db.token(Role::Viewer, "v").await;
    let reply = get(&state, "/api/v1/tenants/t-a/reports.csv?days=30", &viewer).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), "text/csv; charset=utf-8");
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    assert_eq!(
        reply.header("content-disposition"),
        "attachment; filename=\"reports-t-a-20260315.csv\""
    );

    let mut reader = csv::Reader::from_reader(reply.body.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, arfwire_desk_api::export::CSV_HEADER);
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.expect("valid CSV row"))
        .collect();
    assert_eq!(
        rows.len(),
        subjects.len(),
        "only t-a, only the last 30 days"
    );
    let subject_col = header.iter().position(|h| h == "subject").unwrap();
    let tenant_col = header.iter().position(|h| h == "tenant_id").unwrap();
    // Newest first: the order of `subjects`.
    for (row, original) in rows.iter().zip(subjects) {
        assert_eq!(&row[tenant_col], "t-a");
        let cell = &row[subject_col];
        if original.starts_with(['=', '+', '-', '@']) {
            assert_eq!(cell, format!("'{original}"), "formula neutralised");
        } else {
            assert_eq!(cell, original, "round trip");
        }
    }
    // No cell of the export starts a formula.
    for row in &rows {
        for cell in row.iter() {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "{cell:?}");
        }
    }
}
