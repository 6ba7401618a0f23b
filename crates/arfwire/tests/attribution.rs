//! The attribution wiring of the CLI: `explain`, `process --profile --tenants`, and the
//! PostgreSQL-backed directory (`tenants import`, `--tenants postgres://...`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn arfwire(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_arfwire"))
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run arfwire");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const PROFILE: &str = "fixtures/exchange/profile.toml";
const TENANTS: &str = "fixtures/exchange/tenants.toml";

#[test]
fn explain_names_the_tenant_and_connecting_ip_with_high_confidence() {
    let (ok, out, err) = arfwire(&[
        "explain",
        "fixtures/exchange/001-connector-contoso.eml",
        "--profile",
        PROFILE,
        "--tenants",
        TENANTS,
    ]);
    assert!(ok, "explain failed: {err}");
    let tenant_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Sending tenant"))
        .unwrap_or_else(|| panic!("no tenant line in:\n{out}"));
    assert!(tenant_line.contains("Contoso Parcel Service"), "{out}");
    assert!(
        tenant_line.contains("HIGH") || tenant_line.contains("CONFIRMED"),
        "{out}"
    );
    let ingress = out
        .lines()
        .find(|l| l.trim_start().starts_with("Ingress IP"))
        .unwrap_or_else(|| panic!("no ingress line in:\n{out}"));
    assert!(ingress.contains("203.0.113.40"), "{out}");
    assert!(out.contains("anchored"), "the explanation says why:\n{out}");
}

#[test]
fn process_fills_attribution_and_keys_events_by_tenant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("events.jsonl");
    let (ok, _, err) = arfwire(&[
        "process",
        "fixtures/exchange",
        "--profile",
        PROFILE,
        "--tenants",
        TENANTS,
        "--no-progress",
        "--out",
        out_path.to_str().expect("utf-8 path"),
    ]);
    assert!(ok, "process failed: {err}");
    let text = std::fs::read_to_string(&out_path).expect("events written");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("schemas/abuse-event.v1.json")).expect("schema"),
    )
    .expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let mut tenants = Vec::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        if event["schema"] != "arfwire.abuse-event.v1" {
            continue;
        }
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "event breaks the schema: {errors:?}");
        let tenant = event["attribution"]["sending_tenant"]["id"]
            .as_str()
            .unwrap_or("-")
            .to_owned();
        tenants.push(tenant);
    }
    tenants.sort();
    assert_eq!(
        tenants,
        vec![
            "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b",
            "6b1f2e3d-4c5a-4e7b-9d8c-1a2b3c4d5e6f",
            "c4d5e6f7-8a9b-4cde-8f01-23456789abcd"
        ]
    );
}

fn database_url(db: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned());
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => base,
    }
}

#[test]
fn tenants_import_then_explain_from_postgres() {
    // A database of our own, dropped at the end.
    let db = format!("arfwire_cli_{}", std::process::id());
    let admin = database_url("postgres");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {admin} ({e}); run scripts/services.sh up")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .expect("create database");
    });
    let url = database_url(&db);
    let result = std::panic::catch_unwind(|| {
        let (ok, out, err) = arfwire(&["tenants", "--database-url", &url, "import", TENANTS]);
        assert!(ok, "import failed: {err}");
        assert!(out.contains("tenants +3"), "{out}");
        let (ok, out, err) = arfwire(&[
            "explain",
            "fixtures/exchange/002-relay-connector-fabrikam.eml",
            "--profile",
            PROFILE,
            "--tenants",
            &url,
        ]);
        assert!(ok, "explain failed: {err}");
        assert!(out.contains("Fabrikam Offers"), "{out}");
    });
    runtime.block_on(async {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    });
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
