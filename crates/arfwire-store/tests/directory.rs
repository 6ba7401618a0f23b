//! The directory store against a real PostgreSQL server.
//!
//! The server comes from `DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`). Each test creates its own database
//! and drops it afterwards, also when the test fails, so tests run in parallel and leave
//! nothing behind. An unreachable server fails the tests: start it with `scripts/services.sh up`.

use std::net::IpAddr;
use std::time::Duration;

use arfwire_attribution::DirectorySnapshot;
use arfwire_attribution::directory::{AcceptedDomain, Connector, ConnectorKind, parse_time};
use arfwire_store::testing::TestDatabase;
use arfwire_store::{
    DirectoryFormat, DirectoryHandle, ImportMode, MIGRATOR, Store, StoreError, parse_csv, read_file,
};

const TD: &str = include_str!("../../../fixtures/attribution/directory/td.toml");

const AMD: &str = "3dd8961f-e488-4e60-8e11-a82d994e183d";
const CONTOSO: &str = "00000000-0000-4000-8000-00000000c0de";
const FABRIKAM: &str = "00000000-0000-4000-8000-0000000fab01";

/// A database of its own for one test (see [`TestDatabase`]), with the store over it.
struct TestDb {
    store: Store,
    _db: TestDatabase,
}

impl TestDb {
    async fn new() -> TestDb {
        let db = TestDatabase::create("arfwire_store_test", 4).await;
        TestDb {
            store: Store::from_pool(db.pool().clone()),
            _db: db,
        }
    }

    async fn migrated() -> TestDb {
        let db = TestDb::new().await;
        db.store.migrate().await.expect("migrations apply");
        db
    }
}

fn td() -> DirectorySnapshot {
    DirectorySnapshot::from_toml(TD).unwrap_or_else(|e| panic!("TD fixture: {e}"))
}

fn ts(text: &str) -> Option<i64> {
    Some(parse_time(text).expect("test time").timestamp())
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .fetch_one(db.store.pool())
        .await
        .expect("count query");
    n
}

#[tokio::test]
async fn migrate_twice_is_idempotent() {
    let db = TestDb::new().await;
    db.store.migrate().await.expect("first migration");
    db.store
        .migrate()
        .await
        .expect("second migration is a no-op");
    let applied = count(&db, "SELECT count(*) FROM _sqlx_migrations WHERE success").await;
    assert_eq!(
        applied,
        i64::try_from(MIGRATOR.iter().count()).unwrap_or(-1)
    );
    for table in [
        "SELECT count(*) FROM tenants",
        "SELECT count(*) FROM tenant_domains",
        "SELECT count(*) FROM tenant_dkim_selectors",
        "SELECT count(*) FROM tenant_dedicated_ips",
        "SELECT count(*) FROM tenant_connectors",
    ] {
        assert_eq!(count(&db, table).await, 0);
    }
    assert_eq!(db.store.directory_version().await.expect("version"), 0);
    assert!(db.store.load_directory().await.expect("loads").is_empty());
}

#[tokio::test]
async fn td_fixture_round_trips() {
    let db = TestDb::migrated().await;
    let td = td();
    let report = db
        .store
        .import_directory(&td, ImportMode::Replace)
        .await
        .expect("import");
    assert_eq!(report.tenants.inserted, 14);
    assert_eq!(report.domains.inserted, td.domains().len());
    assert_eq!(report.dkim_selectors.inserted, 4);
    assert_eq!(report.dedicated_ips.inserted, 2);
    assert_eq!(report.connectors.inserted, 6);
    assert_eq!(report.version_before, 0);
    assert!(report.version_after > 0);
    // One import is one change of version, however many tables it touched.
    assert_eq!(report.version_after, 1);

    let (version, loaded) = db.store.load_directory_versioned().await.expect("load");
    assert_eq!(version, report.version_after);
    assert_eq!(loaded, td);

    // Importing the same directory again changes nothing, not even the version.
    let again = db
        .store
        .import_directory(&td, ImportMode::Replace)
        .await
        .expect("re-import");
    assert!(!again.changed(), "{again}");
    assert_eq!(again.tenants.unchanged, 14);
    assert_eq!(again.version_after, version);
}

#[tokio::test]
async fn effective_dated_lookups_through_the_loaded_snapshot() {
    let db = TestDb::migrated().await;
    db.store
        .import_directory(&td(), ImportMode::Replace)
        .await
        .expect("import");
    let loaded = db.store.load_directory().await.expect("load");

    let tenants = |d: &str, at| loaded.domain_tenants(d, at);
    assert_eq!(tenants("woodgrove.com", ts("2024-02-01")), vec![FABRIKAM]);
    assert_eq!(tenants("woodgrove.com", ts("2024-03-01")), vec![CONTOSO]);
    assert_eq!(
        tenants("litware.com", ts("2024-06-10")),
        vec![CONTOSO, FABRIKAM]
    );
    assert_eq!(tenants("a.b.tailspintoys.com", None), vec![FABRIKAM]);
    assert!(tenants("mail.amd.com", None).is_empty());

    assert_eq!(
        loaded
            .by_dkim("contoso.com", "selector2", ts("2023-06-01"))
            .len(),
        1
    );
    assert!(
        loaded
            .by_dkim("contoso.com", "selector2", ts("2024-06-01"))
            .is_empty()
    );

    let amd = loaded.connectors_for_ip(ip("165.204.84.17"), ts("2025-01-01"));
    assert_eq!(amd.len(), 1);
    assert_eq!(amd[0].tenant_id, AMD);
    assert!(amd[0].exclusive);
    assert_eq!(
        loaded
            .by_initial_domain("amdcloud.onmicrosoft.com")
            .map(|t| t.id.as_str()),
        Some(AMD)
    );
    assert_eq!(
        loaded.dedicated_ip(ip("2001:db8:c0de:e000::1"), ts("2024-06-01"))[0].tenant_id,
        CONTOSO
    );
    assert!(loaded.is_shared("84df9e7f-e9f6-40af-b435-aaaaaaaaaaaa"));
}

#[tokio::test]
async fn merge_updates_and_adds_while_replace_also_removes() {
    let db = TestDb::migrated().await;
    db.store
        .import_directory(&td(), ImportMode::Replace)
        .await
        .expect("import");

    // A partial file: rename CONTOSO, close contoso.com at a date, add a new domain.
    let partial = r#"
        [[tenants]]
        id = "00000000-0000-4000-8000-00000000c0de"
        display_name = "Contoso Ltd"
        initial_domain = "contoso.onmicrosoft.com"
        [[domains]]
        tenant_id = "00000000-0000-4000-8000-00000000c0de"
        domain = "contoso.com"
        valid_to = "2025-01-01T00:00:00Z"
        [[domains]]
        tenant_id = "00000000-0000-4000-8000-00000000c0de"
        domain = "contoso.net"
        valid_from = "2025-01-01T00:00:00Z"
    "#;
    let report = db
        .store
        .import_toml(partial, ImportMode::Merge)
        .await
        .expect("merge");
    assert_eq!(report.tenants.updated, 1, "{report}");
    assert_eq!(report.domains.updated, 1, "{report}");
    assert_eq!(report.domains.inserted, 1, "{report}");
    assert_eq!(report.tenants.deleted + report.domains.deleted, 0);
    let merged = db.store.load_directory().await.expect("load");
    assert_eq!(merged.tenants().len(), 14, "merge keeps the other tenants");
    assert_eq!(
        merged.tenant(CONTOSO).map(|t| t.display_name.as_str()),
        Some("Contoso Ltd")
    );
    assert_eq!(
        merged.domain_tenants("contoso.com", ts("2024-12-31")),
        vec![CONTOSO]
    );
    assert!(
        merged
            .domain_tenants("contoso.com", ts("2025-01-01"))
            .is_empty()
    );
    assert_eq!(
        merged.domain_tenants("contoso.net", ts("2025-01-01")),
        vec![CONTOSO]
    );
    assert_eq!(merged.domain_tenants("amd.com", None), vec![AMD]);
    assert_eq!(merged.connectors().len(), 6);

    // The same file as a replacement leaves only what it lists.
    let report = db
        .store
        .import_toml(partial, ImportMode::Replace)
        .await
        .expect("replace");
    assert_eq!(report.tenants.deleted, 13, "{report}");
    assert_eq!(report.tenants.unchanged, 1, "{report}");
    assert_eq!(report.connectors.deleted, 6, "{report}");
    assert_eq!(report.dkim_selectors.deleted, 4, "{report}");
    assert_eq!(report.dedicated_ips.deleted, 2, "{report}");
    let replaced = db.store.load_directory().await.expect("load");
    assert_eq!(
        replaced,
        DirectorySnapshot::from_toml(partial).expect("valid")
    );
    assert_eq!(count(&db, "SELECT count(*) FROM tenant_domains").await, 2);
}

#[tokio::test]
async fn merged_result_is_validated_and_nothing_is_written_on_error() {
    let db = TestDb::migrated().await;
    db.store
        .import_directory(&td(), ImportMode::Replace)
        .await
        .expect("import");
    let version = db.store.directory_version().await.expect("version");
    // FABRIKAM claims AMD's exclusive connector address.
    let clash = r#"
        [[tenants]]
        id = "00000000-0000-4000-8000-0000000fab01"
        display_name = "FABRIKAM"
        [[connectors]]
        tenant_id = "00000000-0000-4000-8000-0000000fab01"
        kind = "partner"
        sender_ips = ["165.204.84.0/24"]
    "#;
    let error = db
        .store
        .import_toml(clash, ImportMode::Merge)
        .await
        .expect_err("overlaps an exclusive connector");
    assert!(matches!(error, StoreError::InvalidDirectory(_)), "{error}");
    assert!(error.to_string().contains("165.204.84.17/32"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(
        db.store.directory_version().await.expect("version"),
        version
    );
    assert_eq!(db.store.load_directory().await.expect("load"), td());
}

#[tokio::test]
async fn csv_import_reports_lines_and_keeps_implied_tenant_fields() {
    let bad = "tenant_id,display_name,kind,value,valid_from\n\
               t1,One,domain,one.test,\n\
               t1,One,domian,two.test,\n\
               t1,One,domain,three.test,last tuesday\n";
    let db = TestDb::migrated().await;
    let error = db
        .store
        .import_csv(bad, ImportMode::Merge)
        .await
        .expect_err("bad CSV");
    let text = error.to_string();
    assert!(text.contains("line 3: unknown kind \"domian\""), "{text}");
    assert!(text.contains("line 4: valid_from"), "{text}");
    assert!(!text.contains("line 2"), "{text}");
    assert_eq!(db.store.directory_version().await.expect("version"), 0);

    db.store
        .import_directory(&td(), ImportMode::Replace)
        .await
        .expect("import");
    // Rows naming CONTOSO without a tenant row: its initial domain and name stay as stored.
    let csv = "tenant_id,kind,value,valid_from,include_subdomains\n\
               00000000-0000-4000-8000-00000000c0de,domain,northwind.test,2025-02-01,true\n";
    let report = db
        .store
        .import_csv(csv, ImportMode::Merge)
        .await
        .expect("CSV merge");
    assert_eq!(report.tenants.unchanged, 1, "{report}");
    assert_eq!(report.domains.inserted, 1, "{report}");
    let loaded = db.store.load_directory().await.expect("load");
    let contoso = loaded.tenant(CONTOSO).expect("still there");
    assert_eq!(contoso.display_name, "CONTOSO");
    assert_eq!(
        contoso.initial_domain.as_deref(),
        Some("contoso.onmicrosoft.com")
    );
    assert_eq!(
        loaded.domain_tenants("mx.northwind.test", ts("2025-03-01")),
        vec![CONTOSO]
    );
    assert!(
        loaded
            .domain_tenants("northwind.test", ts("2025-01-01"))
            .is_empty()
    );
}

#[tokio::test]
async fn files_are_read_by_extension() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let td = td();

    let json_path = dir.path().join("td.JSON");
    std::fs::write(&json_path, serde_json::to_string_pretty(&td).expect("json")).expect("write");
    assert_eq!(
        DirectoryFormat::from_path(&json_path),
        Some(DirectoryFormat::Json)
    );
    assert_eq!(read_file(&json_path).expect("json reads").snapshot, td);

    let toml_path = dir.path().join("td.toml");
    std::fs::write(&toml_path, TD).expect("write");
    let report = db
        .store
        .import_file(&toml_path, ImportMode::Replace)
        .await
        .expect("toml import");
    assert_eq!(report.tenants.inserted, 14);
    let report = db
        .store
        .import_file(&json_path, ImportMode::Replace)
        .await
        .expect("json import");
    assert!(
        !report.changed(),
        "JSON and TOML describe the same directory: {report}"
    );

    let csv_path = dir.path().join("extra.csv");
    std::fs::write(
        &csv_path,
        "tenant_id,display_name,kind\nnew-tenant,New,tenant\n",
    )
    .expect("write");
    let report = db
        .store
        .import_file(&csv_path, ImportMode::Merge)
        .await
        .expect("csv import");
    assert_eq!(report.tenants.inserted, 1);

    let error = db
        .store
        .import_file(&dir.path().join("td.yaml"), ImportMode::Merge)
        .await
        .expect_err("unknown extension");
    assert!(matches!(error, StoreError::UnknownFormat { .. }), "{error}");
    let error = read_file(&dir.path().join("missing.csv")).expect_err("missing file");
    assert!(matches!(error, StoreError::Io { .. }), "{error}");
}

#[tokio::test]
async fn refresh_task_picks_up_changes_within_a_bounded_wait() {
    let db = TestDb::migrated().await;
    db.store
        .import_directory(&td(), ImportMode::Replace)
        .await
        .expect("import");
    let handle = DirectoryHandle::load(&db.store)
        .await
        .expect("initial load");
    assert_eq!(handle.version(), 1);
    assert!(
        handle
            .current()
            .domain_tenants("fresh.test", None)
            .is_empty()
    );
    let mut changes = handle.subscribe();
    let task = handle.spawn_refresh(db.store.clone(), Duration::from_millis(50));

    // A change through the importer...
    let csv = "tenant_id,kind,value\n00000000-0000-4000-8000-0000000fab01,domain,fresh.test\n";
    db.store
        .import_csv(csv, ImportMode::Merge)
        .await
        .expect("merge");
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("refreshed within 10 s")
        .expect("handle alive");
    assert_eq!(
        handle.current().domain_tenants("fresh.test", None),
        vec![FABRIKAM]
    );

    // ... and one made with plain SQL: the triggers bump the version.
    let before = handle.version();
    sqlx::query("UPDATE tenants SET display_name = $1 WHERE id = $2")
        .bind("Fabrikam Inc")
        .bind(FABRIKAM)
        .execute(db.store.pool())
        .await
        .expect("update");
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("refreshed within 10 s")
        .expect("handle alive");
    assert!(handle.version() > before);
    assert_eq!(
        handle
            .current()
            .tenant(FABRIKAM)
            .map(|t| t.display_name.clone()),
        Some("Fabrikam Inc".to_owned())
    );

    // The task ends on its own once every handle is gone.
    drop(changes);
    drop(handle);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("task ends after the handles are dropped")
        .expect("task did not panic");
}

#[tokio::test]
async fn sql_injection_strings_are_stored_as_data() {
    let db = TestDb::migrated().await;
    let hostile_id = "x'); DROP TABLE tenants; --";
    let hostile_name = "Robert'); DROP TABLE tenant_domains;-- \\ \" $1 $$ ;";
    let hostile_party = "'; TRUNCATE tenant_connectors; SELECT '";
    let text = format!(
        "[[tenants]]\nid = {hostile_id:?}\ndisplay_name = {hostile_name:?}\n\
         [[domains]]\ntenant_id = {hostile_id:?}\ndomain = \"quoted.test\"\n\
         [[dkim_selectors]]\ntenant_id = {hostile_id:?}\ndomain = \"quoted.test\"\n\
         selector = \"s1\"\nkey_fingerprint = {hostile_name:?}\n\
         [[connectors]]\ntenant_id = {hostile_id:?}\nkind = \"partner\"\n\
         sender_ips = [\"192.0.2.0/24\"]\nthird_party = {hostile_party:?}\n"
    );
    let snapshot = DirectorySnapshot::from_toml(&text).expect("valid directory");
    db.store
        .import_directory(&snapshot, ImportMode::Replace)
        .await
        .expect("import");
    let loaded = db.store.load_directory().await.expect("load");
    assert_eq!(loaded, snapshot);
    let tenant = loaded.tenant(hostile_id).expect("stored as given");
    assert_eq!(tenant.display_name, hostile_name);
    assert_eq!(
        loaded.connectors()[0].third_party.as_deref(),
        Some(hostile_party)
    );
    for table in [
        "SELECT count(*) FROM tenants",
        "SELECT count(*) FROM tenant_domains",
        "SELECT count(*) FROM tenant_connectors",
    ] {
        assert_eq!(count(&db, table).await, 1, "{table}");
    }
    // And through CSV.
    let csv = format!(
        "tenant_id,display_name,kind,value\n\"{}\",\"{}\",domain,csv.test\n",
        hostile_id,
        hostile_name.replace('"', "\"\"")
    );
    let import = parse_csv(&csv).expect("CSV parses");
    db.store
        .import(&import, ImportMode::Merge)
        .await
        .expect("CSV import");
    let loaded = db.store.load_directory().await.expect("load");
    assert_eq!(loaded.domain_tenants("csv.test", None), vec![hostile_id]);
    assert_eq!(count(&db, "SELECT count(*) FROM tenant_domains").await, 2);
}

#[tokio::test]
async fn large_directory_imports_in_bulk() {
    // 20k tenants with a domain and a connector each: set-based statements, not row by row.
    let db = TestDb::migrated().await;
    let n = 20_000u32;
    let mut data = arfwire_attribution::directory::DirectoryData::default();
    for i in 0..n {
        let id = format!("bulk-{i}");
        data.tenants.push(arfwire_attribution::directory::Tenant {
            id: id.clone(),
            display_name: format!("Bulk {i}"),
            initial_domain: Some(format!("bulk{i}.onmicrosoft.test")),
            shared: false,
            status: Default::default(),
        });
        data.domains.push(AcceptedDomain {
            tenant_id: id.clone(),
            domain: format!("bulk{i}.test"),
            include_subdomains: false,
            valid_from: None,
            valid_to: None,
        });
        data.connectors.push(Connector {
            tenant_id: id,
            kind: ConnectorKind::OnPremises,
            sender_ips: vec![
                format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff)
                    .parse()
                    .expect("range"),
            ],
            tls_cert_domains: vec![format!("mx.bulk{i}.test")],
            exclusive: true,
            third_party: None,
            valid_from: None,
            valid_to: None,
        });
    }
    let snapshot = DirectorySnapshot::new(data).expect("valid");
    let started = std::time::Instant::now();
    let report = db
        .store
        .import_directory(&snapshot, ImportMode::Replace)
        .await
        .expect("bulk import");
    assert_eq!(report.tenants.inserted, 20_000);
    assert_eq!(report.connectors.inserted, 20_000);
    let loaded = db.store.load_directory().await.expect("load");
    assert_eq!(loaded, snapshot);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "import and load took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens there.
    let error = Store::connect("postgres://postgres:postgres@127.0.0.1:1/postgres")
        .await
        .expect_err("nothing listens on port 1");
    assert!(error.is_retryable(), "{error:?}");
}
