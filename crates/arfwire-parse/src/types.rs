//! The outward types of the parser: what a submission is and what it holds.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::diag::Diagnostic;

/// What the parser made of one submission.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// An abuse report holding one or more reported messages.
    Report(Submission),
    /// Well-formed mail that is not an abuse report (a bounce, an auto-reply, ...).
    NotReport(NotReport),
    /// Input refused before or during parsing (limits, not mail at all, parser failure).
    Rejected(Rejection),
}

impl Outcome {
    /// Diagnostics attached to the outcome, whatever its kind.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Outcome::Report(s) => &s.diagnostics,
            Outcome::NotReport(n) => &n.diagnostics,
            Outcome::Rejected(r) => &r.diagnostics,
        }
    }
}

/// The shape of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ReportKind {
    /// RFC 5965 feedback report (or the pre-RFC draft), any feedback type but auth-failure.
    Arf,
    /// A feedback-loop complaint that breaks ARF structure (Microsoft JMRP, misspelled parts).
    ArfNonstandard,
    /// RFC 6591 authentication-failure report, or a DMARC failure report in another shape.
    AuthFailure,
    /// A person forwarded the spam as an attachment.
    ForwardAttachment,
    /// A person forwarded the spam inline ("Forwarded message", "Original Message").
    ForwardInline,
    /// Only the header block of the spam: `text/rfc822-headers` or headers pasted in the body.
    HeadersOnly,
    /// The spam itself, redirected (resent) to the abuse mailbox.
    Redirect,
}

impl ReportKind {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Arf => "arf",
            ReportKind::ArfNonstandard => "arf_nonstandard",
            ReportKind::AuthFailure => "auth_failure",
            ReportKind::ForwardAttachment => "forward_attachment",
            ReportKind::ForwardInline => "forward_inline",
            ReportKind::HeadersOnly => "headers_only",
            ReportKind::Redirect => "redirect",
        }
    }

    /// Every kind, in wire order.
    pub const ALL: [ReportKind; 7] = [
        ReportKind::Arf,
        ReportKind::ArfNonstandard,
        ReportKind::AuthFailure,
        ReportKind::ForwardAttachment,
        ReportKind::ForwardInline,
        ReportKind::HeadersOnly,
        ReportKind::Redirect,
    ];
}

/// The finer format a report was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ReportFormat {
    /// `multipart/report; report-type=feedback-report` as RFC 5965 defines it.
    Rfc5965,
    /// The pre-RFC draft ARF (`Version: 0.1`).
    DraftArf,
    /// A feedback-report part found outside a `multipart/report` container.
    ArfInMixed,
    /// Microsoft JMRP: `multipart/mixed` holding the complained-about message.
    Jmrp,
    /// Microsoft JMRP without wrapper: the complained-about message itself.
    JmrpBare,
    /// A plain-text DMARC failure report (no ARF part), as Exim writes it.
    DmarcText,
    /// A `message/rfc822` attachment.
    Rfc822Attachment,
    /// An `.eml` file attached as `application/octet-stream` or similar.
    EmlAttachment,
    /// Outlook "-----Original Message-----".
    OutlookInline,
    /// Gmail "---------- Forwarded message ---------".
    GmailInline,
    /// Apple Mail "Begin forwarded message:".
    AppleInline,
    /// Another "Forwarded Message" marker.
    GenericInline,
    /// A `text/rfc822-headers` part outside any ARF.
    Rfc822HeadersPart,
    /// Header fields pasted into a text body.
    PastedHeaders,
    /// `Resent-*` fields on the top-level message.
    Resent,
}

impl ReportFormat {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Rfc5965 => "rfc5965",
            ReportFormat::DraftArf => "draft_arf",
            ReportFormat::ArfInMixed => "arf_in_mixed",
            ReportFormat::Jmrp => "jmrp",
            ReportFormat::JmrpBare => "jmrp_bare",
            ReportFormat::DmarcText => "dmarc_text",
            ReportFormat::Rfc822Attachment => "rfc822_attachment",
            ReportFormat::EmlAttachment => "eml_attachment",
            ReportFormat::OutlookInline => "outlook_inline",
            ReportFormat::GmailInline => "gmail_inline",
            ReportFormat::AppleInline => "apple_inline",
            ReportFormat::GenericInline => "generic_inline",
            ReportFormat::Rfc822HeadersPart => "rfc822_headers_part",
            ReportFormat::PastedHeaders => "pasted_headers",
            ReportFormat::Resent => "resent",
        }
    }
}

/// A submission recognised as an abuse report.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The kind of report (applies to every reported message in it).
    pub kind: ReportKind,
    /// The finer format.
    pub format: ReportFormat,
    /// Facts about the submission's own top-level header (the reporter's mail).
    pub envelope: SubmissionHeader,
    /// One entry per reported message, in document order. Never empty.
    pub reports: Vec<ReportedItem>,
    /// Submission-level diagnostics (structure, line endings, prefixes).
    pub diagnostics: Vec<Diagnostic>,
}

/// Facts from the submission's top-level header.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SubmissionHeader {
    /// `From:` of the submission (the reporter).
    pub from: Option<Mailbox>,
    /// Decoded `Subject:`.
    pub subject: Option<String>,
    /// `Message-ID:` without angle brackets.
    pub message_id: Option<String>,
    /// `Date:` as written.
    pub date: Option<String>,
    /// `Date:` as seconds since the Unix epoch, if it parsed.
    pub date_unix: Option<i64>,
    /// Top-level `Content-Type` (type/subtype, lower case).
    pub content_type: Option<String>,
    /// The `report-type` parameter of the top-level content type, if any.
    pub report_type: Option<String>,
    /// Number of MIME parts in the whole submission, nested messages included.
    pub n_parts: usize,
    /// Deepest nesting of multipart containers and messages.
    pub depth: usize,
    /// First mailbox of `Resent-From:`: who redirected the mail, when someone did (for a
    /// [`ReportKind::Redirect`] this is the reporter, and `from` is the reported sender).
    pub resent_from: Option<Mailbox>,
}

/// One reported message and, for ARF shapes, the feedback report that describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedItem {
    /// Zero-based index within the submission; part of the event id.
    pub index: usize,
    /// MIME path of the part that holds the reported message ("" for the top level, "2", "1.2", ...).
    pub mime_path: String,
    /// The machine-readable feedback report, when the submission carried one.
    pub feedback: Option<FeedbackReport>,
    /// The reported message.
    pub message: ReportedMessage,
    /// A source IP the reporter stated outside any ARF field (JMRP subject, DMARC text body).
    pub claimed_source_ip: Option<ClaimedIp>,
    /// Diagnostics about this item.
    pub diagnostics: Vec<Diagnostic>,
}

impl ReportedItem {
    /// The sending domain: the reported message's `From:` domain, else the envelope sender
    /// domain of the feedback report (`Original-Mail-From`).
    pub fn sender_domain(&self) -> Option<&str> {
        if let Some(domain) = self.message.from.as_ref().and_then(|m| m.domain.as_deref()) {
            return Some(domain);
        }
        self.feedback
            .as_ref()
            .and_then(|f| f.original_mail_from.as_deref())
            .and_then(crate::address::domain_of)
    }
}

/// An IP address a reporter stated in prose rather than in a feedback field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedIp {
    /// The address.
    pub ip: IpAddr,
    /// Where it was read (`subject`, `body`).
    pub origin: &'static str,
}

/// How the reported message was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageSource {
    /// A `message/rfc822` (or `message/global`) part.
    Rfc822Part,
    /// A `text/rfc822-headers` part (or a misspelling of it).
    HeadersPart,
    /// An attachment of another type whose content is a message (`.eml`).
    Attachment,
    /// Headers quoted in a text body after a forward marker.
    InlineForward,
    /// Header fields pasted into a text body.
    Pasted,
    /// The submission's own top-level message.
    TopLevel,
}

impl MessageSource {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageSource::Rfc822Part => "rfc822_part",
            MessageSource::HeadersPart => "headers_part",
            MessageSource::Attachment => "attachment",
            MessageSource::InlineForward => "inline_forward",
            MessageSource::Pasted => "pasted",
            MessageSource::TopLevel => "top_level",
        }
    }
}

/// A header field of a reported message, kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    /// The field name as written.
    pub name: String,
    /// The raw value (after the colon, folding kept, line ending removed), lossily decoded as UTF-8.
    pub value: String,
}

/// A mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, decoded.
    pub name: Option<String>,
    /// The address as written (may lack a domain).
    pub address: String,
    /// The domain, lower case, if the address has one.
    pub domain: Option<String>,
}

/// DKIM-Signature tags used for attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimSignature {
    /// `d=`: signing domain, lower case.
    pub domain: Option<String>,
    /// `s=`: selector.
    pub selector: Option<String>,
    /// `i=`: agent or user identifier.
    pub identity: Option<String>,
    /// `b=` with whitespace removed (first 64 characters), a fingerprint for clustering.
    pub signature_prefix: Option<String>,
}

/// The reported message: its header block byte-for-byte plus the fields attribution needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportedMessage {
    /// How the message was carried.
    pub source: MessageSource,
    /// The raw header block, byte-for-byte as found (without the blank line that ends it).
    pub header_block: Vec<u8>,
    /// True when the body was present (a whole message rather than headers only).
    pub has_body: bool,
    /// Size of the body in bytes (0 when absent).
    pub body_size: usize,
    /// Every header field in order, raw.
    pub fields: Vec<HeaderField>,
    /// Raw `Received:` values, top (newest) first.
    pub received: Vec<String>,
    /// `Message-ID:` without angle brackets.
    pub message_id: Option<String>,
    /// First mailbox of `From:`.
    pub from: Option<Mailbox>,
    /// `Date:` as written.
    pub date: Option<String>,
    /// `Date:` as seconds since the Unix epoch.
    pub date_unix: Option<i64>,
    /// Decoded `Subject:` (any charset).
    pub subject: Option<String>,
    /// `Return-Path:` address.
    pub return_path: Option<String>,
    /// Every DKIM-Signature, in order.
    pub dkim_signatures: Vec<DkimSignature>,
    /// Provider stamps kept for attribution, in header order: `X-MS-*` (the
    /// `X-MS-Exchange-CrossTenant-*` family among them), `X-Forefront-*`, `X-Microsoft-Antispam*`,
    /// `X-OriginatorOrg`, `X-EOP*`, `Authentication-Results`, `ARC-*`, `Received-SPF`,
    /// `X-Originating-IP`. Names are matched case-insensitively and kept as written.
    pub provider_headers: Vec<HeaderField>,
}

/// The machine-readable part of an ARF report (`message/feedback-report`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeedbackReport {
    /// `Feedback-Type`, lower case, as written (unknown types kept).
    pub feedback_type: Option<String>,
    /// `Version` as written (`1`, `0.1`, ...).
    pub version: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Arrival-Date` (or the draft's `Received-Date`) as written.
    pub arrival_date: Option<String>,
    /// The arrival date as seconds since the Unix epoch.
    pub arrival_date_unix: Option<i64>,
    /// `Source-IP`, parsed and normalised; `None` when absent, redacted or invalid.
    pub source_ip: Option<IpAddr>,
    /// `Source-IP` as written (comment included), when present.
    pub source_ip_raw: Option<String>,
    /// RFC 6692 `Source-Port`.
    pub source_port: Option<u16>,
    /// `Original-Envelope-Id`.
    pub original_envelope_id: Option<String>,
    /// `Original-Mail-From`, angle brackets removed.
    pub original_mail_from: Option<String>,
    /// Every `Original-Rcpt-To`, angle brackets removed.
    pub original_rcpt_to: Vec<String>,
    /// Every `Reported-Domain`.
    pub reported_domain: Vec<String>,
    /// Every `Reported-URI`.
    pub reported_uri: Vec<String>,
    /// `Reporting-MTA` (the `dns;` type kept off).
    pub reporting_mta: Option<String>,
    /// Every `Authentication-Results`.
    pub authentication_results: Vec<String>,
    /// `Incidents`, capped at [`crate::Limits::max_incidents`].
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
    /// RFC 6591 `SPF-DNS`.
    pub spf_dns: Vec<String>,
    /// DMARC failure-reporting `Identity-Alignment`.
    pub identity_alignment: Option<String>,
    /// Draft ARF `Removal-Recipient`.
    pub removal_recipient: Vec<String>,
    /// Any other field, by lower-case name, values in order.
    pub extensions: BTreeMap<String, Vec<String>>,
    /// Every field in order: name as written, value with comments stripped, raw value.
    pub fields: Vec<FeedbackField>,
}

/// One field of a feedback report, as written and as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackField {
    /// Name as written.
    pub name: String,
    /// Value, unfolded, with comments removed and whitespace trimmed.
    pub value: String,
    /// Value as written (unfolded, trimmed), comments kept.
    pub raw: String,
}

/// Why a submission is not an abuse report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NotReportReason {
    /// A delivery status notification or other bounce.
    Bounce,
    /// An auto-reply (vacation, out-of-office, read receipt, one-click unsubscribe).
    AutoReply,
    /// A DMARC aggregate (rua) report.
    DmarcAggregate,
    /// An SMTP TLS report (RFC 8460).
    TlsReport,
    /// An abuse notice about something other than mail (X-ARF, CSIRT, copyright).
    NonMailNotice,
    /// A provider's machine notification (e.g. an SES complaint JSON).
    ProviderNotification,
    /// Ordinary mail with no report structure and no reported message.
    OrdinaryMail,
}

impl NotReportReason {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReportReason::Bounce => "bounce",
            NotReportReason::AutoReply => "auto_reply",
            NotReportReason::DmarcAggregate => "dmarc_aggregate",
            NotReportReason::TlsReport => "tls_report",
            NotReportReason::NonMailNotice => "non_mail_notice",
            NotReportReason::ProviderNotification => "provider_notification",
            NotReportReason::OrdinaryMail => "ordinary_mail",
        }
    }
}

/// A submission that is mail but not a report.
#[derive(Debug, Clone, PartialEq)]
pub struct NotReport {
    /// Why.
    pub reason: NotReportReason,
    /// A sentence for a person.
    pub detail: String,
    /// Facts from the top-level header.
    pub envelope: SubmissionHeader,
    /// Diagnostics gathered on the way.
    pub diagnostics: Vec<Diagnostic>,
}

/// Why input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// Zero bytes.
    Empty,
    /// No header fields could be found: not an RFC 5322 message.
    NotMail,
    /// Larger than the message size limit.
    TooLarge,
    /// The top-level header block is larger than its limit.
    HeaderBlockTooLarge,
    /// One header field is larger than its limit.
    HeaderFieldTooLarge,
    /// A header block has more fields than allowed.
    TooManyHeaderFields,
    /// More MIME parts than allowed.
    TooManyParts,
    /// MIME or message nesting deeper than allowed.
    NestingTooDeep,
    /// More reported messages than allowed in one submission.
    TooManyReportedMessages,
    /// The parser failed unexpectedly (a bug, contained).
    ParserFailure,
}

impl RejectReason {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::NotMail => "not_mail",
            RejectReason::TooLarge => "too_large",
            RejectReason::HeaderBlockTooLarge => "header_block_too_large",
            RejectReason::HeaderFieldTooLarge => "header_field_too_large",
            RejectReason::TooManyHeaderFields => "too_many_header_fields",
            RejectReason::TooManyParts => "too_many_parts",
            RejectReason::NestingTooDeep => "nesting_too_deep",
            RejectReason::TooManyReportedMessages => "too_many_reported_messages",
            RejectReason::ParserFailure => "parser_failure",
        }
    }
}

/// Input refused, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// A sentence for a person (sizes and limits, never message content).
    pub detail: String,
    /// Diagnostics gathered before the refusal.
    pub diagnostics: Vec<Diagnostic>,
}
