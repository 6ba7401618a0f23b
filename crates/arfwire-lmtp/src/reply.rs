//! Server replies.

use std::fmt;

/// One server reply: a three-digit code and one or more lines of text. The text is built by
/// this crate only (never from client input), so it holds no CR, LF or other control bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub(crate) fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply (at least one line).
    pub(crate) fn multiline(code: u16, lines: Vec<String>) -> Self {
        debug_assert!(!lines.is_empty());
        Reply { code, lines }
    }

    /// The reply code, e.g. 250.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The text lines, without code or line ending.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// Whether the code is 2xx or 3xx.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// Append the wire form (`250-first\r\n250 last\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{:03}{separator}{line}\r\n", self.code).as_bytes());
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (index, line) in self.lines.iter().enumerate() {
            let separator = if index == last { ' ' } else { '-' };
            write!(f, "{:03}{separator}{line}", self.code)?;
            if index != last {
                f.write_str("\\r\\n")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form() {
        let reply = Reply::multiline(250, vec!["host".into(), "PIPELINING".into()]);
        assert_eq!(reply.to_bytes(), b"250-host\r\n250 PIPELINING\r\n");
        assert_eq!(Reply::new(354, "go").to_bytes(), b"354 go\r\n");
    }
}
