//! Complaint threshold alerts.
//!
//! A rule (`alert_rules`) fires for a tenant when at least `threshold` of its reports with
//! at least `min_confidence` arrived within the last `window_seconds`. Global rules
//! (`tenant_id` NULL) apply to every tenant without an enabled rule of its own; a tenant's
//! own rules replace them.
//!
//! Hysteresis, so a burst gives one alert and not one per report:
//!
//! * at most one unresolved alert per (rule, tenant); while it is unresolved, evaluations
//!   only update its counts;
//! * it resolves when the count falls below the rule's clear level (`clear_below`, else half
//!   the threshold, at least 1);
//! * a new alert for the same (rule, tenant) fires no earlier than one window after the
//!   previous one fired, even if that one resolved in between.
//!
//! [`evaluate`] takes the clock as a parameter and writes alerts in one transaction (under
//! an advisory lock, so several consumers never fire the same alert twice);
//! [`publish_pending`] publishes the alerts not yet acknowledged by the broker to
//! `abuse.alerts.v1` (the `alerts` table is the outbox) and marks them published.

use std::collections::{HashMap, HashSet};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::ALERT_SCHEMA;
use crate::config::RuleConfig;
use crate::error::DeskError;

/// Key of the advisory lock that serialises evaluations.
const EVALUATION_LOCK: i64 = 0x6172_6677_616c_7274; // "arfwalrt"
/// Most event ids sampled into an alert.
const SAMPLE_SIZE: i64 = 20;
/// Most alerts published per call of [`publish_pending`].
const PUBLISH_BATCH: i64 = 100;

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRule {
    /// `alert_rules.id`.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// `None`: global.
    pub tenant_id: Option<String>,
    /// Reports that fire it.
    pub threshold: i32,
    /// The window, in seconds.
    pub window_seconds: i32,
    /// Least confidence counted.
    pub min_confidence: String,
    /// Complaint types counted (`None`: all but `not-spam`).
    pub complaint_types: Option<Vec<String>>,
    /// Explicit clear level.
    pub clear_below: Option<i32>,
}

impl AlertRule {
    /// The count below which an unresolved alert resolves.
    pub fn clear_level(&self) -> i64 {
        self.clear_below
            .map_or_else(|| i64::from(self.threshold / 2).max(1), i64::from)
    }

    fn window(&self) -> Duration {
        Duration::seconds(i64::from(self.window_seconds))
    }
}

/// One alert that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The published id.
    pub alert_id: String,
    /// The rule's name.
    pub rule: String,
    /// The tenant.
    pub tenant_id: String,
    /// Qualifying reports in the window.
    pub count: i64,
}

/// What an evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvaluationReport {
    /// Rules evaluated.
    pub rules: usize,
    /// New alerts.
    pub fired: Vec<Fired>,
    /// Unresolved alerts whose counts were updated (still unresolved).
    pub updated: usize,
    /// Alerts that resolved.
    pub resolved: usize,
}

/// Write the configuration's default rule into `alert_rules` as the global rule named
/// `default` (source `config`); `None` disables a rule written that way earlier. A rule of
/// that name made through the desk is left alone.
pub async fn sync_config_rule(pool: &PgPool, rule: Option<&RuleConfig>) -> Result<(), DeskError> {
    match rule {
        Some(rule) => {
            let threshold = i32::try_from(rule.threshold).unwrap_or(i32::MAX);
            let window = i32::try_from(u64::from(rule.window_hours) * 3600).unwrap_or(i32::MAX);
            let clear = rule
                .clear_below
                .map(|c| i32::try_from(c).unwrap_or(i32::MAX));
            sqlx::query(
                "INSERT INTO alert_rules (name, tenant_id, threshold, window_seconds, \
                     min_confidence, complaint_types, clear_below, enabled, source, created_by) \
                 VALUES ('default', NULL, $1, $2, $3, $4, $5, true, 'config', 'config') \
                 ON CONFLICT (name) DO UPDATE SET tenant_id = NULL, \
                     threshold = EXCLUDED.threshold, window_seconds = EXCLUDED.window_seconds, \
                     min_confidence = EXCLUDED.min_confidence, \
                     complaint_types = EXCLUDED.complaint_types, \
                     clear_below = EXCLUDED.clear_below, enabled = true, updated_at = now() \
                 WHERE alert_rules.source = 'config' \
                   AND (alert_rules.threshold, alert_rules.window_seconds, \
                        alert_rules.min_confidence, alert_rules.clear_below, \
                        alert_rules.complaint_types, alert_rules.enabled, \
                        alert_rules.tenant_id) \
                       IS DISTINCT FROM \
                       (EXCLUDED.threshold, EXCLUDED.window_seconds, EXCLUDED.min_confidence, \
                        EXCLUDED.clear_below, EXCLUDED.complaint_types, true, NULL::text)",
            )
            .bind(threshold)
            .bind(window)
            .bind(&rule.min_confidence)
            .bind(rule.complaint_types.as_ref())
            .bind(clear)
            .execute(pool)
            .await?;
        }
        None => {
            sqlx::query(
                "UPDATE alert_rules SET enabled = false, updated_at = now() \
                 WHERE name = 'default' AND source = 'config' AND enabled",
            )
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// `uuid8` of a digest (the id layout the events use).
fn uuid8(digest: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The id of the alert `rule` fires for `tenant` at `fired_at`.
pub fn alert_id(rule_id: i64, tenant_id: &str, fired_at: DateTime<Utc>) -> String {
    let text = format!(
        "arfwire.alert-id.v1:{rule_id}:{tenant_id}:{}",
        fired_at.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    uuid8(&Sha256::digest(text.as_bytes()))
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `arfwire.alert.v1` record (`schemas/alert.v1.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertV1 {
    /// Always [`ALERT_SCHEMA`].
    pub schema: String,
    /// Deterministic id ([`alert_id`]).
    pub alert_id: String,
    /// Always `complaint_threshold` in this release.
    pub kind: String,
    /// When it fired.
    pub fired_at: String,
    /// The tenant.
    pub tenant: AlertTenantV1,
    /// The rule as it was when it fired.
    pub rule: AlertRuleV1,
    /// Qualifying reports in the window.
    pub count: i64,
    /// Start of the window (exclusive).
    pub window_start: String,
    /// End of the window (inclusive): the evaluation time.
    pub window_end: String,
    /// Up to 20 of the newest qualifying event ids.
    pub sample_event_ids: Vec<String>,
}

/// The tenant of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertTenantV1 {
    /// Tenant id.
    pub id: String,
    /// Display name, when known.
    pub name: Option<String>,
}

/// The rule of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRuleV1 {
    /// `alert_rules.id`.
    pub id: i64,
    /// Name.
    pub name: String,
    /// `global` or `tenant`.
    pub scope: String,
    /// Threshold.
    pub threshold: i64,
    /// Window in seconds.
    pub window_seconds: i64,
    /// Least confidence counted.
    pub min_confidence: String,
    /// Complaint types counted, `null` for all but `not-spam`.
    pub complaint_types: Option<Vec<String>>,
}

/// Qualifying reports per tenant for one rule, at `now`: (tenant id, count, a tenant name).
async fn counts(
    conn: &mut sqlx::PgConnection,
    rule: &AlertRule,
    now: DateTime<Utc>,
) -> Result<Vec<(String, i64, Option<String>)>, DeskError> {
    Ok(sqlx::query_as(
        "SELECT tenant_id, count(*)::bigint, max(tenant_name) FROM reports \
         WHERE tenant_id IS NOT NULL AND received_at > $1 AND received_at <= $2 \
           AND confidence_rank >= confidence_rank($3) \
           AND CASE WHEN $4::text[] IS NULL THEN complaint_type <> 'not-spam' \
                    ELSE complaint_type = ANY($4::text[]) END \
           AND ($5::text IS NULL OR tenant_id = $5) \
         GROUP BY tenant_id",
    )
    .bind(now - rule.window())
    .bind(now)
    .bind(&rule.min_confidence)
    .bind(rule.complaint_types.as_ref())
    .bind(rule.tenant_id.as_deref())
    .fetch_all(&mut *conn)
    .await?)
}

async fn samples(
    conn: &mut sqlx::PgConnection,
    rule: &AlertRule,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>, DeskError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT event_id::text FROM reports \
         WHERE tenant_id = $5 AND received_at > $1 AND received_at <= $2 \
           AND confidence_rank >= confidence_rank($3) \
           AND CASE WHEN $4::text[] IS NULL THEN complaint_type <> 'not-spam' \
                    ELSE complaint_type = ANY($4::text[]) END \
         ORDER BY received_at DESC, event_id LIMIT $6",
    )
    .bind(now - rule.window())
    .bind(now)
    .bind(&rule.min_confidence)
    .bind(rule.complaint_types.as_ref())
    .bind(tenant)
    .bind(SAMPLE_SIZE)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Evaluate every enabled rule at `now` (see the module documentation).
pub async fn evaluate(pool: &PgPool, now: DateTime<Utc>) -> Result<EvaluationReport, DeskError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVALUATION_LOCK)
        .execute(&mut *tx)
        .await?;
    let rules: Vec<AlertRule> = sqlx::query_as(
        "SELECT id, name, tenant_id, threshold, window_seconds, min_confidence, \
                complaint_types, clear_below \
         FROM alert_rules WHERE enabled ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut report = EvaluationReport {
        rules: rules.len(),
        ..EvaluationReport::default()
    };
    let overridden: HashSet<&str> = rules
        .iter()
        .filter_map(|r| r.tenant_id.as_deref())
        .collect();

    // (rule id, tenant) → (count, name), for every pair where the rule applies.
    let mut observed: HashMap<(i64, String), (i64, Option<String>)> = HashMap::new();
    for rule in &rules {
        for (tenant, count, name) in counts(&mut tx, rule, now).await? {
            if rule.tenant_id.is_none() && overridden.contains(tenant.as_str()) {
                continue;
            }
            observed.insert((rule.id, tenant), (count, name));
        }
    }

    // Unresolved alerts: update, resolve.
    let open: Vec<(i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT id, rule_id, tenant_id FROM alerts \
         WHERE resolved_at IS NULL ORDER BY id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    let by_id: HashMap<i64, &AlertRule> = rules.iter().map(|r| (r.id, r)).collect();
    let mut open_pairs: HashSet<(i64, String)> = HashSet::new();
    for (id, rule_id, tenant) in open {
        let rule = rule_id.and_then(|r| by_id.get(&r)).copied();
        let applies = rule.is_some_and(|r| {
            r.tenant_id.as_deref() == Some(tenant.as_str())
                || (r.tenant_id.is_none() && !overridden.contains(tenant.as_str()))
        });
        let count = rule_id
            .and_then(|r| observed.get(&(r, tenant.clone())))
            .map_or(0, |(c, _)| *c);
        let resolve = match rule {
            Some(rule) if applies => count < rule.clear_level(),
            // The rule was deleted, disabled or overridden since.
            _ => true,
        };
        sqlx::query(
            "UPDATE alerts SET last_count = $2, last_evaluated_at = $3, \
                 peak_count = GREATEST(peak_count, $2), \
                 resolved_at = CASE WHEN $4 THEN $3 END, \
                 status = CASE WHEN $4 THEN 'resolved' ELSE status END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(count.max(0))
        .bind(now)
        .bind(resolve)
        .execute(&mut *tx)
        .await?;
        if resolve {
            report.resolved += 1;
        } else {
            report.updated += 1;
            if let Some(rule_id) = rule_id {
                open_pairs.insert((rule_id, tenant));
            }
        }
    }

    // New alerts.
    let mut pairs: Vec<_> = observed.into_iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    for ((rule_id, tenant), (count, name)) in pairs {
        let Some(rule) = by_id.get(&rule_id) else {
            continue;
        };
        if count < i64::from(rule.threshold) || open_pairs.contains(&(rule_id, tenant.clone())) {
            continue;
        }
        let last: Option<(DateTime<Utc>,)> = sqlx::query_as(
            "SELECT max(fired_at) FROM alerts WHERE rule_id = $1 AND tenant_id = $2 \
             HAVING max(fired_at) IS NOT NULL",
        )
        .bind(rule_id)
        .bind(&tenant)
        .fetch_optional(&mut *tx)
        .await?;
        if last.is_some_and(|(at,)| at > now - rule.window()) {
            continue;
        }
        let sample = samples(&mut tx, rule, &tenant, now).await?;
        let id = alert_id(rule_id, &tenant, now);
        let record = AlertV1 {
            schema: ALERT_SCHEMA.to_owned(),
            alert_id: id.clone(),
            kind: "complaint_threshold".to_owned(),
            fired_at: rfc3339(now),
            tenant: AlertTenantV1 {
                id: tenant.clone(),
                name: name.clone(),
            },
            rule: AlertRuleV1 {
                id: rule.id,
                name: rule.name.clone(),
                scope: if rule.tenant_id.is_some() {
                    "tenant"
                } else {
                    "global"
                }
                .to_owned(),
                threshold: i64::from(rule.threshold),
                window_seconds: i64::from(rule.window_seconds),
                min_confidence: rule.min_confidence.clone(),
                complaint_types: rule.complaint_types.clone(),
            },
            count,
            window_start: rfc3339(now - rule.window()),
            window_end: rfc3339(now),
            sample_event_ids: sample.clone(),
        };
        let payload =
            serde_json::to_value(&record).map_err(|e| DeskError::Malformed(e.to_string()))?;
        sqlx::query(
            "INSERT INTO alerts (alert_id, rule_id, rule_name, tenant_id, tenant_name, \
                 threshold, window_seconds, min_confidence, fired_count, window_start, \
                 window_end, fired_at, last_count, last_evaluated_at, peak_count, \
                 sample_event_ids, payload) \
             VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $9, $11, $9, \
                     $12::uuid[], $13) \
             ON CONFLICT (alert_id) DO NOTHING",
        )
        .bind(&id)
        .bind(rule_id)
        .bind(&rule.name)
        .bind(&tenant)
        .bind(name.as_deref())
        .bind(rule.threshold)
        .bind(rule.window_seconds)
        .bind(&rule.min_confidence)
        .bind(count)
        .bind(now - rule.window())
        .bind(now)
        .bind(&sample)
        .bind(&payload)
        .execute(&mut *tx)
        .await?;
        tracing::info!(
            alert_id = %id,
            rule = %rule.name,
            tenant = %tenant,
            count,
            threshold = rule.threshold,
            "alert fired"
        );
        report.fired.push(Fired {
            alert_id: id,
            rule: rule.name.clone(),
            tenant_id: tenant,
            count,
        });
    }
    tx.commit().await?;
    Ok(report)
}

/// Publishes alert records to `abuse.alerts.v1` through an idempotent producer.
pub struct AlertPublisher {
    producer: FutureProducer,
    topic: String,
    source: String,
    timeout: StdDuration,
}

impl AlertPublisher {
    /// A publisher for `topic`, with CloudEvents `source` `source`.
    pub fn new(
        kafka: &arfwire_kafka::KafkaConfig,
        topic: &str,
        source: &str,
    ) -> Result<Self, DeskError> {
        let mut client = crate::consumer::client_config(kafka)?;
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", kafka.produce_timeout_ms.to_string());
        let producer: FutureProducer = client
            .create()
            .map_err(|e| DeskError::Kafka(e.to_string()))?;
        Ok(AlertPublisher {
            producer,
            topic: topic.to_owned(),
            source: source.to_owned(),
            timeout: StdDuration::from_millis(kafka.produce_timeout_ms),
        })
    }

    async fn send(
        &self,
        alert_id: &str,
        tenant: &str,
        fired_at: &str,
        payload: &[u8],
    ) -> Result<(), DeskError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(alert_id),
            })
            .insert(Header {
                key: "ce_type",
                value: Some(ALERT_SCHEMA),
            })
            .insert(Header {
                key: "ce_source",
                value: Some(self.source.as_str()),
            })
            .insert(Header {
                key: "ce_time",
                value: Some(fired_at),
            })
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            });
        let record = FutureRecord::to(&self.topic)
            .key(tenant)
            .payload(payload)
            .headers(headers);
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| DeskError::Kafka(e.to_string()))
    }
}

/// Publish every alert not yet acknowledged by the broker, oldest first, and mark each
/// published once acknowledged. Stops at the first failure (the rest wait for the next
/// call). Returns how many were published.
pub async fn publish_pending(
    pool: &PgPool,
    publisher: &AlertPublisher,
) -> Result<usize, DeskError> {
    let pending: Vec<(i64, String, String, DateTime<Utc>, serde_json::Value)> = sqlx::query_as(
        "SELECT id, alert_id::text, tenant_id, fired_at, payload FROM alerts \
         WHERE published_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(PUBLISH_BATCH)
    .fetch_all(pool)
    .await?;
    let mut published = 0;
    for (id, alert_id, tenant, fired_at, payload) in pending {
        let bytes =
            serde_json::to_vec(&payload).map_err(|e| DeskError::Malformed(e.to_string()))?;
        match publisher
            .send(&alert_id, &tenant, &rfc3339(fired_at), &bytes)
            .await
        {
            Ok(()) => {
                sqlx::query(
                    "UPDATE alerts SET published_at = now(), \
                         publish_attempts = publish_attempts + 1 WHERE id = $1",
                )
                .bind(id)
                .execute(pool)
                .await?;
                published += 1;
            }
            Err(error) => {
                sqlx::query(
                    "UPDATE alerts SET publish_attempts = publish_attempts + 1 WHERE id = $1",
                )
                .bind(id)
                .execute(pool)
                .await?;
                return Err(error);
            }
        }
    }
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid8_and_deterministic() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = alert_id(1, "t", at);
        assert_eq!(a, alert_id(1, "t", at));
        assert_ne!(a, alert_id(2, "t", at));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn clear_level_defaults_to_half() {
        let mut rule = AlertRule {
            id: 1,
            name: "r".into(),
            tenant_id: None,
            threshold: 10,
            window_seconds: 3600,
            min_confidence: "MEDIUM".into(),
            complaint_types: None,
            clear_below: None,
        };
        assert_eq!(rule.clear_level(), 5);
        rule.threshold = 1;
        assert_eq!(rule.clear_level(), 1);
        rule.clear_below = Some(0);
        assert_eq!(rule.clear_level(), 0);
    }
}
