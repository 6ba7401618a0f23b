//! The server-rendered pages through the router: login, session cookie, CSRF, escaping of
//! hostile report text (H22), the Content-Security-Policy.

mod common;

use arfwire_desk_api::Role;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Duration;
use common::{Reply, Seed, TestDb, now, send_request};

const XSS_SUBJECT: &str =
    "<script>document.title='pwned'</script><img src=x onerror=\"alert(1)\"> Win \"big\" & more";

async fn page(state: &arfwire_desk_api::AppState, uri: &str, cookie: Option<&str>) -> Reply {
    let mut builder = Request::builder().method(Method::GET).uri(uri);
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    send_request(state, builder.body(Body::empty()).unwrap()).await
}

async fn form(
    state: &arfwire_desk_api::AppState,
    uri: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
    fields: &[(&str, &str)],
) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::HOST, "desk.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    if let Some(origin) = origin {
        builder = builder.header(header::ORIGIN, origin);
    }
    send_request(state, builder.body(Body::from(body)).unwrap()).await
}

async fn login(state: &arfwire_desk_api::AppState, token: &str) -> String {
    let reply = form(
        state,
        "/login",
        None,
        None,
        &[("token", token), ("next", "/")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    let cookie = reply.header("set-cookie").to_owned();
    cookie.split(';').next().unwrap().to_owned()
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF value") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_pages_need_it() {
    let db = TestDb::new().await;
    let state = db.state();
    Seed::new("t-a", "HIGH", now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "ana").await;

    let reply = page(&state, "/tenants/t-a?days=7", None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        reply.header("location"),
        "/login?next=%2Ftenants%2Ft-a%3Fdays%3D7"
    );

    let reply = page(&state, "/login?next=%2Ftenants%2Ft-a", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("name=\"token\""));
    assert_eq!(reply.header("content-type"), "text/html; charset=utf-8");

    let reply = form(
        &state,
        "/login",
        None,
        None,
        &[("token", "arfdesk_wrong"), ("next", "/")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.header("set-cookie").is_empty());
    assert!(reply.text().contains("not valid"));

    let reply = form(
        &state,
        "/login",
        None,
        None,
        &[("token", &analyst), ("next", "/tenants/t-a")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.header("location"), "/tenants/t-a");
    let set_cookie = reply.header("set-cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    // An open redirect is refused.
    for next in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let reply = form(
            &state,
            "/login",
            None,
            None,
            &[("token", &analyst), ("next", next)],
        )
        .await;
        assert_eq!(reply.header("location"), "/", "{next}");
    }
    // A login form posted from another site is refused.
    let reply = form(
        &state,
        "/login",
        None,
        Some("https://evil.example"),
        &[("token", &analyst)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let cookie = login(&state, &analyst).await;
    let reply = page(&state, "/", Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("t-a Inc"));

    // A bearer header does not open the pages; an expired token's cookie sends to login.
    let expired = db.expired_token(Role::Analyst).await;
    let reply = page(&state, "/", Some(&format!("arfwire_desk={expired}"))).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.header("set-cookie").contains("Max-Age=0"));
}

#[tokio::test]
async fn hostile_text_is_escaped_and_no_script_is_allowed() {
    let db = TestDb::new().await;
    let state = db.state();
    let mut seed = Seed::new("t-evil", "HIGH", now() - Duration::hours(1)).subject(XSS_SUBJECT);
    seed.tenant_name = Some("<b onmouseover=alert(2)>Evil</b> Corp".to_owned());
    seed.reporter_domain = Some("<svg/onload=alert(3)>".to_owned());
    seed.event["attribution"]["explanation"] =
        serde_json::json!(["line with <script>alert(4)</script>"]);
    let id = seed.insert(&db.pool).await;
    let viewer = db.token(Role::Viewer, "vic").await;
    let cookie = login(&state, &viewer).await;
    for uri in [
        "/?window=24h".to_owned(),
        "/tenants/t-evil".to_owned(),
        format!("/reports/{id}"),
    ] {
        let reply = page(&state, &uri, Some(&cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        let html = reply.text();
        for forbidden in ["<script", "<img", "<b ", "<svg/", "onerror=\""] {
            assert!(!html.contains(forbidden), "{uri} contains {forbidden}");
        }
        assert!(
            html.contains("&lt;b onmouseover=alert(2)&gt;Evil&lt;/b&gt; Corp"),
            "{uri}"
        );
        let csp = reply.header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(reply.header("x-frame-options"), "DENY");
    }
    let html = page(&state, &format!("/reports/{id}"), Some(&cookie))
        .await
        .text();
    assert!(html.contains(
        "&lt;script&gt;document.title='pwned'&lt;/script&gt;&lt;img src=x onerror=&quot;alert(1)&quot;&gt; Win &quot;big&quot; &amp; more"
    ));
    assert!(html.contains("line with &lt;script&gt;alert(4)&lt;/script&gt;"));
    // The stylesheet is the only resource and is served by us.
    let css = page(&state, "/static/desk.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
}

#[tokio::test]
async fn forms_need_the_csrf_value_the_same_origin_and_the_analyst_role() {
    let db = TestDb::new().await;
    let state = db.state();
    let events = common::exchange_events();
    let raws = common::exchange_raw();
    let id = Seed::from_event(&events[2], raws[2], now() - Duration::hours(1))
        .insert(&db.pool)
        .await;
    let analyst = db.token(Role::Analyst, "frank").await;
    let cookie = login(&state, &analyst).await;
    let html = page(&state, &format!("/reports/{id}"), Some(&cookie))
        .await
        .text();
    assert!(html.contains("Northwind Traders"));
    assert!(html.contains("Why this tenant"));
    assert!(html.contains(
        "stamp block Id=1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b (Northwind Traders) anchored"
    ));
    let csrf = csrf_of(&html);
    let uri = format!("/reports/{id}/status");

    let reply = form(
        &state,
        &uri,
        Some(&cookie),
        None,
        &[("status", "investigating")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "no CSRF value");
    let reply = form(
        &state,
        &uri,
        Some(&cookie),
        None,
        &[("status", "investigating"), ("csrf", "forged")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "wrong CSRF value");
    let reply = form(
        &state,
        &uri,
        Some(&cookie),
        Some("https://evil.example"),
        &[("status", "investigating"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "other origin");
    let reply = form(
        &state,
        &uri,
        None,
        None,
        &[("status", "investigating"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.header("location").starts_with("/login"), "no session");
    assert!(db.audit_rows("report_status").await.is_empty());

    let reply = form(
        &state,
        &uri,
        Some(&cookie),
        Some("http://desk.example"),
        &[
            ("status", "investigating"),
            ("note", "checking the stamp"),
            ("csrf", &csrf),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    assert!(reply.header("location").contains("done=status"));
    let audit = db.audit_rows("report_status").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "frank");
    let html = page(
        &state,
        &format!("/reports/{id}?done=status&changed=1"),
        Some(&cookie),
    )
    .await
    .text();
    assert!(html.contains("Status updated."));
    assert!(html.contains("checking the stamp"));

    // Bulk from the tenant page.
    let tenant = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b";
    let reply = form(
        &state,
        "/reports/status",
        Some(&cookie),
        None,
        &[
            ("csrf", &csrf),
            ("ids", &id),
            ("ids", "not-an-id"),
            ("status", "actioned"),
            ("back", &format!("/tenants/{tenant}")),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let location = reply.header("location");
    assert!(
        location.starts_with(&format!("/tenants/{tenant}?")),
        "{location}"
    );
    assert!(
        location.contains("changed=1") && location.contains("not_found=1"),
        "{location}"
    );
    let reply = form(
        &state,
        "/tenants/status",
        Some(&cookie),
        None,
        &[
            ("csrf", &csrf),
            ("tenant_ids", tenant),
            ("status", "investigating"),
            ("back", "https://evil.example/"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(reply.header("location").starts_with("/?"), "never off-site");

    // Raw download from the page: attachment, audited.
    let reply = page(&state, &format!("/reports/{id}/raw"), Some(&cookie)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, raws[2]);
    assert!(
        reply
            .header("content-disposition")
            .starts_with("attachment")
    );
    assert_eq!(db.audit_rows("raw_view").await.len(), 1);

    // A viewer's session cannot post, even with its own CSRF value.
    let viewer = db.token(Role::Viewer, "gina").await;
    let viewer_cookie = login(&state, &viewer).await;
    let viewer_html = page(&state, &format!("/reports/{id}"), Some(&viewer_cookie))
        .await
        .text();
    assert!(
        !viewer_html.contains("name=\"status\""),
        "no status form for viewers"
    );
    let viewer_csrf = csrf_of(&viewer_html);
    let reply = form(
        &state,
        &uri,
        Some(&viewer_cookie),
        None,
        &[("status", "dismissed"), ("csrf", &viewer_csrf)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = page(&state, &format!("/reports/{id}/raw"), Some(&viewer_cookie)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // One session's CSRF value does not work for another.
    let reply = form(
        &state,
        &uri,
        Some(&viewer_cookie),
        None,
        &[("status", "dismissed"), ("csrf", &csrf)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(db.audit_rows("raw_view").await.len(), 1);
}
