//! `MAIL FROM:<…>` and `RCPT TO:<…>` arguments.
//!
//! The command line has already been checked to be printable ASCII (no CR, LF, NUL or other
//! control bytes, no 8-bit bytes), so everything here works on `&str` of ASCII.

/// A path argument split into the text between the angle brackets and the parameters after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PathArgument<'a> {
    /// What stood between `<` and `>` (empty for `<>`).
    pub(crate) path: &'a str,
    /// The ESMTP parameters after the path, split on spaces.
    pub(crate) params: Vec<&'a str>,
}

/// Split `FROM:<path> params` (or `TO:…`): `keyword` is `FROM` or `TO`, matched without regard
/// to case. Spaces between the colon and `<` are tolerated (many clients send them); the path
/// must be in angle brackets. A `>` inside a quoted local part does not end the path.
pub(crate) fn split_path_argument<'a>(args: &'a str, keyword: &str) -> Option<PathArgument<'a>> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].strip_prefix(':')?;
    let rest = rest.trim_start_matches(' ').strip_prefix('<')?;
    let bytes = rest.as_bytes();
    let mut quoted = false;
    let mut index = 0;
    let end = loop {
        let byte = *bytes.get(index)?;
        match byte {
            b'\\' if quoted => index += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => break index,
            _ => {}
        }
        index += 1;
    };
    let path = &rest[..end];
    let after = &rest[end + 1..];
    if !after.is_empty() && !after.starts_with(' ') {
        return None;
    }
    let params = after.split(' ').filter(|p| !p.is_empty()).collect();
    Some(PathArgument { path, params })
}

/// Whether `path` is an acceptable reverse-path mailbox: `local@domain` where the local part
/// is a dot-string or a quoted string and the domain is a host name or an address literal, at
/// most 256 bytes. Source routes (`@a,@b:user@c`) are not accepted.
pub(crate) fn is_valid_mailbox(path: &str) -> bool {
    if path.is_empty() || path.len() > 256 {
        return false;
    }
    let Some(at) = path.rfind('@') else {
        return false;
    };
    let (local, domain) = (&path[..at], &path[at + 1..]);
    (is_dot_string(local) || is_quoted_string(local)) && local.len() <= 64 && is_domain(domain)
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

fn is_dot_string(local: &str) -> bool {
    !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext))
}

fn is_quoted_string(local: &str) -> bool {
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    let bytes = inner.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => {
                // quoted-pairSMTP: a backslash and one printable character.
                if !matches!(bytes.get(index + 1), Some(32..=126)) {
                    return false;
                }
                index += 2;
            }
            b'"' => return false,
            32..=126 => index += 1,
            _ => return false,
        }
    }
    true
}

fn is_domain(domain: &str) -> bool {
    if let Some(literal) = domain
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        return !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"[]\\".contains(&b));
    }
    !domain.is_empty()
        && domain.len() <= 255
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths_and_parameters() {
        let arg = split_path_argument("FROM:<a@b.example> SIZE=10 BODY=8BITMIME", "FROM").unwrap();
        assert_eq!(arg.path, "a@b.example");
        assert_eq!(arg.params, ["SIZE=10", "BODY=8BITMIME"]);
        let arg = split_path_argument("from: <>", "FROM").unwrap();
        assert_eq!(arg.path, "");
        assert!(arg.params.is_empty());
        let arg = split_path_argument("TO:<\"a>b\"@c.example>", "TO").unwrap();
        assert_eq!(arg.path, "\"a>b\"@c.example");
        for bad in [
            "FROM:a@b",
            "FROM<a@b>",
            "FROM:<a@b",
            "FROM:<a@b>x",
            "TO:<a@b>",
            "",
            "FRO",
        ] {
            assert!(split_path_argument(bad, "FROM").is_none(), "{bad}");
        }
    }

    #[test]
    fn mailboxes() {
        for good in [
            "a@b.example",
            "first.last+tag@sub.b.example",
            "\"odd person\"@b.example",
            "a@[192.0.2.1]",
            "a%b@c.example",
        ] {
            assert!(is_valid_mailbox(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "@b.example",
            "a@",
            "a..b@c.example",
            "@x.example:a@b.example",
            "a@b_c.example",
            "\"unterminated@b.example",
            "a@-b.example",
        ] {
            assert!(!is_valid_mailbox(bad), "{bad}");
        }
    }
}
