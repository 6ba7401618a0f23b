//! Complainant pseudonyms: keyed hashes that stand in for the addresses of the people who
//! complained.
//!
//! A token is `anon:` followed by the first 16 hex digits of HMAC-SHA256(key, address), where
//! the address is trimmed, stripped of angle brackets and lower-cased. The same address under
//! the same key always gives the same token, so the reports of one complainant correlate; the
//! address cannot be recovered without the key (and guessing needs the key too).
//!
//! The key is the deployment's secret (`ARFWIRE_PSEUDONYM_KEY`, hex, at least 16 bytes).
//! [`Pseudonymizer::development`] is a published key for development set-ups only: anyone can
//! compute its tokens. [`Pseudonymizer::ephemeral`] draws a random key that lives only in
//! this process: tokens correlate within one run and can never be linked to anything else.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The prefix of every complainant token.
pub const TOKEN_PREFIX: &str = "anon:";

/// What an erased complainant token is replaced with.
pub const ERASED_TOKEN: &str = "erased";

/// What an address in attribution evidence text is replaced with (attribution is converted
/// without a key, so it cannot write a token).
pub const MASKED_ADDRESS: &str = "[address]";

/// The development key, hex. Its tokens are reversible by anyone who guesses an address:
/// use it only where no real complainant's mail is processed.
pub const DEVELOPMENT_KEY_HEX: &str =
    "6172667769726520646576656c6f706d656e74207073657564306e796d206b6579";

/// Shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not hex.
    NotHex,
    /// The key is too short.
    TooShort(usize),
    /// No randomness was available for an ephemeral key.
    NoRandomness(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotHex => f.write_str("the pseudonym key is not hex"),
            KeyError::TooShort(n) => write!(
                f,
                "the pseudonym key has {n} bytes; at least {MIN_KEY_BYTES} are needed"
            ),
            KeyError::NoRandomness(why) => write!(f, "no randomness for a key: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Turns complainant addresses into tokens with a secret key. `Debug` never shows the key.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Vec<u8>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("key", &"[REDACTED]")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl Pseudonymizer {
    /// A pseudonymizer with this key (at least [`MIN_KEY_BYTES`] bytes).
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(key.len()));
        }
        Ok(Pseudonymizer { key: key.to_vec() })
    }

    /// A pseudonymizer with a hex key (blanks around it ignored).
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let hex = hex.trim();
        if !hex.len().is_multiple_of(2) {
            return Err(KeyError::NotHex);
        }
        let mut key = Vec::with_capacity(hex.len() / 2);
        for pair in hex.as_bytes().chunks(2) {
            let text = std::str::from_utf8(pair).map_err(|_| KeyError::NotHex)?;
            key.push(u8::from_str_radix(text, 16).map_err(|_| KeyError::NotHex)?);
        }
        Self::new(&key)
    }

    /// The published development key ([`DEVELOPMENT_KEY_HEX`]). Never for production.
    pub fn development() -> Self {
        Self::from_hex(DEVELOPMENT_KEY_HEX).expect("the development key is valid hex")
    }

    /// A random key held only by this process.
    pub fn ephemeral() -> Result<Self, KeyError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| KeyError::NoRandomness(e.to_string()))?;
        Self::new(&key)
    }

    /// A short public identifier of the key (first 8 hex digits of a SHA-256 of it), to check
    /// that two processes use the same key without showing it.
    pub fn key_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"arfwire.pseudonym-key-id.v1:");
        hasher.update(&self.key);
        crate::ids::hex(&hasher.finalize())[..8].to_owned()
    }

    /// The token of an address: `anon:<16 hex>`.
    pub fn token(&self, address: &str) -> String {
        let normal = normalise(address);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(normal.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{TOKEN_PREFIX}{}", &crate::ids::hex(&digest)[..16])
    }

    /// Replace every address in `text` with its token.
    pub fn tokenise_all<'a>(&self, text: &'a str) -> Cow<'a, str> {
        replace_addresses(text, |address| Some(self.token(address)))
    }
}

/// Is `text` a complainant token (`anon:<16 hex>`)?
pub fn is_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX)
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The form of an address that is hashed: trimmed, without angle brackets, lower case.
pub fn normalise(address: &str) -> String {
    let trimmed = address.trim();
    let trimmed = trimmed
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(trimmed)
        .trim();
    trimmed.to_lowercase()
}

/// Replace every address in `text` with [`MASKED_ADDRESS`].
pub fn mask_addresses(text: &str) -> Cow<'_, str> {
    replace_addresses(text, |_| Some(MASKED_ADDRESS.to_owned()))
}

/// Replace the addresses of `known` (normalised address → token) in `text` with their tokens.
pub(crate) fn replace_known<'a>(text: &'a str, known: &HashMap<String, String>) -> Cow<'a, str> {
    if known.is_empty() || !text.contains('@') {
        return Cow::Borrowed(text);
    }
    replace_addresses(text, |address| known.get(&normalise(address)).cloned())
}

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '.' | '_' | '%' | '+' | '-' | '!' | '#' | '$' | '&')
        || matches!(c, '*' | '?' | '^' | '`' | '{' | '|' | '}' | '~' | '\'')
}

fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-' | '_')
}

/// Every address-like span in `text`: `(start, end)` byte ranges of `local@domain`, where a
/// quoted local part (`"a b"@example.com`) counts with its quotes and a domain may be an
/// address literal (`[192.0.2.1]`).
pub fn address_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find('@') {
        let at = from + rel;
        from = at + 1;
        // Local part, walking back.
        let before = &text[..at];
        let start = if let Some(quoted) = before.strip_suffix('"') {
            match quoted.rfind('"') {
                Some(open) if quoted.len() - open > 1 => open,
                _ => continue,
            }
        } else {
            let mut start = at;
            for (i, c) in before.char_indices().rev() {
                if is_local_char(c) {
                    start = i;
                } else {
                    break;
                }
            }
            // Dots cannot begin a local part.
            while start < at && text[start..].starts_with('.') {
                start += 1;
            }
            start
        };
        if start == at {
            continue;
        }
        // Domain, walking forward.
        let after = &text[at + 1..];
        let mut end = at + 1;
        if after.starts_with('[') {
            match after.find(']') {
                Some(close) => end = at + 1 + close + 1,
                None => continue,
            }
        } else {
            for (i, c) in after.char_indices() {
                if is_domain_char(c) {
                    end = at + 1 + i + c.len_utf8();
                } else {
                    break;
                }
            }
            while end > at + 1 && (text[..end].ends_with('.') || text[..end].ends_with('-')) {
                end -= 1;
            }
        }
        let domain = &text[at + 1..end];
        if !domain.chars().any(char::is_alphanumeric) {
            continue;
        }
        // Overlapping a span already found (an '@' inside a quoted local part).
        if spans.last().is_some_and(|&(_, e)| start < e) {
            continue;
        }
        spans.push((start, end));
        from = end;
    }
    spans
}

/// Every address in `text`, as written.
pub fn addresses_in(text: &str) -> Vec<&str> {
    address_spans(text)
        .into_iter()
        .map(|(s, e)| &text[s..e])
        .collect()
}

fn replace_addresses(text: &str, mut with: impl FnMut(&str) -> Option<String>) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let spans = address_spans(text);
    let mut out = String::new();
    let mut last = 0;
    let mut changed = false;
    for (start, end) in spans {
        if let Some(replacement) = with(&text[start..end]) {
            out.push_str(&text[last..start]);
            out.push_str(&replacement);
            last = end;
            changed = true;
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_keyed_and_normalised() {
        let p = Pseudonymizer::development();
        let t = p.token("Jane.Doe@Example.COM");
        assert!(is_token(&t), "{t}");
        assert_eq!(t, p.token(" <jane.doe@example.com> "));
        assert_ne!(t, p.token("john@example.com"));
        let other = Pseudonymizer::new(&[7u8; 32]).unwrap();
        assert_ne!(t, other.token("jane.doe@example.com"));
        assert!(!format!("{p:?}").contains(DEVELOPMENT_KEY_HEX));
    }

    #[test]
    fn hmac_matches_the_standard_construction() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        // Keys that short are refused by `new`, so build the value directly.
        let p = Pseudonymizer {
            key: b"Jefe".to_vec(),
        };
        assert_eq!(
            p.token("what do ya want for nothing?"),
            "anon:5bdcc146bf60754e"
        );
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(Pseudonymizer::from_hex("zz").unwrap_err(), KeyError::NotHex);
        assert_eq!(
            Pseudonymizer::from_hex("00ff").unwrap_err(),
            KeyError::TooShort(2)
        );
        assert!(Pseudonymizer::from_hex(&"ab".repeat(16)).is_ok());
        let a = Pseudonymizer::ephemeral().unwrap();
        let b = Pseudonymizer::ephemeral().unwrap();
        assert_ne!(a.token("x@example.com"), b.token("x@example.com"));
    }

    #[test]
    fn addresses_are_found_in_header_text() {
        let received = "from mx.example.net (mx.example.net [192.0.2.1]) by mail.example.org \
                        (Postfix) with ESMTP id 4B1; for <victim@example.org>; Tue, 1 Jan";
        assert_eq!(addresses_in(received), ["victim@example.org"]);
        assert_eq!(
            addresses_in("smtp.mailfrom=bounce@sender.example; dkim=pass"),
            ["bounce@sender.example"]
        );
        assert_eq!(
            addresses_in("\"Jane Doe\"@example.com, x@[192.0.2.7]."),
            ["\"Jane Doe\"@example.com", "x@[192.0.2.7]"]
        );
        assert!(addresses_in("user@ and @example.com and a@.").is_empty());
        assert_eq!(addresses_in("Ünïcødé@exämple.de"), ["Ünïcødé@exämple.de"]);
        let p = Pseudonymizer::development();
        let replaced = p.tokenise_all("for <victim@example.org>;");
        assert_eq!(
            replaced,
            format!("for <{}>;", p.token("victim@example.org"))
        );
        assert_eq!(mask_addresses("to a@b.example now"), "to [address] now");
    }
}
