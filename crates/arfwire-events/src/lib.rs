//! The published contract of arfwire: versioned abuse events and rejection records.
//!
//! Every submission that reaches the abuse mailbox yields, through [`derive`], either
//!
//! * one [`AbuseEventV1`] (`"schema": "arfwire.abuse-event.v1"`) per reported message, in
//!   document order, when the parser recognised an abuse report; or
//! * exactly one [`RejectedV1`] (`"schema": "arfwire.rejected.v1"`) when it is mail but not
//!   a report (`category: "not_report"`) or was refused (`category: "refused"`), with the
//!   reason.
//!
//! The JSON Schemas (draft 2020-12) in the workspace's `schemas/` directory are the
//! normative description of both records; their text is also available here as
//! [`ABUSE_EVENT_SCHEMA_JSON`] and [`REJECTED_SCHEMA_JSON`]. The tests of this crate
//! validate every record derived from the report corpus against them and fail when the
//! schema enums and the parser's vocabularies drift apart.
//!
//! # Wire conventions
//!
//! * Field names and enum values are snake_case; the only exceptions are attribution
//!   confidence labels and flags, which are upper case (`HIGH`, `CONFIRMED`).
//! * Every field is always present. Missing data is `null` (a list with nothing in it is
//!   `[]`); there are no sentinel values such as `""`, `0` or `"unknown"` for "absent".
//! * Timestamps are RFC 3339 in UTC with a `Z` suffix. Values as the reporter wrote them
//!   (`date`, `arrival_date`) are kept next to the parsed form (`date_parsed`, ...).
//! * IP addresses are in canonical text form (IPv4-mapped IPv6 is written as IPv4).
//! * The reported message's header block is identified by its SHA-256
//!   (`header_block_sha256`) and not carried: it names the complainant. Every text field
//!   is decoded text in which NUL has been replaced by U+FFFD.
//! * Complainant addresses never appear in clear: they are replaced by keyed-hash
//!   pseudonyms `anon:<16 hex>` ([`Pseudonymizer`], [`derive_with`]), listed in
//!   `complainant_tokens`.
//! * The output is deterministic: the same bytes, intake facts and parser version give the
//!   same JSON.
//!
//! # Identifiers
//!
//! Ids are pure functions of the submission's SHA-256, so re-ingesting the same bytes
//! (a retry, a replay of a mailbox, a second copy of a file) yields the same ids and
//! consumers can de-duplicate on them. Each is a UUID in the version 8 layout of RFC 9562:
//!
//! ```text
//! event_id      = uuid8(SHA-256("arfwire.event-id.v1:"      + raw_sha256 + ":" + report_index))
//! submission_id = uuid8(SHA-256("arfwire.submission-id.v1:" + raw_sha256))
//! rejection_id  = uuid8(SHA-256("arfwire.rejection-id.v1:"  + raw_sha256))
//! ```
//!
//! where `raw_sha256` is the 64 lower-case hex digits of the SHA-256 of the raw submission
//! bytes (`intake.raw_sha256`), `report_index` is written in decimal without leading zeros,
//! the strings are hashed as UTF-8, and `uuid8(d)` takes the first 16 bytes of `d`, sets the
//! high nibble of byte 6 to `8` (version) and the two high bits of byte 8 to `10` (variant),
//! and writes the result as a lower-case hyphenated UUID. The prefixes version the id scheme,
//! not the event schema: a future v2 event keeps these ids. See [`event_id`],
//! [`submission_id`] and [`rejection_id`].
//!
//! The `report_index` of a reported message is its position in the submission as the parser
//! sees it; a parser release that finds more or fewer reported messages in the same bytes
//! changes which message an index names. `parser_version` records which parser wrote an
//! event.
//!
//! # Versioning
//!
//! Within v1 every change is additive: new optional properties (absent from records
//! written by older releases) and new values in the open vocabularies (`kind`, `format`,
//! `reported_message.source`, rejection `reason`, diagnostic `code`, and the attribution
//! vocabularies). Consumers must ignore properties they do not know and treat unknown
//! vocabulary values as opaque. Nothing is removed, renamed, retyped or given a new meaning
//! within v1; such a change is a v2 schema published on a new topic, alongside v1 until
//! consumers have moved.
//!
//! Before the first release, `reported_message.header_block_base64` was withdrawn (it
//! carried complainant addresses) and `complainant_tokens` added.
//!
//! # Use
//!
//! ```ignore
//! let pseudonymizer = Pseudonymizer::from_hex(&key_hex)?;   // the deployment's secret
//! let intake = Intake::new(&raw, Channel::File, received_at).with_file(path, None);
//! let outcome = arfwire_parse::parse(&raw, &options);
//! for output in arfwire_events::derive_with(&outcome, &intake, &pseudonymizer) {
//!     println!("{}", output.to_json_line());
//! }
//! ```

mod attribution;
mod convert;
mod ids;
mod intake;
mod privacy;
mod pseudonym;
mod v1;

#[cfg(test)]
mod tests;

use arfwire_parse::{Outcome, PARSER_VERSION, RejectReason, ReportKind, Submission};
use serde::Serialize;

pub use attribution::{
    AttributionV1, ConfidenceV1, EvidenceV1, IpFindingV1, LocationV1, LogKeysV1, ReporterTrustV1,
    TenantCandidateV1, TenantRefV1,
};
pub use ids::{
    EVENT_ID_PREFIX, REJECTION_ID_PREFIX, SUBMISSION_ID_PREFIX, event_id, rejection_id,
    submission_id,
};
pub use intake::{Channel, Intake};
pub use privacy::{
    MAX_COMPLAINANT_TOKENS, RECIPIENT_FIELDS, complainant_addresses, reported_by_a_person,
};
pub use pseudonym::{
    DEVELOPMENT_KEY_HEX, ERASED_TOKEN, KeyError, MASKED_ADDRESS, MIN_KEY_BYTES, Pseudonymizer,
    TOKEN_PREFIX, address_spans, addresses_in, is_token, mask_addresses, normalise,
};
pub use v1::{
    ABUSE_EVENT_SCHEMA, AbuseEventV1, ClaimedIpV1, ComplaintTypeSource, DiagnosticScope,
    DiagnosticSeverity, DiagnosticV1, DkimSignatureV1, FeedbackFieldV1, FeedbackV1, HeaderFieldV1,
    MailboxV1, REJECTED_SCHEMA, RejectedV1, RejectionCategory, ReportedMessageV1, ReporterV1,
    SenderDomainSource, StructureV1,
};

/// The JSON Schema of [`AbuseEventV1`] (`schemas/abuse-event.v1.json`).
pub const ABUSE_EVENT_SCHEMA_JSON: &str = include_str!("../../../schemas/abuse-event.v1.json");
/// The JSON Schema of [`RejectedV1`] (`schemas/rejected.v1.json`).
pub const REJECTED_SCHEMA_JSON: &str = include_str!("../../../schemas/rejected.v1.json");

/// One record to publish: an abuse event or a rejection record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// One reported message of an abuse report.
    Event(Box<AbuseEventV1>),
    /// A submission that yielded no event.
    Rejected(Box<RejectedV1>),
}

impl Output {
    /// The record as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("every v1 record serialises to JSON")
    }

    /// The record as one line of compact JSON (fields in schema order), without the
    /// trailing newline. Line breaks inside values are escaped, so the line holds none.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("every v1 record serialises to JSON")
    }

    /// The record's own id: `event_id` of an event, `rejection_id` of a rejection record.
    pub fn event_id(&self) -> &str {
        match self {
            Output::Event(e) => &e.event_id,
            Output::Rejected(r) => &r.rejection_id,
        }
    }

    /// The id of the submission the record came from.
    pub fn submission_id(&self) -> &str {
        match self {
            Output::Event(e) => &e.submission_id,
            Output::Rejected(r) => &r.submission_id,
        }
    }

    /// The record's `schema` value.
    pub fn schema(&self) -> &str {
        match self {
            Output::Event(e) => &e.schema,
            Output::Rejected(r) => &r.schema,
        }
    }

    /// The intake facts of the submission the record came from.
    pub fn intake(&self) -> &Intake {
        match self {
            Output::Event(e) => &e.intake,
            Output::Rejected(r) => &r.intake,
        }
    }

    /// Read a record back from JSON, choosing the type by its `schema` value.
    pub fn from_json(json: &str) -> Result<Output, serde_json::Error> {
        use serde::de::Error as _;
        let value: serde_json::Value = serde_json::from_str(json)?;
        match value.get("schema").and_then(serde_json::Value::as_str) {
            Some(ABUSE_EVENT_SCHEMA) => Ok(Output::Event(serde_json::from_value(value)?)),
            Some(REJECTED_SCHEMA) => Ok(Output::Rejected(serde_json::from_value(value)?)),
            Some(other) => Err(serde_json::Error::custom(format!(
                "unknown schema {other:?}"
            ))),
            None => Err(serde_json::Error::custom("no \"schema\" string")),
        }
    }
}

/// The records a parse outcome yields, complainant addresses pseudonymised with a random
/// key held by this process only (tokens correlate within the process, never with anything
/// else). Services use [`derive_with`] and the deployment's key.
pub fn derive(outcome: &Outcome, intake: &Intake) -> Vec<Output> {
    static PROCESS_KEY: std::sync::OnceLock<Pseudonymizer> = std::sync::OnceLock::new();
    let pseudonymizer = PROCESS_KEY
        .get_or_init(|| Pseudonymizer::ephemeral().expect("the OS provides random bytes"));
    derive_with(outcome, intake, pseudonymizer)
}

/// The records a parse outcome yields: one [`AbuseEventV1`] per reported message for a
/// report, exactly one [`RejectedV1`] otherwise, with every complainant address replaced by
/// its pseudonym under `pseudonymizer` (see [`complainant_addresses`] for which addresses).
///
/// `intake` must describe the bytes that were parsed: its `raw_sha256` is the root of every
/// id. A report without any reported message (which the parser never produces) yields a
/// refusal with reason `parser_failure` rather than nothing, so no submission disappears.
pub fn derive_with(
    outcome: &Outcome,
    intake: &Intake,
    pseudonymizer: &Pseudonymizer,
) -> Vec<Output> {
    match outcome {
        Outcome::Report(submission) if !submission.reports.is_empty() => submission
            .reports
            .iter()
            .map(|item| {
                let event = abuse_event(submission, item, intake);
                Output::Event(Box::new(privacy::pseudonymise_event(
                    event,
                    submission.kind,
                    &submission.envelope,
                    item,
                    intake,
                    pseudonymizer,
                )))
            })
            .collect(),
        Outcome::Report(submission) => {
            let mut record = rejected_base(
                intake,
                RejectionCategory::Refused,
                RejectReason::ParserFailure.as_str(),
                "the parser recognised a report but found no reported message in it",
                &submission.diagnostics,
            );
            record.reporter = Some(ReporterV1::from(&submission.envelope));
            record.structure = Some(StructureV1::from(&submission.envelope));
            let record =
                privacy::pseudonymise_rejection(record, Some(&submission.envelope), pseudonymizer);
            vec![Output::Rejected(Box::new(record))]
        }
        Outcome::NotReport(not_report) => {
            let mut record = rejected_base(
                intake,
                RejectionCategory::NotReport,
                not_report.reason.as_str(),
                &not_report.detail,
                &not_report.diagnostics,
            );
            record.reporter = Some(ReporterV1::from(&not_report.envelope));
            record.structure = Some(StructureV1::from(&not_report.envelope));
            let record =
                privacy::pseudonymise_rejection(record, Some(&not_report.envelope), pseudonymizer);
            vec![Output::Rejected(Box::new(record))]
        }
        Outcome::Rejected(rejection) => {
            let record = rejected_base(
                intake,
                RejectionCategory::Refused,
                rejection.reason.as_str(),
                &rejection.detail,
                &rejection.diagnostics,
            );
            let record = privacy::pseudonymise_rejection(record, None, pseudonymizer);
            vec![Output::Rejected(Box::new(record))]
        }
    }
}

fn rejected_base(
    intake: &Intake,
    category: RejectionCategory,
    reason: &str,
    detail: &str,
    diagnostics: &[arfwire_parse::Diagnostic],
) -> RejectedV1 {
    RejectedV1 {
        schema: REJECTED_SCHEMA.to_owned(),
        rejection_id: rejection_id(&intake.raw_sha256),
        submission_id: submission_id(&intake.raw_sha256),
        category,
        reason: reason.to_owned(),
        detail: convert::clean(detail),
        parser_version: PARSER_VERSION.to_owned(),
        intake: intake.clone(),
        reporter: None,
        structure: None,
        diagnostics: diagnostics
            .iter()
            .map(|d| convert::diagnostic(d, DiagnosticScope::Submission))
            .collect(),
    }
}

/// The effective complaint type of a reported message and where it came from.
fn complaint_type(
    kind: ReportKind,
    feedback: Option<&arfwire_parse::FeedbackReport>,
) -> (String, ComplaintTypeSource) {
    if let Some(feedback_type) = feedback
        .and_then(|f| f.feedback_type.as_deref())
        .filter(|t| !t.trim().is_empty())
    {
        return (
            convert::clean(feedback_type),
            ComplaintTypeSource::FeedbackType,
        );
    }
    let implied = if kind == ReportKind::AuthFailure {
        "auth-failure"
    } else {
        "abuse"
    };
    (implied.to_owned(), ComplaintTypeSource::ImpliedByKind)
}

fn abuse_event(
    submission: &Submission,
    item: &arfwire_parse::ReportedItem,
    intake: &Intake,
) -> AbuseEventV1 {
    let (complaint_type, complaint_type_source) =
        complaint_type(submission.kind, item.feedback.as_ref());
    let diagnostics = submission
        .diagnostics
        .iter()
        .map(|d| convert::diagnostic(d, DiagnosticScope::Submission))
        .chain(
            item.diagnostics
                .iter()
                .map(|d| convert::diagnostic(d, DiagnosticScope::Report)),
        )
        .collect();
    AbuseEventV1 {
        schema: ABUSE_EVENT_SCHEMA.to_owned(),
        event_id: event_id(&intake.raw_sha256, item.index),
        submission_id: submission_id(&intake.raw_sha256),
        report_index: u64::try_from(item.index).unwrap_or(u64::MAX),
        report_count: u64::try_from(submission.reports.len()).unwrap_or(u64::MAX),
        kind: submission.kind.as_str().to_owned(),
        format: submission.format.as_str().to_owned(),
        parser_version: PARSER_VERSION.to_owned(),
        intake: intake.clone(),
        reporter: ReporterV1::from(&submission.envelope),
        structure: StructureV1::from(&submission.envelope),
        feedback: item.feedback.as_ref().map(FeedbackV1::from),
        complaint_type,
        complaint_type_source,
        claimed_source_ip: item.claimed_source_ip.as_ref().map(ClaimedIpV1::from),
        reported_message: convert::reported_message(item),
        diagnostics,
        attribution: None,
        reporter_trust: None,
        complainant_tokens: Vec::new(),
    }
}
