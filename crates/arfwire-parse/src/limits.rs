//! Hard resource limits and the linear pre-scan that enforces them before MIME parsing.
//!
//! mail-parser 0.11 has no limit on parts, depth, header count or header size, and some of
//! its paths are super-linear (RFC 2231 continuations take quadratic time). Everything here
//! is one pass over the bytes, so a hostile submission costs at most a scan. The exceptions
//! cost a copy: a submission with bare CR line endings is scanned as the parse will read it
//! (CR as LF), and a base64 or quoted-printable message/rfc822 part, which mail-parser
//! decodes and parses as a message, is decoded and scanned too (at most four levels deep
//! and twice the size limit in all).
//!
//! The scan is conservative where the raw text is ambiguous: mail-parser finds a boundary
//! anywhere in a line, so any line that could start a header field is held to the field
//! size limit, body lines included. A body line over 64 KiB that begins like a field
//! (`word:` with no blank before the colon) is refused with it; transport line limits make
//! such lines rare in real mail (long lines travel quoted-printable or base64).

use crate::types::{RejectReason, Rejection};

/// Hard limits for one submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest submission in bytes.
    pub max_message_bytes: usize,
    /// Largest header block of the top-level message in bytes.
    pub max_header_block_bytes: usize,
    /// Largest single header field (with its continuation lines) in bytes, anywhere.
    pub max_header_field_bytes: usize,
    /// Most header fields in any one header block.
    pub max_header_fields: usize,
    /// Most MIME parts in the whole submission, nested messages included.
    pub max_parts: usize,
    /// Deepest nesting of multiparts and messages.
    pub max_depth: usize,
    /// Most multipart or message containers announced in the raw text (pre-scan).
    pub max_containers: usize,
    /// Most reported messages in one submission.
    pub max_reported_messages: usize,
    /// Largest accepted `Incidents` value; larger ones are capped.
    pub max_incidents: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 25 * 1024 * 1024,
            max_header_block_bytes: 1024 * 1024,
            max_header_field_bytes: 64 * 1024,
            max_header_fields: 1_000,
            max_parts: 10_000,
            max_depth: 100,
            max_containers: 1_000,
            max_reported_messages: 100,
            max_incidents: 1_000_000,
        }
    }
}

fn reject(reason: RejectReason, detail: String) -> Rejection {
    Rejection {
        reason,
        detail,
        diagnostics: Vec::new(),
    }
}

/// Is `line` (without its line ending) the start of a header field: `name:`?
pub(crate) fn is_field_start(line: &[u8]) -> bool {
    let mut n = 0;
    for &b in line {
        match b {
            b':' => return n > 0,
            33..=126 => n += 1,
            // Some writers put spaces between the name and the colon ("Subject :").
            b' ' | b'\t' if n > 0 => {
                return line[n..]
                    .iter()
                    .find(|c| !matches!(c, b' ' | b'\t'))
                    .is_some_and(|&c| c == b':');
            }
            _ => return false,
        }
        if n > 76 {
            return false;
        }
    }
    false
}

fn starts_with_ignore_case(line: &[u8], prefix: &[u8]) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Iterate lines of `data`, each without its line ending (LF or CRLF).
pub(crate) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(pos) => (&rest[..pos], &rest[pos + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// mail-parser decodes and parses transfer-encoded nested messages three levels deep; the
/// pre-scan follows them one level further, so that nothing it parses goes unscanned.
const MAX_ENCODED_LEVELS: usize = 4;

/// Counters shared by the scan of the submission and of the nested messages decoded from it.
#[derive(Default)]
struct Totals {
    boundary_lines: usize,
    containers: usize,
    /// Encoded bytes read by the decoders of transfer-encoded nested messages.
    decoded_input: usize,
    /// A multipart/digest was declared, in which a part without Content-Type is a message.
    digest: bool,
}

/// How a run of lines (a header block, or what may be one) says its body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    QuotedPrintable,
}

/// The header fields the pre-scan reads the values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    ContentType,
    TransferEncoding,
    Other,
}

fn ends_with_ignore_case(line: &[u8], suffix: &[u8]) -> bool {
    line.len() >= suffix.len() && line[line.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

fn too_many_containers(limits: &Limits) -> Rejection {
    reject(
        RejectReason::NestingTooDeep,
        format!(
            "more than {} multipart or message containers",
            limits.max_containers
        ),
    )
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Check every limit that can be checked without parsing MIME. One pass over the bytes,
/// plus one over each transfer-encoded nested message (which mail-parser decodes and parses
/// as a message, so the raw text alone does not show what it holds).
pub(crate) fn prescan(data: &[u8], limits: &Limits) -> Result<(), Rejection> {
    if data.len() > limits.max_message_bytes {
        return Err(reject(
            RejectReason::TooLarge,
            format!(
                "submission is {} bytes; the limit is {} bytes",
                data.len(),
                limits.max_message_bytes
            ),
        ));
    }
    let mut totals = Totals::default();
    // Bare CR line endings (classic Mac) are read as LF by the parse, so scan them that way;
    // otherwise the whole submission is one line.
    if !data.contains(&b'\n') && data.contains(&b'\r') {
        let converted: Vec<u8> = data
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        return scan(&converted, limits, 0, &mut totals);
    }
    scan(data, limits, 0, &mut totals)
}

/// Scan one message: the submission (`level` 0) or a nested message decoded from it.
fn scan(data: &[u8], limits: &Limits, level: usize, totals: &mut Totals) -> Result<(), Rejection> {
    // State for the top-level header block.
    let mut in_top_header = level == 0;
    let mut top_header_bytes = 0usize;
    // State for any header-like run of lines (field plus continuations), anywhere.
    let mut in_header_block = true;
    let mut fields_in_block = 0usize;
    let mut field_bytes = 0usize;
    let mut in_field = false;
    let mut field_kind = FieldKind::Other;
    // What the current run of non-blank lines says about the body after it.
    let mut run_content_type: Option<bool> = None; // Some(says "message")
    let mut run_encoding: Option<Encoding> = None;

    let mut pos = 0;
    while pos < data.len() {
        let (line, next) = match memchr::memchr(b'\n', &data[pos..]) {
            Some(p) => (&data[pos..pos + p], pos + p + 1),
            None => (&data[pos..], data.len()),
        };
        pos = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line_len = line.len() + 1;
        if in_top_header {
            top_header_bytes += line_len;
            if top_header_bytes > limits.max_header_block_bytes {
                return Err(reject(
                    RejectReason::HeaderBlockTooLarge,
                    format!(
                        "the header block is larger than {} bytes",
                        limits.max_header_block_bytes
                    ),
                ));
            }
        }
        if line.is_empty() {
            // No Content-Type reads as message/rfc822 inside multipart/digest.
            let says_message = run_content_type.unwrap_or(totals.digest);
            if let Some(encoding) = run_encoding
                && says_message
                && level < MAX_ENCODED_LEVELS
            {
                let body = &data[next..];
                let (decoded, read) = match encoding {
                    Encoding::Base64 => decode_base64(body),
                    Encoding::QuotedPrintable => decode_quoted_printable(body),
                };
                totals.decoded_input = totals.decoded_input.saturating_add(read);
                if totals.decoded_input > limits.max_message_bytes.saturating_mul(2) {
                    return Err(reject(
                        RejectReason::TooLarge,
                        format!(
                            "transfer-encoded nested messages hold more than {} bytes",
                            limits.max_message_bytes.saturating_mul(2)
                        ),
                    ));
                }
                scan(&decoded, limits, level + 1, totals)?;
            }
            // The body of a message/rfc822 part that is not encoded starts with the nested
            // message's own header block.
            let nested_header =
                in_header_block && run_encoding.is_none() && run_content_type == Some(true);
            in_top_header = false;
            in_header_block = nested_header;
            fields_in_block = 0;
            in_field = false;
            field_kind = FieldKind::Other;
            run_content_type = None;
            run_encoding = None;
            continue;
        }
        let is_continuation = matches!(line[0], b' ' | b'\t') && in_field;
        // Fast path for ordinary body text (most lines, e.g. base64): a line with neither a
        // colon nor a dash can be neither a field, a boundary nor a mid-line boundary.
        if !is_continuation && memchr::memchr2(b':', b'-', line).is_none() {
            in_field = false;
            field_kind = FieldKind::Other;
            continue;
        }
        if !is_continuation && line.starts_with(b"--") {
            totals.boundary_lines += 1;
            // A boundary starts a new part header block.
            in_header_block = true;
            fields_in_block = 0;
            if totals.boundary_lines > limits.max_parts.saturating_mul(2).saturating_add(2) {
                return Err(reject(
                    RejectReason::TooManyParts,
                    format!("more than {} MIME parts", limits.max_parts),
                ));
            }
        }
        let mut value: &[u8] = &[];
        if is_continuation {
            field_bytes += line_len;
            value = line;
        } else if is_field_start(line) {
            in_field = true;
            field_bytes = line_len;
            let colon = line.iter().position(|&b| b == b':').unwrap_or(0);
            let name = line[..colon].trim_ascii();
            value = &line[colon + 1..];
            // A name ending in Content-Type counts: mail-parser starts a part's header block
            // right after `--boundary`, which may stand at the start of the same line.
            field_kind = if ends_with_ignore_case(name, b"content-type") {
                run_content_type.get_or_insert(false);
                FieldKind::ContentType
            } else if ends_with_ignore_case(name, b"content-transfer-encoding") {
                FieldKind::TransferEncoding
            } else {
                FieldKind::Other
            };
            if in_header_block {
                fields_in_block += 1;
                if fields_in_block > limits.max_header_fields {
                    return Err(reject(
                        RejectReason::TooManyHeaderFields,
                        format!(
                            "a header block has more than {} fields",
                            limits.max_header_fields
                        ),
                    ));
                }
            }
            if field_kind == FieldKind::ContentType {
                let value = value.trim_ascii_start();
                if starts_with_ignore_case(value, b"multipart/")
                    || starts_with_ignore_case(value, b"message/rfc822")
                    || starts_with_ignore_case(value, b"message/global")
                {
                    totals.containers += 1;
                    if totals.containers > limits.max_containers {
                        return Err(too_many_containers(limits));
                    }
                }
            }
        } else {
            in_field = false;
            field_kind = FieldKind::Other;
            // mail-parser finds `--boundary` anywhere in a line and reads a header field
            // after it on the same line ("--b Content-Type: ..."). Such a field is tracked
            // like any other when it is one whose value mail-parser parses.
            if memchr::memmem::find(line, b"--").is_some() {
                if contains_ignore_case(line, b"content-type") {
                    field_kind = FieldKind::ContentType;
                    run_content_type.get_or_insert(false);
                    if contains_ignore_case(line, b"multipart/")
                        || contains_ignore_case(line, b"message/rfc822")
                        || contains_ignore_case(line, b"message/global")
                    {
                        totals.containers += 1;
                        if totals.containers > limits.max_containers {
                            return Err(too_many_containers(limits));
                        }
                    }
                } else if contains_ignore_case(line, b"content-transfer-encoding") {
                    field_kind = FieldKind::TransferEncoding;
                }
                if field_kind != FieldKind::Other
                    || contains_ignore_case(line, b"content-disposition")
                {
                    in_field = true;
                    field_bytes = line_len;
                    value = line;
                }
            }
        }
        match field_kind {
            FieldKind::ContentType => {
                if contains_ignore_case(value, b"message") {
                    run_content_type = Some(true);
                }
                if contains_ignore_case(value, b"digest") {
                    totals.digest = true;
                }
            }
            FieldKind::TransferEncoding => {
                if contains_ignore_case(value, b"base64") {
                    run_encoding = Some(Encoding::Base64);
                } else if contains_ignore_case(value, b"quoted-printable") {
                    run_encoding = Some(Encoding::QuotedPrintable);
                }
            }
            _ => {}
        }
        if in_field && field_bytes > limits.max_header_field_bytes {
            return Err(reject(
                RejectReason::HeaderFieldTooLarge,
                format!(
                    "a header field is larger than {} bytes",
                    limits.max_header_field_bytes
                ),
            ));
        }
    }
    Ok(())
}

/// Decode a base64 body the way mail-parser reads one: blanks and line breaks skipped, `=`
/// ending a group, `--` (the next boundary) ending the body. Other bytes are skipped, which
/// decodes at least what mail-parser would. Returns the bytes and how much input was read.
fn decode_base64(body: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let mut group = 0u32;
    let mut n = 0;
    let mut last = b'\n';
    let flush = |out: &mut Vec<u8>, group: u32, n: usize| match n {
        2 => out.push((group >> 4) as u8),
        3 => out.extend_from_slice(&[(group >> 10) as u8, (group >> 2) as u8]),
        _ => {}
    };
    for (i, &c) in body.iter().enumerate() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'-' if last == b'-' => {
                flush(&mut out, group, n);
                return (out, i);
            }
            b'=' => {
                flush(&mut out, group, n);
                (group, n, last) = (0, 0, c);
                continue;
            }
            _ => {
                last = c;
                continue;
            }
        };
        group = (group << 6) | u32::from(value);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&group.to_be_bytes()[1..]);
            (group, n) = (0, 0);
        }
        last = c;
    }
    flush(&mut out, group, n);
    (out, body.len())
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decode a quoted-printable body to the end of `body`. mail-parser ends it at the first
/// `--boundary`, wherever that stands, and the pre-scan does not know the boundary, so it
/// decodes at least as much. CR is dropped, as mail-parser does. Returns the bytes and how
/// much input was read.
fn decode_quoted_printable(body: &[u8]) -> (Vec<u8>, usize) {
    let region = body;
    let mut out = Vec::with_capacity(region.len());
    let mut i = 0;
    while i < region.len() {
        let c = region[i];
        i += 1;
        match c {
            b'=' => {
                let mut j = i;
                while j < region.len() && matches!(region[j], b' ' | b'\t' | b'\r') {
                    j += 1;
                }
                if j == region.len() || region[j] == b'\n' {
                    // A soft line break.
                    i = j + 1;
                } else if let (Some(hi), Some(lo)) = (
                    hex_value(region[j]),
                    region.get(j + 1).copied().and_then(hex_value),
                ) {
                    out.push((hi << 4) | lo);
                    i = j + 2;
                } else {
                    out.push(b'=');
                }
            }
            b'\r' => {}
            _ => out.push(c),
        }
    }
    (out, body.len())
}
