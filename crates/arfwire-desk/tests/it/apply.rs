//! `apply`: idempotence, clusters, hostile text.

use arfwire_desk::{Applied, ApplyOptions, apply, apply_raw};
use arfwire_events::{Output, Pseudonymizer};
use arfwire_raw::{Channel, RawSubmission};

use crate::support::{TestDb, derive_bytes, derive_file, events, received_at, workspace_root};

fn forward_fixture() -> Vec<u8> {
    std::fs::read(workspace_root().join("fixtures/forward/001-rfc822-attachment.eml"))
        .expect("fixture")
}

/// The fixture with its outer Date changed: other bytes (another submission), the same
/// reported message.
fn copy(n: usize) -> Vec<u8> {
    let text = String::from_utf8(forward_fixture()).expect("utf-8 fixture");
    text.replacen(
        "Date: Mon, 25 Mar 2024 09:41:12 +0100",
        &format!(
            "Date: Mon, 25 Mar 2024 09:41:12 +0100{}X-Copy: {n}",
            eol(&text)
        ),
        1,
    )
    .into_bytes()
}

fn eol(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

#[tokio::test]
async fn the_same_event_twice_is_one_row() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let derived = derive_file(
        &workspace_root().join("fixtures/arf/001-rfc5965-every-field.eml"),
        &p,
        None,
    );
    assert_eq!(db.apply_all(&derived.outputs).await, [Applied::Inserted]);
    assert_eq!(db.apply_all(&derived.outputs).await, [Applied::Duplicate]);
    // Twice within one transaction too.
    let twice = [derived.outputs.clone(), derived.outputs.clone()].concat();
    assert_eq!(
        db.apply_all(&twice).await,
        [Applied::Duplicate, Applied::Duplicate]
    );
    assert_eq!(db.count("SELECT count(*) FROM reports").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM submissions").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM clusters").await, 1);
    assert_eq!(
        db.count("SELECT sum(report_count)::bigint FROM clusters")
            .await,
        1
    );

    // The row carries the event's facts.
    let row: (
        String,
        Option<String>,
        String,
        Option<String>,
        Option<i64>,
        String,
        String,
    ) = sqlx::query_as(
        "SELECT kind, feedback_type, complaint_type, reporter_domain, incidents, \
                    complainant_token, host(source_ip) FROM reports",
    )
    .fetch_one(&db.pool)
    .await
    .expect("row");
    assert_eq!(row.0, "arf");
    assert_eq!(row.1.as_deref(), Some("abuse"));
    assert_eq!(row.2, "abuse");
    assert_eq!(row.3.as_deref(), Some("feedback.example.org"));
    assert_eq!(row.4, Some(3));
    assert_eq!(row.5, p.token("user.one@feedback.example.org"));
    assert_eq!(row.6, "192.0.2.45");
    let (incidents,): (i64,) = sqlx::query_as("SELECT incident_count FROM clusters")
        .fetch_one(&db.pool)
        .await
        .expect("cluster");
    assert_eq!(
        incidents, 1,
        "Incidents above 1 count only from T1 reporters"
    );
}

#[tokio::test]
async fn fifty_copies_of_one_complaint_are_one_cluster_of_fifty() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let copies: Vec<Output> = (0..50)
        .flat_map(|n| derive_bytes(&copy(n), received_at(), &p, None).outputs)
        .collect();
    assert_eq!(copies.len(), 50);
    let ids: std::collections::BTreeSet<&str> = copies.iter().map(Output::event_id).collect();
    assert_eq!(ids.len(), 50, "50 submissions, 50 events");
    let message_ids: std::collections::BTreeSet<_> = events(&copies)
        .iter()
        .map(|e| e.reported_message.message_id.clone())
        .collect();
    assert_eq!(message_ids.len(), 1, "one reported message");

    db.apply_all(&copies).await;
    // A replay of every copy changes nothing.
    assert!(
        db.apply_all(&copies)
            .await
            .iter()
            .all(|a| *a == Applied::Duplicate)
    );
    assert_eq!(db.count("SELECT count(*) FROM reports").await, 50);
    assert_eq!(db.count("SELECT count(*) FROM clusters").await, 1);
    let (kind, count, reporters, complainants): (String, i64, i64, i64) = sqlx::query_as(
        "SELECT key_kind, report_count, distinct_reporters, distinct_complainants FROM clusters",
    )
    .fetch_one(&db.pool)
    .await
    .expect("cluster");
    assert_eq!((kind.as_str(), count), ("message_id", 50));
    // One person forwarded it fifty times.
    assert_eq!((reporters, complainants), (1, 1));
    assert_eq!(
        db.count("SELECT count(DISTINCT cluster_id) FROM reports WHERE cluster_id IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn injection_strings_in_the_subject_are_data() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let hostile = [
        "'; DROP TABLE reports; --",
        "Robert'); DELETE FROM clusters WHERE ('1'='1",
        "\\'; SELECT pg_sleep(10); --",
        "$1 $$ $body$ E'\\x00' /* */",
    ];
    let mut all = Vec::new();
    for (n, subject) in hostile.iter().enumerate() {
        let text = String::from_utf8(forward_fixture()).expect("utf-8");
        let raw = text.replace(
            "Subject: Congratulations, you are our lucky winner",
            &format!("Subject: {subject}{}X-Copy: {n}", eol(&text)),
        );
        let derived = derive_bytes(raw.as_bytes(), received_at(), &p, None);
        let event = events(&derived.outputs)[0];
        assert_eq!(event.reported_message.subject.as_deref(), Some(*subject));
        all.extend(derived.outputs);
    }
    db.apply_all(&all).await;
    let stored: Vec<(String,)> = sqlx::query_as("SELECT subject FROM reports ORDER BY subject")
        .fetch_all(&db.pool)
        .await
        .expect("subjects");
    let mut expected: Vec<&str> = hostile.to_vec();
    expected.sort_unstable();
    assert_eq!(
        stored.iter().map(|(s,)| s.as_str()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(db.count("SELECT count(*) FROM reports").await, 4);
    // Filtering on the payload is an exact match, not code.
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM reports WHERE subject = $1")
        .bind(hostile[0])
        .fetch_one(&db.pool)
        .await
        .expect("filter");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn nul_never_reaches_a_text_column() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let derived = derive_bytes(&copy(1), received_at(), &p, None);
    // A producer that did not clean its text: NUL in the subject, a key and a diagnostic.
    let mut json = derived.outputs[0].to_json();
    json["reported_message"]["subject"] = "win\u{0}big".into();
    json["feedback"] = serde_json::Value::Null;
    json["reporter"]["subject"] = "Fwd:\u{0}".into();
    json["diagnostics"] = serde_json::json!([]);
    let output = Output::from_json(&json.to_string()).expect("still a record");
    assert!(output.to_json_line().contains("\\u0000"));
    db.apply_all(&[output]).await;
    let (subject, event_subject): (String, String) =
        sqlx::query_as("SELECT subject, event #>> '{reported_message,subject}' FROM reports")
            .fetch_one(&db.pool)
            .await
            .expect("row");
    assert_eq!(subject, "win\u{FFFD}big");
    assert_eq!(event_subject, "win\u{FFFD}big");

    // Raw bytes keep their NUL: bytea.
    let raw = RawSubmission::new(
        b"Subject: a\0b\r\n\r\nbody\0".to_vec(),
        Channel::Smtp,
        received_at(),
    );
    let mut tx = db.pool.begin().await.expect("begin");
    assert_eq!(
        apply_raw(&mut tx, &raw, &ApplyOptions::default())
            .await
            .expect("raw"),
        Applied::Inserted
    );
    assert_eq!(
        apply_raw(&mut tx, &raw, &ApplyOptions::default())
            .await
            .expect("raw"),
        Applied::Duplicate
    );
    tx.commit().await.expect("commit");
    let (bytes,): (Vec<u8>,) = sqlx::query_as("SELECT raw FROM submissions WHERE raw_sha256 = $1")
        .bind(raw.sha256_hex())
        .fetch_one(&db.pool)
        .await
        .expect("raw row");
    assert_eq!(bytes, raw.bytes);
}

#[tokio::test]
async fn raw_evidence_joins_its_events_in_either_order() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let bytes = copy(7);
    let derived = derive_bytes(&bytes, received_at(), &p, None);
    // Event first: a submission row without bytes.
    db.apply_all(&derived.outputs).await;
    let (has_raw, retain_days): (bool, f64) = sqlx::query_as(
        "SELECT raw IS NOT NULL, (extract(epoch FROM retain_until - received_at) / 86400)::float8 \
         FROM submissions",
    )
    .fetch_one(&db.pool)
    .await
    .expect("row");
    assert!(!has_raw);
    assert_eq!(retain_days, 90.0);
    // Then the raw record fills it in.
    let raw = RawSubmission::new(bytes, Channel::Lmtp, received_at());
    let mut tx = db.pool.begin().await.expect("begin");
    assert_eq!(
        apply_raw(&mut tx, &raw, &ApplyOptions::default())
            .await
            .expect("raw"),
        Applied::Inserted
    );
    tx.commit().await.expect("commit");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM reports r JOIN submissions s USING (raw_sha256) \
             WHERE s.raw IS NOT NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn records_whose_ids_do_not_match_their_bytes_are_refused() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let derived = derive_bytes(&copy(3), received_at(), &p, None);
    let mut json = derived.outputs[0].to_json();
    json["event_id"] = "00000000-0000-8000-8000-000000000000".into();
    let forged = Output::from_json(&json.to_string()).expect("record");
    let mut tx = db.pool.begin().await.expect("begin");
    let error = apply(&mut tx, &forged, &ApplyOptions::default())
        .await
        .expect_err("refused");
    assert!(error.is_data_error(), "{error}");
    drop(tx);
    assert_eq!(db.count("SELECT count(*) FROM reports").await, 0);
}
