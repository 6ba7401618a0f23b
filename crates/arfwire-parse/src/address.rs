//! Small address helpers that do not need a full RFC 5322 parser.

/// The domain of an address, lower case: the part after the last `@`, angle brackets,
/// trailing dots and whitespace removed. `None` when there is no `@` or no domain.
pub fn domain_of(address: &str) -> Option<&str> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let at = address.rfind('@')?;
    let domain = address[at + 1..]
        .trim()
        .trim_end_matches('>')
        .trim_end_matches('.');
    if domain.is_empty() {
        None
    } else {
        Some(domain)
    }
}

/// Strip angle brackets and surrounding whitespace from an address value.
pub(crate) fn strip_angles(value: &str) -> String {
    let v = value.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.strip_suffix('>').unwrap_or(v);
    v.trim().to_owned()
}

/// Lower-case a domain (ASCII only; A-labels stay as written).
pub(crate) fn normalise_domain(domain: &str) -> String {
    domain.to_ascii_lowercase()
}
