//! Header blocks quoted in text: inline forwards and pasted headers, plus the small HTML to
//! text conversion both need when a mail has no plain-text body.

use crate::headers::fields;
use crate::limits::is_field_start;
use crate::types::ReportFormat;

/// Forward markers, matched on a trimmed line, case-insensitively. The flag says whether the
/// marker is also written on replies (Outlook's "Original Message"), so that it only counts
/// when the subject does not say the mail is a reply.
const MARKERS: &[(&str, ReportFormat, bool)] = &[
    (
        "-----original message-----",
        ReportFormat::OutlookInline,
        true,
    ),
    (
        "---------- forwarded message ---------",
        ReportFormat::GmailInline,
        false,
    ),
    (
        "---------- forwarded message ----------",
        ReportFormat::GmailInline,
        false,
    ),
    ("begin forwarded message:", ReportFormat::AppleInline, false),
    (
        "----- forwarded message -----",
        ReportFormat::GenericInline,
        false,
    ),
    (
        "-------- forwarded message --------",
        ReportFormat::GenericInline,
        false,
    ),
    (
        "-------- original message --------",
        ReportFormat::GenericInline,
        true,
    ),
    (
        "----- original message -----",
        ReportFormat::GenericInline,
        true,
    ),
];

/// Subject prefixes that mark a forward (English and the common European client spellings).
const FORWARD_PREFIXES: &[&str] = &["fw:", "fwd:", "fw :", "fwd :", "wg:", "tr:", "rv:", "enc:"];

/// Subject prefixes that mark a reply.
const REPLY_PREFIXES: &[&str] = &["re:", "re :", "aw:", "sv:", "antw:"];

/// The subject without leading `[tag]` labels that gateways add ("[EXTERNAL] FW: ...").
fn strip_subject_tags(subject: &str) -> &str {
    let mut rest = subject.trim_start();
    while let Some(after) = rest.strip_prefix('[') {
        match after.find(']') {
            Some(end) => rest = after.get(end + 1..).unwrap_or("").trim_start(),
            None => break,
        }
    }
    rest
}

/// Does the subject (lower case) say the mail is a forward?
pub(crate) fn is_forward_subject(subject_lower: &str) -> bool {
    let s = strip_subject_tags(subject_lower);
    FORWARD_PREFIXES.iter().any(|p| s.starts_with(p))
}

/// Does the subject (lower case) say the mail is a reply?
pub(crate) fn is_reply_subject(subject_lower: &str) -> bool {
    let s = strip_subject_tags(subject_lower);
    REPLY_PREFIXES.iter().any(|p| s.starts_with(p))
}

/// What the submission's subject says about the mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SubjectHints {
    /// The subject starts with a forward prefix (`FW:`, `Fwd:`, ...).
    pub(crate) forward: bool,
    /// The subject starts with a reply prefix (`RE:`, `AW:`, ...).
    pub(crate) reply: bool,
}

impl SubjectHints {
    pub(crate) fn of(subject_lower: &str) -> Self {
        SubjectHints {
            forward: is_forward_subject(subject_lower),
            reply: is_reply_subject(subject_lower),
        }
    }
}

/// Byte ranges of lines: (start, end without line ending, next line start).
fn line_spans(text: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = text.get(pos..).unwrap_or_default();
        let next = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |p| pos + p + 1);
        let mut end = next;
        while end > pos && matches!(text.get(end - 1), Some(b'\n' | b'\r')) {
            end -= 1;
        }
        spans.push((pos, end, next));
        pos = next;
    }
    spans
}

fn line_at(text: &[u8], span: (usize, usize, usize)) -> &[u8] {
    text.get(span.0..span.1).unwrap_or_default()
}

/// From line `first`, the run of header fields and indented continuations; returns the byte
/// range, the number of fields and the index of the first line after the run.
fn field_run(
    text: &[u8],
    spans: &[(usize, usize, usize)],
    first: usize,
) -> (usize, usize, usize, usize) {
    let start = spans.get(first).map_or(text.len(), |s| s.0);
    let mut end = start;
    let mut n_fields = 0;
    let mut i = first;
    while let Some(&span) = spans.get(i) {
        let line = line_at(text, span);
        match line.first() {
            None => break,
            Some(b' ' | b'\t') if n_fields > 0 => end = span.1,
            _ if is_field_start(line) => {
                n_fields += 1;
                end = span.1;
            }
            _ => break,
        }
        i += 1;
    }
    (start, end, n_fields, i)
}

/// Is this line (trimmed) a separator rule such as Outlook's line of underscores?
fn is_separator(line: &str) -> bool {
    line.len() >= 10 && line.bytes().all(|b| b == b'_')
}

/// A quoted header block that names sender, date and subject, as Outlook writes it.
fn names_sender_date_subject(block: &[u8]) -> (bool, bool) {
    let (fs, _) = fields(block);
    let has_from = fs.iter().any(|f| f.is("from"));
    let has_subject = fs.iter().any(|f| f.is("subject"));
    let has_sent = fs.iter().any(|f| f.is("sent"));
    let has_date = fs.iter().any(|f| f.is("date"));
    (has_from && has_subject && (has_sent || has_date), has_sent)
}

/// One inline forward found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InlineForward<'t> {
    /// Which client wrote it.
    pub(crate) format: ReportFormat,
    /// The quoted header fields.
    pub(crate) block: &'t [u8],
    /// How many forwards were found; the last (innermost) one is `block`.
    pub(crate) n_found: usize,
}

/// Find an inline forward: a marker line followed by quoted header fields. When the subject
/// says the mail is a forward, Outlook's separator line of underscores and a bare
/// From/Sent/To/Subject block count too. When it says the mail is a reply, markers that
/// replies also carry do not count. With several forwards quoted inside each other, the
/// innermost (last) one is the message that was first forwarded.
pub(crate) fn forwarded(text: &[u8], hints: SubjectHints) -> Option<InlineForward<'_>> {
    let spans = line_spans(text);
    let mut found: Option<InlineForward<'_>> = None;
    let mut n_found = 0;
    let mut i = 0;
    while let Some(&span) = spans.get(i) {
        let line = String::from_utf8_lossy(line_at(text, span))
            .trim()
            .to_ascii_lowercase();
        let marker = MARKERS
            .iter()
            .find(|(m, _, _)| line == *m)
            .filter(|(_, _, reply_too)| !(*reply_too && hints.reply && !hints.forward))
            .map(|&(_, format, _)| format);
        let separator = hints.forward && is_separator(&line);
        let bare = hints.forward && line.starts_with("from:");
        if marker.is_none() && !separator && !bare {
            i += 1;
            continue;
        }
        // Skip blank lines after a marker or separator.
        let mut j = if bare { i } else { i + 1 };
        if !bare {
            while spans.get(j).is_some_and(|s| s.0 == s.1) {
                j += 1;
            }
        }
        let (start, end, n_fields, after) = field_run(text, &spans, j);
        let block = text.get(start..end).unwrap_or_default();
        let (outlook_like, has_sent) = names_sender_date_subject(block);
        let format = match marker {
            Some(format) => {
                let (fs, _) = fields(block);
                (n_fields >= 2 && fs.iter().any(|f| f.is("from") || f.is("subject")))
                    .then_some(format)
            }
            None if outlook_like && n_fields >= 3 => Some(if has_sent || separator {
                ReportFormat::OutlookInline
            } else {
                ReportFormat::GenericInline
            }),
            None => None,
        };
        match format {
            Some(format) => {
                n_found += 1;
                found = Some(InlineForward {
                    format,
                    block,
                    n_found,
                });
                i = after.max(i + 1);
            }
            // Lines inside a run that did not qualify cannot start one that does: a later
            // start would hold a subset of the same fields.
            None => i = after.max(i + 1),
        }
    }
    found
}

/// Is `line` a header field start with a plain field name (letters, digits, `-`, `_`)
/// immediately followed by a colon? Stricter than the RFC 5322 grammar, so that a pasted
/// continuation such as `h=From:To:Subject` is not taken for a field.
fn is_plain_field_start(line: &[u8]) -> bool {
    let name_len = line
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .count();
    (1..=76).contains(&name_len)
        && line.first().is_some_and(u8::is_ascii_alphanumeric)
        && line.get(name_len) == Some(&b':')
}

/// A header block rebuilt from text pasted into a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pasted {
    /// The header block, with lost folding restored (continuations indented by one space).
    pub(crate) block: Vec<u8>,
    /// Number of header fields.
    pub(crate) n_fields: usize,
    /// Number of lines that had lost their folding indentation.
    pub(crate) refolded: usize,
}

/// Find header fields pasted into a body: a run of at least four fields, up to a blank line,
/// that includes a `Received` and one of From, Subject, Message-ID or Date. Pasting often
/// loses the indentation of folded lines, so inside a run every line that does not start
/// with a plain field name is read as a continuation of the field above.
pub(crate) fn pasted_headers(text: &[u8]) -> Option<Pasted> {
    let spans = line_spans(text);
    let mut i = 0;
    while let Some(&span) = spans.get(i) {
        let line = line_at(text, span);
        if !is_plain_field_start(line) {
            i += 1;
            continue;
        }
        let mut block = Vec::new();
        let mut n_fields = 0;
        let mut refolded = 0;
        let mut j = i;
        while let Some(&span) = spans.get(j) {
            let line = line_at(text, span);
            if line.trim_ascii().is_empty() {
                break;
            }
            let with_ending = text.get(span.0..span.2).unwrap_or_default();
            if is_plain_field_start(line) {
                n_fields += 1;
            } else if !matches!(line.first(), Some(b' ' | b'\t')) {
                refolded += 1;
                block.push(b' ');
            }
            block.extend_from_slice(with_ending);
            j += 1;
        }
        while block.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
            block.pop();
        }
        if n_fields >= 4 {
            let (fs, _) = fields(&block);
            let has_received = fs.iter().any(|f| f.is("received"));
            let has_identity = fs
                .iter()
                .any(|f| f.is("from") || f.is("subject") || f.is("message-id") || f.is("date"));
            if has_received && has_identity {
                return Some(Pasted {
                    block,
                    n_fields,
                    refolded,
                });
            }
        }
        i = j.max(i + 1);
    }
    None
}

/// Elements whose start and end break a line.
const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "tr",
    "li",
    "ul",
    "ol",
    "table",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "dd",
    "dt",
    "dl",
    "section",
    "article",
    "header",
    "footer",
    "center",
    "address",
];

/// Elements whose content is not text.
const SKIPPED_TAGS: &[&str] = &["head", "style", "script", "title", "template"];

fn decode_entity(entity: &str) -> Option<char> {
    if let Some(num) = entity.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match entity.to_ascii_lowercase().as_str() {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => return None,
    })
}

/// Convert HTML to text for header detection: block elements and `<br>` end lines, `<hr>`
/// becomes a separator line, runs of white space collapse to one space and white space at
/// the start of a line is dropped, the common entities are decoded, and head, style and
/// script contents are skipped. One pass over the input.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut pending_space = false;
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                // A comment runs to "-->".
                if let Some(after) = rest.strip_prefix("<!--") {
                    rest = after
                        .find("-->")
                        .map_or("", |e| after.get(e + 3..).unwrap_or(""));
                    continue;
                }
                // The tag runs to the next '>' outside quotes.
                let mut quote: Option<char> = None;
                let mut tag_end = None;
                for (k, ch) in rest.char_indices().skip(1) {
                    match (quote, ch) {
                        (Some(q), _) if ch == q => quote = None,
                        (Some(_), _) => {}
                        (None, '"' | '\'') => quote = Some(ch),
                        (None, '>') => {
                            tag_end = Some(k);
                            break;
                        }
                        _ => {}
                    }
                }
                let Some(tag_end) = tag_end else {
                    break;
                };
                let tag = rest.get(1..tag_end).unwrap_or("");
                rest = rest.get(tag_end + 1..).unwrap_or("");
                let closing = tag.starts_with('/');
                let name: String = tag
                    .trim_start_matches('/')
                    .chars()
                    .take_while(|ch| ch.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_ascii_lowercase();
                if !closing && SKIPPED_TAGS.contains(&name.as_str()) {
                    // Skip to the matching end tag; the search moves forward only.
                    let end_tag = format!("</{name}");
                    rest = match find_ignore_case(rest.as_bytes(), end_tag.as_bytes()) {
                        Some(p) => {
                            let after = rest.get(p..).unwrap_or("");
                            after
                                .find('>')
                                .map_or("", |g| after.get(g + 1..).unwrap_or(""))
                        }
                        None => "",
                    };
                    continue;
                }
                if name == "br" {
                    out.push('\n');
                    pending_space = false;
                } else if name == "hr" {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str("________________________________\n");
                    pending_space = false;
                } else if BLOCK_TAGS.contains(&name.as_str()) {
                    if !out.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    pending_space = false;
                }
            }
            '&' => {
                let entity_end = rest
                    .char_indices()
                    .take(12)
                    .find(|&(_, ch)| ch == ';')
                    .map(|(k, _)| k);
                let decoded =
                    entity_end.and_then(|e| rest.get(1..e).and_then(decode_entity).zip(Some(e)));
                let (ch, len) = match decoded {
                    Some((ch, e)) => (ch, e + 1),
                    None => ('&', 1),
                };
                push_text_char(&mut out, &mut pending_space, ch);
                rest = rest.get(len..).unwrap_or("");
            }
            _ => {
                push_text_char(&mut out, &mut pending_space, c);
                rest = rest.get(c.len_utf8()..).unwrap_or("");
            }
        }
    }
    out
}

/// Position of `needle` in `haystack`, ASCII case-insensitively. `needle` is a few bytes
/// long, so this is linear in the haystack.
fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn push_text_char(out: &mut String, pending_space: &mut bool, ch: char) {
    if ch.is_whitespace() {
        // Collapse; never at the start of a line.
        if !out.is_empty() && !out.ends_with('\n') {
            *pending_space = true;
        }
        return;
    }
    if *pending_space {
        out.push(' ');
        *pending_space = false;
    }
    out.push(ch);
}
