//! Diagnostics: every deviation from the standards the parser tolerated, with a stable code.

/// How serious a deviation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing, harmless (a historic field name, an mbox prefix).
    Info,
    /// A standard was broken but the meaning is clear.
    Warning,
    /// The structure is ambiguous or evidence is missing; downstream should trust it less.
    Error,
}

impl Severity {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $sev:ident; )*) => {
        /// Stable diagnostic codes. The string form never changes once published.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Stable identifier used on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $code, )* }
            }

            /// The default severity of this code.
            pub fn severity(self) -> Severity {
                match self { $( Code::$variant => Severity::$sev, )* }
            }

            /// Every code, for documentation and schema tests.
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];
        }
    };
}

codes! {
    /// The file began with an mbox `From ` line, which was skipped.
    MboxFromLine = "mbox_from_line", Info;
    /// The file used bare CR line endings; they were read as LF.
    BareCrLineEndings = "bare_cr_line_endings", Warning;
    /// Lines that are neither header fields nor continuations were found in a header block.
    MalformedHeaderLine = "malformed_header_line", Warning;
    /// The top level is not `multipart/report` although a feedback-report part was found.
    NotMultipartReport = "not_multipart_report", Warning;
    /// `multipart/report` without `report-type=feedback-report`.
    MissingReportType = "missing_report_type", Warning;
    /// More than one feedback-report part in one container: which describes what is ambiguous.
    MultipleFeedbackParts = "multiple_feedback_parts", Error;
    /// The parts of the report are not in the RFC 5965 order.
    PartOrder = "part_order", Warning;
    /// The feedback-report part is not the second part or lacks its companion message.
    MissingReportedMessage = "missing_reported_message", Error;
    /// The third part has a non-standard type (`text/rfc822-header`, `message/rfc822-headers`).
    NonstandardHeadersPart = "nonstandard_headers_part", Warning;
    /// The reported message has no header fields (e.g. replaced by `REDACTED`).
    ReportedMessageRedacted = "reported_message_redacted", Warning;
    /// A required ARF field is missing.
    MissingRequiredField = "missing_required_field", Warning;
    /// A field that must appear once appeared more than once; the first value is kept.
    DuplicateField = "duplicate_field", Warning;
    /// `Feedback-Type` is not one registered by RFC 5965 / RFC 6591.
    UnknownFeedbackType = "unknown_feedback_type", Info;
    /// `Version` is not 1 (the draft's 0.1 is common).
    NonstandardVersion = "nonstandard_version", Info;
    /// The draft's `Received-Date` was used for `Arrival-Date`.
    HistoricReceivedDate = "historic_received_date", Info;
    /// A field name was written in a non-canonical case (`Source-Ip`, `feedback-type`).
    FieldNameCase = "field_name_case", Info;
    /// A value is redacted (`x.x.x.x`, `REDACTED`) and read as absent.
    RedactedValue = "redacted_value", Info;
    /// A value could not be parsed (an IP, a port, a date, a number) and was read as absent.
    InvalidValue = "invalid_value", Warning;
    /// `Incidents` was larger than the cap and was capped.
    IncidentsCapped = "incidents_capped", Warning;
    /// A line in the feedback-report part is not a field.
    MalformedFeedbackLine = "malformed_feedback_line", Warning;
    /// The feedback-report part was transfer-encoded (8bit, base64) although it should be 7bit.
    FeedbackPartEncoded = "feedback_part_encoded", Info;
    /// The reported message began with a `>From ` or `From ` line, which was skipped.
    EscapedFromLine = "escaped_from_line", Info;
    /// A blank line split the reported header block (the RFC 5965 B.2 erratum); it was joined.
    HeaderBlockSplit = "header_block_split", Warning;
    /// The arrival date is later than the time the submission was received.
    ArrivalDateInFuture = "arrival_date_in_future", Warning;
    /// A MIME part had a transfer-encoding problem.
    EncodingProblem = "encoding_problem", Warning;
    /// A forwarded message was itself a forward; the innermost message was taken.
    NestedForward = "nested_forward", Info;
    /// The reported message came from an inline forward, so only some header fields are known.
    PartialHeaders = "partial_headers", Info;
    /// The reported message has no `From:`.
    MissingFrom = "missing_from", Warning;
    /// The reported message has no `Received:` fields, so the sending path is unknown.
    NoReceivedFields = "no_received_fields", Info;
    /// A `message/rfc822` part was quoted-printable or base64 encoded (RFC 2046 allows only
    /// 7bit, 8bit and binary); it was decoded.
    EncodedMessagePart = "encoded_message_part", Info;
    /// The feedback report sits inside a message that someone forwarded (a forwarded ARF).
    ForwardedReport = "forwarded_report", Info;
    /// Header fields hold unencoded non-ASCII text (raw 8-bit bytes, raw ISO-2022-JP); they
    /// were decoded with the declared charset or windows-1252.
    RawHeaderBytes = "raw_8bit_header", Warning;
    /// Pasted header lines had lost their folding indentation; lines that are not fields were
    /// read as continuations of the field above.
    PastedFoldingRepaired = "pasted_folding_repaired", Info;
    /// The reporter's subject named the source IP, but it was masked or not an address.
    ClaimedIpUnreadable = "claimed_ip_unreadable", Info;
}

/// One tolerated deviation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Severity (the code's default unless raised).
    pub severity: Severity,
    /// A sentence for a person: field names and sizes, never message content.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic with the code's default severity.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
        }
    }
}
