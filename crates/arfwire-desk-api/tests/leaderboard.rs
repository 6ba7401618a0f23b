//! Leaderboard and tenant-detail arithmetic on seeded reports: counts per window, trend
//! against the previous window, breakdowns, filters, pagination and window boundaries.

mod common;

use arfwire_desk_api::Role;
use axum::http::StatusCode;
use chrono::Duration;
use common::{Seed, TestDb, get, now};
use serde_json::{Value, json};

async fn seed(db: &TestDb) {
    let h = Duration::hours;
    let d = Duration::days;
    let p = &db.pool;
    // t-a: four in the last 24 hours, one in the 24 hours before, two more within 7 days,
    // three 10 days ago (the week before), one 40 days ago (the 30 days before).
    Seed::new("t-a", "HIGH", now() - h(1)).insert(p).await;
    Seed::new("t-a", "HIGH", now() - h(2))
        .source_ip("192.0.2.1")
        .insert(p)
        .await;
    Seed::new("t-a", "MEDIUM", now() - h(3)).insert(p).await;
    Seed::new("t-a", "LOW", now() - h(23))
        .complaint("jmrp", "fraud")
        .reporter("fbl.example")
        .insert(p)
        .await;
    Seed::new("t-a", "LOW", now() - h(25)).insert(p).await;
    Seed::new("t-a", "HIGH", now() - h(60)).insert(p).await;
    Seed::new("t-a", "HIGH", now() - d(5)).insert(p).await;
    for _ in 0..3 {
        Seed::new("t-a", "MEDIUM", now() - d(10))
            .subject("Same offer")
            .insert(p)
            .await;
    }
    Seed::new("t-a", "HIGH", now() - d(40)).insert(p).await;
    // t-b: two now, six in the previous 24 hours.
    for i in 0..2 {
        Seed::new("t-b", "HIGH", now() - h(4 + i)).insert(p).await;
    }
    for _ in 0..6 {
        Seed::new("t-b", "HIGH", now() - h(30)).insert(p).await;
    }
    // t-d: exactly on the boundaries.
    Seed::new("t-d", "LOW", now() - h(24)).insert(p).await; // in the last 24 h (inclusive)
    Seed::new("t-d", "LOW", now()).insert(p).await; // "now" itself is not yet in
    Seed::new("t-d", "LOW", now() - h(48)).insert(p).await; // first instant of the previous window
    // One unattributed report.
    Seed::new("t-x", "NONE", now() - h(6))
        .tenant(None)
        .insert(p)
        .await;
    sqlx::query("UPDATE reports SET confidence = NULL WHERE tenant_id IS NULL")
        .execute(p)
        .await
        .unwrap();
}

fn row<'a>(board: &'a Value, tenant: &str) -> &'a Value {
    board["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == tenant)
        .unwrap_or_else(|| panic!("{tenant} not on the board: {board}"))
}

fn ids(board: &Value) -> Vec<String> {
    board["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn counts_trend_and_breakdowns_per_window() {
    let db = TestDb::new().await;
    seed(&db).await;
    let state = db.state();
    let viewer = db.token(Role::Viewer, "v").await;

    let day = get(&state, "/api/v1/tenants?window=24h", &viewer)
        .await
        .json();
    assert_eq!(ids(&day), ["t-a", "t-b", "t-d", "unattributed"]);
    assert_eq!(day["total"], 4);
    assert_eq!(day["total_reports"], 8);
    assert_eq!(day["window"], "24h");
    assert_eq!(day["from"], "2026-03-14T12:00:00Z");
    assert_eq!(day["previous_from"], "2026-03-13T12:00:00Z");

    let a = row(&day, "t-a");
    assert_eq!(a["reports"], 4);
    assert_eq!(a["previous_reports"], 1);
    assert_eq!(a["change"], 3);
    assert_eq!(a["change_pct"], 300.0);
    assert_eq!(a["trend"], "up");
    assert_eq!(a["untriaged"], 4);
    assert_eq!(a["tenant_name"], "t-a Inc");
    assert_eq!(
        a["by_confidence"],
        json!({"HIGH": 2, "MEDIUM": 1, "LOW": 1})
    );
    assert_eq!(
        a["by_reporter"],
        json!({"isp.example": 3, "fbl.example": 1})
    );
    assert_eq!(a["by_feedback_type"], json!({"abuse": 3, "fraud": 1}));
    assert_eq!(a["last_report_at"], "2026-03-15T11:00:00Z");
    assert_eq!(a["case"], Value::Null);

    let b = row(&day, "t-b");
    assert_eq!(
        (b["reports"].as_i64(), b["previous_reports"].as_i64()),
        (Some(2), Some(6))
    );
    assert_eq!(b["trend"], "down");
    assert_eq!(b["change"], -4);
    assert_eq!(b["change_pct"], -66.7);

    let d = row(&day, "t-d");
    assert_eq!(
        (d["reports"].as_i64(), d["previous_reports"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(d["trend"], "flat");
    assert_eq!(d["change_pct"], 0.0);

    let u = row(&day, "unattributed");
    assert_eq!(u["by_confidence"], json!({"UNATTRIBUTED": 1}));
    assert_eq!(u["tenant_name"], Value::Null);

    let week = get(&state, "/api/v1/tenants?window=7d", &viewer)
        .await
        .json();
    assert_eq!(ids(&week), ["t-b", "t-a", "t-d", "unattributed"]);
    let a = row(&week, "t-a");
    assert_eq!(
        (a["reports"].as_i64(), a["previous_reports"].as_i64()),
        (Some(7), Some(3))
    );
    assert_eq!(a["change_pct"], 133.3);
    let b = row(&week, "t-b");
    assert_eq!(
        (b["reports"].as_i64(), b["previous_reports"].as_i64()),
        (Some(8), Some(0))
    );
    assert_eq!(b["trend"], "new");
    assert_eq!(b["change_pct"], Value::Null);
    assert_eq!(row(&week, "t-d")["reports"], 2);

    let month = get(&state, "/api/v1/tenants?window=30d", &viewer)
        .await
        .json();
    let a = row(&month, "t-a");
    assert_eq!(
        (a["reports"].as_i64(), a["previous_reports"].as_i64()),
        (Some(10), Some(1))
    );
    assert_eq!(a["change_pct"], 900.0);
    assert_eq!(month["total_reports"], 21);

    // The default window is 7 days.
    let default = get(&state, "/api/v1/tenants", &viewer).await.json();
    assert_eq!(default["window"], "7d");
}

#[tokio::test]
async fn filters_apply_to_counts_trend_and_breakdowns() {
    let db = TestDb::new().await;
    seed(&db).await;
    let state = db.state();
    let viewer = db.token(Role::Viewer, "v").await;

    let board = get(
        &state,
        "/api/v1/tenants?window=24h&min_confidence=medium",
        &viewer,
    )
    .await
    .json();
    assert_eq!(ids(&board), ["t-a", "t-b"]);
    let a = row(&board, "t-a");
    assert_eq!(a["reports"], 3);
    assert_eq!(
        a["previous_reports"], 0,
        "the LOW report 25 h ago is filtered out too"
    );
    assert_eq!(a["trend"], "new");
    assert_eq!(a["by_confidence"], json!({"HIGH": 2, "MEDIUM": 1}));
    assert_eq!(board["filters"]["min_confidence"], "MEDIUM");

    for query in [
        "feedback_type=fraud",
        "reporter=fbl.example",
        "reporter=FBL.example",
        "kind=jmrp",
    ] {
        let board = get(
            &state,
            &format!("/api/v1/tenants?window=24h&{query}"),
            &viewer,
        )
        .await
        .json();
        assert_eq!(ids(&board), ["t-a"], "{query}");
        assert_eq!(row(&board, "t-a")["reports"], 1, "{query}");
        assert_eq!(
            row(&board, "t-a")["by_feedback_type"],
            json!({"fraud": 1}),
            "{query}"
        );
    }
    let board = get(
        &state,
        "/api/v1/tenants?window=24h&kind=jmrp&feedback_type=abuse",
        &viewer,
    )
    .await
    .json();
    assert_eq!(board["total"], 0);
    assert_eq!(board["tenants"], json!([]));

    let reply = get(&state, "/api/v1/tenants?min_confidence=VERY", &viewer).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = get(&state, "/api/v1/tenants?window=1y", &viewer).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pagination_is_bounded() {
    let db = TestDb::new().await;
    seed(&db).await;
    let state = db.state();
    let viewer = db.token(Role::Viewer, "v").await;

    let first = get(&state, "/api/v1/tenants?window=24h&limit=2", &viewer)
        .await
        .json();
    assert_eq!(ids(&first), ["t-a", "t-b"]);
    assert_eq!(first["total"], 4);
    let second = get(
        &state,
        "/api/v1/tenants?window=24h&limit=2&offset=2",
        &viewer,
    )
    .await
    .json();
    assert_eq!(ids(&second), ["t-d", "unattributed"]);
    assert_eq!(second["total"], 4);
    let past = get(
        &state,
        "/api/v1/tenants?window=24h&limit=2&offset=4",
        &viewer,
    )
    .await
    .json();
    assert_eq!(past["tenants"], json!([]));
    assert_eq!(past["total"], 4, "totals survive paging past the end");
    assert_eq!(past["total_reports"], 8);

    let big = get(&state, "/api/v1/tenants?window=24h&limit=100000", &viewer)
        .await
        .json();
    assert_eq!(big["limit"], 200, "clamped to the maximum page size");
    for bad in [
        "limit=0",
        "limit=-5",
        "offset=-1",
        "offset=100001",
        "limit=abc",
    ] {
        let reply = get(&state, &format!("/api/v1/tenants?{bad}"), &viewer).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Report lists page the same way, newest first.
    let page = get(
        &state,
        "/api/v1/tenants/t-a/reports?days=30&limit=3",
        &viewer,
    )
    .await
    .json();
    assert_eq!(page["total"], 10);
    let reports = page["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[0]["received_at"], "2026-03-15T11:00:00Z");
    let last = get(
        &state,
        "/api/v1/tenants/t-a/reports?days=30&limit=3&offset=9",
        &viewer,
    )
    .await
    .json();
    assert_eq!(last["reports"].as_array().unwrap().len(), 1);
    let filtered = get(
        &state,
        "/api/v1/tenants/t-a/reports?days=30&min_confidence=HIGH&status=new",
        &viewer,
    )
    .await
    .json();
    assert_eq!(filtered["total"], 4);
}

#[tokio::test]
async fn tenant_detail_has_daily_buckets_ips_reporters_subjects_and_clusters() {
    let db = TestDb::new().await;
    seed(&db).await;
    let cluster: i64 = sqlx::query_scalar(
        "INSERT INTO clusters (key_kind, key_value, message_id, subject, tenant_id, report_count, \
                               distinct_reporters, first_seen_at, last_seen_at) \
         VALUES ('message_id', 'same@sender.example', 'same@sender.example', 'Same offer', 't-a', 3, 1, \
                 now() - interval '10 days', now() - interval '10 days') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE reports SET cluster_id = $1 WHERE subject = 'Same offer'")
        .bind(cluster)
        .execute(&db.pool)
        .await
        .unwrap();
    let state = db.state();
    let viewer = db.token(Role::Viewer, "v").await;
    let t = get(&state, "/api/v1/tenants/t-a", &viewer).await.json();
    assert_eq!(t["tenant_name"], "t-a Inc");
    assert_eq!(t["totals"], json!({"24h": 4, "7d": 7, "30d": 10}));
    assert_eq!(t["reports_in_period"], 10);
    let daily = t["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 30);
    assert_eq!(daily[0]["day"], "2026-02-14");
    assert_eq!(daily[29]["day"], "2026-03-15");
    let by_day = |day: &str| {
        daily.iter().find(|d| d["day"] == day).unwrap()["count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(by_day("2026-03-15"), 3);
    assert_eq!(by_day("2026-03-14"), 2);
    assert_eq!(by_day("2026-03-13"), 1);
    assert_eq!(by_day("2026-03-10"), 1);
    assert_eq!(by_day("2026-03-05"), 3);
    assert_eq!(
        daily
            .iter()
            .map(|d| d["count"].as_i64().unwrap())
            .sum::<i64>(),
        10
    );

    assert_eq!(
        t["source_ips"],
        json!([{"value": "198.51.100.7", "count": 9}, {"value": "192.0.2.1", "count": 1}])
    );
    assert_eq!(
        t["origin_ips"][0],
        json!({"value": "203.0.113.9", "count": 10})
    );
    assert_eq!(t["reporters"][0]["domain"], "isp.example");
    assert_eq!(t["reporters"][0]["count"], 9);
    assert_eq!(t["reporters"][1]["domain"], "fbl.example");
    assert_eq!(
        t["top_subjects"][0],
        json!({"value": "Same offer", "count": 3})
    );
    assert_eq!(t["clusters"][0]["id"], cluster);
    assert_eq!(t["clusters"][0]["reports_in_period"], 3);
    assert_eq!(t["by_status"], json!({"new": 10}));
    assert_eq!(
        t["by_confidence"],
        json!({"HIGH": 4, "MEDIUM": 4, "LOW": 2})
    );

    let week = get(&state, "/api/v1/tenants/t-a?days=7", &viewer)
        .await
        .json();
    assert_eq!(week["daily"].as_array().unwrap().len(), 7);
    assert_eq!(
        get(&state, "/api/v1/tenants/t-a?days=91", &viewer)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let unattributed = get(&state, "/api/v1/tenants/unattributed", &viewer)
        .await
        .json();
    assert_eq!(unattributed["totals"]["24h"], 1);
}
