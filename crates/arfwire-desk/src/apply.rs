//! Writing published records into the desk's tables.
//!
//! Every function here runs inside the caller's transaction and is idempotent on the
//! record's own id: applying the same record twice leaves the tables as applying it once,
//! and counts (clusters) move only when a row is new.

use arfwire_events::{AbuseEventV1, Output, RejectedV1, is_token};
use arfwire_raw::RawSubmission;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Postgres, Transaction};

use crate::error::DeskError;
use crate::text::{bounded, json, opt_bounded, opt_text, text};

/// Longest value kept in an indexed text column (the full value stays in the record's JSON).
const MAX_INDEXED: usize = 1000;
/// Longest domain or vocabulary value kept in an indexed column.
const MAX_SHORT: usize = 255;
/// Longest cluster key stored as written; longer keys are stored as their SHA-256.
const MAX_CLUSTER_KEY: usize = 200;
/// Longest record value kept in `store_errors.payload`.
pub const MAX_ERROR_PAYLOAD: usize = 1024 * 1024;

/// Settings of [`apply`] and [`apply_raw`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOptions {
    /// How long raw evidence is kept after it was received: `submissions.retain_until` is
    /// `received_at` plus this.
    pub raw_retention: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            raw_retention: Duration::days(90),
        }
    }
}

/// What applying a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new row.
    Inserted,
    /// The record was stored before: nothing changed.
    Duplicate,
}

fn malformed(what: impl Into<String>) -> DeskError {
    DeskError::Malformed(what.into())
}

fn parse_time(field: &str, value: &str) -> Result<DateTime<Utc>, DeskError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| malformed(format!("{field} is not an RFC 3339 time: {e}")))
}

fn parse_opt_time(value: Option<&str>) -> Option<DateTime<Utc>> {
    value
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn check_sha256(value: &str) -> Result<(), DeskError> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(malformed(
            "intake.raw_sha256 is not 64 lower-case hex digits",
        ))
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Apply one published record (an abuse event or a rejection) inside `tx`.
///
/// Ids are checked against the submission digest they derive from, so a record whose ids
/// do not belong to its bytes is refused as malformed rather than stored under another
/// record's id. A new event also creates (or counts into) its cluster and creates the
/// `submissions` row for its raw evidence if the raw record has not arrived yet.
pub async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    output: &Output,
    options: &ApplyOptions,
) -> Result<Applied, DeskError> {
    match output {
        Output::Event(event) => apply_event(tx, event, options).await,
        Output::Rejected(record) => apply_rejection(tx, record, options).await,
    }
}

/// The `submissions` row of a record whose raw bytes may not have arrived yet.
async fn submission_stub(
    conn: &mut PgConnection,
    intake: &arfwire_events::Intake,
    received_at: DateTime<Utc>,
    options: &ApplyOptions,
) -> Result<(), DeskError> {
    let submission_id = arfwire_events::submission_id(&intake.raw_sha256);
    sqlx::query(
        "INSERT INTO submissions (raw_sha256, submission_id, raw_size, received_at, channel, \
                                  retain_until) \
         VALUES ($1, $2::uuid, $3, $4, $5, $6) \
         ON CONFLICT (raw_sha256) DO NOTHING",
    )
    .bind(&intake.raw_sha256)
    .bind(submission_id)
    .bind(i64::try_from(intake.raw_size).unwrap_or(i64::MAX))
    .bind(received_at)
    .bind(intake.channel.as_str())
    .bind(received_at + options.raw_retention)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// How a reported message is grouped with others: (kind, key).
pub fn cluster_key(event: &AbuseEventV1) -> (&'static str, String) {
    let message = &event.reported_message;
    let long = |kind: &'static str, value: &str| {
        if value.len() > MAX_CLUSTER_KEY {
            (kind, format!("sha256:{}", hex_sha256(value.as_bytes())))
        } else {
            (kind, text(value))
        }
    };
    if let Some(id) = message
        .message_id
        .as_deref()
        .map(|m| {
            m.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
        })
        .filter(|m| !m.is_empty())
    {
        return long("message_id", id);
    }
    if let Some(b) = message
        .dkim_signatures
        .iter()
        .find_map(|s| s.signature_prefix.as_deref().filter(|b| !b.is_empty()))
    {
        return long("dkim_b", b);
    }
    let from = message.from.as_ref().map(|f| f.address.to_lowercase());
    let fingerprint = if from.is_none() && message.subject.is_none() && message.date.is_none() {
        // Nothing to group on: the header block itself, so identical copies still group.
        format!("header-block\n{}", message.header_block_sha256)
    } else {
        format!(
            "from-subject-date\n{}\n{}\n{}",
            from.unwrap_or_default(),
            message.subject.as_deref().unwrap_or(""),
            message.date.as_deref().unwrap_or("")
        )
    };
    ("fingerprint", hex_sha256(fingerprint.as_bytes()))
}

fn confidence_rank(label: &str) -> Option<i16> {
    match label {
        "NONE" => Some(0),
        "LOW" => Some(1),
        "MEDIUM" => Some(2),
        "HIGH" => Some(3),
        "CONFIRMED" => Some(4),
        _ => None,
    }
}

/// The JSON label of a confidence value (`"MEDIUM"`).
fn confidence_label(c: arfwire_events::ConfidenceV1) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn apply_event(
    tx: &mut Transaction<'_, Postgres>,
    event: &AbuseEventV1,
    options: &ApplyOptions,
) -> Result<Applied, DeskError> {
    let intake = &event.intake;
    check_sha256(&intake.raw_sha256)?;
    let index = usize::try_from(event.report_index).map_err(|_| malformed("report_index"))?;
    if event.event_id != arfwire_events::event_id(&intake.raw_sha256, index) {
        return Err(malformed(
            "event_id is not the id of intake.raw_sha256 and report_index",
        ));
    }
    if event.submission_id != arfwire_events::submission_id(&intake.raw_sha256) {
        return Err(malformed(
            "submission_id is not the id of intake.raw_sha256",
        ));
    }
    let received_at = parse_time("intake.received_at", &intake.received_at)?;
    let report_index = i32::try_from(event.report_index).map_err(|_| malformed("report_index"))?;
    let report_count = i32::try_from(event.report_count.max(1)).unwrap_or(i32::MAX);

    let feedback = event.feedback.as_ref();
    let attribution = event.attribution.as_ref();
    let trust = event.reporter_trust.as_ref();
    let message = &event.reported_message;

    let tier = trust
        .map(|t| t.tier.as_str())
        .filter(|t| matches!(*t, "T1" | "T2" | "T3"));
    let confidence = attribution.map(|a| confidence_label(a.confidence));
    let rank = confidence.as_deref().and_then(confidence_rank);
    let score = attribution
        .map(|a| a.score)
        .filter(|s| (0.0..=1.0).contains(s));
    let tenant = attribution.and_then(|a| a.sending_tenant.as_ref());
    let source_ip = feedback
        .and_then(|f| f.source_ip)
        .or_else(|| event.claimed_source_ip.as_ref().map(|c| c.ip));
    let ip_of = |f: Option<&arfwire_events::IpFindingV1>| f.map(|f| f.ip);
    let arrival_at = parse_opt_time(feedback.and_then(|f| f.arrival_date_parsed.as_deref()))
        .or_else(|| parse_opt_time(message.date_parsed.as_deref()));
    let tokens: Vec<String> = event
        .complainant_tokens
        .iter()
        .filter(|t| is_token(t))
        .cloned()
        .collect();
    let incidents = feedback.and_then(|f| f.incidents);
    let reporter_domain = event
        .reporter
        .from
        .as_ref()
        .and_then(|f| f.domain.as_deref());
    let record = json(serde_json::to_value(event).map_err(|e| malformed(e.to_string()))?);

    submission_stub(tx, intake, received_at, options).await?;

    let inserted: Option<(String,)> = sqlx::query_as(
        "INSERT INTO reports (event_id, submission_id, raw_sha256, report_index, report_count, \
             kind, format, feedback_type, complaint_type, incidents, reporter_domain, \
             reporter_tier, reporter_operator, tenant_id, tenant_name, confidence, score, \
             path_class, origin_kind, flags, source_ip, egress_ip, ingress_ip, origin_ip, \
             message_id, subject, sender_domain, arrival_at, received_at, complainant_token, \
             complainant_tokens, event, parser_version) \
         VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, \
                 $31, $32, $33) \
         ON CONFLICT (event_id) DO NOTHING \
         RETURNING event_id::text",
    )
    .bind(&event.event_id)
    .bind(&event.submission_id)
    .bind(&intake.raw_sha256)
    .bind(report_index)
    .bind(report_count)
    .bind(bounded(&event.kind, MAX_SHORT))
    .bind(bounded(&event.format, MAX_SHORT))
    .bind(opt_bounded(
        feedback.and_then(|f| f.feedback_type.as_deref()),
        MAX_SHORT,
    ))
    .bind(bounded(&event.complaint_type, MAX_SHORT))
    .bind(incidents.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
    .bind(opt_bounded(reporter_domain, MAX_SHORT))
    .bind(tier)
    .bind(opt_text(trust.and_then(|t| t.operator.as_deref())))
    .bind(opt_bounded(tenant.map(|t| t.id.as_str()), MAX_SHORT))
    .bind(opt_text(tenant.and_then(|t| t.name.as_deref())))
    .bind(confidence.as_deref())
    .bind(score)
    .bind(opt_text(attribution.map(|a| a.path_class.as_str())))
    .bind(opt_text(attribution.map(|a| a.origin_kind.as_str())))
    .bind(
        attribution
            .map(|a| a.flags.iter().map(|f| text(f)).collect::<Vec<_>>())
            .unwrap_or_default(),
    )
    .bind(source_ip)
    .bind(ip_of(attribution.and_then(|a| a.egress_ip.as_ref())))
    .bind(ip_of(attribution.and_then(|a| a.ingress_ip.as_ref())))
    .bind(ip_of(attribution.and_then(|a| a.origin_ip.as_ref())))
    .bind(opt_bounded(message.message_id.as_deref(), MAX_INDEXED))
    .bind(opt_text(message.subject.as_deref()))
    .bind(opt_bounded(message.sender_domain.as_deref(), MAX_SHORT))
    .bind(arrival_at)
    .bind(received_at)
    .bind(tokens.first())
    .bind(&tokens)
    .bind(&record)
    .bind(text(&event.parser_version))
    .fetch_optional(&mut **tx)
    .await?;
    if inserted.is_none() {
        return Ok(Applied::Duplicate);
    }

    // The cluster, counted only for a new event.
    let (key_kind, key_value) = cluster_key(event);
    let incident_count: i64 = match (incidents, tier) {
        (Some(n), Some("T1")) if n > 1 => i64::try_from(n).unwrap_or(i64::MAX),
        _ => 1,
    };
    let (cluster_id,): (i64,) = sqlx::query_as(
        "INSERT INTO clusters (key_kind, key_value, message_id, subject, sender_domain, \
             tenant_id, tenant_name, report_count, incident_count, max_confidence_rank, \
             first_seen_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $10) \
         ON CONFLICT (key_kind, key_value) DO UPDATE SET \
             report_count = clusters.report_count + 1, \
             incident_count = clusters.incident_count + EXCLUDED.incident_count, \
             max_confidence_rank = GREATEST(clusters.max_confidence_rank, \
                                            EXCLUDED.max_confidence_rank), \
             tenant_id = COALESCE(EXCLUDED.tenant_id, clusters.tenant_id), \
             tenant_name = CASE WHEN EXCLUDED.tenant_id IS NOT NULL \
                                THEN EXCLUDED.tenant_name ELSE clusters.tenant_name END, \
             first_seen_at = LEAST(clusters.first_seen_at, EXCLUDED.first_seen_at), \
             last_seen_at = GREATEST(clusters.last_seen_at, EXCLUDED.last_seen_at), \
             updated_at = now() \
         RETURNING id",
    )
    .bind(key_kind)
    .bind(&key_value)
    .bind(opt_bounded(message.message_id.as_deref(), MAX_INDEXED))
    .bind(opt_text(message.subject.as_deref()))
    .bind(opt_bounded(message.sender_domain.as_deref(), MAX_SHORT))
    .bind(opt_bounded(tenant.map(|t| t.id.as_str()), MAX_SHORT))
    .bind(opt_text(tenant.and_then(|t| t.name.as_deref())))
    .bind(incident_count)
    .bind(rank)
    .bind(received_at)
    .fetch_one(&mut **tx)
    .await?;

    sqlx::query("UPDATE reports SET cluster_id = $1 WHERE event_id = $2::uuid")
        .bind(cluster_id)
        .bind(&event.event_id)
        .execute(&mut **tx)
        .await?;

    let (reporter_key, is_complainant) = match (tokens.first(), reporter_domain) {
        (Some(token), _) => (token.clone(), true),
        (None, Some(domain)) => (format!("domain:{}", bounded(domain, MAX_SHORT)), false),
        (None, None) => ("unknown".to_owned(), false),
    };
    let (new_reporter,): (bool,) = sqlx::query_as(
        "INSERT INTO cluster_reporters (cluster_id, reporter_key, is_complainant, report_count, \
                                        first_seen_at) \
         VALUES ($1, $2, $3, 1, $4) \
         ON CONFLICT (cluster_id, reporter_key) DO UPDATE SET \
             report_count = cluster_reporters.report_count + 1, \
             first_seen_at = LEAST(cluster_reporters.first_seen_at, EXCLUDED.first_seen_at) \
         RETURNING (xmax = 0)",
    )
    .bind(cluster_id)
    .bind(&reporter_key)
    .bind(is_complainant)
    .bind(received_at)
    .fetch_one(&mut **tx)
    .await?;
    if new_reporter {
        sqlx::query(
            "UPDATE clusters SET distinct_reporters = distinct_reporters + 1, \
                 distinct_complainants = distinct_complainants + $2 \
             WHERE id = $1",
        )
        .bind(cluster_id)
        .bind(i64::from(is_complainant))
        .execute(&mut **tx)
        .await?;
    }
    Ok(Applied::Inserted)
}

async fn apply_rejection(
    tx: &mut Transaction<'_, Postgres>,
    record: &RejectedV1,
    options: &ApplyOptions,
) -> Result<Applied, DeskError> {
    let intake = &record.intake;
    check_sha256(&intake.raw_sha256)?;
    if record.rejection_id != arfwire_events::rejection_id(&intake.raw_sha256) {
        return Err(malformed("rejection_id is not the id of intake.raw_sha256"));
    }
    if record.submission_id != arfwire_events::submission_id(&intake.raw_sha256) {
        return Err(malformed(
            "submission_id is not the id of intake.raw_sha256",
        ));
    }
    let received_at = parse_time("intake.received_at", &intake.received_at)?;
    let category = serde_json::to_value(record.category)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let reporter = record.reporter.as_ref();
    let json_record = json(serde_json::to_value(record).map_err(|e| malformed(e.to_string()))?);

    submission_stub(tx, intake, received_at, options).await?;
    let inserted: Option<(String,)> = sqlx::query_as(
        "INSERT INTO rejections (rejection_id, submission_id, raw_sha256, category, reason, \
             detail, reporter_domain, subject, received_at, channel, raw_size, record, \
             parser_version) \
         VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (rejection_id) DO NOTHING \
         RETURNING rejection_id::text",
    )
    .bind(&record.rejection_id)
    .bind(&record.submission_id)
    .bind(&intake.raw_sha256)
    .bind(category)
    .bind(bounded(&record.reason, MAX_SHORT))
    .bind(text(&record.detail))
    .bind(opt_bounded(
        reporter
            .and_then(|r| r.from.as_ref())
            .and_then(|f| f.domain.as_deref()),
        MAX_SHORT,
    ))
    .bind(opt_text(reporter.and_then(|r| r.subject.as_deref())))
    .bind(received_at)
    .bind(intake.channel.as_str())
    .bind(i64::try_from(intake.raw_size).unwrap_or(i64::MAX))
    .bind(&json_record)
    .bind(text(&record.parser_version))
    .fetch_optional(&mut **tx)
    .await?;
    Ok(if inserted.is_some() {
        Applied::Inserted
    } else {
        Applied::Duplicate
    })
}

/// Keep the raw evidence of one submission (from `abuse.raw.v1`), deduplicated by the
/// SHA-256 of its bytes. Bytes deleted by retention or erasure are never stored again.
pub async fn apply_raw(
    tx: &mut Transaction<'_, Postgres>,
    raw: &RawSubmission,
    options: &ApplyOptions,
) -> Result<Applied, DeskError> {
    let sha = raw.sha256_hex();
    let submission_id = arfwire_events::submission_id(&sha);
    let stored: Option<(bool,)> = sqlx::query_as(
        "INSERT INTO submissions (raw_sha256, submission_id, raw, raw_size, received_at, \
                                  channel, retain_until, raw_stored_at) \
         VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (raw_sha256) DO UPDATE SET raw = EXCLUDED.raw, raw_stored_at = now() \
             WHERE submissions.raw IS NULL AND submissions.raw_deleted_at IS NULL \
         RETURNING true",
    )
    .bind(&sha)
    .bind(submission_id)
    .bind(&raw.bytes)
    .bind(i64::try_from(raw.bytes.len()).unwrap_or(i64::MAX))
    .bind(raw.received_at)
    .bind(raw.channel.as_str())
    .bind(raw.received_at + options.raw_retention)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(if stored.is_some() {
        Applied::Inserted
    } else {
        Applied::Duplicate
    })
}

/// A record the consumer could not apply.
#[derive(Debug, Clone, Copy)]
pub struct FailedRecord<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<&'a [u8]>,
    /// The value.
    pub payload: &'a [u8],
}

/// Record a record the consumer could not apply in `store_errors` (once per topic,
/// partition and offset). `error` must not quote the payload.
pub async fn record_store_error(
    conn: &mut PgConnection,
    failed: FailedRecord<'_>,
    error: &str,
    options: &ApplyOptions,
) -> Result<(), DeskError> {
    let payload = (failed.payload.len() <= MAX_ERROR_PAYLOAD).then_some(failed.payload);
    sqlx::query(
        "INSERT INTO store_errors (topic, kafka_partition, kafka_offset, record_key, error, \
             payload_size, payload_sha256, payload, retain_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9)) \
         ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING",
    )
    .bind(text(failed.topic))
    .bind(failed.partition)
    .bind(failed.offset)
    .bind(
        failed
            .key
            .map(|k| bounded(&String::from_utf8_lossy(k), MAX_SHORT)),
    )
    .bind(bounded(error, 2000))
    .bind(i64::try_from(failed.payload.len()).unwrap_or(i64::MAX))
    .bind(hex_sha256(failed.payload))
    .bind(payload)
    .bind(options.raw_retention.num_seconds() as f64)
    .execute(conn)
    .await?;
    Ok(())
}
