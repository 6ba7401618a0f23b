//! End to end from the front door to the abuse desk, with the built binary:
//!
//! ```text
//! LMTP client ──► arfwire lmtp ──► raw ──► arfwire worker ──► events / rejected
//!  (this test)                                                      │
//!                     arfwire desk serve ◄── PostgreSQL ◄── arfwire desk consume
//!                     (API and pages, polled by this test)
//! ```
//!
//! Five reports go in (the three Exchange fixtures, Contoso twice, and two ARF reports
//! nobody is attributed for); the leaderboard must list them grouped by tenant within
//! seconds of the last `250`, both in the JSON API and in the signed-in page.
//!
//! The broker comes from `KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`) and PostgreSQL from
//! `DATABASE_URL`; `scripts/services.sh up` starts both. Without them the test fails, it
//! never skips. Topics, consumer groups and the database are the test's own; the database
//! is dropped at the end.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::*;

/// The tenants of the Exchange fixtures (fixtures/exchange/tenants.toml).
const CONTOSO: (&str, &str) = (
    "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f",
    "Contoso Parcel Service",
);
const FABRIKAM: (&str, &str) = ("c4d5e6f7-8a9b-4cde-8f01-23456789abcd", "Fabrikam Offers");
const NORTHWIND: (&str, &str) = ("1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b", "Northwind Traders");
/// The pseudonym key of the worker and the desk.
const PSEUDONYM_KEY: &str = arfwire_events::DEVELOPMENT_KEY_HEX;
/// How soon after the last accepted report the leaderboard must show everything.
const FRESHNESS: Duration = Duration::from_secs(20);
/// The whole test must finish within this.
const BUDGET: Duration = Duration::from_secs(90);

/// An HTTP/1.1 response: status, headers (names lower-cased) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`), read to the end.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut stream =
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect("connect to the desk");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn form_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn reports_reach_the_desk_leaderboard_within_seconds_grouped_by_tenant() {
    let started = Instant::now();
    let bootstrap = bootstrap();
    let suffix = format!(
        "d{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let db = format!("arfwire_desk_pipeline_{}", suffix.replace('-', "_"));
    admin_sql(format!("CREATE DATABASE {db}")).unwrap_or_else(|e| panic!("{e}"));
    let result =
        std::panic::catch_unwind(|| pipeline(&bootstrap, &suffix, &database_url(&db), started));
    let _ = admin_sql(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}

fn pipeline(bootstrap: &str, suffix: &str, db_url: &str, started: Instant) {
    let deadline = started + BUDGET;
    let dir = tempfile::tempdir().expect("temp dir");
    run(
        arfwire().args([
            "tenants",
            "--database-url",
            db_url,
            "import",
            "fixtures/exchange/tenants.toml",
        ]),
        "arfwire tenants import",
    );
    run(
        arfwire().args(["desk", "--database-url", db_url, "migrate"]),
        "arfwire desk migrate",
    );
    let out = run(
        arfwire().args([
            "desk",
            "--database-url",
            db_url,
            "token",
            "create",
            "--role",
            "viewer",
            "--expires-in",
            "1h",
            "--name",
            "desk-pipeline-test",
        ]),
        "arfwire desk token create",
    );
    let token = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    assert!(!token.is_empty(), "no token printed");

    let lmtp_port = free_port();
    let desk_port = free_port();
    let kafka = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
client_id = "arfwire-desk-pipeline-test"
produce_timeout_ms = 15000
auto_commit_interval_ms = 500
group_id = "arfwire-desk-pipeline-{suffix}"
event_source = "urn:arfwire:desk-pipeline-test"

[kafka.topics]
raw = "abuse.raw.v1.{suffix}"
events = "abuse.events.v1.{suffix}"
rejected = "abuse.rejected.v1.{suffix}"
dlq = "abuse.dlq.v1.{suffix}"
"#
    );
    let profile = workspace().join("fixtures/exchange/profile.toml");
    let config = dir.path().join("arfwire.toml");
    std::fs::write(
        &config,
        format!(
            r#"{kafka}
[lmtp]
listen = "127.0.0.1:{lmtp_port}"
hostname = "ingest.provider.example"
recipients = ["{RCPT}"]
shutdown_grace_ms = 5000

[worker]
profile = "{profile}"
tenants = {{ source = "database" }}
directory_refresh_secs = 1
lag_interval_secs = 1
shutdown_grace_secs = 5

[database]
url_env = "ARFWIRE_DESK_PIPELINE_TEST_DB"

[log]
format = "json"
filter = "info"
"#,
            profile = profile.display(),
        ),
    )
    .expect("service config written");
    // The desk's own file: its own consumer group, no alerts (they would go to a shared
    // topic).
    let desk_config = dir.path().join("desk.toml");
    std::fs::write(
        &desk_config,
        format!(
            r#"development = true

[consumer]
group_id = "arfwire-desk-store-{suffix}"
batch_wait_ms = 50

[alerts]
enabled = false
{kafka}"#
        ),
    )
    .expect("desk config written");
    let config_arg = config.to_str().expect("UTF-8 path").to_owned();
    let desk_config_arg = desk_config.to_str().expect("UTF-8 path").to_owned();

    run(
        arfwire().args([
            "topics",
            "create",
            "--partitions",
            "2",
            "--replication",
            "1",
            "--config",
            &config_arg,
        ]),
        "arfwire topics create",
    );

    let mut services = vec![
        (
            "lmtp",
            Service::start(
                "lmtp",
                {
                    let mut c = arfwire();
                    c.args([
                        "lmtp",
                        "--config",
                        &config_arg,
                        "--metrics-listen",
                        "127.0.0.1:0",
                    ]);
                    c
                },
                dir.path(),
            ),
        ),
        (
            "worker",
            Service::start(
                "worker",
                {
                    let mut c = arfwire();
                    c.args(["worker", "--config", &config_arg])
                        .env("ARFWIRE_DESK_PIPELINE_TEST_DB", db_url)
                        .env("ARFWIRE_PSEUDONYM_KEY", PSEUDONYM_KEY);
                    c
                },
                dir.path(),
            ),
        ),
        (
            "desk consume",
            Service::start(
                "desk-consume",
                {
                    let mut c = arfwire();
                    c.args([
                        "desk",
                        "--database-url",
                        db_url,
                        "consume",
                        "--config",
                        &desk_config_arg,
                    ])
                    .env("ARFWIRE_PSEUDONYM_KEY", PSEUDONYM_KEY);
                    c
                },
                dir.path(),
            ),
        ),
        (
            "desk serve",
            Service::start(
                "desk-serve",
                {
                    let mut c = arfwire();
                    c.args([
                        "desk",
                        "--database-url",
                        db_url,
                        "serve",
                        "--listen",
                        &format!("127.0.0.1:{desk_port}"),
                        "--insecure-cookie",
                        "--no-metrics",
                    ]);
                    c
                },
                dir.path(),
            ),
        ),
    ];
    let logs = |services: &[(&str, Service)]| -> String {
        services
            .iter()
            .map(|(name, s)| format!("--- {name} ---\n{}", s.log()))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Contoso twice (a second, distinct submission: one more header line, so other bytes
    // and another event id), Fabrikam, Northwind, and two unattributed ARF reports.
    let contoso = fixture_crlf("exchange/001-connector-contoso.eml");
    let mut contoso_again = b"X-Resubmitted: second copy\r\n".to_vec();
    contoso_again.extend_from_slice(&contoso);
    let fixtures = [
        contoso,
        fixture_crlf("exchange/002-relay-connector-fabrikam.eml"),
        fixture_crlf("arf/001-rfc5965-every-field.eml"),
        fixture_crlf("exchange/003-hosted-mailbox-northwind.eml"),
        contoso_again,
        fixture_crlf("arf/002-ipv6-source-uncompressed.eml"),
    ];
    let mut client = Lmtp::connect(SocketAddr::from(([127, 0, 0, 1], lmtp_port)), deadline);
    client.command("LHLO test.example.org", "250");
    for message in &fixtures {
        client.deliver(message);
    }
    let last_accepted = Instant::now();
    client.command("QUIT", "221");

    // Poll the leaderboard until every tenant has its count.
    let desk = SocketAddr::from(([127, 0, 0, 1], desk_port));
    let bearer = format!("Bearer {token}");
    let expected = [(CONTOSO, 2), (FABRIKAM, 1), (NORTHWIND, 1)];
    let mut last_seen = String::from("(no answer yet)");
    let board = loop {
        let elapsed = last_accepted.elapsed();
        assert!(
            elapsed < FRESHNESS,
            "the leaderboard did not show every report within {FRESHNESS:?} of the last 250; \
             last answer: {last_seen}\n{}",
            logs(&services)
        );
        for (_, service) in &mut services {
            service.assert_running();
        }
        if TcpStream::connect_timeout(&desk, Duration::from_millis(500)).is_ok() {
            let response = http(
                desk,
                "GET",
                "/api/v1/tenants?window=24h",
                &[("Authorization", &bearer)],
                "",
            );
            assert_eq!(response.status, 200, "leaderboard: {}", response.body);
            let board: Value = serde_json::from_str(&response.body).expect("leaderboard JSON");
            let count = |id: &str| {
                board["tenants"]
                    .as_array()
                    .and_then(|rows| rows.iter().find(|r| r["tenant_id"] == id))
                    .and_then(|r| r["reports"].as_i64())
                    .unwrap_or(0)
            };
            let complete =
                expected.iter().all(|((id, _), n)| count(id) >= *n) && count("unattributed") >= 2;
            last_seen = response.body;
            if complete {
                break board;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let delay = last_accepted.elapsed();
    println!("the desk showed every report {delay:?} after the last 250");

    // Exactly the expected counts, each under its tenant's name.
    assert_eq!(board["window"], "24h", "{board:#}");
    assert_eq!(board["total_reports"], 6, "{board:#}");
    assert_eq!(
        board["total"], 4,
        "three tenants and unattributed: {board:#}"
    );
    let rows = board["tenants"].as_array().expect("rows");
    for ((id, name), reports) in expected {
        let row = rows
            .iter()
            .find(|r| r["tenant_id"] == id)
            .unwrap_or_else(|| panic!("{name} missing: {board:#}"));
        assert_eq!(row["reports"], reports, "{name}: {row:#}");
        assert_eq!(row["tenant_name"], name, "{row:#}");
    }
    let unattributed = rows
        .iter()
        .find(|r| r["tenant_id"] == "unattributed")
        .expect("unattributed row");
    assert_eq!(unattributed["reports"], 2, "{unattributed:#}");

    // The pages: sign in with the token, then the leaderboard page names every tenant.
    let anonymous = http(desk, "GET", "/", &[], "");
    assert!(
        (300..400).contains(&anonymous.status)
            && anonymous
                .header("location")
                .is_some_and(|l| l.starts_with("/login")),
        "the page needs a session: {} {:?}",
        anonymous.status,
        anonymous.headers
    );
    let login = http(
        desk,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("next=%2F&token={}", form_value(&token)),
    );
    assert!(
        (300..400).contains(&login.status),
        "sign-in: {} {}",
        login.status,
        login.body
    );
    let cookie = login
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .filter(|c| c.starts_with("arfwire_desk=") && c.len() > "arfwire_desk=".len())
        .unwrap_or_else(|| panic!("no session cookie: {:?}", login.headers))
        .to_owned();
    let page = http(desk, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.headers
    );
    for (_, name) in [CONTOSO, FABRIKAM, NORTHWIND] {
        assert!(
            page.body.contains(name),
            "{name} not on the page:\n{}",
            page.body
        );
    }
    assert!(started.elapsed() < BUDGET, "took {:?}", started.elapsed());
}
