//! Message content after `DATA`: finding the end, dot-unstuffing, bare-LF handling, the size
//! cap.
//!
//! Only `<CR><LF>.<CR><LF>` ends the content (the CRLF before the dot being the end of the last
//! line, which is kept). `<LF>.<LF>`, `<LF>.<CR><LF>`, `<CR>.<CR>` and `<CR><LF>.<LF>` never
//! do, whatever the bare-LF policy: a server that took any of them for the end would let a
//! sender smuggle a second transaction inside one message (CVE-2023-51764 and relatives).
//!
//! Dot-unstuffing (RFC 5321 §4.5.2): a line that begins with `.` has that dot removed. A line
//! that begins right after a bare LF is a line for unstuffing too, but can never be the end.

use memchr::memchr2;

/// Where the scanner is inside the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// At the start of a line; `crlf` says whether the previous line ended with CRLF (the only
    /// case in which a `.` line can end the content).
    LineStart { crlf: bool },
    /// After a `.` at the start of a line.
    Dot { crlf: bool },
    /// After `.` `<CR>` at the start of a line.
    DotCr { crlf: bool },
    /// Inside a line.
    Mid,
    /// After a `<CR>` inside a line (not yet stored: it may begin a CRLF).
    Cr,
}

/// How the content ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Complete and within the limits: the unstuffed bytes.
    Complete(Vec<u8>),
    /// Larger than the limit (the content was read and discarded).
    TooLarge,
    /// Contained a bare LF under the `reject` policy (read and discarded).
    BareLf,
}

/// Reads message content until `<CR><LF>.<CR><LF>`, storing at most `max` bytes.
#[derive(Debug)]
pub(crate) struct DataReader {
    buf: Vec<u8>,
    max: usize,
    state: Scan,
    normalize: bool,
    bare_lf: bool,
    oversize: bool,
    received: u64,
}

impl DataReader {
    /// A reader for content that starts after a command line ending in CRLF (`crlf`) or a
    /// bare LF.
    pub(crate) fn new(max: usize, normalize: bool, crlf: bool) -> Self {
        DataReader {
            buf: Vec::new(),
            max,
            state: Scan::LineStart { crlf },
            normalize,
            bare_lf: false,
            oversize: false,
            received: 0,
        }
    }

    /// Bytes held in memory (never more than the limit).
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes read from the client so far, terminator included.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Scan `input`: returns how many bytes were consumed and whether the end of the content
    /// was reached (the bytes after the terminator are not consumed).
    pub(crate) fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        let mut ended = false;
        while i < input.len() {
            match self.state {
                Scan::Mid => match memchr2(b'\r', b'\n', &input[i..]) {
                    None => {
                        self.store(&input[i..]);
                        i = input.len();
                    }
                    Some(k) => {
                        self.store(&input[i..i + k]);
                        let byte = input[i + k];
                        i += k + 1;
                        if byte == b'\r' {
                            self.state = Scan::Cr;
                        } else {
                            self.bare_line_feed();
                        }
                    }
                },
                Scan::Cr => match input[i] {
                    b'\n' => {
                        i += 1;
                        self.store(b"\r\n");
                        self.state = Scan::LineStart { crlf: true };
                    }
                    b'\r' => {
                        i += 1;
                        self.store(b"\r");
                    }
                    _ => {
                        // A bare CR is kept as it is; the byte after it is handled in `Mid`.
                        self.store(b"\r");
                        self.state = Scan::Mid;
                    }
                },
                Scan::LineStart { crlf } => {
                    if input[i] == b'.' {
                        i += 1;
                        self.state = Scan::Dot { crlf };
                    } else {
                        self.state = Scan::Mid;
                    }
                }
                Scan::Dot { crlf } => match input[i] {
                    b'\r' => {
                        i += 1;
                        self.state = Scan::DotCr { crlf };
                    }
                    b'\n' => {
                        // ".<LF>": a line holding only the (removed) dot, never the end.
                        i += 1;
                        self.bare_line_feed();
                    }
                    // A stuffed dot: drop it, keep the rest of the line.
                    _ => self.state = Scan::Mid,
                },
                Scan::DotCr { crlf } => {
                    if input[i] == b'\n' {
                        i += 1;
                        if crlf {
                            ended = true;
                            break;
                        }
                        // "<LF>.<CR><LF>" is not the end: an empty line after unstuffing.
                        self.store(b"\r\n");
                        self.state = Scan::LineStart { crlf: true };
                    } else {
                        // ".<CR>x": the CR is pending exactly as in `Cr`.
                        self.state = Scan::Cr;
                    }
                }
            }
        }
        self.received += i as u64;
        (i, ended)
    }

    /// The result, once [`DataReader::feed`] reported the end.
    pub(crate) fn finish(self) -> DataOutcome {
        if self.bare_lf && !self.normalize {
            DataOutcome::BareLf
        } else if self.oversize {
            DataOutcome::TooLarge
        } else {
            DataOutcome::Complete(self.buf)
        }
    }

    fn bare_line_feed(&mut self) {
        self.bare_lf = true;
        if self.normalize {
            self.store(b"\r\n");
        } else {
            // The message will be refused: stop holding it.
            self.buf = Vec::new();
        }
        self.state = Scan::LineStart { crlf: false };
    }

    fn store(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.oversize || (self.bare_lf && !self.normalize) {
            return;
        }
        let needed = self.buf.len() + bytes.len();
        if needed > self.max {
            self.oversize = true;
            self.buf = Vec::new();
            return;
        }
        if needed > self.buf.capacity() {
            // Grow geometrically, but never past the limit.
            let target = (self.buf.capacity() * 2)
                .max(needed)
                .max(16 * 1024)
                .min(self.max);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], normalize: bool) -> (usize, bool, DataOutcome) {
        let mut reader = DataReader::new(1 << 20, normalize, true);
        let (used, ended) = reader.feed(input);
        (used, ended, reader.finish())
    }

    fn run_bytewise(input: &[u8], normalize: bool) -> (usize, bool, DataOutcome) {
        let mut reader = DataReader::new(1 << 20, normalize, true);
        let mut used = 0;
        let mut ended = false;
        for byte in input {
            let (n, end) = reader.feed(std::slice::from_ref(byte));
            used += n;
            if end {
                ended = true;
                break;
            }
        }
        (used, ended, reader.finish())
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        let input = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nMAIL FROM:<a@b>\r\n";
        for (used, ended, outcome) in [run(input, false), run_bytewise(input, false)] {
            assert!(ended);
            assert_eq!(&input[used..], b"MAIL FROM:<a@b>\r\n");
            assert_eq!(
                outcome,
                DataOutcome::Complete(b"Subject: x\r\n\r\n.leading dot\r\n".to_vec())
            );
        }
    }

    #[test]
    fn empty_message() {
        let (used, ended, outcome) = run(b".\r\n", false);
        assert_eq!((used, ended), (3, true));
        assert_eq!(outcome, DataOutcome::Complete(Vec::new()));
    }

    #[test]
    fn smuggling_sequences_never_end_the_content() {
        for sequence in [
            &b"a\n.\nb"[..],
            b"a\n.\r\nb",
            b"a\r.\rb",
            b"a\r\n.\nb",
            b"a\r.\r\nb",
        ] {
            for normalize in [false, true] {
                let (used, ended, _) = run(sequence, normalize);
                assert!(!ended, "{sequence:?} normalize={normalize}");
                assert_eq!(used, sequence.len());
            }
        }
    }

    #[test]
    fn bare_lf_rejected_or_normalised() {
        let input = b"a\nb\n.\nMAIL FROM:<x@y>\r\n.\r\n";
        assert_eq!(run(input, false).2, DataOutcome::BareLf);
        let (used, ended, outcome) = run(input, true);
        assert!(ended);
        assert_eq!(used, input.len());
        assert_eq!(
            outcome,
            DataOutcome::Complete(b"a\r\nb\r\n\r\nMAIL FROM:<x@y>\r\n".to_vec())
        );
        // After a bare LF a ".<CR><LF>" line is not the end either.
        let input = b"a\n.\r\n.\r\n";
        let (used, ended, outcome) = run(input, true);
        assert!(ended);
        assert_eq!(used, input.len());
        assert_eq!(outcome, DataOutcome::Complete(b"a\r\n\r\n".to_vec()));
    }

    #[test]
    fn bare_cr_is_kept() {
        let input = b"a\rb\r\r\n.x\r\r\n.\r\n";
        for (_, ended, outcome) in [run(input, false), run_bytewise(input, false)] {
            assert!(ended);
            assert_eq!(
                outcome,
                DataOutcome::Complete(b"a\rb\r\r\nx\r\r\n".to_vec())
            );
        }
    }

    #[test]
    fn oversize_is_drained() {
        let mut reader = DataReader::new(10, false, true);
        let (used, ended) = reader.feed(b"0123456789abcdef\r\nmore\r\n");
        assert!(!ended);
        assert_eq!(used, 24);
        assert_eq!(reader.buffered(), 0);
        let (_, ended) = reader.feed(b".\r\n");
        assert!(ended);
        assert_eq!(reader.finish(), DataOutcome::TooLarge);
        // Exactly at the limit is fine.
        let mut reader = DataReader::new(10, false, true);
        assert!(reader.feed(b"01234567\r\n.\r\n").1);
        assert_eq!(
            reader.finish(),
            DataOutcome::Complete(b"01234567\r\n".to_vec())
        );
    }
}
