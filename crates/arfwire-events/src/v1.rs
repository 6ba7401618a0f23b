//! The v1 wire types: `arfwire.abuse-event.v1` and `arfwire.rejected.v1`.
//!
//! Field names and enum values are snake_case. Every field is always serialised: missing
//! data is `null` (or an empty array for lists), never a sentinel. Vocabulary fields that
//! the parser owns (`kind`, `format`, `reason`, diagnostic `code`, ...) are strings here so
//! that a consumer built against an older release keeps reading newer events; the schemas
//! list every value.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::attribution::AttributionV1;
use crate::intake::Intake;

/// The `schema` value of every abuse event.
pub const ABUSE_EVENT_SCHEMA: &str = "arfwire.abuse-event.v1";
/// The `schema` value of every rejection record.
pub const REJECTED_SCHEMA: &str = "arfwire.rejected.v1";

/// One reported message of an abuse report: the event downstream systems subscribe to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbuseEventV1 {
    /// Always [`ABUSE_EVENT_SCHEMA`].
    pub schema: String,
    /// Deterministic id of this reported message: [`crate::event_id`] of
    /// `intake.raw_sha256` and `report_index`.
    pub event_id: String,
    /// Deterministic id of the submission: [`crate::submission_id`] of `intake.raw_sha256`.
    pub submission_id: String,
    /// Zero-based index of this reported message within the submission.
    pub report_index: u64,
    /// How many reported messages (hence events) the submission yielded.
    pub report_count: u64,
    /// The kind of report (`arf`, `auth_failure`, `forward_attachment`, ...).
    pub kind: String,
    /// The finer format (`rfc5965`, `jmrp`, `gmail_inline`, ...).
    pub format: String,
    /// Version of the parser that read the submission.
    pub parser_version: String,
    /// How the submission arrived.
    pub intake: Intake,
    /// The submission's own top-level header: who reported.
    pub reporter: ReporterV1,
    /// The submission's MIME structure, for triage.
    pub structure: StructureV1,
    /// The machine-readable feedback report, when the submission carried one.
    pub feedback: Option<FeedbackV1>,
    /// The effective complaint type: the ARF `Feedback-Type`, else implied by `kind`
    /// (`auth-failure` for auth-failure reports, `abuse` otherwise).
    pub complaint_type: String,
    /// Where `complaint_type` came from.
    pub complaint_type_source: ComplaintTypeSource,
    /// A source IP the reporter stated outside any ARF field (JMRP subject, DMARC text).
    pub claimed_source_ip: Option<ClaimedIpV1>,
    /// The reported message.
    pub reported_message: ReportedMessageV1,
    /// Every tolerated deviation: the submission's, then this reported message's.
    pub diagnostics: Vec<DiagnosticV1>,
    /// Which tenant sent the message and from where. Always `null` in this release; the
    /// shape is fixed by the schema.
    pub attribution: Option<AttributionV1>,
    /// How far the submission's reporter is trusted; `None` when it was not evaluated
    /// (offline runs without DNS).
    #[serde(default)]
    pub reporter_trust: Option<crate::attribution::ReporterTrustV1>,
    /// Pseudonyms (`anon:<16 hex>`) of every complainant address found for this reported
    /// message, in order of discovery, each once (at most 100). See [`crate::Pseudonymizer`].
    #[serde(default)]
    pub complainant_tokens: Vec<String>,
}

impl AbuseEventV1 {
    /// The Kafka key: the sending tenant's id, or `unattributed`, so that one tenant's
    /// events stay in order on one partition.
    pub fn partition_key(&self) -> &str {
        self.attribution
            .as_ref()
            .and_then(|a| a.sending_tenant.as_ref())
            .map_or("unattributed", |t| t.id.as_str())
    }
}

/// A submission that yielded no event: not an abuse report, or refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedV1 {
    /// Always [`REJECTED_SCHEMA`].
    pub schema: String,
    /// Deterministic id of this record: [`crate::rejection_id`] of `intake.raw_sha256`.
    pub rejection_id: String,
    /// Deterministic id of the submission: [`crate::submission_id`] of `intake.raw_sha256`.
    pub submission_id: String,
    /// Not a report, or refused.
    pub category: RejectionCategory,
    /// Why: a not-report reason when `category` is `not_report`, a refusal reason otherwise.
    pub reason: String,
    /// A sentence for a person (sizes and limits, never message content).
    pub detail: String,
    /// Version of the parser that read the submission.
    pub parser_version: String,
    /// How the submission arrived.
    pub intake: Intake,
    /// The submission's top-level header, when it was parsed (`null` when refused).
    pub reporter: Option<ReporterV1>,
    /// The submission's MIME structure, when it was parsed (`null` when refused).
    pub structure: Option<StructureV1>,
    /// Every tolerated deviation found before the decision.
    pub diagnostics: Vec<DiagnosticV1>,
}

/// Why a submission yielded a rejection record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCategory {
    /// Mail, but not an abuse report (a bounce, an auto-reply, a DMARC aggregate report).
    NotReport,
    /// Input refused: empty, not mail, over a limit, or the parser failed.
    Refused,
}

/// Where the effective complaint type came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComplaintTypeSource {
    /// The ARF `Feedback-Type` field.
    FeedbackType,
    /// No `Feedback-Type`: implied by the report kind.
    ImpliedByKind,
}

/// The reporter: facts from the submission's own top-level header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReporterV1 {
    /// First mailbox of the submission's `From:`.
    pub from: Option<MailboxV1>,
    /// Decoded `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:` without angle brackets.
    pub message_id: Option<String>,
    /// `Date:` as written.
    pub date: Option<String>,
    /// `Date:` as RFC 3339 UTC, when it parsed.
    pub date_parsed: Option<String>,
}

/// The submission's MIME structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructureV1 {
    /// Top-level `Content-Type` (type/subtype, lower case).
    pub content_type: Option<String>,
    /// The `report-type` parameter of the top-level content type.
    pub report_type: Option<String>,
    /// Number of MIME parts, nested messages included.
    pub part_count: u64,
    /// Deepest nesting of multipart containers and messages.
    pub depth: u64,
}

/// A mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxV1 {
    /// Display name, decoded; `None` when the mailbox is a complainant's.
    pub name: Option<String>,
    /// The address as written (may lack a domain), or its pseudonym (`anon:<16 hex>`) when
    /// it is a complainant's.
    pub address: String,
    /// The domain, lower case, when the address has one.
    pub domain: Option<String>,
}

/// The machine-readable feedback report (`message/feedback-report`, RFC 5965 / RFC 6591).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackV1 {
    /// `Feedback-Type`, lower case as written (unregistered types kept).
    pub feedback_type: Option<String>,
    /// `Version` as written.
    pub version: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Arrival-Date` (or the draft's `Received-Date`) as written.
    pub arrival_date: Option<String>,
    /// The arrival date as RFC 3339 UTC, when it parsed.
    pub arrival_date_parsed: Option<String>,
    /// `Source-IP`, parsed and normalised; `null` when absent, redacted or invalid.
    pub source_ip: Option<IpAddr>,
    /// `Source-IP` as written (comment included).
    pub source_ip_raw: Option<String>,
    /// RFC 6692 `Source-Port`.
    pub source_port: Option<u16>,
    /// `Original-Envelope-Id`.
    pub original_envelope_id: Option<String>,
    /// `Original-Mail-From`, angle brackets removed.
    pub original_mail_from: Option<String>,
    /// Every `Original-Rcpt-To`, as a pseudonym (`anon:<16 hex>`).
    pub original_rcpt_to: Vec<String>,
    /// Every `Reported-Domain`.
    pub reported_domain: Vec<String>,
    /// Every `Reported-URI`.
    pub reported_uri: Vec<String>,
    /// `Reporting-MTA` (without the `dns;` type).
    pub reporting_mta: Option<String>,
    /// Every `Authentication-Results`.
    pub authentication_results: Vec<String>,
    /// `Incidents` (capped by the parser's limit).
    pub incidents: Option<u64>,
    /// RFC 6591 `Auth-Failure`.
    pub auth_failure: Option<String>,
    /// RFC 6591 `Delivery-Result`.
    pub delivery_result: Option<String>,
    /// RFC 6591 `DKIM-Domain`.
    pub dkim_domain: Option<String>,
    /// RFC 6591 `DKIM-Identity`.
    pub dkim_identity: Option<String>,
    /// RFC 6591 `DKIM-Selector`.
    pub dkim_selector: Option<String>,
    /// RFC 6591 `DKIM-Canonicalized-Header` (base64 as written).
    pub dkim_canonicalized_header: Option<String>,
    /// RFC 6591 `DKIM-Canonicalized-Body` (base64 as written).
    pub dkim_canonicalized_body: Option<String>,
    /// Every RFC 6591 `SPF-DNS`.
    pub spf_dns: Vec<String>,
    /// DMARC failure-reporting `Identity-Alignment`.
    pub identity_alignment: Option<String>,
    /// Every draft-ARF `Removal-Recipient`, as a pseudonym (`anon:<16 hex>`).
    pub removal_recipient: Vec<String>,
    /// Every other field, by lower-case name, values in order.
    pub extensions: BTreeMap<String, Vec<String>>,
    /// Every field in order.
    pub fields: Vec<FeedbackFieldV1>,
}

/// One field of a feedback report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackFieldV1 {
    /// Name as written.
    pub name: String,
    /// Value unfolded, comments removed, whitespace trimmed.
    pub value: String,
    /// Value as written (unfolded, trimmed), comments kept.
    pub raw: String,
}

/// An IP address the reporter stated outside any feedback field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedIpV1 {
    /// The address, normalised.
    pub ip: IpAddr,
    /// Where it was read: `subject` or `body` of the submission.
    pub origin: String,
}

/// The reported message: its header block byte-for-byte plus the fields attribution needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedMessageV1 {
    /// How the message was carried (`rfc822_part`, `headers_part`, ...).
    pub source: String,
    /// MIME path of the part that holds it (`""` for the top level, `"2"`, `"1.2"`).
    pub mime_path: String,
    /// SHA-256 of the raw header block, lower-case hex. The block itself is not carried: it
    /// names the complainant. It stays in the raw submission, kept by the abuse desk's
    /// restricted store.
    pub header_block_sha256: String,
    /// Number of header fields in the block.
    pub header_field_count: u64,
    /// True when the body was present (a whole message rather than headers only).
    pub has_body: bool,
    /// Size of the body in bytes (0 when absent).
    pub body_size: u64,
    /// `Message-ID:` without angle brackets.
    pub message_id: Option<String>,
    /// First mailbox of `From:`.
    pub from: Option<MailboxV1>,
    /// The sending domain, lower case: the `From:` domain, else the `Original-Mail-From`
    /// domain of the feedback report.
    pub sender_domain: Option<String>,
    /// Where `sender_domain` came from.
    pub sender_domain_source: Option<SenderDomainSource>,
    /// `Date:` as written.
    pub date: Option<String>,
    /// `Date:` as RFC 3339 UTC, when it parsed.
    pub date_parsed: Option<String>,
    /// Decoded `Subject:`.
    pub subject: Option<String>,
    /// `Return-Path:` address.
    pub return_path: Option<String>,
    /// Raw `Received:` values, topmost (newest) first, every address in them replaced by its
    /// pseudonym.
    pub received: Vec<String>,
    /// Every `DKIM-Signature`, in order.
    pub dkim_signatures: Vec<DkimSignatureV1>,
    /// Provider stamps kept for attribution, in order, every address in their values
    /// replaced by its pseudonym.
    pub provider_headers: Vec<HeaderFieldV1>,
}

/// Where the reported message's sending domain came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderDomainSource {
    /// The reported message's `From:`.
    HeaderFrom,
    /// The feedback report's `Original-Mail-From`.
    OriginalMailFrom,
}

/// Tags of one `DKIM-Signature`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimSignatureV1 {
    /// `d=`, lower case.
    pub domain: Option<String>,
    /// `s=`.
    pub selector: Option<String>,
    /// `i=`.
    pub identity: Option<String>,
    /// The first 64 characters of `b=`, whitespace removed.
    pub signature_prefix: Option<String>,
}

/// A header field, kept raw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderFieldV1 {
    /// The field name as written.
    pub name: String,
    /// The raw value (folding kept, final line ending removed).
    pub value: String,
}

/// One tolerated deviation from the standards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticV1 {
    /// Stable code.
    pub code: String,
    /// How serious.
    pub severity: DiagnosticSeverity,
    /// A sentence for a person: field names and sizes, never message content.
    pub message: String,
    /// Whether it concerns the whole submission or this reported message.
    pub scope: DiagnosticScope,
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticSeverity {
    /// Worth knowing, harmless.
    Info,
    /// A standard was broken but the meaning is clear.
    Warning,
    /// Ambiguous structure or missing evidence: trust the event less.
    Error,
}

/// What a diagnostic concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticScope {
    /// The whole submission (structure, line endings, prefixes).
    Submission,
    /// The reported message of this event.
    Report,
}
