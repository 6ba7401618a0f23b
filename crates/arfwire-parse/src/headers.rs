//! Raw header blocks: split a message into header block and body, and read its fields
//! without losing a byte.

use crate::limits::is_field_start;

/// A header field as found in raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawField<'a> {
    /// The name as written, trimmed.
    pub(crate) name: &'a [u8],
    /// The value after the colon, folding kept, final line ending removed.
    pub(crate) value: &'a [u8],
}

impl RawField<'_> {
    pub(crate) fn name_str(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }

    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded (line breaks removed, leading and trailing blanks trimmed).
    pub(crate) fn unfolded(&self) -> String {
        unfold(self.value)
    }

    /// The value as written, lossily decoded, line ending of the last line removed.
    pub(crate) fn raw_string(&self) -> String {
        String::from_utf8_lossy(self.value.trim_ascii()).into_owned()
    }
}

/// Remove folding: CR and LF are dropped, the whitespace after them kept as one space.
pub(crate) fn unfold(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {
                // Collapse the line break and the indentation after it into one space.
                while i < value.len() && matches!(value[i], b'\r' | b'\n') {
                    i += 1;
                }
                let mut had_ws = false;
                while i < value.len() && matches!(value[i], b' ' | b'\t') {
                    i += 1;
                    had_ws = true;
                }
                if had_ws && !out.ends_with(b" ") {
                    out.push(b' ');
                }
                continue;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(out.trim_ascii()).into_owned()
}

/// Where the header block ends and the body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Split {
    /// End of the header block (exclusive), before the blank line.
    pub(crate) header_end: usize,
    /// Start of the body (after the blank line), or `data.len()`.
    pub(crate) body_start: usize,
}

/// Find the blank line that ends the header block. Without one, everything is header.
pub(crate) fn split_header_block(data: &[u8]) -> Split {
    let mut pos = 0;
    while pos < data.len() {
        let line_end = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |p| pos + p);
        let line = &data[pos..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Split {
                header_end: pos,
                body_start: (line_end + 1).min(data.len()),
            };
        }
        pos = line_end + 1;
    }
    Split {
        header_end: data.len(),
        body_start: data.len(),
    }
}

/// The fields of a header block, plus the number of lines that were neither a field nor a
/// continuation (they are skipped).
pub(crate) fn fields(block: &[u8]) -> (Vec<RawField<'_>>, usize) {
    let mut out: Vec<RawField<'_>> = Vec::new();
    let mut malformed = 0;
    let mut current: Option<(usize, usize, usize)> = None; // (name_start, colon, end)
    let mut pos = 0;
    fn finish<'b>(
        block: &'b [u8],
        cur: Option<(usize, usize, usize)>,
        out: &mut Vec<RawField<'b>>,
    ) {
        if let Some((start, colon, end)) = cur {
            let value_end = if end > colon + 1 {
                let mut e = end;
                while e > colon + 1 && matches!(block[e - 1], b'\r' | b'\n') {
                    e -= 1;
                }
                e
            } else {
                colon + 1
            };
            out.push(RawField {
                name: block[start..colon].trim_ascii(),
                value: &block[colon + 1..value_end],
            });
        }
    }
    while pos < block.len() {
        let line_end = block[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(block.len(), |p| pos + p + 1);
        let line = &block[pos..line_end];
        let bare = line
            .strip_suffix(b"\n")
            .unwrap_or(line)
            .strip_suffix(b"\r")
            .unwrap_or(line.strip_suffix(b"\n").unwrap_or(line));
        if !bare.is_empty() && matches!(bare[0], b' ' | b'\t') && current.is_some() {
            if let Some(cur) = current.as_mut() {
                cur.2 = line_end;
            }
        } else if is_field_start(bare) {
            finish(block, current.take(), &mut out);
            let colon = pos + bare.iter().position(|&b| b == b':').unwrap_or(0);
            current = Some((pos, colon, line_end));
        } else if !bare.is_empty() {
            finish(block, current.take(), &mut out);
            malformed += 1;
        }
        pos = line_end;
    }
    finish(block, current.take(), &mut out);
    (out, malformed)
}

/// Does this block of text look like a header block: mostly fields, at least `min_fields`
/// of them, and at least one of the given names?
pub(crate) fn looks_like_headers(block: &[u8], min_fields: usize, any_of: &[&str]) -> bool {
    let (fields, malformed) = fields(block);
    fields.len() >= min_fields
        && malformed * 4 <= fields.len()
        && fields.iter().any(|f| any_of.iter().any(|n| f.is(n)))
}

/// Strip a leading `From ` or `>From ` line (mbox separator or its escaped form).
pub(crate) fn strip_from_line(data: &[u8]) -> Option<&[u8]> {
    let trimmed = data.trim_ascii_start();
    if trimmed.starts_with(b"From ") || trimmed.starts_with(b">From ") {
        let end = trimmed
            .iter()
            .position(|&b| b == b'\n')
            .map_or(trimmed.len(), |p| p + 1);
        Some(&trimmed[end..])
    } else {
        None
    }
}
