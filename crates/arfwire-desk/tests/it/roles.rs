//! S4: the database roles of the desk. The consumer's role writes the projection but cannot
//! delete, change the schema, rewrite the audit log or see tokens; the API's role cannot
//! read raw evidence.

use arfwire_desk::{ApplyOptions, RuleConfig, apply, erase, evaluate, retention, sync_config_rule};
use arfwire_events::{ConfidenceV1, Pseudonymizer};
use sqlx::Executor;
use sqlx::postgres::PgPoolOptions;

use crate::alerts::report;
use crate::support::{TestDb, at};

/// A pool of `db` whose every connection acts as `role`.
async fn pool_as(db: &TestDb, role: &'static str) -> sqlx::PgPool {
    let options = db.pool.connect_options().as_ref().clone();
    PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(sqlx::AssertSqlSafe(format!("SET ROLE {role}")))
                    .await
                    .map(|_| ())
            })
        })
        .connect_with(options)
        .await
        .expect("pool")
}

fn denied(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> bool {
    matches!(result, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501"))
}

#[tokio::test]
async fn the_ingest_role_writes_the_projection_and_nothing_else() {
    let db = TestDb::new().await;
    let ingest = pool_as(&db, "arfwire_desk_ingest").await;
    let base = at("2024-05-01T10:00:00Z");
    // Everything the consumer and the jobs do works under the role.
    sync_config_rule(
        &ingest,
        Some(&RuleConfig {
            threshold: 2,
            ..RuleConfig::default()
        }),
    )
    .await
    .expect("rule");
    let mut tx = ingest.begin().await.expect("begin");
    for n in 0..3 {
        apply(
            &mut tx,
            &report(n, "contoso", ConfidenceV1::High, base),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply as ingest");
    }
    tx.commit().await.expect("commit");
    let fired = evaluate(&ingest, base).await.expect("evaluate as ingest");
    assert_eq!(fired.fired.len(), 1);
    retention(&ingest, at("2030-01-01T00:00:00Z"))
        .await
        .expect("retention as ingest");
    erase(
        &ingest,
        "person1@example.org",
        &Pseudonymizer::development(),
        "dpo",
        base,
    )
    .await
    .expect("erasure as ingest");

    // What it may not do.
    assert!(denied(
        sqlx::query("DELETE FROM reports").execute(&ingest).await
    ));
    assert!(denied(
        sqlx::query("TRUNCATE clusters").execute(&ingest).await
    ));
    assert!(denied(
        sqlx::query("DROP TABLE reports").execute(&ingest).await
    ));
    assert!(denied(
        sqlx::query("ALTER TABLE reports ADD COLUMN x int")
            .execute(&ingest)
            .await
    ));
    assert!(denied(
        sqlx::query("SELECT * FROM api_tokens")
            .execute(&ingest)
            .await
    ));
    assert!(denied(
        sqlx::query("SELECT * FROM audit_log")
            .execute(&ingest)
            .await
    ));
    assert!(denied(
        sqlx::query("CREATE TABLE t (x int)").execute(&ingest).await
    ));
    // The audit log is append-only for everyone, owner included.
    let update = sqlx::query("UPDATE audit_log SET actor = 'x'")
        .execute(&db.pool)
        .await;
    assert!(denied(update));
}

#[tokio::test]
async fn the_api_role_cannot_read_raw_evidence() {
    let db = TestDb::new().await;
    let base = at("2024-05-01T10:00:00Z");
    db.apply_all(&[report(1, "contoso", ConfidenceV1::High, base)])
        .await;
    sqlx::query("UPDATE submissions SET raw = '\\x41'::bytea")
        .execute(&db.pool)
        .await
        .expect("raw");
    let api = pool_as(&db, "arfwire_desk_api").await;
    assert!(denied(
        sqlx::query("SELECT raw FROM submissions")
            .execute(&api)
            .await
    ));
    assert!(denied(
        sqlx::query("SELECT * FROM submissions").execute(&api).await
    ));
    assert!(denied(
        sqlx::query("DELETE FROM reports").execute(&api).await
    ));
    assert!(denied(
        sqlx::query("UPDATE reports SET subject = 'x'")
            .execute(&api)
            .await
    ));
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM reports r JOIN submissions s USING (raw_sha256) \
         WHERE s.raw_deleted_at IS NULL",
    )
    .fetch_one(&api)
    .await
    .expect("metadata is readable");
    assert_eq!(n, 1);
    // Triage works, and is audited by the trigger.
    sqlx::query("UPDATE reports SET status = 'investigating', status_changed_by = 'alice'")
        .execute(&api)
        .await
        .expect("status change");
    let (actor, new): (String, String) =
        sqlx::query_as("SELECT actor, new_value FROM audit_log WHERE action = 'report_status'")
            .fetch_one(&api)
            .await
            .expect("audit row");
    assert_eq!((actor.as_str(), new.as_str()), ("alice", "investigating"));

    let raw = pool_as(&db, "arfwire_desk_raw").await;
    let (bytes,): (Vec<u8>,) = sqlx::query_as("SELECT raw FROM submissions")
        .fetch_one(&raw)
        .await
        .expect("the raw role reads raw");
    assert_eq!(bytes, b"A");
}
