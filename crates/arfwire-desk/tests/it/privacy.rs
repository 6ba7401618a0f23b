//! P9: no plaintext complainant address outside the raw evidence; retention; erasure.

use arfwire_desk::{ApplyOptions, apply_raw, erase, retention};
use arfwire_events::Pseudonymizer;
use arfwire_raw::{Channel, RawSubmission};

use crate::support::{
    Attributor, Derived, TestDb, at, derive_bytes, derive_file, fixture_files, names, received_at,
};

/// Every fixture, attributed, stored with its raw bytes.
async fn store_fixtures(db: &TestDb, p: &Pseudonymizer) -> Vec<Derived> {
    let attributor = Attributor::exchange();
    let derived: Vec<Derived> = fixture_files()
        .iter()
        .map(|path| derive_file(path, p, Some(&attributor)))
        .collect();
    let outputs: Vec<_> = derived.iter().flat_map(|d| d.outputs.clone()).collect();
    db.apply_all(&outputs).await;
    let mut tx = db.pool.begin().await.expect("begin");
    for d in &derived {
        let raw = RawSubmission::new(d.raw.clone(), Channel::Lmtp, received_at());
        apply_raw(&mut tx, &raw, &ApplyOptions::default())
            .await
            .expect("raw");
    }
    tx.commit().await.expect("commit");
    derived
}

/// Every raw submission still held, as lower-case text.
async fn raw_text(db: &TestDb) -> String {
    let rows: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT raw FROM submissions WHERE raw IS NOT NULL")
        .fetch_all(&db.pool)
        .await
        .expect("raw");
    rows.iter()
        .map(|(raw,)| String::from_utf8_lossy(raw).to_lowercase())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every row of the tables the API reads, as lower-case JSON text.
async fn table_text(db: &TestDb) -> String {
    let mut text = String::new();
    for sql in [
        "SELECT coalesce(string_agg(row_to_json(r)::text, E'\\n'), '') FROM reports r",
        "SELECT coalesce(string_agg(row_to_json(r)::text, E'\\n'), '') FROM rejections r",
        "SELECT coalesce(string_agg(row_to_json(c)::text, E'\\n'), '') FROM clusters c",
        "SELECT coalesce(string_agg(row_to_json(c)::text, E'\\n'), '') FROM cluster_reporters c",
        "SELECT coalesce(string_agg(row_to_json(a)::text, E'\\n'), '') FROM audit_log a",
    ] {
        let (rows,): (String,) = sqlx::query_as(sql).fetch_one(&db.pool).await.expect(sql);
        text.push_str(&rows.to_lowercase());
        text.push('\n');
    }
    text
}

#[tokio::test]
async fn no_complainant_address_outside_the_raw_evidence() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let derived = store_fixtures(&db, &p).await;
    let addresses: std::collections::BTreeSet<String> = derived
        .iter()
        .flat_map(|d| d.complainants.iter().cloned())
        .filter(|a| a.contains('@'))
        .collect();
    assert!(
        addresses.len() >= 20,
        "only {} complainant addresses",
        addresses.len()
    );
    assert!(addresses.contains("robin.reporter@example.org"));
    assert!(addresses.contains("user.one@feedback.example.org"));

    // The published payloads.
    let payloads: String = derived
        .iter()
        .flat_map(|d| d.outputs.iter().map(|o| o.to_json_line().to_lowercase()))
        .collect::<Vec<_>>()
        .join("\n");
    // The tables the API reads.
    let tables = table_text(&db).await;
    for address in &addresses {
        assert!(
            !names(&payloads, address),
            "{address} in a published record"
        );
        assert!(!names(&tables, address), "{address} in the desk tables");
    }
    // The evidence itself still names them: the test looks in the right places.
    assert!(names(&raw_text(&db).await, "robin.reporter@example.org"));
    // Tokens correlate: Robin's forwards share one token.
    let robin = p.token("robin.reporter@example.org");
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM reports WHERE complainant_tokens @> ARRAY[$1]")
            .bind(&robin)
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert!(n >= 1);
}

#[tokio::test]
async fn retention_deletes_raw_past_its_date_and_keeps_reports() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let old = received_at();
    let recent = at("2024-07-15T00:00:00Z");
    let mut outputs = Vec::new();
    let mut raws = Vec::new();
    let mut tx = db.pool.begin().await.expect("begin");
    for (n, when) in [(1, old), (2, old), (3, recent)] {
        let raw = format!(
            "From: Person {n} <person{n}@example.org>\nTo: junk@hosted.example.net\n\
             Subject: Fwd: spam {n}\nMIME-Version: 1.0\nContent-Type: text/plain\n\n\
             ---------- Forwarded message ---------\nFrom: Spam <spam@sender.example>\n\
             Date: Mon, 1 Apr 2024 10:00:00 +0000\nSubject: Spam {n}\nTo: <person{n}@example.org>\n\
             Message-ID: <spam-{n}@sender.example>\n\nBuy now.\n"
        );
        let derived = derive_bytes(raw.as_bytes(), when, &p, None);
        outputs.extend(derived.outputs);
        let raw = RawSubmission::new(raw.into_bytes(), Channel::Smtp, when);
        apply_raw(&mut tx, &raw, &ApplyOptions::default())
            .await
            .expect("raw");
        raws.push(raw);
    }
    tx.commit().await.expect("commit");
    db.apply_all(&outputs).await;
    assert_eq!(
        db.count("SELECT count(*) FROM submissions WHERE raw IS NOT NULL")
            .await,
        3
    );
    let reports_before = db.count("SELECT count(*) FROM reports").await;

    // 89 days after the old ones: nothing is due.
    let report = retention(&db.pool, at("2024-07-29T11:00:00Z"))
        .await
        .expect("retention");
    assert_eq!(report.raw_deleted, 0);
    // 90 days after: the two old ones go.
    let report = retention(&db.pool, at("2024-07-30T12:00:00Z"))
        .await
        .expect("retention");
    assert_eq!(report.raw_deleted, 2, "{report}");
    assert!(report.bytes_deleted > 0);
    assert_eq!(
        db.count("SELECT count(*) FROM submissions WHERE raw IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM submissions WHERE raw_deleted_reason = 'retention'")
            .await,
        2
    );
    // Reports and clusters stay.
    assert_eq!(
        db.count("SELECT count(*) FROM reports").await,
        reports_before
    );
    assert_eq!(
        db.count("SELECT sum(report_count)::bigint FROM clusters")
            .await,
        reports_before
    );
    // Deleted bytes never come back from a replay of the raw topic.
    let mut tx = db.pool.begin().await.expect("begin");
    for raw in &raws {
        apply_raw(&mut tx, raw, &ApplyOptions::default())
            .await
            .expect("replay");
    }
    tx.commit().await.expect("commit");
    assert_eq!(
        db.count("SELECT count(*) FROM submissions WHERE raw IS NOT NULL")
            .await,
        1
    );
    let again = retention(&db.pool, at("2024-07-30T12:00:00Z"))
        .await
        .expect("retention");
    assert_eq!(again.raw_deleted, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM audit_log WHERE action = 'retention'")
            .await,
        3
    );
}

#[tokio::test]
async fn erasure_removes_one_complainant_and_keeps_counts() {
    let db = TestDb::new().await;
    let p = Pseudonymizer::development();
    let derived = store_fixtures(&db, &p).await;
    let robin = "robin.reporter@example.org";
    let token = p.token(robin);
    let robin_reports: i64 = {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM reports WHERE complainant_tokens @> ARRAY[$1]")
                .bind(&token)
                .fetch_one(&db.pool)
                .await
                .expect("count");
        n
    };
    assert!(robin_reports >= 1);
    // An analyst wrote the address into a note.
    sqlx::query(
        "INSERT INTO report_notes (event_id, author, body) \
         SELECT event_id, 'analyst', 'Called ROBIN.Reporter@example.org about it' FROM reports \
         WHERE complainant_tokens @> ARRAY[$1] LIMIT 1",
    )
    .bind(&token)
    .execute(&db.pool)
    .await
    .expect("note");
    let counts = |sql: &'static str| db.count(sql);
    let reports = counts("SELECT count(*) FROM reports").await;
    let clustered = counts("SELECT sum(report_count)::bigint FROM clusters").await;
    let reporters = counts("SELECT sum(distinct_reporters)::bigint FROM clusters").await;
    let raw_before = counts("SELECT count(*) FROM submissions WHERE raw IS NOT NULL").await;

    let report = erase(
        &db.pool,
        " <Robin.Reporter@Example.org> ",
        &p,
        "dpo",
        at("2024-06-01T00:00:00Z"),
    )
    .await
    .expect("erasure");
    assert_eq!(report.token, token);
    assert_eq!(report.reports, u64::try_from(robin_reports).unwrap());
    assert!(report.raw_deleted >= 1, "{report}");
    assert_eq!(report.notes, 1);
    assert!(report.to_string().contains("raw submissions deleted"));

    // Nothing names or links Robin any more...
    let tables = table_text(&db).await;
    assert!(!tables.contains(&token), "the token survived");
    assert!(!names(&tables, robin));
    let (notes,): (String,) = sqlx::query_as("SELECT string_agg(body, '') FROM report_notes")
        .fetch_one(&db.pool)
        .await
        .expect("notes");
    assert_eq!(notes, "Called [erased] about it");
    assert_eq!(
        counts("SELECT count(*) FROM reports WHERE complainant_token = 'erased'").await,
        robin_reports
    );
    // ...their raw evidence is gone...
    assert_eq!(
        counts("SELECT count(*) FROM submissions WHERE raw IS NOT NULL").await,
        raw_before - i64::try_from(report.raw_deleted).unwrap()
    );
    assert!(!names(&raw_text(&db).await, robin));
    // ...and every count stays.
    assert_eq!(counts("SELECT count(*) FROM reports").await, reports);
    assert_eq!(
        counts("SELECT sum(report_count)::bigint FROM clusters").await,
        clustered
    );
    assert_eq!(
        counts("SELECT sum(distinct_reporters)::bigint FROM clusters").await,
        reporters
    );
    // Others are untouched.
    let other = p.token("user.one@feedback.example.org");
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM reports WHERE complainant_tokens @> ARRAY[$1]")
            .bind(&other)
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert!(n >= 1);
    // A replay of Robin's raw record does not bring the bytes back.
    let robin_raw = derived
        .iter()
        .find(|d| d.complainants.iter().any(|a| a == robin))
        .expect("a submission of Robin's");
    let mut tx = db.pool.begin().await.expect("begin");
    apply_raw(
        &mut tx,
        &RawSubmission::new(robin_raw.raw.clone(), Channel::Lmtp, received_at()),
        &ApplyOptions::default(),
    )
    .await
    .expect("raw");
    tx.commit().await.expect("commit");
    assert!(!names(&raw_text(&db).await, robin));
    assert_eq!(
        counts("SELECT count(*) FROM audit_log WHERE action = 'erasure' AND actor = 'dpo'").await,
        1
    );
}
