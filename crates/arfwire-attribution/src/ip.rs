//! IP normalisation and classification (specification §5.6).
//!
//! * [`normalise`] unwraps IPv4-mapped IPv6 addresses; every other address is kept as is
//!   (`Display` already prints IPv6 in the RFC 5952 canonical form).
//! * [`parse_ip_lenient`] reads the address forms mail headers use: brackets, an `IPv6:`
//!   prefix, a `%zone` and a source port.
//! * [`is_reserved`] checks our own special-purpose table (`Ipv4Addr::is_global` is unstable,
//!   and we want the table pinned and reviewable anyway).
//! * [`classify`] puts an address in one of the four classes of §5.6, in order.

use crate::profile::Profile;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of a connecting address, relative to the provider profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressClass {
    /// In the profile's egress networks: our server handed the message out.
    ProviderEgress,
    /// In the profile's internal networks, or private-like behind one of our by-hosts.
    ProviderInternal,
    /// Special-purpose space that is not globally reachable.
    Reserved,
    /// Anything else: a public address outside our platform.
    External,
}

impl AddressClass {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::ProviderEgress => "provider_egress",
            AddressClass::ProviderInternal => "provider_internal",
            AddressClass::Reserved => "reserved",
            AddressClass::External => "external",
        }
    }
}

/// Unwrap an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4; other addresses are
/// returned unchanged. IPv4-compatible (`::a.b.c.d`) and NAT64 addresses are not unwrapped:
/// they are different addresses, not spellings of the same one.
pub fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        IpAddr::V4(_) => ip,
    }
}

/// Parse an address as mail headers write it, normalised. Accepted forms:
/// `1.2.3.4`, `2001:db8::1`, `[1.2.3.4]`, `[IPv6:2001:db8::1]` (prefix in any case),
/// `fe80::1%3` and `[fe80::1%eth0]` (zone dropped), `1.2.3.4:25` and `[1.2.3.4]:25`, and the
/// old Exim `[1.2.3.4.25]` (port as a fifth component, bracketed form only).
/// Anything else, including trailing text, is `None`.
pub fn parse_ip_lenient(s: &str) -> Option<IpAddr> {
    parse_ip_with_port(s).map(|(ip, _)| ip)
}

/// As [`parse_ip_lenient`], also returning the port when the form carries one.
pub fn parse_ip_with_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']')?;
        let inner = rest.get(..close)?;
        let after = rest.get(close + 1..)?;
        let port = if after.is_empty() {
            None
        } else {
            Some(parse_port(after.strip_prefix(':')?)?)
        };
        let (ip, inner_port) = parse_core(inner, true)?;
        // `[a.b.c.d.p]:q` is not a form anyone writes.
        if port.is_some() && inner_port.is_some() {
            return None;
        }
        Some((ip, port.or(inner_port)))
    } else {
        parse_core(s, false)
    }
}

/// The address inside brackets, or a bare token: optional `IPv6:` prefix, optional zone,
/// optional `:port` (IPv4 only), optional fifth component (IPv4, bracketed only).
fn parse_core(s: &str, bracketed: bool) -> Option<(IpAddr, Option<u16>)> {
    let (v6_only, s) = match strip_prefix_ci(s, "IPv6:") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s.is_empty() {
        return None;
    }
    if let Some((addr, zone)) = s.split_once('%') {
        // A zone is only legal on IPv6, and must be a plain identifier.
        let zone_ok = !zone.is_empty()
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !zone_ok {
            return None;
        }
        let v6: Ipv6Addr = addr.parse().ok()?;
        return Some((normalise(IpAddr::V6(v6)), None));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        if v6_only && ip.is_ipv4() {
            return None;
        }
        return Some((normalise(ip), None));
    }
    if v6_only {
        return None;
    }
    // IPv4 with a port: `a.b.c.d:p`.
    if let Some((addr, port)) = s.split_once(':') {
        let v4: Ipv4Addr = addr.parse().ok()?;
        return Some((IpAddr::V4(v4), Some(parse_port(port)?)));
    }
    // Old Exim: `[a.b.c.d.p]`.
    if bracketed {
        let (addr, port) = s.rsplit_once('.')?;
        let v4: Ipv4Addr = addr.parse().ok()?;
        return Some((IpAddr::V4(v4), Some(parse_port(port)?)));
    }
    None
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// One IPv4 block of the special-purpose table.
struct V4Block {
    net: [u8; 4],
    len: u8,
    /// A documentation range (RFC 5737), let through by the test-only profile knob.
    documentation: bool,
}

/// One IPv6 block of the special-purpose table.
struct V6Block {
    net: [u16; 8],
    len: u8,
    /// A documentation range (RFC 3849), let through by the test-only profile knob.
    documentation: bool,
}

const fn v4(net: [u8; 4], len: u8) -> V4Block {
    V4Block {
        net,
        len,
        documentation: false,
    }
}

const fn v4_doc(net: [u8; 4], len: u8) -> V4Block {
    V4Block {
        net,
        len,
        documentation: true,
    }
}

const fn v6(net: [u16; 8], len: u8) -> V6Block {
    V6Block {
        net,
        len,
        documentation: false,
    }
}

/// IPv4 special-purpose blocks that are not globally reachable (IANA IPv4 Special-Purpose
/// Address Registry, as listed in specification §5.6). 240.0.0.0/4 includes the limited
/// broadcast address 255.255.255.255.
const V4_RESERVED: &[V4Block] = &[
    v4([0, 0, 0, 0], 8),
    v4([10, 0, 0, 0], 8),
    v4([100, 64, 0, 0], 10),
    v4([127, 0, 0, 0], 8),
    v4([169, 254, 0, 0], 16),
    v4([172, 16, 0, 0], 12),
    v4([192, 0, 0, 0], 24),
    v4_doc([192, 0, 2, 0], 24),
    v4([192, 88, 99, 0], 24),
    v4([192, 168, 0, 0], 16),
    v4([198, 18, 0, 0], 15),
    v4_doc([198, 51, 100, 0], 24),
    v4_doc([203, 0, 113, 0], 24),
    v4([224, 0, 0, 0], 4),
    v4([240, 0, 0, 0], 4),
    v4([255, 255, 255, 255], 32),
];

/// IPv6 special-purpose blocks that are not globally reachable (IANA IPv6 Special-Purpose
/// Address Registry, as listed in specification §5.6). 2001::/23 is handled with its
/// globally reachable sub-blocks in [`V6_REACHABLE_IN_2001_23`].
const V6_RESERVED: &[V6Block] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    V6Block {
        net: [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        len: 32,
        documentation: true,
    },
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
];

/// Sub-blocks of 2001::/23 that the IANA registry marks globally reachable.
const V6_REACHABLE_IN_2001_23: &[V6Block] = &[
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
];

fn v4_in(ip: Ipv4Addr, block: &V4Block) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(block.len)).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(block.net)) & mask)
}

fn v6_in(ip: Ipv6Addr, block: &V6Block) -> bool {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(block.len))
        .unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(block.net)) & mask)
}

/// Is `ip` special-purpose space that is not globally reachable? IPv4-mapped addresses are
/// judged as their IPv4 address. With `documentation_public` (a test-only profile knob) the
/// documentation ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32 count
/// as public.
pub fn is_reserved(ip: IpAddr, documentation_public: bool) -> bool {
    match normalise(ip) {
        IpAddr::V4(a) => V4_RESERVED
            .iter()
            .any(|b| v4_in(a, b) && !(documentation_public && b.documentation)),
        IpAddr::V6(a) => {
            if V6_REACHABLE_IN_2001_23.iter().any(|b| v6_in(a, b)) {
                return false;
            }
            V6_RESERVED
                .iter()
                .any(|b| v6_in(a, b) && !(documentation_public && b.documentation))
        }
    }
}

/// Private (RFC 1918), loopback, link-local or unique-local (fc00::/7): addresses that are
/// only meaningful inside one network. IPv4-mapped addresses are judged as IPv4.
pub fn is_private_like(ip: IpAddr) -> bool {
    match normalise(ip) {
        IpAddr::V4(a) => a.is_private() || a.is_loopback() || a.is_link_local(),
        IpAddr::V6(a) => {
            let first = a.segments()[0];
            a.is_loopback() || (first & 0xffc0) == 0xfe80 || (first & 0xfe00) == 0xfc00
        }
    }
}

/// Classify a connecting address (specification §5.6), checking in order:
/// 1. `ProviderEgress`: in the profile's egress networks in force at `at`;
/// 2. `ProviderInternal`: in the profile's internal networks, or private-like while the
///    by-host of the line is one of ours (`by_is_provider`);
/// 3. `Reserved`: special-purpose space ([`is_reserved`], honouring the profile's
///    documentation-range knob);
/// 4. `External`.
///
/// `at` is the time the address was used (seconds since the epoch); `None` means any time.
pub fn classify(
    ip: IpAddr,
    profile: &Profile,
    by_is_provider: bool,
    at: Option<i64>,
) -> AddressClass {
    let ip = normalise(ip);
    if profile.egress(ip, at).is_some() {
        AddressClass::ProviderEgress
    } else if profile.is_internal(ip, at) || (by_is_provider && is_private_like(ip)) {
        AddressClass::ProviderInternal
    } else if is_reserved(ip, profile.treat_documentation_ranges_as_public) {
        AddressClass::Reserved
    } else {
        AddressClass::External
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        match s.parse() {
            Ok(ip) => ip,
            Err(e) => panic!("test address {s}: {e}"),
        }
    }

    #[test]
    fn normalise_unwraps_mapped_only() {
        assert_eq!(normalise(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(normalise(ip("::192.0.2.7")), ip("::192.0.2.7"));
        assert_eq!(normalise(ip("64:ff9b::c000:207")), ip("64:ff9b::c000:207"));
        assert_eq!(normalise(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(normalise(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn display_is_rfc5952() {
        // A single zero group is not shortened; the longest run is; hex is lower case.
        assert_eq!(
            ip("2001:DB8:31:0:48:4558:736D:7470").to_string(),
            "2001:db8:31:0:48:4558:736d:7470"
        );
        assert_eq!(ip("2001:db8:0:0:1:0:0:1").to_string(), "2001:db8::1:0:0:1");
        assert_eq!(
            ip("2001:0db8:0000:0000:0000:0000:0000:0001").to_string(),
            "2001:db8::1"
        );
    }

    #[test]
    fn lenient_forms() {
        type Expected = Option<(&'static str, Option<u16>)>;
        let cases: &[(&str, Expected)] = &[
            ("192.0.2.1", Some(("192.0.2.1", None))),
            (" 192.0.2.1 ", Some(("192.0.2.1", None))),
            ("[192.0.2.1]", Some(("192.0.2.1", None))),
            ("[192.0.2.1]:2525", Some(("192.0.2.1", Some(2525)))),
            ("192.0.2.1:2525", Some(("192.0.2.1", Some(2525)))),
            ("[192.0.2.1.49152]", Some(("192.0.2.1", Some(49152)))),
            ("[IPv6:2001:db8::5]", Some(("2001:db8::5", None))),
            ("[ipv6:2001:db8::5]", Some(("2001:db8::5", None))),
            ("[IPV6:::1]", Some(("::1", None))),
            ("IPv6:2001:db8::5", Some(("2001:db8::5", None))),
            ("[2001:db8::5]:587", Some(("2001:db8::5", Some(587)))),
            ("fe80::1%3", Some(("fe80::1", None))),
            ("[fe80::d5cf:1%eth0]", Some(("fe80::d5cf:1", None))),
            ("[::ffff:203.0.113.9]", Some(("203.0.113.9", None))),
            ("::ffff:203.0.113.9", Some(("203.0.113.9", None))),
            // Not addresses.
            ("192.0.2.1.49152", None),
            ("203.0.113.56.rev.example.net", None),
            ("[192.0.2.1]x", None),
            ("[192.0.2.1]:", None),
            ("[192.0.2.1]:99999", None),
            ("[192.0.2.1", None),
            ("192.0.2.1%3", None),
            ("fe80::1%", None),
            ("fe80::1%a b", None),
            ("[IPv6:192.0.2.1]", None),
            ("?IPV6:2001:db8::5?", None),
            ("[192.0.2.1.2.3]", None),
            ("01.2.3.4", None),
            ("[]", None),
            ("", None),
            ("0", None),
            ("unknown", None),
            ("8.13.1/8.13.1", None),
        ];
        for (input, expected) in cases {
            let got = parse_ip_with_port(input);
            let expected = expected.map(|(a, p)| (ip(a), p));
            assert_eq!(got, expected, "input {input:?}");
            assert_eq!(
                parse_ip_lenient(input),
                expected.map(|(a, _)| a),
                "input {input:?}"
            );
        }
    }

    /// Every block of the table: its first and last address are reserved, and the address
    /// just outside each end is not (where that neighbour is not itself special).
    #[test]
    fn v4_range_edges() {
        let reserved = [
            "0.0.0.0",
            "0.255.255.255",
            "10.0.0.0",
            "10.255.255.255",
            "100.64.0.0",
            "100.127.255.255",
            "127.0.0.0",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.0.0.0",
            "192.0.0.255",
            "192.0.2.0",
            "192.0.2.255",
            "192.88.99.0",
            "192.88.99.255",
            "192.168.0.0",
            "192.168.255.255",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.0",
            "203.0.113.255",
            "224.0.0.0",
            "239.255.255.255",
            "240.0.0.0",
            "255.255.255.254",
            "255.255.255.255",
        ];
        let public = [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.255",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "40.107.0.1",
        ];
        for a in reserved {
            assert!(is_reserved(ip(a), false), "{a} should be reserved");
        }
        for a in public {
            assert!(!is_reserved(ip(a), false), "{a} should be public");
        }
    }

    #[test]
    fn v6_range_edges() {
        let reserved = [
            "::",
            "::1",
            "64:ff9b::",
            "64:ff9b::ffff:ffff",
            "64:ff9b:1::",
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "2001::",
            "2001:0:ffff::1",
            "2001:1::",
            "2001:1::3",
            "2001:2::",
            "2001:4:111:ffff:ffff:ffff:ffff:ffff",
            "2001:4:113::",
            "2001:10::",
            "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:40::",
            "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "2002::",
            "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff::",
            "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "ff00::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            // IPv4-mapped addresses are judged as IPv4.
            "::ffff:10.1.2.3",
            "::ffff:255.255.255.255",
        ];
        let public = [
            "::2",
            "64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff",
            "64:ff9b::1:0:0",
            "64:ff9b:2::",
            "100:0:0:1::",
            "ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            // The globally reachable sub-blocks of 2001::/23.
            "2001:1::1",
            "2001:1::2",
            "2001:3::",
            "2001:3:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:4:112::",
            "2001:4:112:ffff:ffff:ffff:ffff:ffff",
            "2001:20::",
            "2001:2f:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:30::",
            "2001:3f:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:200::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2003::",
            "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff:1000::",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::",
            "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fec0::",
            "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2a01:111:f403:c406::3",
            "::ffff:40.107.0.1",
        ];
        for a in reserved {
            assert!(is_reserved(ip(a), false), "{a} should be reserved");
        }
        for a in public {
            assert!(!is_reserved(ip(a), false), "{a} should be public");
        }
    }

    #[test]
    fn documentation_knob_only_frees_documentation_ranges() {
        for a in [
            "192.0.2.0",
            "192.0.2.255",
            "198.51.100.0",
            "198.51.100.255",
            "203.0.113.0",
            "203.0.113.255",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.9",
        ] {
            assert!(is_reserved(ip(a), false), "{a}");
            assert!(!is_reserved(ip(a), true), "{a}");
        }
        for a in ["10.0.0.1", "192.0.0.1", "3fff::1", "2001::1", "::1"] {
            assert!(is_reserved(ip(a), true), "{a}");
        }
    }

    #[test]
    fn private_like_edges() {
        let yes = [
            "10.0.0.0",
            "10.255.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "192.168.0.0",
            "192.168.255.255",
            "127.0.0.1",
            "127.255.255.255",
            "169.254.0.0",
            "169.254.255.255",
            "::1",
            "fe80::",
            "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fc00::",
            "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.168.1.1",
        ];
        let no = [
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "100.64.0.1",
            "::",
            "::2",
            "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fec0::",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "fe00::",
            "2603:10b6::1",
            "192.0.2.1",
        ];
        for a in yes {
            assert!(is_private_like(ip(a)), "{a} should be private-like");
        }
        for a in no {
            assert!(!is_private_like(ip(a)), "{a} should not be private-like");
        }
    }

    fn exo_ref(doc_public: bool) -> Profile {
        let text = format!(
            r#"
name = "exo-ref"
egress_networks = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17",
                   "2a01:111:f400::/48", "2a01:111:f403::/48",
                   {{ cidr = "40.95.0.0/16", pool = "relay" }},
                   {{ cidr = "198.51.100.128/25", valid_from = "2020-01-01T00:00:00Z",
                      valid_to = "2021-01-01T00:00:00Z" }}]
internal_networks = ["10.0.0.0/8", "fe80::/10", "2603:10a6::/32", "2603:10b6::/32",
                     "2603:1096::/32", "2a01:111:e400::/40"]
egress_host_suffixes = [".outbound.protection.outlook.com"]
provider_host_suffixes = [".outbound.protection.outlook.com", ".mail.protection.outlook.com",
                          ".protection.outlook.com", ".prod.outlook.com",
                          ".outlook.office365.com", ".prod.exchangelabs.com",
                          ".protection.gbl", ".hotmail.com"]
stamp_family = "microsoft-exo"
treat_documentation_ranges_as_public = {doc_public}
"#
        );
        match Profile::from_toml(&text) {
            Ok(p) => p,
            Err(e) => panic!("profile: {e}"),
        }
    }

    #[test]
    fn classify_in_order() {
        use AddressClass::*;
        let p = exo_ref(false);
        let cases: &[(&str, bool, AddressClass)] = &[
            ("40.107.244.43", false, ProviderEgress),
            ("40.107.0.0", false, ProviderEgress),
            ("40.106.255.255", false, External),
            ("40.93.255.255", false, ProviderEgress),
            ("40.94.0.0", false, External),
            ("40.95.1.2", false, ProviderEgress),
            ("::ffff:40.107.1.1", false, ProviderEgress),
            ("2a01:111:f403:c406::3", false, ProviderEgress),
            ("2a01:111:f402::1", false, External),
            ("10.167.248.23", false, ProviderInternal),
            ("2603:10b6:510:2da:cafe::e2", false, ProviderInternal),
            ("fe80::d5cf:d2af:3aea:e2a3", false, ProviderInternal),
            // Private-like: internal only behind one of our by-hosts.
            ("192.168.2.101", true, ProviderInternal),
            ("192.168.2.101", false, Reserved),
            ("127.0.0.1", true, ProviderInternal),
            ("127.0.0.1", false, Reserved),
            ("fd00::1", true, ProviderInternal),
            ("fd00::1", false, Reserved),
            // Reserved but not private-like stays reserved even behind our by-host.
            ("100.64.0.1", true, Reserved),
            ("192.0.2.8", true, Reserved),
            ("255.255.255.255", false, Reserved),
            ("255.255.255.255", true, Reserved),
            ("2603:1000::1", true, External),
            ("203.0.113.5", false, Reserved),
            ("8.8.8.8", true, External),
        ];
        for (a, by_provider, class) in cases {
            assert_eq!(
                classify(ip(a), &p, *by_provider, None),
                *class,
                "{a} by_provider={by_provider}"
            );
        }
        let p = exo_ref(true);
        assert_eq!(classify(ip("203.0.113.5"), &p, false, None), External);
        assert_eq!(classify(ip("2001:db8::1"), &p, false, None), External);
        assert_eq!(classify(ip("10.0.0.1"), &p, false, None), ProviderInternal);
    }

    #[test]
    fn classify_is_effective_dated() {
        let p = exo_ref(true);
        let a = ip("198.51.100.200");
        let in_2020 = 1_590_000_000; // 2020-05-20
        let in_2022 = 1_650_000_000; // 2022-04-15
        assert_eq!(
            classify(a, &p, false, Some(in_2020)),
            AddressClass::ProviderEgress
        );
        assert_eq!(
            classify(a, &p, false, Some(in_2022)),
            AddressClass::External
        );
        assert_eq!(classify(a, &p, false, None), AddressClass::ProviderEgress);
        // valid_to is exclusive.
        assert_eq!(
            classify(a, &p, false, Some(1_609_459_200)),
            AddressClass::External
        );
        assert_eq!(
            classify(a, &p, false, Some(1_609_459_199)),
            AddressClass::ProviderEgress
        );
    }
}
