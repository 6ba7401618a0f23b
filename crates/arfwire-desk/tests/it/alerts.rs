//! Threshold alerts with a fixed clock.

use arfwire_desk::{RuleConfig, evaluate, sync_config_rule};
use arfwire_events::{AttributionV1, ConfidenceV1, LogKeysV1, Output, Pseudonymizer, TenantRefV1};
use chrono::{DateTime, Duration, Utc};

use crate::support::{TestDb, at, derive_bytes};

/// A distinct reported message attributed to `tenant` with `confidence`, received at `when`.
pub(crate) fn report(
    n: usize,
    tenant: &str,
    confidence: ConfidenceV1,
    when: DateTime<Utc>,
) -> Output {
    let raw = format!(
        "From: Person <person{n}@example.org>\nTo: junk@hosted.example.net\n\
         Subject: Fwd: offer {n}\nMIME-Version: 1.0\nContent-Type: text/plain\n\n\
         ---------- Forwarded message ---------\nFrom: Shop <shop@{tenant}.example>\n\
         Date: Mon, 1 Apr 2024 10:00:00 +0000\nSubject: Offer {n}\nTo: <person{n}@example.org>\n\
         Message-ID: <offer-{n}@{tenant}.example>\n\nBuy now.\n"
    );
    let derived = derive_bytes(raw.as_bytes(), when, &Pseudonymizer::development(), None);
    let mut output = derived.outputs.into_iter().next().expect("one event");
    let Output::Event(event) = &mut output else {
        panic!("not an event: {output:?}");
    };
    event.attribution = Some(AttributionV1 {
        path_class: "provider_outbound".into(),
        provenance: "inline_quote".into(),
        sending_tenant: Some(TenantRefV1 {
            id: tenant.into(),
            name: Some(format!("{tenant} Ltd")),
        }),
        confidence,
        score: 0.8,
        sending_tenant_candidates: Vec::new(),
        recipient_tenant: None,
        impersonated_tenants: Vec::new(),
        egress_ip: None,
        reported_source_ip: None,
        ingress_ip: None,
        origin_ip: None,
        delivered_by_ip: None,
        origin_kind: "hosted_mailbox".into(),
        log_keys: LogKeysV1 {
            network_message_id: None,
            message_id: None,
            egress_ip: None,
            egress_port: None,
            egress_time: None,
        },
        flags: Vec::new(),
        evidence: Vec::new(),
        explanation: Vec::new(),
    });
    output
}

fn minutes(base: DateTime<Utc>, m: i64) -> DateTime<Utc> {
    base + Duration::minutes(m)
}

fn rule(threshold: u32, window_hours: u32, min_confidence: &str) -> RuleConfig {
    RuleConfig {
        threshold,
        window_hours,
        min_confidence: min_confidence.into(),
        complaint_types: None,
        clear_below: None,
    }
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(arfwire_desk::ALERT_SCHEMA_JSON).expect("schema is JSON");
    jsonschema::meta::validate(&schema).expect("a valid JSON Schema");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

#[tokio::test]
async fn a_burst_fires_one_alert_per_window() {
    let db = TestDb::new().await;
    let base = at("2024-05-01T10:00:00Z");
    sync_config_rule(&db.pool, Some(&rule(5, 1, "MEDIUM")))
        .await
        .expect("rule");
    // Four MEDIUM and three LOW: below the threshold.
    let mut batch: Vec<Output> = (0..4)
        .map(|n| report(n, "contoso", ConfidenceV1::Medium, minutes(base, n as i64)))
        .collect();
    batch.extend((10..13).map(|n| report(n, "contoso", ConfidenceV1::Low, minutes(base, 5))));
    db.apply_all(&batch).await;
    let first = evaluate(&db.pool, minutes(base, 10))
        .await
        .expect("evaluate");
    assert_eq!(first.rules, 1);
    assert!(first.fired.is_empty(), "{first:?}");

    // The fifth: one alert.
    db.apply_all(&[report(4, "contoso", ConfidenceV1::High, minutes(base, 5))])
        .await;
    let fired = evaluate(&db.pool, minutes(base, 10))
        .await
        .expect("evaluate");
    assert_eq!(fired.fired.len(), 1, "{fired:?}");
    assert_eq!(fired.fired[0].count, 5);
    assert_eq!(fired.fired[0].tenant_id, "contoso");
    // Evaluating again at the same time changes nothing (idempotent).
    let again = evaluate(&db.pool, minutes(base, 10))
        .await
        .expect("evaluate");
    assert!(again.fired.is_empty());
    assert_eq!(again.updated, 1);

    // Ten more within the window: still one alert, its counts move.
    let more: Vec<Output> = (20..30)
        .map(|n| {
            report(
                n,
                "contoso",
                ConfidenceV1::Medium,
                minutes(base, 11 + n as i64 - 20),
            )
        })
        .collect();
    db.apply_all(&more).await;
    let during = evaluate(&db.pool, minutes(base, 21))
        .await
        .expect("evaluate");
    assert!(during.fired.is_empty());
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 1);
    assert_eq!(
        db.count("SELECT peak_count FROM alerts").await,
        15,
        "peak of 5 + 10 within the hour"
    );
    // An hour on, the ten are still in the window: above the clear level (2), unresolved.
    let still = evaluate(&db.pool, minutes(base, 66))
        .await
        .expect("evaluate");
    assert_eq!((still.resolved, still.updated), (0, 1));
    // Later the window is empty: resolved.
    let quiet = evaluate(&db.pool, minutes(base, 90))
        .await
        .expect("evaluate");
    assert_eq!(quiet.resolved, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM alerts WHERE status = 'resolved'")
            .await,
        1
    );
    // A new burst more than a window after the first alert fired: a second alert.
    let burst: Vec<Output> = (40..45)
        .map(|n| report(n, "contoso", ConfidenceV1::Medium, minutes(base, 91)))
        .collect();
    db.apply_all(&burst).await;
    let second = evaluate(&db.pool, minutes(base, 95))
        .await
        .expect("evaluate");
    assert_eq!(second.fired.len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 2);

    // Every payload is a valid arfwire.alert.v1 record naming real events.
    let validator = validator();
    let payloads: Vec<(serde_json::Value,)> =
        sqlx::query_as("SELECT payload FROM alerts ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("payloads");
    for (payload,) in &payloads {
        let errors: Vec<String> = validator
            .iter_errors(payload)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{payload}");
    }
    let first_payload = &payloads[0].0;
    assert_eq!(first_payload["count"], 5);
    assert_eq!(first_payload["tenant"]["name"], "contoso Ltd");
    assert_eq!(first_payload["rule"]["scope"], "global");
    assert_eq!(first_payload["window_start"], "2024-05-01T09:10:00.000Z");
    let samples = first_payload["sample_event_ids"]
        .as_array()
        .expect("samples");
    assert_eq!(samples.len(), 5, "LOW reports are not sampled");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM reports WHERE event_id::text IN \
             (SELECT jsonb_array_elements_text(payload->'sample_event_ids') FROM alerts)"
        )
        .await,
        10
    );
}

#[tokio::test]
async fn a_tenant_rule_overrides_the_global_rule() {
    let db = TestDb::new().await;
    let base = at("2024-05-01T10:00:00Z");
    sync_config_rule(&db.pool, Some(&rule(5, 24, "MEDIUM")))
        .await
        .expect("rule");
    sqlx::query(
        "INSERT INTO alert_rules (name, tenant_id, threshold, window_seconds, min_confidence, \
                                  created_by) \
         VALUES ('fabrikam-strict', 'fabrikam', 2, 3600, 'HIGH', 'admin')",
    )
    .execute(&db.pool)
    .await
    .expect("override");
    let mut batch = Vec::new();
    // fabrikam: five MEDIUM (would fire the global rule) and two HIGH.
    batch.extend((0..5).map(|n| report(n, "fabrikam", ConfidenceV1::Medium, minutes(base, 1))));
    batch.extend((5..7).map(|n| report(n, "fabrikam", ConfidenceV1::High, minutes(base, 2))));
    // contoso: five MEDIUM under the global rule; northwind: four, not enough.
    batch.extend((10..15).map(|n| report(n, "contoso", ConfidenceV1::Medium, minutes(base, 3))));
    batch.extend(
        (20..24).map(|n| report(n, "northwind", ConfidenceV1::Confirmed, minutes(base, 3))),
    );
    db.apply_all(&batch).await;

    let report = evaluate(&db.pool, minutes(base, 10))
        .await
        .expect("evaluate");
    let mut fired: Vec<(String, String, i64)> = report
        .fired
        .iter()
        .map(|f| (f.tenant_id.clone(), f.rule.clone(), f.count))
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            ("contoso".to_owned(), "default".to_owned(), 5),
            ("fabrikam".to_owned(), "fabrikam-strict".to_owned(), 2),
        ]
    );
    // Removing the configuration's rule disables it; stored rules stay.
    sync_config_rule(&db.pool, None).await.expect("rule");
    assert_eq!(
        db.count("SELECT count(*) FROM alert_rules WHERE enabled")
            .await,
        1
    );
    // The default rule's alert resolves when its rule goes away.
    let later = evaluate(&db.pool, minutes(base, 11))
        .await
        .expect("evaluate");
    assert_eq!(later.resolved, 1);
}
