//! Header blocks quoted in text: inline forwards and pasted headers.

use crate::headers::fields;
use crate::limits::is_field_start;
use crate::types::ReportFormat;

/// Forward markers, matched on a trimmed line, case-insensitively.
const MARKERS: &[(&str, ReportFormat)] = &[
    ("-----original message-----", ReportFormat::OutlookInline),
    (
        "---------- forwarded message ---------",
        ReportFormat::GmailInline,
    ),
    (
        "---------- forwarded message ----------",
        ReportFormat::GmailInline,
    ),
    ("begin forwarded message:", ReportFormat::AppleInline),
    ("----- forwarded message -----", ReportFormat::GenericInline),
    (
        "-------- forwarded message --------",
        ReportFormat::GenericInline,
    ),
    (
        "-------- original message --------",
        ReportFormat::GenericInline,
    ),
    ("----- original message -----", ReportFormat::GenericInline),
];

/// Byte ranges of lines: (start, end without line ending, next line start).
fn line_spans(text: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let next = text[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(text.len(), |p| pos + p + 1);
        let mut end = next;
        while end > pos && matches!(text[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        spans.push((pos, end, next));
        pos = next;
    }
    spans
}

/// From line `first`, the run of header fields and continuations; returns the byte range
/// and the number of fields.
fn field_run(text: &[u8], spans: &[(usize, usize, usize)], first: usize) -> (usize, usize, usize) {
    let start = spans[first].0;
    let mut end = start;
    let mut n_fields = 0;
    let mut i = first;
    while i < spans.len() {
        let (s, e, _) = spans[i];
        let line = &text[s..e];
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') && n_fields > 0 {
            end = e;
        } else if is_field_start(line) {
            n_fields += 1;
            end = e;
        } else {
            break;
        }
        i += 1;
    }
    (start, end, n_fields)
}

/// Find an inline forward: a marker line followed by quoted header fields.
pub(crate) fn forwarded(text: &[u8]) -> Option<(ReportFormat, &[u8])> {
    let spans = line_spans(text);
    for (i, &(s, e, _)) in spans.iter().enumerate() {
        let line = String::from_utf8_lossy(&text[s..e])
            .trim()
            .to_ascii_lowercase();
        let Some(&(_, format)) = MARKERS.iter().find(|(m, _)| line == *m) else {
            continue;
        };
        // Skip blank lines after the marker.
        let mut j = i + 1;
        while j < spans.len() && spans[j].0 == spans[j].1 {
            j += 1;
        }
        if j >= spans.len() {
            continue;
        }
        let (start, end, n_fields) = field_run(text, &spans, j);
        if n_fields < 2 {
            continue;
        }
        let block = &text[start..end];
        let (fs, _) = fields(block);
        if fs.iter().any(|f| f.is("from") || f.is("subject")) {
            return Some((format, block));
        }
    }
    None
}

/// Find header fields pasted into a body: a run of at least four fields that includes a
/// `Received` and one of From, Subject, Message-ID or Date.
pub(crate) fn pasted_headers(text: &[u8]) -> Option<(&[u8], usize)> {
    let spans = line_spans(text);
    let mut i = 0;
    while i < spans.len() {
        let (s, e, _) = spans[i];
        if s == e || !is_field_start(&text[s..e]) {
            i += 1;
            continue;
        }
        let (start, end, n_fields) = field_run(text, &spans, i);
        if n_fields >= 4 {
            let block = &text[start..end];
            let (fs, _) = fields(block);
            let has_received = fs.iter().any(|f| f.is("received"));
            let has_identity = fs
                .iter()
                .any(|f| f.is("from") || f.is("subject") || f.is("message-id") || f.is("date"));
            if has_received && has_identity {
                return Some((block, n_fields));
            }
        }
        // Move past the run.
        let mut k = i + 1;
        while k < spans.len() && spans[k].0 < end {
            k += 1;
        }
        i = k.max(i + 1);
    }
    None
}
