//! `/metrics` renders the Prometheus recorder when one is installed (its own test binary:
//! the recorder is process-wide).

mod common;

use arfwire_desk_api::{DeskConfig, RateLimit, Role};
use axum::http::{Method, StatusCode};
use common::{TestDb, get, now, send};

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let db = TestDb::new().await;
    let handle = arfwire_desk_api::install_prometheus().expect("recorder installed");
    let state = db.state_with(DeskConfig {
        fixed_now: Some(now()),
        rate_limit: RateLimit::default(),
        metrics: Some(handle),
        ..DeskConfig::default()
    });
    let viewer = db.token(Role::Viewer, "v").await;
    assert_eq!(
        get(&state, "/api/v1/tenants", &viewer).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&state, Method::GET, "/api/v1/tenants", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let reply = send(&state, Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").starts_with("text/plain"));
    let text = reply.text();
    assert!(
        text.contains(
            "desk_http_requests_total{method=\"GET\",route=\"/api/v1/tenants\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("status=\"401\""), "{text}");
    assert!(!text.contains(&viewer), "no token in the metrics");
}
