//! Hard resource limits and the linear pre-scan that enforces them before MIME parsing.
//!
//! mail-parser 0.11 has no limit on parts, depth, header count or header size, and some of
//! its paths are super-linear (RFC 2231 continuations). Everything here is one pass over the
//! bytes with constant memory, so a hostile submission costs at most a scan.

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

/// Check every limit that can be checked without parsing MIME. One pass, constant memory.
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

    // State for the top-level header block.
    let mut in_top_header = true;
    let mut top_header_bytes = 0usize;
    // State for any header-like run of lines (field plus continuations), anywhere.
    let mut in_header_block = true;
    let mut fields_in_block = 0usize;
    let mut field_bytes = 0usize;
    let mut in_field = false;
    // Counters for structure.
    let mut boundary_lines = 0usize;
    let mut containers = 0usize;

    for line in lines(data) {
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
            in_top_header = false;
            in_header_block = false;
            in_field = false;
            continue;
        }
        let is_continuation = matches!(line[0], b' ' | b'\t');
        if is_continuation && in_field {
            field_bytes += line_len;
        } else if is_field_start(line) {
            in_field = true;
            field_bytes = line_len;
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
            if starts_with_ignore_case(line, b"content-type") {
                let value = &line[line.iter().position(|&b| b == b':').map_or(0, |p| p + 1)..];
                let value = value.trim_ascii_start();
                if starts_with_ignore_case(value, b"multipart/")
                    || starts_with_ignore_case(value, b"message/rfc822")
                    || starts_with_ignore_case(value, b"message/global")
                {
                    containers += 1;
                    if containers > limits.max_containers {
                        return Err(reject(
                            RejectReason::NestingTooDeep,
                            format!(
                                "more than {} multipart or message containers",
                                limits.max_containers
                            ),
                        ));
                    }
                }
            }
        } else {
            in_field = false;
            if line.starts_with(b"--") {
                boundary_lines += 1;
                // A boundary starts a new part header block.
                in_header_block = true;
                fields_in_block = 0;
                if boundary_lines > limits.max_parts.saturating_mul(2).saturating_add(2) {
                    return Err(reject(
                        RejectReason::TooManyParts,
                        format!("more than {} MIME parts", limits.max_parts),
                    ));
                }
            }
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
