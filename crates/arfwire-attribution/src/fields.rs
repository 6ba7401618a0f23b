//! Parsers for the header fields attribution reads besides `Received` (specification §7.1,
//! §9, tests H01–H10): Exchange Online stamps, `X-Forefront-Antispam-Report`,
//! `Authentication-Results`, `ARC-Authentication-Results`, `Received-SPF`, DKIM-Signature.
//! Every parser is lenient, linear and total: bad input gives `None` or empty values.

use std::net::IpAddr;

use crate::ip::parse_ip_lenient;

/// Collapse folding whitespace into single spaces.
pub fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp`:
/// `TenantId=<guid>;Ip=[<ip>];Helo=[<helo>]` (H01).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectingIp {
    /// Tenant the connector attribution chose, lower case.
    pub tenant_id: Option<String>,
    /// Connecting IP.
    pub ip: Option<IpAddr>,
    /// Connecting HELO, opaque.
    pub helo: Option<String>,
}

/// Parse a `key=value;key=[value]` list (values may be bracketed).
fn key_values(value: &str) -> Vec<(String, String)> {
    unfold(value)
        .split(';')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

/// Parse the connecting-IP stamp.
pub fn connecting_ip(value: &str) -> ConnectingIp {
    let mut out = ConnectingIp::default();
    for (k, v) in key_values(value) {
        match k.as_str() {
            "tenantid" => out.tenant_id = Some(v.to_ascii_lowercase()),
            "ip" => out.ip = parse_ip_lenient(&v),
            "helo" => out.helo = Some(v),
            _ => {}
        }
    }
    out
}

/// The connecting IP recorded in `X-Forefront-Antispam-Report` `CIP:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cip {
    /// An address.
    Ip(IpAddr),
    /// `255.255.255.255`: no client IP (a hosted mailbox submission).
    Hidden,
}

/// `X-Forefront-Antispam-Report` (H02, H02b, H03).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Forefront {
    /// Every `KEY:VALUE` pair in order, keys upper case.
    pub pairs: Vec<(String, String)>,
}

impl Forefront {
    /// Value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The connecting IP.
    pub fn cip(&self) -> Option<Cip> {
        let v = self.get("CIP")?;
        let ip = parse_ip_lenient(v)?;
        if ip == IpAddr::from([255, 255, 255, 255]) {
            Some(Cip::Hidden)
        } else {
            Some(Cip::Ip(ip))
        }
    }

    /// Direction (`OUT`, `INB`, `INT`).
    pub fn dir(&self) -> Option<&str> {
        self.get("DIR")
    }

    /// The `SFS:` rule list, split on parentheses.
    pub fn sfs(&self) -> Vec<String> {
        self.get("SFS")
            .map(|v| {
                v.split(['(', ')'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parse `X-Forefront-Antispam-Report`: split on `;`, then on the first `:` only.
pub fn forefront(value: &str) -> Forefront {
    let pairs = unfold(value)
        .split(';')
        .filter_map(|pair| {
            let pair = pair.trim();
            if pair.is_empty() {
                return None;
            }
            let (k, v) = pair.split_once(':')?;
            Some((k.trim().to_ascii_uppercase(), v.trim().to_owned()))
        })
        .collect();
    Forefront { pairs }
}

/// `X-MS-TrafficTypeDiagnostic`: server short names in order (H07).
pub fn traffic_type_diagnostic(value: &str) -> Vec<String> {
    unfold(value)
        .split('|')
        .filter_map(|part| {
            let name = part.split(':').next()?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// `X-MS-Exchange-CrossTenant-OriginalArrivalTime`: `02 Apr 2025 17:43:11.1749 (UTC)` (H04).
/// Returns seconds since the Unix epoch (fraction dropped).
pub fn original_arrival_time(value: &str) -> Option<i64> {
    let text = unfold(value);
    let mut parts = text.split_whitespace();
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?.to_ascii_lowercase();
    let month = MONTHS
        .iter()
        .position(|m| month_name.starts_with(m))
        .and_then(|m| u32::try_from(m + 1).ok())?;
    let year: i32 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    let mut hms = time.split('.').next()?.split(':');
    let hour: u32 = hms.next()?.parse().ok()?;
    let minute: u32 = hms.next()?.parse().ok()?;
    let second: u32 = hms.next().unwrap_or("0").parse().ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    let datetime = date.and_hms_opt(hour, minute, second.min(59))?;
    Some(datetime.and_utc().timestamp())
}

/// One method result of an `Authentication-Results` field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MethodResult {
    /// Method (`spf`, `dkim`, `dmarc`, `arc`, ...), lower case.
    pub method: String,
    /// Result (`pass`, `fail`, ...), lower case.
    pub result: String,
    /// Properties (`smtp.mailfrom`, `header.d`, ...), names lower case.
    pub properties: Vec<(String, String)>,
    /// An IP named in a comment (`sender IP is x`, `client-ip=x`).
    pub comment_ip: Option<IpAddr>,
}

impl MethodResult {
    /// Value of a property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed `Authentication-Results` (or `ARC-Authentication-Results`) field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthResults {
    /// The authserv-id, lower case, wherever it appeared (H08: Microsoft puts it mid-field).
    pub authserv_id: Option<String>,
    /// ARC instance (`i=`), for ARC-Authentication-Results.
    pub instance: Option<u32>,
    /// Method results in order.
    pub results: Vec<MethodResult>,
}

impl AuthResults {
    /// The first result of a method.
    pub fn method(&self, method: &str) -> Option<&MethodResult> {
        self.results.iter().find(|r| r.method == method)
    }

    /// An IP the field attributes to the sending client (spf comment, `smtp.client-ip`,
    /// `smtp.remote-ip`).
    pub fn client_ip(&self) -> Option<IpAddr> {
        for r in &self.results {
            for key in ["smtp.client-ip", "smtp.remote-ip", "policy.iprev"] {
                if let Some(ip) = r.property(key).and_then(parse_ip_lenient) {
                    return Some(ip);
                }
            }
        }
        self.results.iter().find_map(|r| r.comment_ip)
    }
}

/// Remove comments, returning the text without them and the comment texts.
fn split_comments(value: &str) -> (String, Vec<String>) {
    let mut text = String::with_capacity(value.len());
    let mut comments = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in value.chars() {
        match c {
            '(' => {
                if depth > 0 {
                    current.push(c);
                }
                depth += 1;
            }
            ')' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    comments.push(std::mem::take(&mut current));
                    text.push(' ');
                } else {
                    current.push(c);
                }
            }
            _ if depth > 0 => current.push(c),
            _ => text.push(c),
        }
    }
    if depth > 0 {
        comments.push(current);
    }
    (text, comments)
}

/// An IP written in a comment as "sender IP is x", "sender ip is x" or "client-ip=x".
fn ip_in_comment(comment: &str) -> Option<IpAddr> {
    let lower = comment.to_ascii_lowercase();
    for marker in [
        "sender ip is ",
        "client-ip=",
        "client ip is ",
        "designates ",
    ] {
        if let Some(pos) = lower.find(marker) {
            let rest = comment.get(pos + marker.len()..)?;
            let token = rest
                .split(|c: char| c.is_whitespace() || c == ';' || c == ')')
                .next()?;
            if let Some(ip) = parse_ip_lenient(token) {
                return Some(ip);
            }
        }
    }
    None
}

const METHODS: &[&str] = &[
    "spf",
    "dkim",
    "dmarc",
    "arc",
    "iprev",
    "auth",
    "domainkeys",
    "dkim-adsp",
    "bimi",
    "compauth",
    "x-hmca",
    "dkim-atps",
    "sender-id",
];

/// Split on `sep` outside parentheses and double quotes (comments may hold the separator:
/// `(sender IP is 192.0.2.1; identity alignment ...)`).
fn split_top_level(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut start = 0;
    for (i, ch) in value.char_indices() {
        match ch {
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            c if c == sep && depth == 0 && !quoted => {
                parts.push(value.get(start..i).unwrap_or(""));
                start = i + ch.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(value.get(start..).unwrap_or(""));
    parts
}

/// Parse `Authentication-Results` leniently (RFC 8601 with real-world deviations).
pub fn auth_results(value: &str) -> AuthResults {
    let mut out = AuthResults::default();
    let unfolded = unfold(value);
    let mut expect_authserv = true;
    for segment in split_top_level(&unfolded, ';') {
        let (text, comments) = split_comments(segment);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let mut tokens = text.split_whitespace().peekable();
        let first = tokens.peek().copied().unwrap_or("");
        let first_lower = first.to_ascii_lowercase();
        // ARC instance tag.
        if let Some(i) = first_lower.strip_prefix("i=") {
            out.instance = i.parse().ok();
            continue;
        }
        let method_of = |tok: &str| -> Option<(String, String)> {
            let (m, r) = tok.split_once('=')?;
            let m = m.to_ascii_lowercase();
            METHODS
                .contains(&m.as_str())
                .then(|| (m, r.to_ascii_lowercase()))
        };
        if method_of(first).is_none() {
            // Not a method result: an authserv-id (possibly with a version number).
            if expect_authserv || out.authserv_id.is_none() {
                out.authserv_id = Some(first_lower.trim_end_matches('.').to_owned());
            }
            expect_authserv = false;
            // Microsoft writes "hotmail.com; dkim=..." but also "spf=... ; hotmail.com;":
            // the rest of the segment may still hold a method.
            tokens.next();
            if tokens.peek().is_none() {
                continue;
            }
        }
        expect_authserv = false;
        let mut current: Option<MethodResult> = None;
        for tok in tokens {
            if let Some((method, result)) = method_of(tok) {
                if let Some(done) = current.take() {
                    out.results.push(done);
                }
                current = Some(MethodResult {
                    method,
                    result,
                    properties: Vec::new(),
                    comment_ip: None,
                });
            } else if let Some((k, v)) = tok.split_once('=')
                && let Some(cur) = current.as_mut()
            {
                cur.properties.push((
                    k.to_ascii_lowercase(),
                    v.trim_matches('"').trim_end_matches(',').to_owned(),
                ));
            }
        }
        if let Some(mut done) = current.take() {
            done.comment_ip = comments.iter().find_map(|c| ip_in_comment(c));
            out.results.push(done);
        }
    }
    out
}

/// `Received-SPF`: the result and the client IP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedSpf {
    /// Result (`pass`, `fail`, ...), lower case.
    pub result: Option<String>,
    /// `client-ip=` or the IP in the comment.
    pub client_ip: Option<IpAddr>,
    /// The host in the comment (`protection.outlook.com: ...`), lower case.
    pub receiver: Option<String>,
}

/// Parse `Received-SPF`.
pub fn received_spf(value: &str) -> ReceivedSpf {
    let text = unfold(value);
    let mut out = ReceivedSpf {
        result: text.split_whitespace().next().map(str::to_ascii_lowercase),
        ..ReceivedSpf::default()
    };
    let (outside, comments) = split_comments(&text);
    for (k, v) in outside.split(';').filter_map(|p| p.split_once('=')) {
        let key = k
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_ascii_lowercase();
        if key == "client-ip" {
            out.client_ip = parse_ip_lenient(v.trim());
        } else if key == "receiver" && out.receiver.is_none() {
            out.receiver = Some(v.trim().to_ascii_lowercase());
        }
    }
    if let Some(comment) = comments.first() {
        if out.client_ip.is_none() {
            out.client_ip = ip_in_comment(comment);
        }
        if let Some((host, _)) = comment.split_once(':') {
            let host = host.trim().to_ascii_lowercase();
            if !host.contains(' ') && !host.is_empty() {
                out.receiver = Some(host);
            }
        }
    }
    out
}

/// Is this DKIM signature a Microsoft initial-domain (MOERA) signature: `d=` under
/// `onmicrosoft.com` and `s=selector1-<d with dots as dashes>` or `selector2-...` (H10)?
pub fn is_moera(domain: &str, selector: Option<&str>) -> bool {
    let domain = domain.to_ascii_lowercase();
    if !domain.ends_with(".onmicrosoft.com") {
        return false;
    }
    match selector {
        None => true,
        Some(s) => {
            let dashed = domain.replace('.', "-");
            let s = s.to_ascii_lowercase();
            s == format!("selector1-{dashed}") || s == format!("selector2-{dashed}")
        }
    }
}

/// The `d=` and `s=` tags of a DKIM-Signature (or a renamed copy of one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DkimTags {
    /// `d=`, lower case.
    pub domain: Option<String>,
    /// `s=`, as written.
    pub selector: Option<String>,
}

/// Read the `d=` and `s=` tags of a DKIM-Signature value (tag=value pairs split on `;`).
pub fn dkim_tags(value: &str) -> DkimTags {
    let mut out = DkimTags::default();
    for pair in unfold(value).split(';') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = v.split_whitespace().collect::<String>();
        match k.trim().to_ascii_lowercase().as_str() {
            "d" if out.domain.is_none() && !v.is_empty() => {
                out.domain = Some(v.to_ascii_lowercase());
            }
            "s" if out.selector.is_none() && !v.is_empty() => out.selector = Some(v),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_results_keep_semicolons_inside_comments() {
        // A Microsoft-style spf comment holds a ';' before the property that follows it.
        let ar = auth_results(
            "example.com; spf=pass (sender IP is 203.0.113.245; identity alignment result is pass) \
             smtp.mailfrom=sales@example.com; dkim=pass (aligned; relaxed) header.d=example.com",
        );
        assert_eq!(ar.authserv_id.as_deref(), Some("example.com"));
        let spf = ar.method("spf").expect("spf");
        assert_eq!(spf.property("smtp.mailfrom"), Some("sales@example.com"));
        assert_eq!(spf.comment_ip, Some("203.0.113.245".parse().expect("ip")));
        assert_eq!(
            ar.method("dkim").and_then(|d| d.property("header.d")),
            Some("example.com")
        );
        // An unbalanced parenthesis swallows the rest, linearly and without panicking.
        let broken = auth_results("mx.example; spf=pass (unclosed; dkim=pass header.d=x.example");
        assert_eq!(
            broken.method("spf").map(|r| r.result.as_str()),
            Some("pass")
        );
    }

    #[test]
    fn dkim_tags_read_domain_and_selector_of_a_renamed_signature() {
        let tags = dkim_tags(
            "v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n d=Contoso.onmicrosoft.com; s=selector2-contoso-onmicrosoft-com;\r\n h=From; bh=x; b=y",
        );
        assert_eq!(tags.domain.as_deref(), Some("contoso.onmicrosoft.com"));
        assert_eq!(
            tags.selector.as_deref(),
            Some("selector2-contoso-onmicrosoft-com")
        );
        assert_eq!(dkim_tags("garbage"), DkimTags::default());
    }
}
