//! The desk in a real browser: headless Chromium driven over WebDriver (chromedriver, with the
//! fantoccini client) signs in, clicks leaderboard → tenant → report, checks what a person
//! sees, changes the report's status through the form, and takes a screenshot of each page.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`apt-get install -y chromium
//! chromium-driver`); without them the test fails and says so. `CHROMEDRIVER` and
//! `CHROMIUM` override where they are looked for. Screenshots go to a temporary directory, or
//! to `$ARFWIRE_DESK_SCREENSHOTS` when set (kept for a person to look at).

mod common;

use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arfwire_desk_api::Role;
use chrono::Duration as Span;
use common::{Seed, TestDb, now};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const XSS_SUBJECT: &str = "<script>window.xssRan = true; document.title = 'pwned'</script><img src=x onerror=\"window.xssRan = true\">Parcel notice";

fn find_program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    for candidate in candidates {
        let path = Path::new(candidate);
        if path.is_absolute() {
            if path.exists() {
                return Some(path.to_owned());
            }
        } else if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let full = dir.join(candidate);
                if full.exists() {
                    return Some(full);
                }
            }
        }
    }
    None
}

fn missing(what: &str) -> ! {
    panic!(
        "{what} not found: the browser test needs headless Chromium and its WebDriver. \
         Install them with `apt-get install -y chromium chromium-driver` (Debian), or set \
         CHROMIUM and CHROMEDRIVER to their paths."
    )
}

/// chromedriver in a process group of its own; the whole group (Chromium included) is killed
/// when this is dropped, also when the test fails or times out.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Driver { child, port }
    }

    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Shots {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Shots {
    fn new() -> Shots {
        match std::env::var_os("ARFWIRE_DESK_SCREENSHOTS") {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                std::fs::create_dir_all(&dir).expect("screenshot directory");
                Shots { dir, _temp: None }
            }
            None => {
                let temp = tempfile::tempdir().expect("temporary directory");
                Shots {
                    dir: temp.path().to_owned(),
                    _temp: Some(temp),
                }
            }
        }
    }

    async fn take(&self, client: &Client, name: &str) {
        let png = client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        assert!(
            png.len() > 10_000,
            "{name}: the screenshot is not blank ({} bytes)",
            png.len()
        );
        let path = self.dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        eprintln!("screenshot: {}", path.display());
    }
}

async fn seed(db: &TestDb) -> String {
    let events = common::exchange_events();
    let raws = common::exchange_raw();
    // Many complaints about Contoso over the month, fewer about the others.
    let spread = [(0usize, 14usize), (1, 6), (2, 3)];
    for (which, count) in spread {
        for i in 0..count {
            let mut seed = Seed::from_event(
                &events[which],
                raws[which],
                now() - Span::hours(3 + (i as i64) * 47),
            );
            if i > 0 {
                seed.event_id = uuid::Uuid::new_v4().to_string();
                seed.raw = Some([raws[which], format!("\r\nX-Copy: {i}\r\n").as_bytes()].concat());
            }
            seed.insert(&db.pool).await;
        }
    }
    // The hostile one: Contoso's real attribution with a script in its subject.
    let mut hostile = Seed::from_event(&events[0], raws[0], now() - Span::minutes(30));
    hostile.event_id = uuid::Uuid::new_v4().to_string();
    hostile.raw = Some([raws[0], b"\r\nX-Copy: hostile\r\n".as_slice()].concat());
    hostile.subject = Some(XSS_SUBJECT.to_owned());
    hostile.insert(&db.pool).await
}

async fn text_of(client: &Client, css: &str) -> String {
    // A click starts a navigation that may replace the page between finding an element and
    // reading it (a stale element): find it again, a bounded number of times.
    let mut last_error = None;
    for _ in 0..50 {
        let element = client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match element.text().await {
            Ok(text) => return text,
            Err(error) => {
                last_error = Some(error);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("element text of {css}: {last_error:?}")
}

async fn body_text(client: &Client) -> String {
    text_of(client, "body").await
}

async fn no_script_ran(client: &Client) {
    let probe = client
        .execute(
            "return [document.title, typeof window.xssRan, document.scripts.length];",
            vec![],
        )
        .await
        .expect("probe");
    let title = probe[0].as_str().unwrap_or("");
    assert!(
        title.ends_with(" · arfwire abuse desk"),
        "the title was replaced: {title}"
    );
    assert_eq!(probe[1], "undefined", "a script from the report ran");
    assert_eq!(probe[2], 0, "the page has no script element");
    assert!(client.get_alert_text().await.is_err(), "no alert is open");
}

async fn click_through(db: &TestDb, shots: &Shots) {
    let chromedriver = find_program("CHROMEDRIVER", &["chromedriver", "/usr/bin/chromedriver"])
        .unwrap_or_else(|| missing("chromedriver"));
    let chromium = find_program(
        "CHROMIUM",
        &["/usr/lib/chromium/chromium", "chromium", "chromium-browser"],
    )
    .unwrap_or_else(|| missing("chromium"));

    let hostile_id = seed(db).await;
    let token = db.token(Role::Analyst, "browser-analyst").await;
    let state = db.state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(arfwire_desk_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));

    let driver = Driver::start(&chromedriver);
    driver.ready().await;
    let profile = tempfile::tempdir().expect("profile directory");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1360,2200",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session with Chromium");
    client
        .update_timeouts(TimeoutConfiguration::new(
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(15)),
            Some(Duration::ZERO),
        ))
        .await
        .expect("timeouts");

    // Sign in: the leaderboard sends an unauthenticated browser to the login form.
    client
        .goto(&format!("{base}/?window=30d"))
        .await
        .expect("open the desk");
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), "/login", "{url}");
    client
        .find(Locator::Id("token"))
        .await
        .expect("token field")
        .send_keys(&token)
        .await
        .expect("type the token");
    client
        .find(Locator::Id("signin"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");

    // Leaderboard.
    assert_eq!(text_of(&client, "h1").await, "Tenants by complaints");
    let text = body_text(&client).await;
    for name in [
        "Contoso Parcel Service",
        "Fabrikam Offers",
        "Northwind Traders",
    ] {
        assert!(text.contains(name), "the leaderboard shows {name}:\n{text}");
    }
    assert!(text.contains("24 reports from 3 tenants"), "{text}");
    let first = text_of(&client, "table.board tbody tr td.tenant a").await;
    assert_eq!(first, "Contoso Parcel Service", "most reported first");
    no_script_ran(&client).await;
    shots.take(&client, "1-leaderboard").await;

    // Tenant.
    client
        .find(Locator::LinkText("Contoso Parcel Service"))
        .await
        .expect("tenant link")
        .click()
        .await
        .expect("open the tenant");
    assert_eq!(
        text_of(&client, "h1.tenant-name").await,
        "Contoso Parcel Service"
    );
    let bars = client
        .find_all(Locator::Css("svg.chart rect.bar"))
        .await
        .expect("chart bars");
    assert_eq!(bars.len(), 30, "one bar per day");
    let drawn: Value = client
        .execute(
            "return Array.from(document.querySelectorAll('svg.chart rect.bar'))\
                 .filter(r => r.getBBox().height > 0).length;",
            vec![],
        )
        .await
        .expect("bar heights");
    assert!(drawn.as_u64().unwrap_or(0) >= 10, "bars are drawn: {drawn}");
    let text = body_text(&client).await;
    assert!(text.contains("Reports per day"), "{text}");
    assert!(text.contains("198.51.100.171"), "the egress IP is listed");
    assert!(
        text.contains(XSS_SUBJECT),
        "the hostile subject shows as text"
    );
    no_script_ran(&client).await;
    shots.take(&client, "2-tenant").await;

    // Report: the hostile one.
    let link = client
        .find(Locator::Css(&format!("a[href=\"/reports/{hostile_id}\"]")))
        .await
        .expect("report link");
    link.click().await.expect("open the report");
    assert_eq!(text_of(&client, "h1.subject").await, XSS_SUBJECT);
    assert_eq!(
        client.title().await.expect("title"),
        format!("{XSS_SUBJECT} · arfwire abuse desk"),
        "the subject is the title's text, not markup"
    );
    let explanation = text_of(&client, "ol.explain").await;
    assert!(
        explanation.contains("egress hop") && explanation.contains("Contoso Parcel Service"),
        "{explanation}"
    );
    let text = body_text(&client).await;
    assert!(text.contains("Why this tenant"), "{text}");
    assert!(text.contains("HIGH"), "{text}");
    let evidence = client
        .find_all(Locator::Css("table.evidence tbody tr"))
        .await
        .expect("evidence rows");
    assert!(evidence.len() >= 10, "the evidence table lists every item");
    no_script_ran(&client).await;
    shots.take(&client, "3-report").await;

    // Change the status through the form (cookie session + CSRF value, in a real browser).
    client
        .find(Locator::Css("form.status select[name=status]"))
        .await
        .expect("status select")
        .select_by_value("investigating")
        .await
        .expect("choose a status");
    client
        .find(Locator::Css("form.status textarea[name=note]"))
        .await
        .expect("note field")
        .send_keys("Looked at it in the browser test")
        .await
        .expect("type a note");
    client
        .find(Locator::Css("form.status button[type=submit]"))
        .await
        .expect("save button")
        .click()
        .await
        .expect("save");
    assert_eq!(
        text_of(&client, "p.notice").await,
        "Status updated. changed 1."
    );
    let triage = text_of(&client, "#triage").await;
    assert!(
        triage.contains("Looked at it in the browser test"),
        "{triage}"
    );
    shots.take(&client, "4-report-after-status-change").await;
    let status: String = sqlx::query_scalar("SELECT status FROM reports WHERE event_id = $1::uuid")
        .bind(&hostile_id)
        .fetch_one(&db.pool)
        .await
        .expect("status");
    assert_eq!(status, "investigating");
    let audit = db.audit_rows("report_status").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "browser-analyst");

    client.close().await.expect("close the session");
    drop(driver);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_clicks_leaderboard_tenant_report() {
    let db = TestDb::new().await;
    let shots = Shots::new();
    tokio::time::timeout(Duration::from_secs(55), click_through(&db, &shots))
        .await
        .expect("the browser walk finishes within 55 s");
}
