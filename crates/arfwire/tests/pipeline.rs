//! End to end through the real broker and PostgreSQL, with the built binary:
//!
//! ```text
//! LMTP client ──► arfwire lmtp ──► raw topic ──► arfwire worker ──► events / rejected ──► arfwire tail
//!  (this test)    (child process)                (child process,       topics             (child process)
//!                                                 directory in PG)
//! ```
//!
//! A fourth submission goes through `arfwire maildir`. Then `arfwire replay` publishes
//! everything again with the same ids and bytes, and SIGTERM stops every service cleanly.
//!
//! The broker comes from `KAFKA_BOOTSTRAP` (default `127.0.0.1:9092`) and PostgreSQL from
//! `DATABASE_URL`; `scripts/services.sh up` starts both. Without them the test fails, it
//! never skips. Topics, the consumer group and the database are the test's own; the
//! database is dropped at the end.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::*;

/// The tenant the Contoso fixture is attributed to (fixtures/exchange/tenants.toml).
const CONTOSO: &str = "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f";
/// The pseudonym key of the worker and the replay: the same key, so the replay writes
/// byte-identical records.
const PSEUDONYM_KEY: &str = arfwire_events::DEVELOPMENT_KEY_HEX;
/// The whole test must finish within this.
const BUDGET: Duration = Duration::from_secs(60);

/// Read `count` records of a topic with `arfwire tail`, as JSON objects.
fn tail(config: &Path, topic: &str, count: usize) -> Vec<Value> {
    let out = run(
        arfwire().args([
            "tail",
            "--config",
            config.to_str().unwrap(),
            "--topic",
            topic,
            "--from-beginning",
            "--count",
            &count.to_string(),
            "--idle-exit",
            "25",
        ]),
        "arfwire tail",
    );
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(records.len(), count, "{topic}: {records:#?}");
    records
}

fn scrape(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect("metrics");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("metrics response");
    text
}

#[test]
fn reports_over_lmtp_come_out_as_attributed_events() {
    let started = Instant::now();
    let bootstrap = bootstrap();
    let suffix = format!(
        "p{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let db = format!("arfwire_pipeline_{}", suffix.replace('-', "_"));
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

    let lmtp_port = free_port();
    let metrics_port = free_port();
    let config = dir.path().join("arfwire.toml");
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("Maildir");
    }
    let profile = workspace().join("fixtures/exchange/profile.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
client_id = "arfwire-pipeline-test"
produce_timeout_ms = 15000
auto_commit_interval_ms = 500
group_id = "arfwire-pipeline-{suffix}"
event_source = "urn:arfwire:pipeline-test"

[kafka.topics]
raw = "abuse.raw.v1.{suffix}"
events = "abuse.events.v1.{suffix}"
rejected = "abuse.rejected.v1.{suffix}"
dlq = "abuse.dlq.v1.{suffix}"

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

[maildir]
path = "{maildir}"
poll_interval_secs = 0.2

[database]
url_env = "ARFWIRE_PIPELINE_TEST_DB"

[metrics]
listen = "127.0.0.1:{metrics_port}"

[log]
format = "json"
filter = "info"
"#,
            profile = profile.display(),
            maildir = maildir.display()
        ),
    )
    .expect("config written");
    let config_arg = config.to_str().expect("UTF-8 path").to_owned();

    let out = run(
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
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches(": created")
            .count(),
        4,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let mut lmtp = Service::start(
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
    );
    let mut worker = Service::start(
        "worker",
        {
            let mut c = arfwire();
            c.args(["worker", "--config", &config_arg])
                .env("ARFWIRE_PIPELINE_TEST_DB", db_url)
                .env("ARFWIRE_PSEUDONYM_KEY", PSEUDONYM_KEY);
            c
        },
        dir.path(),
    );

    // Three reports: attributed to Contoso, an ARF report, and a bounce (a rejection).
    let fixtures = [
        fixture_crlf("exchange/001-connector-contoso.eml"),
        fixture_crlf("arf/001-rfc5965-every-field.eml"),
        fixture_crlf("negative/001-dsn-with-rfc822-headers.eml"),
    ];
    let address = SocketAddr::from(([127, 0, 0, 1], lmtp_port));
    let mut client = Lmtp::connect(address, deadline);
    client.command("LHLO test.example.org", "250");
    for message in &fixtures {
        client.deliver(message);
    }
    client.command("QUIT", "221");
    let shas: Vec<String> = fixtures
        .iter()
        .map(|m| arfwire_raw::sha256_hex(m))
        .collect();

    // A fourth submission through the Maildir watcher: ordinary mail, so a rejection.
    let ordinary = std::fs::read(workspace().join("fixtures/negative/009-ordinary-mail.eml"))
        .expect("fixture");
    std::fs::write(maildir.join("tmp/1.eml"), &ordinary).expect("write");
    std::fs::rename(maildir.join("tmp/1.eml"), maildir.join("new/1.eml")).expect("deliver");
    let mut watcher = Service::start(
        "maildir",
        {
            let mut c = arfwire();
            c.args([
                "maildir",
                "--config",
                &config_arg,
                "--metrics-listen",
                "127.0.0.1:0",
            ]);
            c
        },
        dir.path(),
    );
    while maildir.join("new/1.eml").exists() {
        assert!(
            Instant::now() < deadline,
            "the Maildir watcher never took the message:\n{}",
            watcher.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    watcher.stop(Duration::from_secs(15));
    assert_eq!(
        std::fs::read_dir(maildir.join("cur")).expect("cur").count(),
        1,
        "moved to cur/"
    );

    let events = tail(&config, "events", 2);
    let rejected = tail(&config, "rejected", 2);

    for record in &events {
        let value = &record["value"];
        let headers = &record["headers"];
        assert_eq!(value["schema"], "arfwire.abuse-event.v1");
        assert_eq!(headers["ce_specversion"], "1.0");
        assert_eq!(headers["ce_id"], value["event_id"]);
        assert_eq!(headers["ce_type"], "arfwire.abuse-event.v1");
        assert_eq!(headers["ce_source"], "urn:arfwire:pipeline-test");
        assert_eq!(headers["ce_time"], value["intake"]["received_at"]);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(value["intake"]["channel"], "lmtp");
        assert_eq!(value["intake"]["rcpt_to"][0], RCPT);
        let sha = value["intake"]["raw_sha256"].as_str().expect("sha");
        let index = value["report_index"].as_u64().expect("index") as usize;
        assert_eq!(
            value["event_id"].as_str(),
            Some(arfwire_events::event_id(sha, index).as_str()),
            "ids are derived from the bytes"
        );
        assert!(
            value["attribution"].is_object(),
            "attribution filled: {value}"
        );
        assert_eq!(value["reporter_trust"]["tier"], "T3");
        let tenant = value["attribution"]["sending_tenant"]["id"].as_str();
        let key = record["key"].as_str().expect("key");
        assert_eq!(
            key,
            tenant.unwrap_or("unattributed"),
            "key = tenant id or unattributed"
        );
    }
    let by_sha = |sha: &str| {
        events
            .iter()
            .find(|r| r["value"]["intake"]["raw_sha256"] == sha)
            .unwrap_or_else(|| panic!("no event for {sha}"))
    };
    let contoso = by_sha(&shas[0]);
    assert_eq!(
        contoso["key"], CONTOSO,
        "attributed from the PostgreSQL directory"
    );
    assert_eq!(
        contoso["value"]["attribution"]["sending_tenant"]["id"],
        CONTOSO
    );
    assert_eq!(by_sha(&shas[1])["key"], "unattributed");

    let rejected_by_sha = |sha: &str| {
        rejected
            .iter()
            .find(|r| r["value"]["intake"]["raw_sha256"] == sha)
            .unwrap_or_else(|| panic!("no rejection for {sha}"))
    };
    let from_maildir = rejected_by_sha(&arfwire_raw::sha256_hex(&ordinary));
    assert_eq!(from_maildir["value"]["intake"]["channel"], "maildir");
    assert_eq!(from_maildir["value"]["reason"], "ordinary_mail");
    let bounce = rejected_by_sha(&shas[2]);
    assert_eq!(bounce["value"]["schema"], "arfwire.rejected.v1");
    assert_eq!(bounce["value"]["category"], "not_report");
    assert_eq!(bounce["value"]["reason"], "bounce");
    assert_eq!(bounce["key"], bounce["value"]["submission_id"]);
    assert_eq!(bounce["headers"]["ce_type"], "arfwire.rejected.v1");

    // The worker's metrics saw the three submissions.
    let metrics = scrape(SocketAddr::from(([127, 0, 0, 1], metrics_port)));
    assert!(
        metrics.contains("arfwire_worker_submissions_consumed_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("arfwire_worker_events_published_total{kind="),
        "{metrics}"
    );

    // A replay of both partitions from their start publishes the same ids again.
    let out = run(
        arfwire()
            .args([
                "replay",
                "--config",
                &config_arg,
                "--from-offset",
                "0:0",
                "--from-offset",
                "1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .env("ARFWIRE_PIPELINE_TEST_DB", db_url)
            .env("ARFWIRE_PSEUDONYM_KEY", PSEUDONYM_KEY),
        "arfwire replay",
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("replayed 4 records: 2 events, 2 rejections, 0 dead-lettered"),
        "{summary}"
    );
    let twice = tail(&config, "events", 4);
    for record in &events {
        let id = &record["value"]["event_id"];
        let copies: Vec<&Value> = twice
            .iter()
            .filter(|r| &r["value"]["event_id"] == id)
            .collect();
        assert_eq!(copies.len(), 2, "{id} published twice");
        assert_eq!(
            copies[0]["value"], copies[1]["value"],
            "a replay publishes the same record"
        );
    }

    // SIGTERM: both stop cleanly, within their grace periods.
    worker.stop(Duration::from_secs(15));
    lmtp.stop(Duration::from_secs(15));
    let log = worker.log();
    assert!(log.contains("\"worker stopped\""), "{log}");
    for line in log.lines() {
        let entry: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("the worker logs JSON lines ({e}): {line}"));
        // Logs never carry addresses or content.
        assert!(!line.contains("reporter@example.org"), "{line}");
        assert!(!line.contains(RCPT), "{line}");
        assert!(entry.get("level").is_some(), "{line}");
    }
}
