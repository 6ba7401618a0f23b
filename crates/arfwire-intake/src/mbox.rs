//! Splitting an mbox file into messages, streaming, with memory bounded by the size cap.
//!
//! The format read is mboxrd: every line that begins with `From ` starts a new message and is
//! not part of it; a line that begins with one or more `>` followed by `From ` had one `>` added
//! by the writer, and loses it here. The one empty line that a writer puts after each message,
//! before the next separator, belongs to the framing and is removed too. Every other byte of a
//! message is kept as it is, line endings included.

use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::{IntakeError, Item, Origin};

/// Is this line (line ending included) an mbox separator?
fn is_separator(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

/// Does this line read `>From `, `>>From `, ...? Such lines lose one `>`.
fn is_quoted_from(line: &[u8]) -> bool {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    quotes > 0 && line[quotes..].starts_with(b"From ")
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

/// Does `bytes`, a whole file, look like an mbox: a first line that begins `From ` and at
/// least one more separator line after it?
pub(crate) fn looks_like_mbox(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ") && bytes.windows(6).any(|w| w == b"\nFrom ")
}

/// The same test as [`looks_like_mbox`], on a stream, keeping only a few bytes of each line.
pub(crate) fn stream_looks_like_mbox(reader: &mut impl BufRead) -> io::Result<bool> {
    let mut line = Vec::new();
    let mut first = true;
    while read_line(reader, &mut line, 8)?.is_some() {
        if first && !is_separator(&line) {
            return Ok(false);
        }
        if !first && is_separator(&line) {
            return Ok(true);
        }
        first = false;
    }
    Ok(false)
}

/// Read one line, line ending included, into `line` (cleared first), keeping at most `keep`
/// bytes of it; the rest of the line is read and dropped. Returns the line's full length, or
/// `None` at the end of the stream.
fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    keep: usize,
) -> io::Result<Option<u64>> {
    line.clear();
    let mut total: u64 = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok((total > 0).then_some(total));
        }
        let (chunk_len, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos + 1, true),
            None => (available.len(), false),
        };
        let room = keep.saturating_sub(line.len()).min(chunk_len);
        line.extend_from_slice(&available[..room]);
        total += chunk_len as u64;
        reader.consume(chunk_len);
        if complete {
            return Ok(Some(total));
        }
    }
}

/// Yields the messages of one mbox file in order.
pub(crate) struct MboxSplitter {
    reader: Box<dyn BufRead + Send>,
    path: PathBuf,
    modified: Option<SystemTime>,
    limit: u64,
    /// Index the next yielded message gets.
    next_index: u64,
    /// True once a separator was read: the lines that follow belong to a message. Before the
    /// first separator they are a preamble, yielded only when it holds more than blank space.
    in_message: bool,
    done: bool,
}

/// One message's worth of lines, as collected.
struct Collected {
    bytes: Vec<u8>,
    size: u64,
    too_large: bool,
    /// SHA-256 of a message too large to keep, when every byte of it could be hashed.
    sha256: Option<[u8; 32]>,
    /// Ended at a separator (rather than at the end of the file).
    at_separator: bool,
}

impl MboxSplitter {
    pub(crate) fn new(
        reader: Box<dyn BufRead + Send>,
        path: &Path,
        modified: Option<SystemTime>,
        limit: u64,
    ) -> Self {
        MboxSplitter {
            reader,
            path: path.to_path_buf(),
            modified,
            limit,
            next_index: 0,
            in_message: false,
            done: false,
        }
    }

    /// Read lines up to the next separator (consumed) or the end of the file.
    fn collect(&mut self) -> io::Result<Collected> {
        // Bytes are kept up to the cap plus room for the framing blank line (at most CRLF),
        // which is only known to be framing once the message has ended.
        let slack = self.limit.saturating_add(2);
        let keep = usize::try_from(slack)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let mut line = Vec::new();
        let mut bytes = Vec::new();
        let mut size: u64 = 0;
        let mut last_blank: Option<u64> = None;
        let mut at_separator = false;
        // Once a message outgrows the cap its bytes are dropped and only hashed, so that the
        // refusal can still name them. A blank line is hashed only when another line follows
        // it: the last one is framing.
        let mut overflow: Option<Sha256> = None;
        let mut held_blank: Option<Vec<u8>> = None;
        let mut hash_complete = true;
        while let Some(mut line_len) = read_line(&mut self.reader, &mut line, keep)? {
            if is_separator(&line) {
                at_separator = true;
                break;
            }
            let truncated = line_len > line.len() as u64;
            let mut content: &[u8] = &line;
            if is_quoted_from(content) {
                content = &content[1..];
                line_len -= 1;
            }
            size += line_len;
            last_blank = is_blank(content).then_some(line_len);
            if overflow.is_none() {
                if size <= slack {
                    bytes.extend_from_slice(content);
                    continue;
                }
                let mut hasher = Sha256::new();
                hasher.update(&bytes);
                bytes = Vec::new();
                overflow = Some(hasher);
            }
            if let Some(hasher) = overflow.as_mut() {
                // A line longer than the cap was cut short in memory, so its bytes cannot
                // all be hashed.
                hash_complete &= !truncated;
                if let Some(blank) = held_blank.take() {
                    hasher.update(&blank);
                }
                if is_blank(content) {
                    held_blank = Some(content.to_vec());
                } else {
                    hasher.update(content);
                }
            }
        }
        if let Some(blank_len) = last_blank {
            size -= blank_len;
            if overflow.is_none() {
                bytes.truncate(bytes.len().saturating_sub(blank_len as usize));
            }
        }
        let (too_large, sha256) = match overflow {
            Some(hasher) => (true, hash_complete.then(|| hasher.finalize().into())),
            None if size > self.limit => (true, Some(Sha256::digest(&bytes).into())),
            None => (false, None),
        };
        if too_large {
            bytes = Vec::new();
        }
        Ok(Collected {
            bytes,
            size,
            too_large,
            sha256,
            at_separator,
        })
    }
}

impl Iterator for MboxSplitter {
    type Item = Result<Item, IntakeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let was_in_message = self.in_message;
            let collected = match self.collect() {
                Ok(collected) => collected,
                Err(cause) => {
                    self.done = true;
                    return Some(Err(IntakeError::io(&self.path, "read", cause)));
                }
            };
            self.in_message = true;
            if !collected.at_separator {
                self.done = true;
            }
            if !was_in_message
                && !collected.too_large
                && collected.bytes.iter().all(u8::is_ascii_whitespace)
            {
                // Nothing (or only blank lines) before the first separator.
                continue;
            }
            let origin = Origin::Mbox {
                path: self.path.clone(),
                index: self.next_index,
            };
            self.next_index += 1;
            if collected.too_large {
                return Some(Err(IntakeError::TooLarge {
                    origin,
                    size: collected.size,
                    limit: self.limit,
                    modified: self.modified,
                    sha256: collected.sha256,
                }));
            }
            return Some(Ok(Item {
                origin,
                bytes: collected.bytes,
                modified: self.modified,
            }));
        }
    }
}
