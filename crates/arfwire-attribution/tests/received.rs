//! `Received` parser tests: the specification's P-table (§13.2) as data, each §5.7 pitfall on
//! its own, the skip list, lenient dates, hostile input, and a cross-check against
//! mail-parser's own `Received` parser.

use arfwire_attribution::Profile;
use arfwire_attribution::ip::{AddressClass, classify};
use arfwire_attribution::received::{Hop, SkipReason, parse_date, parse_received, received_chain};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::net::IpAddr;

const P_TABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/attribution/received/p-table.toml"
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    case: Vec<Case>,
}

/// One row of the P-table. Absent keys mean `None` / `false`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    input: String,
    #[serde(default)]
    notes: Option<String>,
    ip: Option<String>,
    port: Option<u16>,
    ident: Option<String>,
    from_name: Option<String>,
    rdns: Option<String>,
    #[serde(default)]
    rdns_may_be_forged: bool,
    helo: Option<String>,
    by: Option<String>,
    by_ip: Option<String>,
    with: Option<String>,
    queue_id: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    via: Option<String>,
    envelope_from: Option<String>,
    tls: Option<String>,
    date: Option<String>,
    date_unix: Option<i64>,
    #[serde(default)]
    auth: bool,
    #[serde(default)]
    submission_marker: bool,
    #[serde(default)]
    frontend: bool,
    skipped: Option<String>,
    #[serde(default)]
    malformed: bool,
    class: Option<String>,
    egress_by_name: Option<bool>,
}

fn load_table() -> Vec<Case> {
    let text = match std::fs::read_to_string(P_TABLE) {
        Ok(t) => t,
        Err(e) => panic!("reading {P_TABLE}: {e}"),
    };
    match toml::from_str::<Table>(&text) {
        Ok(t) => t.case,
        Err(e) => panic!("parsing {P_TABLE}: {e}"),
    }
}

/// The reference profile EXO-REF (specification §13.0), with documentation ranges public so
/// the table's documentation addresses classify as the real ones they stand for.
fn exo_ref() -> Profile {
    let text = r#"
name = "EXO-REF"
egress_networks = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17",
                   "2a01:111:f400::/48", "2a01:111:f403::/48",
                   { cidr = "40.95.0.0/16", pool = "relay" }]
internal_networks = ["10.0.0.0/8", "fe80::/10", "2603:10a6::/32", "2603:10b6::/32",
                     "2603:1096::/32", "2a01:111:e400::/40"]
egress_host_suffixes = [".outbound.protection.outlook.com"]
provider_host_suffixes = [".outbound.protection.outlook.com", ".mail.protection.outlook.com",
                          ".protection.outlook.com", ".prod.outlook.com",
                          ".outlook.office365.com", ".prod.exchangelabs.com",
                          ".protection.gbl", ".hotmail.com"]
stamp_family = "microsoft-exo"
treat_documentation_ranges_as_public = true
"#;
    match Profile::from_toml(text) {
        Ok(p) => p,
        Err(e) => panic!("EXO-REF profile: {e}"),
    }
}

fn addr(s: &str) -> IpAddr {
    match s.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("test address {s:?}: {e}"),
    }
}

fn skip_reason(s: &str) -> SkipReason {
    match s {
        "no_from" => SkipReason::NoFrom,
        "local" => SkipReason::Local,
        "fetch" => SkipReason::Fetch,
        other => panic!("unknown skip reason {other:?}"),
    }
}

fn class_name(c: AddressClass) -> &'static str {
    c.as_str()
}

/// The hop a case describes. Every field is spelled out so a new `Hop` field breaks this
/// test until the table says what it should be.
fn expected_hop(case: &Case, index: usize, raw: String) -> Hop {
    Hop {
        index,
        raw,
        from_name: case.from_name.clone(),
        rdns: case.rdns.clone(),
        rdns_may_be_forged: case.rdns_may_be_forged,
        helo: case.helo.clone(),
        ip: case.ip.as_deref().map(addr),
        port: case.port,
        ident: case.ident.clone(),
        by: case.by.clone(),
        by_ip: case.by_ip.as_deref().map(addr),
        with: case.with.clone(),
        id: case.queue_id.clone(),
        for_: case.for_.clone(),
        via: case.via.clone(),
        envelope_from: case.envelope_from.clone(),
        tls: case.tls.clone(),
        date: case.date.clone(),
        date_unix: case.date_unix,
        auth: case.auth,
        submission_marker: case.submission_marker,
        frontend: case.frontend,
        skipped: case.skipped.as_deref().map(skip_reason),
        malformed: case.malformed,
    }
}

/// Field-by-field differences, for a readable failure.
fn differences(got: &Hop, want: &Hop) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! field {
        ($($f:ident),*) => {$(
            if got.$f != want.$f {
                out.push(format!("{}: got {:?}, want {:?}", stringify!($f), got.$f, want.$f));
            }
        )*};
    }
    field!(
        index,
        raw,
        from_name,
        rdns,
        rdns_may_be_forged,
        helo,
        ip,
        port,
        ident,
        by,
        by_ip,
        with,
        id,
        for_,
        via,
        envelope_from,
        tls,
        date,
        date_unix,
        auth,
        submission_marker,
        frontend,
        skipped,
        malformed
    );
    out
}

#[test]
fn p_table_holds_all_38_cases_once() {
    let cases = load_table();
    let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids in {ids:?}");
    let want: BTreeSet<String> = (1..=38).map(|n| format!("P{n:02}")).collect();
    let have: BTreeSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(have, want);
}

#[test]
fn p_table() {
    let profile = exo_ref();
    let mut failures = Vec::new();
    for (index, case) in load_table().iter().enumerate() {
        let hop = parse_received(&case.input, index);
        let mut diffs = Vec::new();

        // The unfolded value: no line breaks survive, nothing but the folding changes.
        if hop.raw.contains(['\r', '\n']) {
            diffs.push("raw still holds a line break".to_owned());
        }
        let squeezed = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        if squeezed(&hop.raw) != squeezed(&case.input) {
            diffs.push(format!("raw {:?} is not the unfolded input", hop.raw));
        }
        diffs.extend(differences(
            &hop,
            &expected_hop(case, index, hop.raw.clone()),
        ));

        // Addresses must print in the canonical form the table spells (RFC 5952).
        let shown = hop.ip.map(|ip| ip.to_string());
        if shown != case.ip {
            diffs.push(format!("ip displays as {shown:?}, want {:?}", case.ip));
        }
        let shown = hop.by_ip.map(|ip| ip.to_string());
        if shown != case.by_ip {
            diffs.push(format!(
                "by_ip displays as {shown:?}, want {:?}",
                case.by_ip
            ));
        }

        match (hop.ip, case.class.as_deref()) {
            (Some(ip), Some(want)) => {
                let by_is_provider = hop
                    .by
                    .as_deref()
                    .is_some_and(|b| profile.is_provider_host(b));
                let got = class_name(classify(ip, &profile, by_is_provider, hop.date_unix));
                if got != want {
                    diffs.push(format!("class: got {got}, want {want}"));
                }
            }
            (Some(_), None) => diffs.push("a case with an ip must give its class".to_owned()),
            (None, Some(_)) => diffs.push("class given but no ip".to_owned()),
            (None, None) => {}
        }
        if let Some(want) = case.egress_by_name {
            let by_name = hop.ip.is_none()
                && [hop.from_name.as_deref(), hop.rdns.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|n| profile.is_egress_host(n));
            if by_name != want {
                diffs.push(format!("egress_by_name: got {by_name}, want {want}"));
            }
        }
        if !diffs.is_empty() {
            let notes = case.notes.as_deref().unwrap_or("");
            failures.push(format!("{} {notes}\n    {}", case.id, diffs.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "P-table mismatches:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// §5.7 pitfalls, one test each

fn parse(raw: &str) -> Hop {
    parse_received(raw, 0)
}

fn ip_of(raw: &str) -> Option<String> {
    parse(raw).ip.map(|ip| ip.to_string())
}

/// Pitfall 1: The IP comes from the TCP-info comment, not from the first address in the line.
#[test]
fn pitfall_01_tcp_info_comment_beats_the_first_address() {
    // Yahoo: from-name and EHLO hold other addresses.
    let hop = parse(
        "from 127.0.0.1 (EHLO [192.0.2.200]) (198.51.100.8) by mta.example with SMTP; Mon, 1 Apr 2013 10:00:00 -0700",
    );
    assert_eq!(hop.ip, Some(addr("198.51.100.8")));
    assert_eq!(hop.helo.as_deref(), Some("[192.0.2.200]"));
    assert_eq!(hop.rdns, None);
    // A HELLO comment with a different address than the TCP-info comment (junk-line shape).
    assert_eq!(
        ip_of(
            "from [192.0.2.1] (HELLO 192.0.2.2) (192.0.2.3) by x.example with SMTP; Mon, 1 Apr 2013 10:00:00 -0700"
        ),
        Some("192.0.2.3".to_owned())
    );
    // Postfix with a loopback HELO literal.
    assert_eq!(
        ip_of(
            "from [127.0.0.1] (unknown [198.51.100.9]) by mx.example (Postfix) with ESMTP id 1; Mon, 1 Apr 2013 10:00:00 +0000"
        ),
        Some("198.51.100.9".to_owned())
    );
    // Exchange client submission: private HELO literal, public connecting address.
    let hop = parse(
        "from [10.1.2.3] (203.0.113.40) by AM0PR01CA0001.eurprd01.prod.outlook.com (2603:10a6:208:1::1) with Microsoft SMTP Server id 15.20.1.1 via Frontend Transport; Mon, 1 Apr 2013 10:00:00 +0000",
    );
    assert_eq!(hop.ip, Some(addr("203.0.113.40")));
    assert_eq!(hop.helo.as_deref(), Some("[10.1.2.3]"));
}

/// Pitfall 2: `from A (ipA) by B (ipB)`: ipB belongs to the by-host and is never the sender.
#[test]
fn pitfall_02_exchange_by_host_address_is_not_the_sender() {
    let hop = parse(
        "from MAILHOST.contoso.example (198.51.100.30) by SA2PEPF00001234.mail.protection.outlook.com (10.167.240.9) with Microsoft SMTP Server id 15.20.1.2 via Frontend Transport; Tue, 2 Apr 2024 08:00:00 +0000",
    );
    assert_eq!(hop.ip, Some(addr("198.51.100.30")));
    assert_eq!(hop.by_ip, Some(addr("10.167.240.9")));
    // Without a from-side address the by-host's address still does not leak into `ip`.
    let hop = parse(
        "from MAILHOST.contoso.example by SA2PEPF00001234.mail.protection.outlook.com (10.167.240.9) with Microsoft SMTP Server id 15.20.1.2; Tue, 2 Apr 2024 08:00:00 +0000",
    );
    assert_eq!(hop.ip, None);
    assert_eq!(hop.by_ip, Some(addr("10.167.240.9")));
    // Nor a bracketed one.
    let hop = parse(
        "from a.example by b.example ([192.0.2.77]) with SMTP; Tue, 2 Apr 2024 08:00:00 +0000",
    );
    assert_eq!(hop.ip, None);
    assert_eq!(hop.by_ip, Some(addr("192.0.2.77")));
}

/// Pitfall 3: Names that start with digits, or with a dotted address, are names.
#[test]
fn pitfall_03_names_starting_with_digits_are_names() {
    let hop = parse(
        "from 3dprint.example (198.51.100.7.dyn.isp.example [198.51.100.7]) by mx.example (8.14.4/8.14.4) with ESMTP id q1; Wed, 3 Apr 2024 09:00:00 +0200",
    );
    assert_eq!(hop.ip, Some(addr("198.51.100.7")));
    assert_eq!(hop.rdns.as_deref(), Some("198.51.100.7.dyn.isp.example"));
    assert_eq!(hop.helo.as_deref(), Some("3dprint.example"));
    // A name-only comment yields nothing; the bracketed from-name is not consulted while a
    // later comment yields an address.
    let hop = parse(
        "from 203.0.113.9.example (203.0.113.9.example) by mx.example with SMTP; Wed, 3 Apr 2024 09:00:00 +0200",
    );
    assert_eq!(hop.ip, None);
    // The SMTPSVC `0` HELO is a name, not an address.
    let hop = parse(
        "from 0 ([192.0.2.91]) by exch.example.eg with Microsoft SMTPSVC(5.0.2195.6713); Tue, 21 Sep 2004 08:59:06 +0300",
    );
    assert_eq!(hop.ip, Some(addr("192.0.2.91")));
    assert_eq!(hop.helo.as_deref(), Some("0"));
}

/// sendmail records an ident answer before the rDNS: `(user@rdns [ip])`, on some builds with
/// an `IDENT:` prefix. The ident is split off; the rest is the rDNS.
#[test]
fn sendmail_ident_before_rdns() {
    let hop = parse(
        "from mail.example.com (root@localhost [127.0.0.1]) by mail.example.com (8.14.4/8.14.4) with ESMTP id s1; Wed, 3 Apr 2024 09:00:00 +0200",
    );
    assert_eq!(hop.ip, Some(addr("127.0.0.1")));
    assert_eq!(hop.ident.as_deref(), Some("root"));
    assert_eq!(hop.rdns.as_deref(), Some("localhost"));
    let hop = parse(
        "from helo.example (IDENT:nobody@host.example [198.51.100.3]) by mx.example (8.11.6/8.11.6) with ESMTP id s2; Wed, 3 Apr 2024 09:00:00 +0200",
    );
    assert_eq!(hop.ident.as_deref(), Some("nobody"));
    assert_eq!(hop.rdns.as_deref(), Some("host.example"));
    assert_eq!(hop.helo.as_deref(), Some("helo.example"));
}

/// Pitfall 4: Ports, zone ids, `IPv6:` prefixes, bracketed and bare IPv6.
#[test]
fn pitfall_04_ports_zones_prefixes_and_ipv6_forms() {
    let cases: &[(&str, &str, Option<u16>)] = &[
        (
            "from h.example ([198.51.100.4]:2525 helo=h.example) by x.example with esmtp id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "198.51.100.4",
            Some(2525),
        ),
        (
            "from h.example ([198.51.100.4.2525]) by x.example with esmtp id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "198.51.100.4",
            Some(2525),
        ),
        (
            "from h.example (198.51.100.4:2525) by x.example with SMTP; Thu, 4 Apr 2024 10:00:00 +0000",
            "198.51.100.4",
            Some(2525),
        ),
        (
            "from h.example ([fe80::1:2%3]) by h.example ([fe80::1:2%3]) with mapi id 15.20.1; Thu, 4 Apr 2024 10:00:00 +0000",
            "fe80::1:2",
            None,
        ),
        (
            "from h.example (h.example [IPv6:2001:db8::44]) by x.example (Postfix) with ESMTPS id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "2001:db8::44",
            None,
        ),
        (
            "from h.example (h.example [IPV6:2001:db8::44]) by x.example (Postfix) with ESMTPS id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "2001:db8::44",
            None,
        ),
        (
            "from h.example (h.example [ipv6:2001:db8::44]) by x.example (Postfix) with ESMTPS id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "2001:db8::44",
            None,
        ),
        (
            "from h.example (2001:db8::44) by X.prod.outlook.com (2603:10b6::1) with Microsoft SMTP Server id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "2001:db8::44",
            None,
        ),
        (
            "from h.example ([2001:db8::44]:465 helo=h.example) by x.example with esmtpsa id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "2001:db8::44",
            Some(465),
        ),
        // Canonical output: upper case and leading zeros in, RFC 5952 out.
        (
            "from h.example (h.example [IPv6:2001:0DB8:0000:0000:0000:0000:0000:00A1]) by x.example (Postfix) with ESMTP id 1; Thu, 4 Apr 2024 10:00:00 +0000",
            "2001:db8::a1",
            None,
        ),
    ];
    for (line, ip, port) in cases {
        let hop = parse(line);
        assert_eq!(
            hop.ip.map(|i| i.to_string()).as_deref(),
            Some(*ip),
            "{line}"
        );
        assert_eq!(hop.port, *port, "{line}");
    }
}

/// Pitfall 5: Gmail-internal lines, with an IPv6-literal by-host and no from-clause, are not
/// a handover.
#[test]
fn pitfall_05_gmail_internal_by_literal_is_not_a_sender() {
    for line in [
        "by 2002:a05:6a10:9c1::3 with SMTP id z1csp12345pxb; Mon, 8 Apr 2024 04:25:52 -0700 (PDT)",
        "by 2002:a05:6a10:9c1::3 with HTTP; Mon, 8 Apr 2024 04:25:52 -0700 (PDT)",
    ] {
        let hop = parse(line);
        assert_eq!(hop.skipped, Some(SkipReason::NoFrom), "{line}");
        assert_eq!(hop.ip, None, "{line}");
        assert_eq!(hop.by_ip, Some(addr("2002:a05:6a10:9c1::3")), "{line}");
        assert!(hop.submission_marker, "{line}");
    }
}

/// Pitfalls 6 and 7: Received fields need not be contiguous and their order can be rewritten
/// around them: the chain keeps each field's position as given, skipped ones included, so
/// callers can use relative order without assuming adjacency. (Binding `Authentication-Results`
/// by authserv-id is the attribution engine's job, not the parser's.)
#[test]
fn pitfall_06_07_chain_keeps_positions_and_order() {
    let values: Vec<String> = [
        "from a.example (a.example [192.0.2.1]) by b.example (Postfix) with ESMTP id 1; Mon, 1 Apr 2024 00:00:03 +0000",
        "(qmail 1 invoked from network); 1 Apr 2024 00:00:02 -0000",
        "by c.example (Postfix, from userid 1000) id 2; Mon, 1 Apr 2024 00:00:01 +0000",
        "from d.example ([198.51.100.2]) by a.example with SMTP; Mon, 1 Apr 2024 00:00:00 +0000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let chain = received_chain(&values);
    assert_eq!(chain.len(), 4);
    for (i, hop) in chain.iter().enumerate() {
        assert_eq!(hop.index, i);
    }
    assert_eq!(chain.first().and_then(|h| h.ip), Some(addr("192.0.2.1")));
    assert_eq!(
        chain.get(1).and_then(|h| h.skipped),
        Some(SkipReason::Local)
    );
    assert_eq!(
        chain.get(2).and_then(|h| h.skipped),
        Some(SkipReason::NoFrom)
    );
    assert_eq!(chain.get(3).and_then(|h| h.ip), Some(addr("198.51.100.2")));
    let dates: Vec<Option<i64>> = chain.iter().map(|h| h.date_unix).collect();
    assert!(dates.windows(2).all(|w| w.first() > w.get(1)), "{dates:?}");
    assert!(received_chain(&[]).is_empty());
}

/// Pitfall 8: `(Postfix, from userid N)` does not start a from-clause.
#[test]
fn pitfall_08_from_inside_a_comment_is_not_a_clause() {
    let hop = parse(
        "by mail.example.org (Postfix, from userid 1002) id 4F1C27A0B3; Mon, 15 Apr 2024 14:02:21 +0200 (CEST)",
    );
    assert_eq!(hop.skipped, Some(SkipReason::NoFrom));
    assert_eq!(hop.from_name, None);
    assert_eq!(hop.by.as_deref(), Some("mail.example.org"));
    assert_eq!(hop.id.as_deref(), Some("4F1C27A0B3"));
    // Mailman's `by host (output) from mailman id ...`: a late `from` is not a from-clause.
    let hop = parse(
        "by lists.example.org (output) from mailman id 1rXyZ-0001; Mon, 15 Apr 2024 12:02:21 +0000",
    );
    assert_eq!(hop.skipped, Some(SkipReason::NoFrom));
    assert_eq!(hop.ip, None);
    // Keywords inside comments are never clauses: `(authenticated as x by y)`.
    let hop = parse(
        "from h.example (h.example [192.0.2.5]) (authenticated as u by auth.example) by mx.example with ESMTPA id 1; Mon, 15 Apr 2024 12:02:21 +0000",
    );
    assert_eq!(hop.by.as_deref(), Some("mx.example"));
    assert!(!hop.malformed);
    // Upper-case keywords (simta).
    let hop = parse(
        "FROM relay.example (relay.example [192.0.2.6]) BY mx.example ID 123; Mon, 15 Apr 2024 12:02:21 +0000",
    );
    assert_eq!(hop.ip, Some(addr("192.0.2.6")));
    assert_eq!(hop.by.as_deref(), Some("mx.example"));
    assert_eq!(hop.id.as_deref(), Some("123"));
}

/// Pitfall 9: Localhost handovers are kept (chain continuity), unlike local submissions.
#[test]
fn pitfall_09_localhost_hops_are_kept() {
    let hop = parse(
        "from localhost (localhost [127.0.0.1]) by mx.example.org (Postfix) with ESMTP id 9A1; Tue, 16 Apr 2024 10:00:00 +0000",
    );
    assert_eq!(hop.skipped, None);
    assert_eq!(hop.ip, Some(addr("127.0.0.1")));
    assert_eq!(hop.rdns.as_deref(), Some("localhost"));
    let hop = parse(
        "from mx.example.org (localhost [IPv6:::1]) by mx.example.org (Postfix) with ESMTP id 9A2; Tue, 16 Apr 2024 10:00:00 +0000",
    );
    assert_eq!(hop.skipped, None);
    assert_eq!(hop.ip, Some(addr("::1")));
}

/// Pitfall 10: Junk lines parse without panicking and are marked.
#[test]
fn pitfall_10_junk_is_marked_not_fatal() {
    for line in [
        "from [192.0.2.1] (HELLO 192.0.2.2) (192.0.2.2) by user@mail.example with gg by AOL for x ; Tue, 3 Jul 2018 09:01:47 -0300",
        "from a by b by c; Tue, 3 Jul 2018 09:01:47 -0300",
        "from a from b by c; Tue, 3 Jul 2018 09:01:47 -0300",
        "from a (unclosed [192.0.2.1] by b; Tue, 3 Jul 2018 09:01:47 -0300",
        "from a ) by b; Tue, 3 Jul 2018 09:01:47 -0300",
        "from by b; Tue, 3 Jul 2018 09:01:47 -0300",
        "from a by (Postfix) with SMTP; Tue, 3 Jul 2018 09:01:47 -0300",
    ] {
        assert!(parse(line).malformed, "{line}");
    }
    // An unclosed bracket does not swallow the date.
    let hop = parse("from a [192.0.2.1 by b with SMTP; Tue, 3 Jul 2018 09:01:47 -0300");
    assert!(hop.malformed);
    assert_eq!(hop.by.as_deref(), Some("b"));
    assert_eq!(hop.date_unix, Some(1_530_619_307));
    // Broken grouping after the date is trailing garbage, not a malformed line.
    for line in [
        "from a.example ([192.0.2.1]) by b.example with SMTP; Tue, 3 Jul 2018 09:01:47 -0300 <x@y",
        "from a.example ([192.0.2.1]) by b.example with SMTP; Tue, 3 Jul 2018 09:01:47 -0300 (UTC",
        "from a.example ([192.0.2.1]) by b.example with SMTP; Tue, 3 Jul 2018 09:01:47 -0300 )",
    ] {
        let hop = parse(line);
        assert!(!hop.malformed, "{line}");
        assert_eq!(hop.date_unix, Some(1_530_619_307), "{line}");
    }
    // Ordinary lines are not malformed.
    assert!(!parse("from a.example (a.example [192.0.2.1]) by b.example with SMTP; Tue, 3 Jul 2018 09:01:47 -0300").malformed);
}

/// Pitfall 11: Trailing garbage after the date; dates without weekday, with 2-digit years, with
/// zone comments, obsolete zones, fractional seconds.
#[test]
fn pitfall_11_lenient_dates() {
    let hop = parse(
        "from a.example ([192.0.2.1]) by b.example with SMTP; Mon, 16 Jul 2018 10:02:03 +0200: <zz @junk.example>",
    );
    assert_eq!(
        hop.date.as_deref(),
        Some("Mon, 16 Jul 2018 10:02:03 +0200: <zz @junk.example>")
    );
    assert_eq!(hop.date_unix, Some(1_531_728_123));
    // Several `;`: the date follows the last top-level one, and `;` inside comments or
    // angle brackets do not count.
    let hop = parse(
        "from a.example (x; y [192.0.2.1]) by b.example id 1 for <a;b@example>; Mon, 16 Jul 2018 10:02:03 +0200",
    );
    assert_eq!(hop.ip, Some(addr("192.0.2.1")));
    assert_eq!(hop.for_.as_deref(), Some("a;b@example"));
    assert_eq!(hop.date_unix, Some(1_531_728_123));
    // Trailing semicolons are noise.
    let hop = parse(
        "from a.example ([192.0.2.1]) by b.example with SMTP; Mon, 16 Jul 2018 10:02:03 +0200;  ;",
    );
    assert_eq!(hop.date_unix, Some(1_531_728_123));
    // No `;`: no date.
    let hop = parse("by filter.example with SMTP id abc 2017-03-19 06:21:06.478690172 +0000 UTC");
    assert_eq!(hop.date, None);
    assert_eq!(hop.date_unix, None);

    let cases: &[(&str, Option<i64>)] = &[
        ("Mon, 16 Jul 2018 10:02:03 +0200", Some(1_531_728_123)),
        ("16 Jul 2018 10:02:03 +0200", Some(1_531_728_123)),
        ("Mon, 16 Jul 18 10:02:03 +0200", Some(1_531_728_123)),
        ("Fri, 16 Jul 99 10:02:03 +0200", Some(932_112_123)),
        ("Fri, 16 Jul 099 10:02:03 +0200", Some(932_112_123)),
        ("Mon, 16 Jul 2018 08:02:03 +0000 (UTC)", Some(1_531_728_123)),
        (
            "Mon, 16 Jul 2018 10:02:03 +0200 (CEST)",
            Some(1_531_728_123),
        ),
        ("Mon, 16 Jul 2018 10:02:03 CEST", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03 GMT", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03 UT", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03 UTC", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03 Z", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03 -0000", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02 +0000", Some(1_531_728_120)),
        ("Mon, 16 Jul 2018 04:02:03 EDT", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 03:02:03 EST", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 03:02:03 CDT", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 02:02:03 CST", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 02:02:03 MDT", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 01:02:03 MST", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 01:02:03 PDT", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 00:02:03 PST", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:03.4711 +0000", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 13:32:03 +05:30", Some(1_531_728_123)),
        ("Mon,16 Jul 2018 08:02:03 +0000", Some(1_531_728_123)),
        ("mon, 16 JUL 2018 08:02:03 +0000", Some(1_531_728_123)),
        ("Monday, 16 July 2018 08:02:03 +0000", Some(1_531_728_123)),
        ("Mon Jul 16 01:02:03 2018 -0700", Some(1_531_728_123)),
        (
            "2018-07-16 08:02:03.478690172 +0000 UTC",
            Some(1_531_728_123),
        ),
        ("2018-07-16T10:02:03+02:00", Some(1_531_728_123)),
        ("Mon, 16 Jul 2018 08:02:60 +0000", Some(1_531_728_179)),
        // Not dates.
        ("", None),
        ("tomorrow", None),
        ("Mon, 30 Feb 2018 08:02:03 +0000", None),
        ("Mon, 16 Jul 2018 24:02:03 +0000", None),
        ("Mon, 16 Foo 2018 08:02:03 +0000", None),
        ("Mon, 16 Jul 2018", None),
        ("Mon, 16 Jul 12345 08:02:03 +0000", None),
        ("Mon, 99999999999 Jul 2018 08:02:03 +0000", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_date(text), *want, "{text:?}");
    }
}

// ---------------------------------------------------------------------------------------
// §5.5 skip list and markers

#[test]
fn non_handovers_are_skipped_with_their_reason() {
    let cases: &[(&str, Option<SkipReason>)] = &[
        (
            "from www-data by web1.example (Exim 4.50) with local for <u@example> id 1GFb-000; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "from u by h.example with local-esmtp (Exim 4.92) id 1a-2; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "from u by h.example with local-bsmtp (Exim 4.92) id 1a-2; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "from relay.example by h.example with BSMTP id 1; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "(qmail 84907 invoked from network); 13 Feb 2003 20:59:28 -0000",
            Some(SkipReason::Local),
        ),
        (
            "(qmail 27981 invoked by uid 225); 14 Mar 2003 07:24:34 -0000",
            Some(SkipReason::Local),
        ),
        (
            "from mail pickup service by EXCH01.corp.example with Microsoft SMTPSVC; Wed, 5 Mar 2003 10:00:00 +0100",
            Some(SkipReason::Local),
        ),
        (
            "(from jdoe@localhost) by host.example (8.14.7/8.14.7/Submit) id t1AB; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "from [unix socket] by imap.example (Cyrus 2.5.10) with LMTPA; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "from localhost (localhost [[UNIX: localhost]]) by h.example (8.12.11/8.12.11/Submit) id iBAD; Fri, 10 Dec 2004 13:17:27 GMT",
            Some(SkipReason::Local),
        ),
        (
            "from a.example by b.example (envelope-from <u@example>, uid 201) with qmail-scanner-1.25 (clamdscan: 0.88); 22 Aug 2006 21:06:04 -0000",
            Some(SkipReason::Local),
        ),
        (
            "from in-1.relay.example by out-1.relay.example with ESMTP (peer crosscheck: in-1.relay.example); Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Local),
        ),
        (
            "from pop.example.net [192.0.2.9] by laptop with POP3 (fetchmail-6.4.0) for <me@localhost> (single-drop); Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Fetch),
        ),
        (
            "from imap.example.net by laptop with IMAP (fetchmail-6.4.0); Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::Fetch),
        ),
        (
            "by h.example (Postfix, from userid 0) id 1; Tue, 22 Aug 2006 21:06:04 +0200",
            Some(SkipReason::NoFrom),
        ),
        (
            "by x.example (bulk_mailer v1.13); Wed, 26 Mar 2003 20:44:41 -0600",
            Some(SkipReason::NoFrom),
        ),
        // Handovers.
        (
            "from mx.example (mx.example [192.0.2.4]) by h.example (Dovecot) with LMTP id abc; Tue, 22 Aug 2006 21:06:04 +0200",
            None,
        ),
        (
            "from localhost (HELO mail.example) (127.0.0.1) by mail.example with SMTP; 22 Aug 2006 21:06:04 -0000",
            None,
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line).skipped, *want, "{line}");
    }
}

#[test]
fn authentication_markers() {
    let cases: &[(&str, bool)] = &[
        (
            "from a ([192.0.2.1]) by b with ESMTPA; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
        (
            "from a ([192.0.2.1]) by b with LMTPSA; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
        (
            "from a ([192.0.2.1]) by b with UTF8SMTPSA; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
        (
            "from a ([192.0.2.1]) by b with asmtp; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
        (
            "from a ([192.0.2.1]) (AUTH: LOGIN u@example) by b with ESMTP; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
        (
            "from a ([192.0.2.1]) (account u@example HELO a) verified by b with ESMTP; Tue, 22 Aug 2006 21:06:04 +0200",
            false,
        ),
        (
            "from a ([192.0.2.1]) (account u@example HELO a verified) by b with ESMTP; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
        (
            "from a ([192.0.2.1]) by b with ESMTPS; Tue, 22 Aug 2006 21:06:04 +0200",
            false,
        ),
        (
            "from a ([192.0.2.1]) by b with HTTPS; Tue, 22 Aug 2006 21:06:04 +0200",
            false,
        ),
        (
            "from a ([192.0.2.1]) (Authenticated user bob) by b with HTTPS; Tue, 22 Aug 2006 21:06:04 +0200",
            true,
        ),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line).auth, *want, "{line}");
    }
}

// ---------------------------------------------------------------------------------------
// Hostile input: never panics, always finishes (bounded sizes; no timing assertions)

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }
}

fn check_invariants(input: &str, hop: &Hop) {
    assert_eq!(hop.index, 7, "{input:?}");
    assert!(!hop.raw.contains(['\r', '\n']), "{input:?}");
    if hop.date_unix.is_some() {
        assert!(hop.date.is_some(), "{input:?}");
    }
    if hop.skipped == Some(SkipReason::NoFrom) {
        assert_eq!(hop.from_name, None, "{input:?}");
        assert_eq!(hop.ip, None, "{input:?}");
    }
    if let Some(ip) = hop.ip {
        assert_eq!(ip, arfwire_attribution::ip::normalise(ip), "{input:?}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.below(400);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next() & 0xff) as u8).collect();
        let input = String::from_utf8_lossy(&bytes);
        check_invariants(&input, &parse_received(&input, 7));
    }
}

#[test]
fn random_received_shaped_text_never_panics() {
    const PIECES: &[&str] = &[
        "from ",
        "by ",
        "with ",
        "id ",
        "for ",
        "via ",
        "FROM ",
        "BY ",
        "(",
        ")",
        "[",
        "]",
        "<",
        ">",
        "\"",
        "\\",
        ";",
        ":",
        "@",
        ".",
        " ",
        "\t",
        "\r\n ",
        "\n",
        "HELO ",
        "EHLO ",
        "helo=",
        "ident=",
        "IPv6:",
        "%3",
        "192.0.2.1",
        "2001:db8::1",
        "::ffff:198.51.100.1",
        "[203.0.113.9]:25",
        "198.51.100.4.2525",
        "unknown",
        "softdnserr",
        "(may be forged)",
        "ESMTPSA",
        "mapi",
        "HTTP",
        "IMAP",
        "local",
        "Frontend Transport",
        "envelope-from ",
        "using TLSv1.3",
        "version=TLS1_2,",
        "Authenticated sender:",
        "qmail 1 invoked by uid 2",
        "Mon, 1 Apr 2024 00:00:00 +0000",
        "2018-07-16T10:02:03",
        "é",
        "\u{0}",
        "ÿ",
        "99999999999999999999",
    ];
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..5000 {
        let n = rng.below(40);
        let input: String = (0..n)
            .map(|_| PIECES.get(rng.below(PIECES.len())).copied().unwrap_or(""))
            .collect();
        check_invariants(&input, &parse_received(&input, 7));
        let _ = parse_date(&input);
    }
}

#[test]
fn pathological_nesting_finishes() {
    const BIG: usize = 10 * 1024 * 1024;
    const MID: usize = 2 * 1024 * 1024;
    let inputs: Vec<String> = vec![
        "(".repeat(BIG),
        ")".repeat(MID),
        "[".repeat(MID),
        "<".repeat(MID),
        "\"".repeat(MID),
        "\\".repeat(MID),
        ";".repeat(MID),
        "()".repeat(MID / 2),
        format!(
            "from a {}x{} by b; Mon, 1 Apr 2024 00:00:00 +0000",
            "(".repeat(MID),
            ")".repeat(MID)
        ),
        format!(
            "from a ({}) by b; Mon, 1 Apr 2024 00:00:00 +0000",
            "(may be forged)".repeat(MID / 16)
        ),
        format!("from a ({}[192.0.2.1]) by b; x", "(".repeat(MID)),
        "from ".repeat(MID / 5),
        "by x ".repeat(MID / 5),
        format!("from a ([{}]) by b; x", "1.".repeat(MID / 2)),
        format!("from {} by b; x", "a".repeat(MID)),
        format!("from a by b; {}", "Mon, ".repeat(MID / 5)),
        "\r\n ".repeat(MID / 3),
    ];
    for input in &inputs {
        let hop = parse_received(input, 7);
        assert_eq!(hop.index, 7);
    }
    // Deeply nested, then closed: the inner address is not at the comment's own level.
    let deep = format!(
        "from a ({}[192.0.2.1]{}) by b; Mon, 1 Apr 2024 00:00:00 +0000",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let hop = parse_received(&deep, 0);
    assert_eq!(hop.ip, None);
    assert_eq!(hop.by.as_deref(), Some("b"));
    assert!(!hop.malformed);
}

// ---------------------------------------------------------------------------------------
// Cross-check against mail-parser

/// Where mail-parser 0.11's `Received` parser reads a table case differently from ours, on
/// purpose: (case, field, what mail-parser says, why). mail-parser is a cross-check, not the
/// authority; the specification's precedence (§5.3) decides. If mail-parser changes its mind
/// the test fails so the list stays true.
const MAIL_PARSER_DIFFERS: &[(&str, &str, &str, &str)] = &[
    (
        "P16",
        "ip",
        "None",
        "old Exim writes the source port as a fifth dotted component, `[a.b.c.d.port]`; \
         mail-parser does not read it as an address, §5.3 step 2a does",
    ),
    (
        "P19",
        "ip",
        "None",
        "mail-parser keeps qmail's `(ident@ip)` whole as the ident and records no address; \
         §5.3 step 2b splits it into ident and address",
    ),
    (
        "P33",
        "by",
        "Some(\"AOL\")",
        "the junk line has two `by`; mail-parser keeps the last, we keep the first and mark the \
         line malformed",
    ),
];

/// mail-parser's reading of one field value: the connecting address, the by-host, the date.
/// It records an address-literal from-name (`from [192.0.2.1] (helo=x)`, webmail
/// `from 192.0.2.1 (...)`) in `from` rather than `from_ip`; §5.3 step 3 uses that literal, so
/// it counts as the address here.
fn mail_parser_view(input: &str) -> (Option<IpAddr>, Option<String>, Option<i64>) {
    use mail_parser::Host;
    let value = input.replace("\r\n", "\n").replace('\n', "\r\n");
    let message = format!("Received: {value}\r\nFrom: a@example.com\r\nSubject: x\r\n\r\nbody\r\n");
    let Some(parsed) = mail_parser::MessageParser::default().parse(message.as_bytes()) else {
        return (None, None, None);
    };
    let Some(received) = parsed.received() else {
        return (None, None, None);
    };
    let from_literal = match received.from() {
        Some(Host::IpAddr(ip)) => Some(*ip),
        _ => None,
    };
    let ip = received
        .from_ip()
        .or(from_literal)
        .map(arfwire_attribution::ip::normalise);
    let by = match received.by() {
        Some(Host::Name(name)) => Some(name.to_string()),
        Some(Host::IpAddr(ip)) => Some(ip.to_string()),
        None => None,
    };
    (ip, by, received.date().map(|d| d.to_timestamp()))
}

#[test]
fn mail_parser_agrees_where_it_should() {
    let mut failures = Vec::new();
    for case in load_table() {
        let ours = parse_received(&case.input, 0);
        let (ip, by, date) = mail_parser_view(&case.input);
        let fields = [
            ("ip", format!("{ip:?}"), format!("{:?}", ours.ip)),
            ("by", format!("{by:?}"), format!("{:?}", ours.by)),
            ("date", format!("{date:?}"), format!("{:?}", ours.date_unix)),
        ];
        for (field, theirs, ours) in fields {
            let documented = MAIL_PARSER_DIFFERS
                .iter()
                .find(|(id, f, _, _)| *id == case.id && *f == field);
            match documented {
                Some((_, _, expected, _)) if theirs != *expected => failures.push(format!(
                    "{} {field}: mail-parser now says {theirs} (documented {expected}); update the list",
                    case.id
                )),
                Some(_) => {}
                None if theirs != ours => {
                    failures.push(format!("{} {field}: ours {ours}, mail-parser {theirs}", case.id));
                }
                None => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
