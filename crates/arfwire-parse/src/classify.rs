//! Classify a submission and extract its reported messages.
//!
//! The order of the checks matters and is the contract:
//! 1. hard limits (pre-scan), then MIME parsing, then limits on the parsed tree;
//! 2. any `message/feedback-report` part, anywhere: an ARF report (a forwarded ARF included);
//! 3. shapes that carry no feedback part but are reports: JMRP (wrapped and bare), plain-text
//!    DMARC failure reports;
//! 4. negatives: bounces, auto-replies, DMARC aggregate and TLS reports, non-mail notices;
//! 5. person-made reports: attached messages, `text/rfc822-headers`, inline forwards, pasted
//!    headers, resent (redirected) spam;
//! 6. everything else is ordinary mail, which is not a report.

use std::borrow::Cow;

use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// The MIME parser, configured to decode only the header fields the classifier reads (MIME
/// structure, addresses, dates, message ids, Subject); every other field stays raw. Received
/// fields in particular are kept raw: attribution parses them with its own rules, so the
/// typed parse mail-parser would do is wasted work on the hot path.
static MIME_PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
    MessageParser::new()
        .with_mime_headers()
        .with_address_headers()
        .with_date_headers()
        .with_message_ids()
        .header_text(mail_parser::HeaderName::Subject)
});

use crate::ParseOptions;
use crate::arf;
use crate::diag::{Code, Diagnostic, Severity};
use crate::headers::{fields, looks_like_headers, split_header_block};
use crate::inline;
use crate::limits::{is_field_start, prescan};
use crate::message;
use crate::types::{
    ClaimedIp, MessageSource, NotReport, NotReportReason, Outcome, RejectReason, Rejection,
    ReportFormat, ReportKind, ReportedItem, Submission, SubmissionHeader,
};

/// One MIME part in document order, flattened across nested messages.
struct Node<'m> {
    /// Dotted MIME path ("" is the top-level message's root part).
    path: String,
    /// Content type, lower case, `type/subtype`.
    ctype: String,
    /// The part.
    part: &'m MessagePart<'m>,
    /// The message the part belongs to (its raw buffer holds the part's bytes).
    owner: &'m Message<'m>,
    /// Index of the parent node (the multipart or the message/rfc822 part holding it).
    parent: Option<usize>,
    /// How many `message/*` levels enclose this part (0 for the top-level message).
    msg_level: usize,
    /// Children in order.
    children: Vec<usize>,
}

fn content_type_of(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => {
            let sub = ct.subtype().unwrap_or("");
            format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase()
        }
        None => match part.body {
            PartType::Message(_) => "message/rfc822".to_owned(),
            PartType::Multipart(_) => "multipart/mixed".to_owned(),
            _ => "text/plain".to_owned(),
        },
    }
}

struct Tree<'m> {
    nodes: Vec<Node<'m>>,
    depth: usize,
    max_fields: usize,
}

/// Flatten the MIME tree iteratively (no recursion: depth is attacker-controlled).
fn flatten<'m>(root: &'m Message<'m>, max_nodes: usize) -> Tree<'m> {
    let mut tree = Tree {
        nodes: Vec::new(),
        depth: 0,
        max_fields: 0,
    };
    // (message, part id, path, parent node, message level, depth)
    type Pending<'m> = (&'m Message<'m>, u32, String, Option<usize>, usize, usize);
    let mut stack: Vec<Pending<'m>> = vec![(root, 0, String::new(), None, 0, 0)];
    while let Some((owner, part_id, path, parent, msg_level, depth)) = stack.pop() {
        // Stop early on a tree larger than any limit: the caller refuses it anyway.
        if tree.nodes.len() > max_nodes {
            break;
        }
        let Some(part) = owner.parts.get(part_id as usize) else {
            continue;
        };
        let idx = tree.nodes.len();
        tree.depth = tree.depth.max(depth);
        tree.max_fields = tree.max_fields.max(part.headers.len());
        tree.nodes.push(Node {
            path: path.clone(),
            ctype: content_type_of(part),
            part,
            owner,
            parent,
            msg_level,
            children: Vec::new(),
        });
        if let Some(p) = parent
            && let Some(parent_node) = tree.nodes.get_mut(p)
        {
            parent_node.children.push(idx);
        }
        match &part.body {
            PartType::Multipart(children) => {
                // Push in reverse so that children come out in document order.
                for (i, child) in children.iter().enumerate().rev() {
                    // mail-parser can return a malformed tree in which a multipart lists
                    // itself or an ancestor among its children; its parts are stored in
                    // document order, so a real child always has a larger id. Anything else
                    // would make this walk loop forever.
                    if *child <= part_id {
                        continue;
                    }
                    let child_path = if path.is_empty() {
                        format!("{}", i + 1)
                    } else {
                        format!("{path}.{}", i + 1)
                    };
                    stack.push((owner, *child, child_path, Some(idx), msg_level, depth + 1));
                }
            }
            PartType::Message(nested) => {
                stack.push((nested, 0, path, Some(idx), msg_level + 1, depth + 1));
            }
            _ => {}
        }
    }
    tree
}

/// The raw bytes of a part's body: for a nested message, the message as it stands (decoded
/// when it was transfer-encoded); for a text part that was not transfer-encoded, its bytes
/// as written (mail-parser's text is charset-decoded, which loses raw 8-bit header bytes);
/// for other parts, the decoded contents.
fn part_bytes<'m>(node: &Node<'m>) -> Cow<'m, [u8]> {
    let part = node.part;
    let raw_body = || {
        let start = part.offset_body as usize;
        let end = (part.offset_end as usize).min(node.owner.raw_message.len());
        node.owner.raw_message.get(start..end)
    };
    match &part.body {
        PartType::Message(nested) => {
            if part.encoding == mail_parser::Encoding::None
                && let Some(bytes) = raw_body()
            {
                return Cow::Borrowed(bytes);
            }
            Cow::Owned(nested.raw_message.to_vec())
        }
        PartType::Text(_) | PartType::Html(_) => match raw_body() {
            Some(bytes) if part.encoding == mail_parser::Encoding::None => Cow::Borrowed(bytes),
            _ => Cow::Owned(part.contents().to_vec()),
        },
        _ => Cow::Owned(part.contents().to_vec()),
    }
}

fn header_text<'a>(message: &'a Message<'a>, name: &'static str) -> Option<&'a str> {
    message
        .header_raw(name)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The charset a mail declares for its text: the top-level `charset`, else the first text
/// body part's. Used to read header fields written with raw 8-bit bytes.
fn declared_charset(message: &Message<'_>) -> Option<String> {
    let root_charset = message
        .root_part()
        .content_type()
        .and_then(|ct| ct.attribute("charset"));
    let text_charset = || {
        let id = *message.text_body.first()?;
        message
            .parts
            .get(id as usize)?
            .content_type()?
            .attribute("charset")
    };
    root_charset
        .or_else(text_charset)
        .map(|c| c.trim().to_ascii_lowercase())
}

fn envelope_of(
    message: &Message<'_>,
    tree: &Tree<'_>,
    diags: &mut Vec<Diagnostic>,
) -> SubmissionHeader {
    let root = message.root_part();
    let (content_type, report_type) = match root.content_type() {
        Some(ct) => (
            Some(format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase()),
            ct.attribute("report-type")
                .map(|s| s.trim().to_ascii_lowercase()),
        ),
        None => (None, None),
    };
    let mut from = message.from().and_then(message::first_mailbox);
    let mut subject = message.subject().map(|s| s.trim().to_owned());
    let mut resent_from = message
        .header("Resent-From")
        .and_then(|v| v.as_address())
        .and_then(message::first_mailbox);

    // Header fields written in raw 8-bit: mail-parser reads them as lossy UTF-8. Read the
    // header block again, decoded with the charset the mail declares.
    let header_end = (root.offset_body as usize).min(message.raw_message.len());
    let block = message.raw_message.get(..header_end).unwrap_or_default();
    let charset = declared_charset(message);
    if let Some((transcoded, label)) =
        message::transcode_raw_header_block(block, charset.as_deref())
    {
        diags.push(Diagnostic::new(
            Code::RawHeaderBytes,
            format!(
                "the submission's header fields hold unencoded non-ASCII text; read as {label}"
            ),
        ));
        let mut buf = transcoded;
        buf.extend_from_slice(b"\r\n\r\n");
        if let Some(parsed) = MessageParser::new()
            .with_address_headers()
            .header_text(mail_parser::HeaderName::Subject)
            .parse_headers(&buf[..])
        {
            from = parsed.from().and_then(message::first_mailbox).or(from);
            subject = parsed.subject().map(|s| s.trim().to_owned()).or(subject);
            resent_from = parsed
                .header("Resent-From")
                .and_then(|v| v.as_address())
                .and_then(message::first_mailbox)
                .or(resent_from);
        }
    }
    SubmissionHeader {
        from,
        subject,
        message_id: message.message_id().map(str::to_owned),
        date: header_text(message, "Date").map(str::to_owned),
        date_unix: message
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_timestamp()),
        content_type,
        report_type,
        n_parts: tree.nodes.len(),
        depth: tree.depth,
        resent_from,
    }
}

/// Say so when pasted header lines had lost their folding.
fn note_refolded(pasted: &inline::Pasted, diags: &mut Vec<Diagnostic>) {
    if pasted.refolded > 0 {
        diags.push(Diagnostic::new(
            Code::PastedFoldingRepaired,
            format!(
                "{} pasted line(s) had lost their folding and were joined to the field above",
                pasted.refolded
            ),
        ));
    }
}

/// Say so when a `message/rfc822` part was transfer-encoded (and so had to be decoded).
fn note_encoded_message(node: &Node<'_>, diags: &mut Vec<Diagnostic>) {
    if is_message_type(&node.ctype) && node.part.encoding != mail_parser::Encoding::None {
        diags.push(Diagnostic::new(
            Code::EncodedMessagePart,
            "the attached message was quoted-printable or base64 encoded; it was decoded",
        ));
    }
}

fn rejected(reason: RejectReason, detail: impl Into<String>, diags: Vec<Diagnostic>) -> Outcome {
    Outcome::Rejected(Rejection {
        reason,
        detail: detail.into(),
        diagnostics: diags,
    })
}

/// The whole parse.
pub(crate) fn run(raw: &[u8], options: &ParseOptions) -> Outcome {
    let limits = &options.limits;
    if raw.trim_ascii().is_empty() {
        return rejected(RejectReason::Empty, "the submission is empty", Vec::new());
    }
    if let Err(rejection) = prescan(raw, limits) {
        return Outcome::Rejected(rejection);
    }
    let mut diags = Vec::new();

    // Bare CR line endings (classic Mac): read them as LF. The raw bytes stay as they are
    // for hashing and evidence; only the parse sees the converted copy.
    let mut data: Cow<'_, [u8]> = Cow::Borrowed(raw);
    if !raw.contains(&b'\n') && raw.contains(&b'\r') {
        diags.push(Diagnostic::new(
            Code::BareCrLineEndings,
            "the submission uses bare CR line endings",
        ));
        data = Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'\r' { b'\n' } else { b })
                .collect(),
        );
    }
    let mut start = 0;
    while start < data.len() && matches!(data[start], b'\r' | b'\n' | b' ' | b'\t') {
        start += 1;
    }
    if data[start..].starts_with(b"From ") {
        diags.push(Diagnostic::new(
            Code::MboxFromLine,
            "the submission begins with an mbox From line, which was skipped",
        ));
        start += data[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len() - start, |p| p + 1);
    }
    let body = &data[start..];
    let first_line = crate::limits::lines(body).next().unwrap_or_default();
    if !is_field_start(first_line) {
        return rejected(
            RejectReason::NotMail,
            "the submission does not begin with a header field, so it is not an RFC 5322 message",
            diags,
        );
    }

    let Some(message) = MIME_PARSER.parse(body) else {
        return rejected(
            RejectReason::NotMail,
            "no header fields were found, so the submission is not an RFC 5322 message",
            diags,
        );
    };
    let tree = flatten(&message, limits.max_parts.saturating_add(1));
    if tree.nodes.len() > limits.max_parts {
        return rejected(
            RejectReason::TooManyParts,
            format!(
                "the submission has {} MIME parts; the limit is {}",
                tree.nodes.len(),
                limits.max_parts
            ),
            diags,
        );
    }
    if tree.depth > limits.max_depth {
        return rejected(
            RejectReason::NestingTooDeep,
            format!(
                "the submission nests {} levels deep; the limit is {}",
                tree.depth, limits.max_depth
            ),
            diags,
        );
    }
    if tree.max_fields > limits.max_header_fields {
        return rejected(
            RejectReason::TooManyHeaderFields,
            format!(
                "a part has {} header fields; the limit is {}",
                tree.max_fields, limits.max_header_fields
            ),
            diags,
        );
    }
    if tree.nodes.iter().any(|n| n.part.is_encoding_problem) {
        diags.push(Diagnostic::new(
            Code::EncodingProblem,
            "a MIME part has a transfer-encoding problem",
        ));
    }
    let envelope = envelope_of(&message, &tree, &mut diags);
    let ctx = Ctx {
        message: &message,
        tree: &tree,
        envelope,
        options,
    };
    ctx.classify(diags)
}

struct Ctx<'a, 'm> {
    message: &'m Message<'m>,
    tree: &'a Tree<'m>,
    envelope: SubmissionHeader,
    options: &'a ParseOptions,
}

/// A reported message found, before indexes are assigned.
struct Found {
    mime_path: String,
    feedback: Option<crate::types::FeedbackReport>,
    message: crate::types::ReportedMessage,
    claimed_source_ip: Option<ClaimedIp>,
    diagnostics: Vec<Diagnostic>,
}

const HEADERS_TYPES: &[&str] = &[
    "text/rfc822-headers",
    "text/rfc822-header",
    "message/rfc822-headers",
    "message/rfc822-header",
];

fn is_message_type(ctype: &str) -> bool {
    matches!(ctype, "message/rfc822" | "message/global")
}

impl<'m> Ctx<'_, 'm> {
    fn node(&self, idx: usize) -> &Node<'m> {
        &self.tree.nodes[idx]
    }

    fn header(&self, name: &'static str) -> Option<&'m str> {
        header_text(self.message, name)
    }

    fn subject_lower(&self) -> String {
        self.envelope
            .subject
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    fn sender_lower(&self) -> String {
        self.envelope
            .from
            .as_ref()
            .map(|m| m.address.to_ascii_lowercase())
            .unwrap_or_default()
    }

    fn classify(&self, mut diags: Vec<Diagnostic>) -> Outcome {
        // 2. ARF anywhere.
        let feedback_nodes: Vec<usize> = (0..self.tree.nodes.len())
            .filter(|&i| self.node(i).ctype == "message/feedback-report")
            .collect();
        if !feedback_nodes.is_empty() {
            return self.arf(feedback_nodes, diags);
        }
        // 3. Reports without a feedback part.
        if let Some(outcome) = self.jmrp(&mut diags) {
            return outcome;
        }
        if let Some(outcome) = self.dmarc_text(&mut diags) {
            return outcome;
        }
        // 4. Negatives.
        if let Some((reason, detail)) = self.negative() {
            return Outcome::NotReport(NotReport {
                reason,
                detail: detail.to_owned(),
                envelope: self.envelope.clone(),
                diagnostics: diags,
            });
        }
        // 5. Person-made reports.
        if let Some(outcome) = self.attachments(&mut diags) {
            return outcome;
        }
        if let Some(outcome) = self.inline_forward(&mut diags) {
            return outcome;
        }
        if let Some(outcome) = self.resent(&mut diags) {
            return outcome;
        }
        Outcome::NotReport(NotReport {
            reason: NotReportReason::OrdinaryMail,
            detail:
                "no report structure, attached message, forwarded or pasted header block was found"
                    .to_owned(),
            envelope: self.envelope.clone(),
            diagnostics: diags,
        })
    }

    fn finish(
        &self,
        kind: ReportKind,
        format: ReportFormat,
        found: Vec<Found>,
        diagnostics: Vec<Diagnostic>,
    ) -> Outcome {
        let limit = self.options.limits.max_reported_messages;
        if found.len() > limit {
            return rejected(
                RejectReason::TooManyReportedMessages,
                format!(
                    "the submission holds {} reported messages; the limit is {limit}",
                    found.len()
                ),
                diagnostics,
            );
        }
        let reports = found
            .into_iter()
            .enumerate()
            .map(|(index, f)| ReportedItem {
                index,
                mime_path: f.mime_path,
                feedback: f.feedback,
                message: f.message,
                claimed_source_ip: f.claimed_source_ip,
                diagnostics: f.diagnostics,
            })
            .collect();
        Outcome::Report(Submission {
            kind,
            format,
            envelope: self.envelope.clone(),
            reports,
            diagnostics,
        })
    }

    /// ARF: each feedback-report part with the reported message beside it.
    fn arf(&self, feedback_nodes: Vec<usize>, mut diags: Vec<Diagnostic>) -> Outcome {
        let top_is_report = self.envelope.content_type.as_deref() == Some("multipart/report");
        let mut found = Vec::new();
        let mut nonstandard = false;
        let mut auth_failure = false;
        let mut draft = false;
        let mut all_in_report = true;
        let mut seen_parents: Vec<Option<usize>> = Vec::new();

        for &fb_idx in &feedback_nodes {
            let fb = self.node(fb_idx);
            let mut item_diags = Vec::new();
            // RFC 5965 §7.1: the feedback part is 7bit. Base64, quoted-printable and 8bit
            // all occur.
            let declared_encoding = fb
                .part
                .content_transfer_encoding()
                .map(|c| c.trim().to_ascii_lowercase())
                .unwrap_or_default();
            if fb.part.encoding != mail_parser::Encoding::None
                || !matches!(declared_encoding.as_str(), "" | "7bit")
            {
                item_diags.push(Diagnostic::new(
                    Code::FeedbackPartEncoded,
                    "the feedback-report part is transfer-encoded",
                ));
            }
            let feedback = arf::parse_fields(
                &part_bytes(fb),
                &self.options.limits,
                self.options.received_at_unix,
                &mut item_diags,
            );
            if seen_parents.contains(&fb.parent) {
                diags.push(Diagnostic::new(
                    Code::MultipleFeedbackParts,
                    "one container holds more than one feedback-report part",
                ));
            }
            seen_parents.push(fb.parent);

            // The container: multipart/report expected.
            let container = fb.parent.map(|p| self.node(p));
            match container {
                Some(c) if c.ctype == "multipart/report" => {
                    let report_type = c
                        .part
                        .content_type()
                        .and_then(|ct| ct.attribute("report-type"))
                        .map(|s| s.trim().to_ascii_lowercase());
                    if report_type.as_deref() != Some("feedback-report") {
                        item_diags.push(Diagnostic::new(
                            Code::MissingReportType,
                            "multipart/report lacks report-type=feedback-report",
                        ));
                    }
                }
                _ => {
                    all_in_report = false;
                    item_diags.push(Diagnostic::new(
                        Code::NotMultipartReport,
                        "the feedback-report part is not inside multipart/report",
                    ));
                }
            }

            // The reported message: the next sibling that is a message or a header block.
            let siblings: Vec<usize> = container.map(|c| c.children.clone()).unwrap_or_default();
            let position = siblings.iter().position(|&s| s == fb_idx);
            let after = position.map_or(&[][..], |p| &siblings[p + 1..]);
            let before = position.map_or(&[][..], |p| &siblings[..p]);
            let pick = |candidates: &[usize]| -> Option<usize> {
                candidates.iter().copied().find(|&s| {
                    let ct = &self.node(s).ctype;
                    is_message_type(ct) || HEADERS_TYPES.contains(&ct.as_str())
                })
            };
            let reported_idx = match pick(after) {
                Some(i) => Some(i),
                None => {
                    let i = pick(before);
                    if i.is_some() {
                        item_diags.push(Diagnostic::new(
                            Code::PartOrder,
                            "the reported message comes before the feedback-report part",
                        ));
                    }
                    i.or_else(|| after.first().copied())
                }
            };
            if position != Some(1) && container.is_some() {
                item_diags.push(Diagnostic::new(
                    Code::PartOrder,
                    "the feedback-report part is not the second part",
                ));
            }
            let message = match reported_idx {
                Some(idx) => {
                    let node = self.node(idx);
                    let source = if is_message_type(&node.ctype) {
                        MessageSource::Rfc822Part
                    } else {
                        MessageSource::HeadersPart
                    };
                    if matches!(
                        node.ctype.as_str(),
                        "text/rfc822-header" | "message/rfc822-headers" | "message/rfc822-header"
                    ) {
                        nonstandard = true;
                        item_diags.push(Diagnostic::new(
                            Code::NonstandardHeadersPart,
                            format!("the reported message is typed {}", node.ctype),
                        ));
                    }
                    note_encoded_message(node, &mut item_diags);
                    Some((
                        node.path.clone(),
                        message::build(&part_bytes(node), source, &mut item_diags),
                    ))
                }
                None => None,
            };
            let (mime_path, message) = match message {
                Some(m) => m,
                None => {
                    item_diags.push(Diagnostic::new(
                        Code::MissingReportedMessage,
                        "no reported message accompanies the feedback report",
                    ));
                    (
                        fb.path.clone(),
                        message::build(b"", MessageSource::HeadersPart, &mut Vec::new()),
                    )
                }
            };
            if feedback.feedback_type.as_deref() == Some("auth-failure") {
                auth_failure = true;
            }
            if feedback
                .version
                .as_deref()
                .is_some_and(|v| v.starts_with('0'))
            {
                draft = true;
            }
            found.push(Found {
                mime_path,
                feedback: Some(feedback),
                message,
                claimed_source_ip: None,
                diagnostics: item_diags,
            });
        }
        if !top_is_report && all_in_report {
            let forwarded = feedback_nodes.iter().all(|&i| self.node(i).msg_level > 0);
            if forwarded {
                // A forwarded ARF: the report sits inside another message. Fine, but say so.
                diags.push(Diagnostic::new(
                    Code::ForwardedReport,
                    "the report was found inside a forwarded message",
                ));
            } else {
                diags.push(Diagnostic::new(
                    Code::NotMultipartReport,
                    "the report sits in a multipart/report nested inside another container",
                ));
            }
        }
        if diags
            .iter()
            .any(|d| d.code == Code::MultipleFeedbackParts && d.severity == Severity::Error)
        {
            for f in &mut found {
                f.diagnostics.push(Diagnostic::new(
                    Code::MultipleFeedbackParts,
                    "this report shares its container with another feedback report",
                ));
            }
        }
        let kind = if auth_failure {
            ReportKind::AuthFailure
        } else if nonstandard {
            ReportKind::ArfNonstandard
        } else {
            ReportKind::Arf
        };
        let format = if !all_in_report {
            ReportFormat::ArfInMixed
        } else if draft {
            ReportFormat::DraftArf
        } else {
            ReportFormat::Rfc5965
        };
        self.finish(kind, format, found, diags)
    }

    /// Microsoft JMRP: `staff@hotmail.com` complaint wrapping the message, or the message
    /// itself carrying `X-HmXmrOriginalRecipient`.
    fn jmrp(&self, diags: &mut Vec<Diagnostic>) -> Option<Outcome> {
        let subject = self.subject_lower();
        let from = self.sender_lower();
        let subject_ip = subject
            .strip_prefix("complaint about message from ")
            .map(str::trim);
        let claimed = subject_ip.and_then(arf::parse_ip).map(|ip| ClaimedIp {
            ip,
            origin: "subject",
        });
        let wrapped = from.ends_with("@hotmail.com") && from.starts_with("staff@")
            || subject.starts_with("complaint about message from");
        if wrapped {
            let attached: Vec<usize> = (0..self.tree.nodes.len())
                .filter(|&i| {
                    let n = self.node(i);
                    n.msg_level == 0 && is_message_type(&n.ctype)
                })
                .collect();
            if attached.is_empty() {
                return None;
            }
            let found = attached
                .iter()
                .map(|&i| {
                    let node = self.node(i);
                    let mut d = Vec::new();
                    if claimed.is_none() && subject_ip.is_some() {
                        d.push(Diagnostic::new(
                            Code::ClaimedIpUnreadable,
                            "the subject names the source IP, but it is masked or not an address",
                        ));
                    }
                    note_encoded_message(node, &mut d);
                    let message =
                        message::build(&part_bytes(node), MessageSource::Rfc822Part, &mut d);
                    Found {
                        mime_path: node.path.clone(),
                        feedback: None,
                        message,
                        claimed_source_ip: claimed.clone(),
                        diagnostics: d,
                    }
                })
                .collect();
            return Some(self.finish(
                ReportKind::ArfNonstandard,
                ReportFormat::Jmrp,
                found,
                std::mem::take(diags),
            ));
        }
        if self.header("X-HmXmrOriginalRecipient").is_some() {
            let mut d = Vec::new();
            let message =
                message::build(self.message.raw_message(), MessageSource::TopLevel, &mut d);
            return Some(self.finish(
                ReportKind::ArfNonstandard,
                ReportFormat::JmrpBare,
                vec![Found {
                    mime_path: String::new(),
                    feedback: None,
                    message,
                    claimed_source_ip: None,
                    diagnostics: d,
                }],
                std::mem::take(diags),
            ));
        }
        None
    }

    /// The first text body, decoded (HTML converted to text when there is no plain part).
    fn text_body(&self) -> Option<Cow<'m, str>> {
        self.message.body_text(0)
    }

    /// A DMARC failure report in plain text (Exim and others): no ARF part, the failing
    /// message's headers copied into the body.
    fn dmarc_text(&self, diags: &mut Vec<Diagnostic>) -> Option<Outcome> {
        let subject = self.subject_lower();
        if !(subject.contains("dmarc")
            && (subject.contains("forensic") || subject.contains("failure")))
        {
            return None;
        }
        let text = self.text_body()?;
        let pasted = inline::pasted_headers(text.as_bytes())?;
        let mut d = Vec::new();
        note_refolded(&pasted, &mut d);
        let message = message::build(&pasted.block, MessageSource::Pasted, &mut d);
        let claimed = text
            .lines()
            .find_map(|l| {
                let l = l.trim();
                let lower = l.to_ascii_lowercase();
                lower
                    .strip_prefix("sender ip address:")
                    .or_else(|| lower.strip_prefix("source ip:"))
                    .and_then(|v| arf::parse_ip(v.trim()))
            })
            .map(|ip| ClaimedIp { ip, origin: "body" });
        Some(self.finish(
            ReportKind::AuthFailure,
            ReportFormat::DmarcText,
            vec![Found {
                mime_path: "1".to_owned(),
                feedback: None,
                message,
                claimed_source_ip: claimed,
                diagnostics: d,
            }],
            std::mem::take(diags),
        ))
    }

    /// Mail that is not a report, with the reason.
    fn negative(&self) -> Option<(NotReportReason, &'static str)> {
        let report_type = self.envelope.report_type.as_deref().unwrap_or("");
        let is_report = self.envelope.content_type.as_deref() == Some("multipart/report");
        if is_report && report_type == "tlsrpt" || self.header("TLS-Report-Domain").is_some() {
            return Some((NotReportReason::TlsReport, "an SMTP TLS report (RFC 8460)"));
        }
        let has_dsn_part = self.tree.nodes.iter().any(|n| {
            matches!(
                n.ctype.as_str(),
                "message/delivery-status" | "message/global-delivery-status"
            ) && n.msg_level == 0
        });
        if is_report && report_type == "delivery-status" || has_dsn_part {
            return Some((NotReportReason::Bounce, "a delivery status notification"));
        }
        if is_report && report_type == "disposition-notification" {
            return Some((NotReportReason::AutoReply, "a read receipt (MDN)"));
        }
        let subject = self.subject_lower();
        let from = self.sender_lower();
        let local = from.split('@').next().unwrap_or("");
        let from_name = self
            .envelope
            .from
            .as_ref()
            .and_then(|m| m.name.as_deref())
            .unwrap_or("")
            .to_ascii_lowercase();
        let dmarc_attachment = self.tree.nodes.iter().any(|n| {
            let name = n.part.attachment_name().unwrap_or("").to_ascii_lowercase();
            (name.contains('!')
                && (name.ends_with(".zip")
                    || name.ends_with(".gz")
                    || name.ends_with(".xml")
                    || name.ends_with(".xml.gz")))
                || matches!(
                    n.ctype.as_str(),
                    "application/gzip"
                        | "application/zip"
                        | "application/x-gzip"
                        | "application/x-zip-compressed"
                ) && name.contains('!')
        });
        if dmarc_attachment
            || subject.contains("report domain:") && subject.contains("submitter")
            || subject.contains("dmarc aggregate")
        {
            return Some((NotReportReason::DmarcAggregate, "a DMARC aggregate report"));
        }
        if self.header("X-ARF").is_some() || self.header("X-XARF").is_some() {
            return Some((
                NotReportReason::NonMailNotice,
                "an X-ARF notice about something other than a reported mail",
            ));
        }
        if self
            .message
            .header_raw("X-MS-Exchange-Message-Is-Ndr")
            .is_some()
        {
            return Some((NotReportReason::Bounce, "an Exchange non-delivery report"));
        }
        // A person forwarding a fake bounce (phishing dressed as a delivery failure), or a
        // postmaster forwarding spam, writes "Fwd:" first: the subject and sender tests
        // below are for real bounces only.
        let forwarded = inline::is_forward_subject(&subject);
        if !forwarded
            && (matches!(
                local,
                "mailer-daemon" | "postmaster" | "mail-daemon" | "mailerdaemon"
            ) || from_name.contains("mail delivery"))
        {
            return Some((NotReportReason::Bounce, "a bounce from a mail system"));
        }
        const BOUNCE_SUBJECTS: &[&str] = &[
            "undeliverable",
            "undelivered mail",
            "returned mail",
            "delivery status notification",
            "delivery failure",
            "failure notice",
            "mail delivery failed",
            "delivery has failed",
            "could not send message",
            "message delayed",
            "delivery delayed",
            "non remis",
            "nondeliverable",
            "email bounce notification",
        ];
        if !forwarded && BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s)) {
            return Some((NotReportReason::Bounce, "a bounce (by its subject)"));
        }
        let auto_submitted = self
            .header("Auto-Submitted")
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        if auto_submitted.starts_with("auto-replied")
            || self.header("X-Autoreply").is_some()
            || self.header("X-Autorespond").is_some()
            || self.header("X-Apple-Unsubscribe").is_some()
            || subject.starts_with("auto:")
            || subject.starts_with("automatic reply")
            || subject.starts_with("out of office")
        {
            return Some((NotReportReason::AutoReply, "an auto-reply"));
        }
        if let Some(text) = self.text_body()
            && text.trim_start().starts_with('{')
            && text.contains("\"notificationType\"")
        {
            return Some((
                NotReportReason::ProviderNotification,
                "a provider's JSON notification, not a forwarded complaint",
            ));
        }
        None
    }

    /// Attached messages (forward-as-attachment), `.eml` attachments and header parts.
    fn attachments(&self, diags: &mut Vec<Diagnostic>) -> Option<Outcome> {
        let mut found = Vec::new();
        let mut any_eml = false;
        let mut headers_only = true;
        for (i, node) in self.tree.nodes.iter().enumerate() {
            if node.msg_level != 0 || i == 0 {
                continue;
            }
            let mut d = Vec::new();
            if is_message_type(&node.ctype) {
                note_encoded_message(node, &mut d);
                let (idx, nested) = self.innermost(i, &mut d);
                let inner = self.node(idx);
                let message = message::build(&part_bytes(inner), MessageSource::Rfc822Part, &mut d);
                let _ = nested;
                headers_only = false;
                found.push(Found {
                    mime_path: inner.path.clone(),
                    feedback: None,
                    message,
                    claimed_source_ip: None,
                    diagnostics: d,
                });
            } else if HEADERS_TYPES.contains(&node.ctype.as_str()) {
                let message = message::build(&part_bytes(node), MessageSource::HeadersPart, &mut d);
                found.push(Found {
                    mime_path: node.path.clone(),
                    feedback: None,
                    message,
                    claimed_source_ip: None,
                    diagnostics: d,
                });
            } else if self.is_eml_attachment(node) {
                let bytes = part_bytes(node);
                let message = message::build(&bytes, MessageSource::Attachment, &mut d);
                any_eml = true;
                headers_only = false;
                found.push(Found {
                    mime_path: node.path.clone(),
                    feedback: None,
                    message,
                    claimed_source_ip: None,
                    diagnostics: d,
                });
            }
        }
        if found.is_empty() {
            return None;
        }
        let (kind, format) = if headers_only {
            (ReportKind::HeadersOnly, ReportFormat::Rfc822HeadersPart)
        } else if any_eml {
            (ReportKind::ForwardAttachment, ReportFormat::EmlAttachment)
        } else {
            (
                ReportKind::ForwardAttachment,
                ReportFormat::Rfc822Attachment,
            )
        };
        Some(self.finish(kind, format, found, std::mem::take(diags)))
    }

    /// Follow forwards of forwards down to the message that was first forwarded: while the
    /// attached message is itself only a wrapper around one attached message.
    fn innermost(&self, mut idx: usize, diags: &mut Vec<Diagnostic>) -> (usize, bool) {
        let mut nested = false;
        for _ in 0..self.options.limits.max_depth {
            let node = self.node(idx);
            // The nested message's root is the only child of a message/rfc822 node.
            let Some(&root) = node.children.first() else {
                break;
            };
            let root_node = self.node(root);
            let next = if is_message_type(&root_node.ctype) {
                Some(root)
            } else if root_node.ctype.starts_with("multipart/") {
                let messages: Vec<usize> = root_node
                    .children
                    .iter()
                    .copied()
                    .filter(|&c| is_message_type(&self.node(c).ctype))
                    .collect();
                let subject = root_node
                    .owner
                    .subject()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                let is_forward = subject.starts_with("fw") || subject.starts_with("tr:");
                if messages.len() == 1 && is_forward {
                    Some(messages[0])
                } else {
                    None
                }
            } else {
                None
            };
            match next {
                Some(n) => {
                    idx = n;
                    nested = true;
                }
                None => break,
            }
        }
        if nested {
            diags.push(Diagnostic::new(
                Code::NestedForward,
                "the attached message was itself a forward; the innermost message was taken",
            ));
        }
        (idx, nested)
    }

    fn is_eml_attachment(&self, node: &Node<'_>) -> bool {
        if !matches!(
            node.part.body,
            PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Text(_)
        ) {
            return false;
        }
        let name = node
            .part
            .attachment_name()
            .unwrap_or("")
            .to_ascii_lowercase();
        let named_eml = name.ends_with(".eml") || name.ends_with(".msg.txt");
        let generic = matches!(
            node.ctype.as_str(),
            "application/octet-stream" | "application/eml" | "text/plain"
        );
        if !(named_eml && generic || node.ctype == "application/octet-stream" && name.is_empty()) {
            return false;
        }
        let bytes = node.part.contents();
        let split = split_header_block(bytes);
        looks_like_headers(
            &bytes[..split.header_end],
            3,
            &["from", "received", "subject"],
        )
    }

    /// The texts a person wrote, with the MIME path of the part each came from: the first
    /// text/plain body, then the first HTML body converted to text.
    fn person_texts(&self) -> Vec<(String, Cow<'m, str>)> {
        let path_of = |part: &MessagePart<'_>| {
            self.tree
                .nodes
                .iter()
                .find(|n| n.msg_level == 0 && std::ptr::eq(n.part, part))
                .map(|n| n.path.clone())
                .unwrap_or_default()
        };
        let mut texts = Vec::new();
        let mut seen = Vec::new();
        let ids = self
            .message
            .text_body
            .first()
            .into_iter()
            .chain(self.message.html_body.first());
        for &id in ids {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let Some(part) = self.message.parts.get(id as usize) else {
                continue;
            };
            match &part.body {
                PartType::Text(text) => texts.push((path_of(part), Cow::Borrowed(text.as_ref()))),
                PartType::Html(html) => {
                    texts.push((path_of(part), Cow::Owned(inline::html_to_text(html))));
                }
                _ => {}
            }
        }
        texts
    }

    /// Inline forwards and pasted header blocks in the text a person wrote.
    fn inline_forward(&self, diags: &mut Vec<Diagnostic>) -> Option<Outcome> {
        let texts = self.person_texts();
        let hints = inline::SubjectHints::of(&self.subject_lower());
        for (path, text) in &texts {
            let Some(forward) = inline::forwarded(text.as_bytes(), hints) else {
                continue;
            };
            let mut d = vec![Diagnostic::new(
                Code::PartialHeaders,
                "the reported message was forwarded inline; only its quoted header fields are known",
            )];
            if forward.n_found > 1 {
                d.push(Diagnostic::new(
                    Code::NestedForward,
                    format!(
                        "{} inline forwards are quoted inside each other; the innermost was taken",
                        forward.n_found
                    ),
                ));
            }
            let mut message = message::build(forward.block, MessageSource::InlineForward, &mut d);
            if message.date.is_none() {
                let (fs, _) = fields(forward.block);
                message.date = fs.iter().find(|f| f.is("sent")).map(|f| f.unfolded());
            }
            return Some(self.finish(
                ReportKind::ForwardInline,
                forward.format,
                vec![Found {
                    mime_path: path.clone(),
                    feedback: None,
                    message,
                    claimed_source_ip: None,
                    diagnostics: d,
                }],
                std::mem::take(diags),
            ));
        }
        for (path, text) in &texts {
            let Some(pasted) = inline::pasted_headers(text.as_bytes()) else {
                continue;
            };
            let mut d = Vec::new();
            note_refolded(&pasted, &mut d);
            let message = message::build(&pasted.block, MessageSource::Pasted, &mut d);
            return Some(self.finish(
                ReportKind::HeadersOnly,
                ReportFormat::PastedHeaders,
                vec![Found {
                    mime_path: path.clone(),
                    feedback: None,
                    message,
                    claimed_source_ip: None,
                    diagnostics: d,
                }],
                std::mem::take(diags),
            ));
        }
        None
    }

    /// Spam redirected (resent) to the abuse mailbox as it was.
    fn resent(&self, diags: &mut Vec<Diagnostic>) -> Option<Outcome> {
        if self.header("Resent-From").is_none() && self.header("Resent-To").is_none() {
            return None;
        }
        let mut d = Vec::new();
        let message = message::build(self.message.raw_message(), MessageSource::TopLevel, &mut d);
        Some(self.finish(
            ReportKind::Redirect,
            ReportFormat::Resent,
            vec![Found {
                mime_path: String::new(),
                feedback: None,
                message,
                claimed_source_ip: None,
                diagnostics: d,
            }],
            std::mem::take(diags),
        ))
    }
}
