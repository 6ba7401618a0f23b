//! Retention and erasure.
//!
//! * [`retention`] deletes raw evidence past `submissions.retain_until` (and the payloads of
//!   `store_errors` past theirs). Reports, clusters and every count stay: only the bytes go.
//! * [`erase`] carries out one complainant's erasure request: it deletes the raw evidence of
//!   every submission that names them, replaces their pseudonym by `erased` in reports,
//!   rejections and clusters, and redacts their address from desk notes. Counts stay
//!   (reports keep their rows, clusters their counts; the complainant's entry among a
//!   cluster's reporters is unlinked, not removed). Subjects are kept.
//!
//! Both write a row to `audit_log` (action `retention` / `erasure`) that holds counts only.

use std::fmt;

use arfwire_events::{ERASED_TOKEN, Pseudonymizer, normalise};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::DeskError;

/// Rows deleted per statement, so one retention run never holds long locks.
const RETENTION_CHUNK: i64 = 1000;

/// What a retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Raw submissions whose bytes were deleted.
    pub raw_deleted: u64,
    /// Their total size in bytes.
    pub bytes_deleted: u64,
    /// Submissions past retention whose bytes had never arrived, now closed to late
    /// arrivals.
    pub closed_without_raw: u64,
    /// `store_errors` payloads deleted.
    pub error_payloads_deleted: u64,
}

impl fmt::Display for RetentionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retention: deleted the raw bytes of {} submissions ({} bytes); closed {} \
             submissions whose raw bytes never arrived; deleted {} store error payloads; \
             reports and counts kept",
            self.raw_deleted,
            self.bytes_deleted,
            self.closed_without_raw,
            self.error_payloads_deleted
        )
    }
}

/// Delete raw evidence whose `retain_until` is at or before `now` (the caller's clock).
pub async fn retention(pool: &PgPool, now: DateTime<Utc>) -> Result<RetentionReport, DeskError> {
    let mut report = RetentionReport::default();
    loop {
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "WITH due AS ( \
                 SELECT raw_sha256, raw IS NOT NULL AS had_raw FROM submissions \
                 WHERE raw_deleted_at IS NULL AND retain_until <= $1 \
                 ORDER BY retain_until LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE submissions s SET raw = NULL, raw_deleted_at = $1, \
                 raw_deleted_reason = 'retention' \
             FROM due WHERE s.raw_sha256 = due.raw_sha256 \
             RETURNING s.raw_size, due.had_raw",
        )
        .bind(now)
        .bind(RETENTION_CHUNK)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        for (size, had_raw) in rows {
            if had_raw {
                report.raw_deleted += 1;
                report.bytes_deleted += u64::try_from(size).unwrap_or(0);
            } else {
                report.closed_without_raw += 1;
            }
        }
    }
    let errors = sqlx::query(
        "UPDATE store_errors SET payload = NULL WHERE payload IS NOT NULL AND retain_until <= $1",
    )
    .bind(now)
    .execute(pool)
    .await?;
    report.error_payloads_deleted = errors.rows_affected();
    sqlx::query(
        "INSERT INTO audit_log (actor, action, object_type, object_id, detail) \
         VALUES ('system', 'retention', 'store', 'submissions', $1)",
    )
    .bind(serde_json::json!({
        "now": now.to_rfc3339(),
        "raw_deleted": report.raw_deleted,
        "bytes_deleted": report.bytes_deleted,
        "closed_without_raw": report.closed_without_raw,
        "error_payloads_deleted": report.error_payloads_deleted,
    }))
    .execute(pool)
    .await?;
    Ok(report)
}

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// The pseudonym that was erased (printed to the operator; not stored anywhere).
    pub token: String,
    /// Reports whose complainant pseudonym was replaced by `erased`.
    pub reports: u64,
    /// Rejection records whose pseudonym was replaced.
    pub rejections: u64,
    /// Submissions whose raw bytes were deleted.
    pub raw_deleted: u64,
    /// Cluster reporter entries unlinked (counts kept).
    pub cluster_reporters: u64,
    /// Desk notes in which the address was redacted.
    pub notes: u64,
    /// `store_errors` payloads deleted because they held the address or pseudonym.
    pub error_payloads: u64,
}

impl fmt::Display for ErasureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "erased complainant {}:", self.token)?;
        let lines = [
            ("raw submissions deleted", self.raw_deleted),
            ("reports: pseudonym replaced by erased", self.reports),
            ("rejections: pseudonym replaced by erased", self.rejections),
            ("cluster reporter entries unlinked", self.cluster_reporters),
            ("notes redacted", self.notes),
            ("store error payloads deleted", self.error_payloads),
        ];
        for (what, n) in lines {
            writeln!(f, "  {what:<42}{n:>8}")?;
        }
        write!(
            f,
            "  kept: report rows, subjects, cluster and report counts"
        )
    }
}

/// Replace every case-insensitive occurrence of `needle` (ASCII case folding) in `text`.
fn replace_ignoring_case(text: &str, needle: &str, with: &str) -> String {
    if needle.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_lowercase();
    // Lower-casing may change byte lengths outside ASCII; fall back to exact matching then.
    if lower.len() != text.len() {
        return text.replace(needle, with);
    }
    let needle = needle.to_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in lower.match_indices(&needle) {
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

/// Erase one complainant (see the module documentation). `actor` is who asked, for the
/// audit log; `now` the clock.
pub async fn erase(
    pool: &PgPool,
    address: &str,
    pseudonymizer: &Pseudonymizer,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<ErasureReport, DeskError> {
    let address = normalise(address);
    if address.is_empty() {
        return Err(DeskError::Config("the complainant address is empty".into()));
    }
    let token = pseudonymizer.token(&address);
    let mut report = ErasureReport {
        token: token.clone(),
        ..ErasureReport::default()
    };
    let mut tx = pool.begin().await?;

    // Submissions naming the complainant: through reports and rejections.
    let shas: Vec<(String,)> = sqlx::query_as(
        "SELECT raw_sha256 FROM reports WHERE complainant_tokens @> ARRAY[$1]::text[] \
         UNION \
         SELECT raw_sha256 FROM rejections WHERE strpos(record::text, $1) > 0",
    )
    .bind(&token)
    .fetch_all(&mut *tx)
    .await?;
    let shas: Vec<String> = shas.into_iter().map(|(s,)| s).collect();
    let raw: Vec<(bool,)> = sqlx::query_as(
        "WITH target AS ( \
             SELECT raw_sha256, raw IS NOT NULL AS had_raw FROM submissions \
             WHERE raw_sha256 = ANY($1) AND raw_deleted_at IS NULL FOR UPDATE) \
         UPDATE submissions s SET raw = NULL, raw_deleted_at = $2, \
             raw_deleted_reason = 'erasure' \
         FROM target WHERE s.raw_sha256 = target.raw_sha256 \
         RETURNING target.had_raw",
    )
    .bind(&shas)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    report.raw_deleted = raw.iter().filter(|(had,)| *had).count() as u64;

    let reports = sqlx::query(
        "UPDATE reports SET \
             complainant_tokens = array_replace(complainant_tokens, $1, $2), \
             complainant_token = CASE WHEN complainant_token = $1 THEN $2 \
                                      ELSE complainant_token END, \
             event = replace(event::text, $1, $2)::jsonb, \
             erased_at = $3 \
         WHERE complainant_tokens @> ARRAY[$1]::text[] OR strpos(event::text, $1) > 0",
    )
    .bind(&token)
    .bind(ERASED_TOKEN)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    report.reports = reports.rows_affected();

    let rejections = sqlx::query(
        "UPDATE rejections SET record = replace(record::text, $1, $2)::jsonb \
         WHERE strpos(record::text, $1) > 0",
    )
    .bind(&token)
    .bind(ERASED_TOKEN)
    .execute(&mut *tx)
    .await?;
    report.rejections = rejections.rows_affected();

    let reporters = sqlx::query(
        "UPDATE cluster_reporters SET reporter_key = 'erased:' || gen_random_uuid()::text \
         WHERE reporter_key = $1",
    )
    .bind(&token)
    .execute(&mut *tx)
    .await?;
    report.cluster_reporters = reporters.rows_affected();

    // Notes are analysts' free text: redact the address (any case) and the pseudonym.
    for table in [NoteTable::Report, NoteTable::Case] {
        let rows: Vec<(i64, String)> = sqlx::query_as(table.select())
            .bind(&address)
            .bind(&token)
            .fetch_all(&mut *tx)
            .await?;
        for (id, body) in rows {
            let redacted =
                replace_ignoring_case(&body, &address, "[erased]").replace(&token, ERASED_TOKEN);
            sqlx::query(table.update())
                .bind(id)
                .bind(redacted)
                .execute(&mut *tx)
                .await?;
            report.notes += 1;
        }
    }

    // Records the consumer could not read may hold the address in any form: search the
    // kept payloads, ignoring ASCII case.
    let payloads: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, payload FROM store_errors WHERE payload IS NOT NULL FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    let needles = [address.as_bytes().to_vec(), token.as_bytes().to_vec()];
    for (id, payload) in payloads {
        let lower = payload.to_ascii_lowercase();
        if needles
            .iter()
            .any(|n| !n.is_empty() && lower.windows(n.len()).any(|w| w == n.as_slice()))
        {
            sqlx::query("UPDATE store_errors SET payload = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            report.error_payloads += 1;
        }
    }

    sqlx::query(
        "INSERT INTO audit_log (actor, action, object_type, object_id, detail) \
         VALUES ($1, 'erasure', 'complainant', 'erased', $2)",
    )
    .bind(actor)
    .bind(serde_json::json!({
        "reports": report.reports,
        "rejections": report.rejections,
        "raw_deleted": report.raw_deleted,
        "cluster_reporters": report.cluster_reporters,
        "notes": report.notes,
        "error_payloads": report.error_payloads,
    }))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(report)
}

#[derive(Clone, Copy)]
enum NoteTable {
    Report,
    Case,
}

impl NoteTable {
    fn select(self) -> &'static str {
        match self {
            NoteTable::Report => {
                "SELECT id, body FROM report_notes \
                 WHERE strpos(lower(body), $1) > 0 OR strpos(body, $2) > 0 FOR UPDATE"
            }
            NoteTable::Case => {
                "SELECT id, body FROM case_notes \
                 WHERE strpos(lower(body), $1) > 0 OR strpos(body, $2) > 0 FOR UPDATE"
            }
        }
    }

    fn update(self) -> &'static str {
        match self {
            NoteTable::Report => "UPDATE report_notes SET body = $2 WHERE id = $1",
            NoteTable::Case => "UPDATE case_notes SET body = $2 WHERE id = $1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_replacement() {
        assert_eq!(
            replace_ignoring_case(
                "Mail from Jane@Example.org and jane@example.org",
                "jane@example.org",
                "[erased]"
            ),
            "Mail from [erased] and [erased]"
        );
    }
}
