//! The attribution engine: segment the Received chain at our two trust boundaries, read
//! anchored provider stamps, gather evidence, score candidate tenants under hard gates and
//! explain every decision (specification §6, §7.2, §9, §10).

use std::collections::BTreeMap;
use std::net::IpAddr;

use arfwire_parse::{ClaimedIp, FeedbackReport, MessageSource, ReportKind, ReportedMessage};

use crate::directory::DirectorySnapshot;
use crate::fields::{self, AuthResults, Cip, ConnectingIp, Forefront};
use crate::ip::{self, AddressClass};
use crate::profile::{Pool, Profile, StampFamily};
use crate::received::{Hop, SkipReason, received_chain};
use crate::types::*;

/// How far a report's own origin can be trusted (reliability plan §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ReporterTier {
    /// A known feedback-loop operator whose DKIM (or DMARC) verified.
    T1,
    /// Authenticated (DKIM or DMARC pass) but not a known feedback-loop operator.
    T2,
    /// Not authenticated: anything in the report could be forged.
    #[default]
    T3,
}

impl ReporterTier {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReporterTier::T1 => "T1",
            ReporterTier::T2 => "T2",
            ReporterTier::T3 => "T3",
        }
    }
}

/// A DKIM signature of the reported message that the caller verified with a key the
/// provider holds (its key registry), so it cannot be forged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// `d=`, lower case.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// Only the header hash verified (the body was altered or redacted).
    pub headers_only: bool,
}

/// Everything attribution reads about one reported message.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The reported message.
    pub message: &'a ReportedMessage,
    /// The ARF feedback report, when there is one.
    pub feedback: Option<&'a FeedbackReport>,
    /// The kind of report.
    pub kind: ReportKind,
    /// A source IP the reporter stated in prose (JMRP subject, DMARC text).
    pub claimed_source_ip: Option<&'a ClaimedIp>,
    /// When the report was received, seconds since the Unix epoch.
    pub report_time_unix: Option<i64>,
    /// How far the reporter is trusted.
    pub reporter_tier: ReporterTier,
    /// Signatures of the reported message verified with provider-held keys.
    pub verified_signatures: &'a [VerifiedSignature],
}

/// Checks the caller ran besides what [`Input`] carries. `Default` means "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// The caller ran provider-key verification over every DKIM signature of the reported
    /// message. When true, a signature that claims one of our keys (an initial-domain `d=`
    /// or a registered selector) but is missing from `Input::verified_signatures` failed,
    /// and is treated as forged rather than as an unverified claim.
    pub provider_dkim_checked: bool,
}

/// Weights of §9.
mod weight {
    pub(super) const E2_FULL: f32 = 0.95;
    pub(super) const E2_HEADERS: f32 = 0.85;
    pub(super) const E3: f32 = 0.90;
    pub(super) const E4: f32 = 0.85;
    pub(super) const E5: f32 = 0.80;
    pub(super) const E6: f32 = 0.60;
    pub(super) const E7: f32 = 0.55;
    pub(super) const E8: f32 = 0.50;
    pub(super) const E9: f32 = 0.40;
    pub(super) const E9_AR: f32 = 0.60;
    pub(super) const E10: f32 = 0.25;
    pub(super) const E10_AR: f32 = 0.55;
    pub(super) const E11: f32 = 0.30;
    pub(super) const E12: f32 = 0.20;
    pub(super) const E13: f32 = 0.15;
    pub(super) const E14: f32 = 0.05;
}

fn round3(x: f32) -> f32 {
    (x * 1000.0).round() / 1000.0
}

fn shorten(raw: &str) -> String {
    let unfolded = fields::unfold(raw);
    if unfolded.chars().count() > 300 {
        let mut s: String = unfolded.chars().take(297).collect();
        s.push_str("...");
        s
    } else {
        unfolded
    }
}

fn first_label(host: &str) -> String {
    host.split('.').next().unwrap_or("").to_ascii_lowercase()
}

/// The organisational domain, approximated as the last two labels (three when the second
/// level is a common public second level such as `co.uk`).
fn org_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    if n <= 2 {
        return host;
    }
    let second = labels.get(n - 2).copied().unwrap_or("");
    let take = if matches!(
        second,
        "co" | "com" | "net" | "org" | "ac" | "gov" | "ne" | "or"
    ) && labels.get(n - 1).is_some_and(|tld| tld.len() == 2)
    {
        3
    } else {
        2
    };
    labels
        .get(n.saturating_sub(take)..)
        .map(|l| l.join("."))
        .unwrap_or(host)
}

/// A hop with its classification.
struct Classified<'h> {
    hop: &'h Hop,
    by_provider: bool,
    from_class: Option<AddressClass>,
    egress_by_name: bool,
}

impl Classified<'_> {
    fn is_egress(&self) -> bool {
        self.from_class == Some(AddressClass::ProviderEgress)
    }
}

/// One pass through our platform: the by-host labels of its hops (top first), its ingress
/// hop, and whether it began with a hosted-mailbox submission.
#[derive(Default)]
struct Pass<'c, 'h> {
    hosts: Vec<String>,
    ingress: Option<&'c Classified<'h>>,
    hosted: bool,
}

/// An initial-domain DKIM signature claim (not verified by us).
struct MoeraClaim {
    domain: String,
    selector: String,
    header: &'static str,
}

/// A header name as people write it, for explanations.
fn header_display(lower: &str) -> String {
    match lower {
        "x-received-from" => "X-Received-From".to_owned(),
        "x-originating-ip" => "X-Originating-IP".to_owned(),
        other => other.to_owned(),
    }
}

/// A block of `X-MS-Exchange-CrossTenant-*` stamps sharing one tenant id.
#[derive(Debug, Default)]
struct StampBlock {
    id: String,
    id_header_pos: usize,
    connecting_ip: Option<ConnectingIp>,
    auth_source: Option<String>,
    auth_as: Option<String>,
    from_entity: Vec<String>,
    network_message_id: Option<String>,
    arrival_time: Option<i64>,
    /// `X-MS-Exchange-Transport-CrossTenantHeadersStamped` values nearest to this block.
    stamped: Vec<String>,
}

/// The evidence collector.
struct Collector {
    evidence: Vec<Evidence>,
    explanation: Vec<String>,
    flags: Flags,
}

impl Collector {
    fn add(
        &mut self,
        kind: EvidenceKind,
        tenant: Option<&str>,
        value: impl Into<String>,
        location: Location,
        trust: Trust,
        weight: f32,
    ) -> u32 {
        let id = u32::try_from(self.evidence.len() + 1).unwrap_or(u32::MAX);
        self.evidence.push(Evidence {
            id,
            kind,
            tenant: tenant.map(str::to_owned),
            value: value.into(),
            location,
            trust,
            weight,
        });
        id
    }

    fn say(&mut self, line: impl Into<String>) {
        self.explanation.push(line.into());
    }

    fn flag(&mut self, flag: &'static str) {
        self.flags.insert(flag);
    }
}

fn loc(header: &str, index: Option<usize>, raw: &str) -> Location {
    Location {
        header: header.to_owned(),
        index,
        raw: shorten(raw),
    }
}

/// Header fields of the reported message by lower-case name, with their position.
struct Headers<'m> {
    fields: Vec<(String, &'m str, usize)>,
}

impl<'m> Headers<'m> {
    fn new(message: &'m ReportedMessage) -> Self {
        Headers {
            fields: message
                .fields
                .iter()
                .enumerate()
                .map(|(pos, f)| (f.name.to_ascii_lowercase(), f.value.as_str(), pos))
                .collect(),
        }
    }

    fn all(&self, name: &str) -> impl Iterator<Item = (&'m str, usize)> + '_ {
        let name = name.to_ascii_lowercase();
        self.fields
            .iter()
            .filter(move |(n, _, _)| *n == name)
            .map(|(_, v, p)| (*v, *p))
    }

    fn first(&self, name: &str) -> Option<&'m str> {
        self.all(name).next().map(|(v, _)| v)
    }

    fn has(&self, name: &str) -> bool {
        self.first(name).is_some()
    }
}

fn provenance_of(input: &Input<'_>) -> Provenance {
    if input.message.fields.is_empty() {
        return Provenance::None;
    }
    match input.message.source {
        MessageSource::Rfc822Part | MessageSource::Attachment => Provenance::Attached,
        MessageSource::HeadersPart => Provenance::HeadersPart,
        MessageSource::Pasted => Provenance::Pasted,
        MessageSource::InlineForward => Provenance::InlineQuote,
        MessageSource::TopLevel => Provenance::TopLevel,
        _ => Provenance::Attached,
    }
}

/// Attribute one reported message. Never panics.
pub fn attribute(
    input: &Input<'_>,
    profile: &Profile,
    directory: &DirectorySnapshot,
) -> Attribution {
    attribute_with(input, &Options::default(), profile, directory)
}

/// [`attribute`], with the results of checks the caller ran. Never panics.
pub fn attribute_with(
    input: &Input<'_>,
    options: &Options,
    profile: &Profile,
    directory: &DirectorySnapshot,
) -> Attribution {
    let mut c = Collector {
        evidence: Vec::new(),
        explanation: Vec::new(),
        flags: Flags::new(),
    };
    let message = input.message;
    let headers = Headers::new(message);
    let provenance = provenance_of(input);
    match provenance {
        Provenance::Pasted => c.flag("PASTED_HEADERS"),
        Provenance::InlineQuote => c.flag("HEADERS_MISSING"),
        Provenance::HeadersPart => c.flag("HEADERS_ONLY"),
        Provenance::None => {
            c.flag("REDACTED_MESSAGE");
            c.flag("HEADERS_MISSING");
        }
        _ => {}
    }
    if input.kind == ReportKind::AuthFailure {
        c.flag("AUTH_FAILURE_REPORT");
    }
    if input.reporter_tier == ReporterTier::T3 {
        c.flag("REPORT_UNAUTHENTICATED");
    }

    // Message time T (§2): the egress hop's date once E is known; before that (to classify
    // hops against effective-dated ranges) the arrival date, stamp arrival time or Date.
    let stamp_time = headers
        .first("x-ms-exchange-crosstenant-originalarrivaltime")
        .and_then(fields::original_arrival_time);
    let t_claimed = input
        .feedback
        .and_then(|f| f.arrival_date_unix)
        .or(stamp_time)
        .or(message.date_unix);
    let mut t = t_claimed.or(input.report_time_unix);

    // Hops.
    let mut hops = received_chain(&message.received);
    if let Some(fetch) = hops
        .iter()
        .rposition(|h| h.skipped == Some(SkipReason::Fetch))
    {
        c.flag("FETCH_MARKER");
        hops.drain(..=fetch);
    }
    if hops.iter().any(|h| h.malformed) {
        c.flag("MALFORMED_RECEIVED");
    }
    let classified: Vec<Classified<'_>> = hops
        .iter()
        .map(|hop| {
            let by_provider = hop
                .by
                .as_deref()
                .is_some_and(|b| profile.is_provider_host(b));
            let from_class = hop.ip.map(|ip| ip::classify(ip, profile, by_provider, t));
            let egress_by_name = hop.ip.is_none()
                && (hop
                    .from_name
                    .as_deref()
                    .is_some_and(|n| profile.is_egress_host(n))
                    || hop
                        .rdns
                        .as_deref()
                        .is_some_and(|n| profile.is_egress_host(n)));
            Classified {
                hop,
                by_provider,
                from_class,
                egress_by_name,
            }
        })
        .collect();
    let handovers: Vec<&Classified<'_>> = classified
        .iter()
        .filter(|h| h.hop.skipped.is_none())
        .collect();
    if handovers
        .iter()
        .any(|h| h.from_class == Some(AddressClass::Reserved))
    {
        c.flag("RESERVED_IP");
    }
    // Redaction markers (RFC 6590) in the feedback fields or the message.
    let redacted_marker = |v: &str| v.to_ascii_lowercase().contains("redacted");
    let fields_redacted = input.feedback.is_some_and(|f| {
        f.extensions.contains_key("redacted-address")
            || f.original_rcpt_to.iter().any(|r| redacted_marker(r))
    }) || hops
        .iter()
        .any(|h| h.for_.as_deref().is_some_and(redacted_marker))
        || headers.all("to").any(|(v, _)| redacted_marker(v));
    if fields_redacted {
        c.flag("REDACTED_FIELDS");
    }
    // Clock skew (G5): a hop dated more than a day after the hop above it.
    let dated: Vec<(usize, i64)> = handovers
        .iter()
        .filter_map(|h| h.hop.date_unix.map(|d| (h.hop.index, d)))
        .collect();
    if let Some((below, above)) = dated
        .windows(2)
        .filter_map(|w| match w {
            [(ia, da), (ib, db)] if *db > da.saturating_add(86_400) => Some((*ib, *ia)),
            _ => None,
        })
        .next()
    {
        c.flag("CLOCK_SKEW");
        c.say(format!(
            "Received[{below}] is dated more than a day after Received[{above}] above it: the chain's clocks disagree"
        ));
    }

    // ARF Source-IP.
    let source_ip = input.feedback.and_then(|f| f.source_ip);
    let source_port = input.feedback.and_then(|f| f.source_port);
    let mut reported_source_ip = None;
    if let Some(ip) = source_ip {
        let raw = input
            .feedback
            .and_then(|f| f.source_ip_raw.clone())
            .unwrap_or_else(|| ip.to_string());
        if raw.trim().starts_with('[') {
            c.flag("NONCONFORMING_ARF");
        }
        let id = c.add(
            EvidenceKind::PathFact,
            None,
            ip.to_string(),
            loc("Source-IP", None, &raw),
            Trust::Reporter,
            0.0,
        );
        if ip::is_reserved(ip, profile.treat_documentation_ranges_as_public) {
            c.flag("PRIVATE_SOURCE_IP");
            c.say(format!(
                "E#{id} ARF Source-IP {ip} is a private or reserved address and is ignored"
            ));
        } else {
            reported_source_ip = Some(IpFinding {
                ip,
                port: source_port,
                confidence: Confidence::Low,
                sources: vec![id],
                location: loc("Source-IP", None, &raw),
            });
        }
    }
    let usable_source_ip = reported_source_ip.as_ref().map(|f| f.ip);

    // 1. The egress boundary E.
    let e_pos = handovers.iter().position(|h| h.is_egress());
    // Fewer than two handovers and no egress: too little chain to clear our platform (§11).
    if provenance != Provenance::None
        && provenance != Provenance::InlineQuote
        && !message.fields.is_empty()
        && handovers.len() < 2
        && e_pos.is_none()
    {
        c.flag("HEADERS_TRUNCATED");
    }
    let e_date = e_pos
        .and_then(|pos| handovers.get(pos))
        .and_then(|h| h.hop.date_unix);
    if let Some(d) = e_date {
        t = Some(d);
        if let Some(st) = stamp_time
            && st.abs_diff(d) > 86_400
        {
            c.flag("CLOCK_SKEW");
            c.say(format!(
                "the stamp arrival time and the egress hop's date are more than a day apart ({}s)",
                st.abs_diff(d)
            ));
        }
    } else if t_claimed.is_none() {
        c.flag("T_GUESSED");
    }
    let mut synthetic_e = false;
    let mut egress: Option<IpFinding> = None;
    if let Some(e) = e_pos.and_then(|pos| handovers.get(pos).copied()) {
        if let Some(ip) = e.hop.ip {
            let id = c.add(
                EvidenceKind::PathFact,
                None,
                ip.to_string(),
                loc("Received", Some(e.hop.index), &e.hop.raw),
                Trust::Reporter,
                0.0,
            );
            let by = e
                .hop
                .by
                .clone()
                .unwrap_or_else(|| "an unnamed host".to_owned());
            c.say(format!(
                "E#{id} egress hop (Received[{}], written by {by}): {ip} is in {}'s egress networks",
                e.hop.index, profile.name
            ));
            if let Some(entry) = profile.egress(ip, t) {
                match entry.pool {
                    Pool::Relay => c.flag("RELAY_POOL_EGRESS"),
                    Pool::HighRisk => c.flag("HIGH_RISK_POOL_EGRESS"),
                    _ => {}
                }
            }
            egress = Some(IpFinding {
                ip,
                port: source_port.filter(|_| usable_source_ip == Some(ip)),
                confidence: Confidence::Medium,
                sources: vec![id],
                location: loc("Received", Some(e.hop.index), &e.hop.raw),
            });
        }
    } else if let Some(ip) = usable_source_ip
        && profile.egress(ip, t).is_some()
    {
        synthetic_e = true;
        let id = reported_source_ip
            .as_ref()
            .and_then(|f| f.sources.first().copied());
        c.say(format!(
            "E#{} no egress hop in the header block; the ARF Source-IP {ip} is in {}'s egress networks, so the reporter's claim stands in for it",
            id.unwrap_or(0),
            profile.name
        ));
        egress = Some(IpFinding {
            ip,
            port: source_port,
            confidence: Confidence::Low,
            sources: id.into_iter().collect(),
            location: loc("Source-IP", None, &ip.to_string()),
        });
    }

    // Cross-check the Source-IP against E (§6.3).
    if let (Some(e), Some(sip)) = (egress.as_mut(), reported_source_ip.as_ref())
        && !synthetic_e
    {
        if sip.ip == e.ip {
            e.confidence = Confidence::High;
            e.sources.extend(sip.sources.iter().copied());
            c.say(format!(
                "the reporter's Source-IP {} agrees with the egress hop",
                sip.ip
            ));
        } else if profile.egress(sip.ip, t).is_some() {
            c.flag("SOURCE_IP_MISMATCH");
            c.say(format!(
                "the reporter's Source-IP {} is ours but differs from the egress hop {}; the hop is kept",
                sip.ip, e.ip
            ));
        } else {
            c.flag("INTERMEDIARY_RELAY");
            c.say(format!(
                "the reporter's Source-IP {} is not ours: the complainant received the message from an intermediary that our egress {} delivered to",
                sip.ip, e.ip
            ));
        }
    }

    // Reporter-side Authentication-Results bound by authserv-id to E or above, or to
    // the ARF Reporting-MTA (§9).
    let binding_hosts: Vec<String> = {
        let mut hosts = Vec::new();
        let upper = e_pos.map_or(0, |p| p + 1);
        for h in handovers.iter().take(upper) {
            if let Some(by) = h.hop.by.as_deref() {
                hosts.push(by.to_ascii_lowercase());
            }
        }
        if let Some(mta) = input.feedback.and_then(|f| f.reporting_mta.as_deref()) {
            hosts.push(mta.to_ascii_lowercase());
        }
        hosts
    };
    let own_ids: Vec<String> = profile
        .own_authserv_ids
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let mut bound_ar: Vec<(AuthResults, usize)> = Vec::new();
    let ar_sources = headers.all("authentication-results").chain(
        input
            .feedback
            .map(|f| f.authentication_results.as_slice())
            .unwrap_or(&[])
            .iter()
            .map(|v| (v.as_str(), usize::MAX)),
    );
    for (value, pos) in ar_sources {
        if value.trim().is_empty() {
            continue;
        }
        let ar = fields::auth_results(value);
        let Some(id) = ar.authserv_id.clone() else {
            continue;
        };
        if own_ids.contains(&id) {
            c.say(format!(
                "an Authentication-Results header claims our own authserv-id {id}; we did not write it for this message, so it is ignored"
            ));
            continue;
        }
        let bound = pos == usize::MAX
            || binding_hosts
                .iter()
                .any(|h| *h == id || org_domain(h) == org_domain(&id));
        if bound {
            bound_ar.push((ar, pos));
        }
    }
    if let Some(e) = egress.as_mut()
        && !synthetic_e
    {
        let agreeing = bound_ar
            .iter()
            .filter_map(|(ar, _)| ar.client_ip())
            .any(|ip| ip == e.ip);
        if agreeing && e.confidence < Confidence::High {
            e.confidence = Confidence::High;
            c.say(format!(
                "the reporter's own Authentication-Results name {} as the client: egress confirmed",
                e.ip
            ));
        }
    }

    // Other reporter-side copies of the egress IP: X-Received-From / X-Originating-IP equal to
    // the egress hop's address (a submitting client's X-Originating-IP is never our egress, so
    // only agreement counts) (§6.3).
    if let Some(e) = egress.as_mut()
        && !synthetic_e
    {
        // The reporter's own SPF record of the client (not our ingress's, which names the
        // ingress IP) also names the egress.
        for (value, pos) in headers.all("received-spf") {
            let spf = fields::received_spf(value);
            let ours = spf.receiver.as_deref().is_some_and(|r| {
                profile.is_provider_host(r) || profile.is_provider_host(&format!("x.{r}"))
            });
            let Some(ip) = spf.client_ip else { continue };
            if ours {
                continue;
            }
            if ip == e.ip {
                let id = c.add(
                    EvidenceKind::PathFact,
                    None,
                    ip.to_string(),
                    loc("Received-SPF", Some(pos), value),
                    Trust::Reporter,
                    0.0,
                );
                e.sources.push(id);
                e.confidence = e.confidence.max(Confidence::High);
                c.say(format!("E#{id} Received-SPF names the egress address {ip} as the client: egress corroborated"));
            } else if profile.egress(ip, t).is_some() {
                c.flag("SOURCE_IP_MISMATCH");
                c.say(format!(
                    "Received-SPF names {ip}, another of our egress addresses, not the egress hop {}",
                    e.ip
                ));
            }
        }
        for name in ["x-received-from", "x-originating-ip"] {
            for (value, _) in headers.all(name) {
                let text = fields::unfold(value);
                let named =
                    crate::ip::parse_ip_lenient(text.trim_matches(|ch| ch == '[' || ch == ']'));
                if let Some(other) = named
                    && other != e.ip
                    && profile.egress(other, t).is_some()
                {
                    c.flag("SOURCE_IP_MISMATCH");
                    c.say(format!(
                        "{} names {other}, another of our egress addresses, not the egress hop {}",
                        header_display(name),
                        e.ip
                    ));
                }
                if named == Some(e.ip) {
                    let id = c.add(
                        EvidenceKind::PathFact,
                        None,
                        e.ip.to_string(),
                        loc(&header_display(name), None, value),
                        Trust::Reporter,
                        0.0,
                    );
                    e.sources.push(id);
                    if e.confidence < Confidence::High {
                        e.confidence = Confidence::High;
                    }
                    c.say(format!(
                        "E#{id} {} repeats the egress address {}: egress corroborated",
                        header_display(name),
                        e.ip
                    ));
                }
            }
        }
    }
    // The reporter's records disagree about which of our addresses sent it (G5): the egress
    // stays the hop's, at most MEDIUM.
    if c.flags.contains("SOURCE_IP_MISMATCH")
        && let Some(e) = egress.as_mut()
        && e.confidence > Confidence::Medium
    {
        e.confidence = Confidence::Medium;
        c.say(format!(
            "egress {} kept from the hop, but the reporter's records disagree: at most MEDIUM",
            e.ip
        ));
    }
    // An intermediary wrote the egress hop (the reporter's Source-IP is the intermediary):
    // however many of its headers repeat our egress, that is one account, not the reporter's
    // own observation.
    if c.flags.contains("INTERMEDIARY_RELAY")
        && let Some(e) = egress.as_mut()
        && e.confidence > Confidence::Medium
    {
        e.confidence = Confidence::Medium;
        c.say(format!(
            "egress {} is reported by an intermediary, not seen by the reporter: at most MEDIUM",
            e.ip
        ));
    }

    // 2. Passes below E (§6.2). Walk down from E; each pass is a run of hops written by us.
    let mut passes: Vec<Pass<'_, '_>> = Vec::new();
    let mut hairpin = false;
    if let Some(pos) = e_pos {
        #[derive(PartialEq)]
        enum State {
            InProvider,
            BelowIngress,
            ThirdParty,
        }
        let mut state = State::InProvider;
        let mut cur = Pass::default();
        let mut i = pos + 1;
        while let Some(h) = handovers.get(i).copied() {
            match state {
                State::InProvider => {
                    if h.by_provider {
                        if let Some(by) = h.hop.by.as_deref() {
                            cur.hosts.push(first_label(by));
                        }
                        if matches!(
                            h.from_class,
                            Some(AddressClass::ProviderInternal | AddressClass::ProviderEgress)
                        ) {
                            if h.hop.submission_marker {
                                cur.hosted = true;
                            }
                        } else {
                            cur.ingress = Some(h);
                            passes.push(std::mem::take(&mut cur));
                            state = State::BelowIngress;
                        }
                    } else if h.is_egress() || h.egress_by_name {
                        // We handed it to a third party on an earlier pass.
                        passes.push(std::mem::take(&mut cur));
                        state = State::ThirdParty;
                    } else {
                        // Left our territory without a clean ingress.
                        passes.push(std::mem::take(&mut cur));
                        state = State::BelowIngress;
                    }
                }
                State::BelowIngress => {
                    if (h.is_egress() || h.egress_by_name) && !h.by_provider {
                        cur = Pass::default();
                        state = State::ThirdParty;
                    }
                }
                State::ThirdParty => {
                    // The message came back to us: an earlier pass exists (a hairpin).
                    if h.by_provider {
                        hairpin = true;
                        state = State::InProvider;
                        continue; // reprocess this hop as ours
                    }
                }
            }
            i += 1;
        }
        if state == State::InProvider {
            passes.push(cur);
        }
    }
    let final_pass = passes.first();
    let earliest_pass = passes.last();
    let final_ingress: Option<&Classified<'_>> = final_pass.and_then(|p| p.ingress);
    let earliest_ingress: Option<&Classified<'_>> = earliest_pass.and_then(|p| p.ingress);
    let final_pass_hosts: Vec<String> = final_pass.map(|p| p.hosts.clone()).unwrap_or_default();
    let hosted_submission = earliest_pass.is_some_and(|p| p.hosted && p.ingress.is_none());
    let pass_count = passes.len();
    if hairpin {
        c.flag("HAIRPIN");
        c.say(format!(
            "the message made {pass_count} passes through our platform (it was handed to a third-party service and came back)"
        ));
    }

    // 3. Path class (§6.4).
    let has_header_block = provenance != Provenance::None && !message.fields.is_empty();
    let top_provider_run: Vec<&&Classified<'_>> =
        handovers.iter().take_while(|h| h.by_provider).collect();
    let inbound_external = e_pos.is_none()
        && top_provider_run.iter().any(|h| {
            matches!(
                h.from_class,
                Some(AddressClass::External | AddressClass::Reserved)
            ) || h.hop.ip.is_none()
        });
    let provider_below_other = e_pos.is_none()
        && !inbound_external
        && handovers.iter().any(|h| h.by_provider)
        && handovers.first().is_some_and(|h| !h.by_provider);
    let mut path = match (e_pos, synthetic_e) {
        (Some(pos), _) => {
            if handovers.get(pos).is_some_and(|h| h.by_provider) {
                c.flag("PROVIDER_TO_PROVIDER");
                PathClass::ProviderToProvider
            } else {
                PathClass::ProviderOutbound
            }
        }
        (None, true) => PathClass::ProviderOutbound,
        (None, false) if inbound_external => {
            c.flag("INBOUND_EXTERNAL");
            PathClass::InboundExternal
        }
        (None, false) if provider_below_other => {
            c.flag("EGRESS_NOT_PROVIDER");
            PathClass::EgressNotProvider
        }
        (None, false) if has_header_block && !message.received.is_empty() => PathClass::NotOurs,
        (None, false) if has_header_block => PathClass::Unknown,
        _ => PathClass::Unknown,
    };

    // 4. Provider stamps (§7.2).
    let mut blocks: Vec<StampBlock> = Vec::new();
    let mut recipient_tenant: Option<TenantRef> = None;
    let mut stamp_tenants: Vec<(String, EvidenceKind, u32)> = Vec::new();
    if profile.stamp_family == StampFamily::MicrosoftExo {
        for (value, pos) in headers.all("x-ms-exchange-crosstenant-id") {
            let id = fields::unfold(value).to_ascii_lowercase();
            if !id.is_empty() && !blocks.iter().any(|b| b.id == id) {
                blocks.push(StampBlock {
                    id,
                    id_header_pos: pos,
                    ..StampBlock::default()
                });
            }
        }
        let nearest = |blocks: &mut Vec<StampBlock>, pos: usize| -> Option<usize> {
            blocks
                .iter()
                .enumerate()
                .min_by_key(|(_, b)| b.id_header_pos.abs_diff(pos))
                .map(|(i, _)| i)
        };
        for (name, value, pos) in &headers.fields {
            let Some(rest) = name.strip_prefix("x-ms-exchange-crosstenant-") else {
                continue;
            };
            let Some(block) = nearest(&mut blocks, *pos).and_then(|bi| blocks.get_mut(bi)) else {
                continue;
            };
            match rest {
                "originalattributedtenantconnectingip" => {
                    block.connecting_ip = Some(fields::connecting_ip(value));
                }
                "authsource" => {
                    block.auth_source = Some(fields::unfold(value).to_ascii_lowercase())
                }
                "authas" => block.auth_as = Some(fields::unfold(value).to_ascii_lowercase()),
                "fromentityheader" => block
                    .from_entity
                    .push(fields::unfold(value).to_ascii_lowercase()),
                "network-message-id" => {
                    block.network_message_id = Some(fields::unfold(value).to_ascii_lowercase())
                }
                "originalarrivaltime" => block.arrival_time = fields::original_arrival_time(value),
                _ => {}
            }
        }
        // Each Stamped value belongs to the block written next to it: a block pasted
        // elsewhere in the header cannot borrow the genuine block's stamping server.
        for (value, pos) in headers.all("x-ms-exchange-transport-crosstenantheadersstamped") {
            if let Some(bi) = nearest(&mut blocks, pos)
                && let Some(block) = blocks.get_mut(bi)
            {
                block
                    .stamped
                    .push(fields::unfold(value).to_ascii_lowercase());
            }
        }
    }
    let forefront: Option<Forefront> = headers
        .first("x-forefront-antispam-report")
        .map(fields::forefront);
    let recipient_markers = headers.has("x-microsoft-antispam-mailbox-delivery")
        || headers.has("x-eoptenantattributedmessage")
        || headers
            .first("x-ms-exchange-organization-messagedirectionality")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("incoming"))
        || forefront
            .as_ref()
            .and_then(|f| f.dir())
            .is_some_and(|d| d.eq_ignore_ascii_case("INB"));
    let recipient_hosts: Vec<String> = {
        let upper = e_pos.unwrap_or(handovers.len());
        handovers
            .iter()
            .take(upper)
            .filter_map(|h| h.hop.by.as_deref().map(first_label))
            .collect()
    };
    let all_by_labels: Vec<String> = handovers
        .iter()
        .filter_map(|h| h.hop.by.as_deref().map(first_label))
        .collect();
    let ingress_ip = final_ingress.and_then(|h| h.hop.ip);
    let ingress_by_label = final_ingress.and_then(|h| h.hop.by.as_deref().map(first_label));
    // Initial-domain (MOERA) signatures: DKIM-Signature fields, and copies a list manager
    // renamed (never verifiable, so claims only). When the caller ran provider-key
    // verification, a DKIM-Signature claiming a MOERA key that did not verify is forged.
    let mut moera_claims: Vec<MoeraClaim> = Vec::new();
    for sig in &message.dkim_signatures {
        let Some(d) = sig.domain.as_deref() else {
            continue;
        };
        let d = d.to_ascii_lowercase();
        if !fields::is_moera(&d, sig.selector.as_deref()) {
            continue;
        }
        let verified = input.verified_signatures.iter().any(|v| v.domain == d);
        if verified {
            continue;
        }
        if options.provider_dkim_checked {
            c.flag("PROVIDER_DKIM_FAILED");
            c.say(format!(
                "the DKIM signature d={d} claims one of our initial-domain keys but did not verify with it: treated as forged"
            ));
            continue;
        }
        moera_claims.push(MoeraClaim {
            domain: d,
            selector: sig.selector.clone().unwrap_or_default(),
            header: "DKIM-Signature",
        });
    }
    for (value, _) in headers.all("x-mailman-original-dkim-signature") {
        let tags = fields::dkim_tags(value);
        if let Some(d) = tags.domain
            && fields::is_moera(&d, tags.selector.as_deref())
        {
            moera_claims.push(MoeraClaim {
                domain: d,
                selector: tags.selector.unwrap_or_default(),
                header: "X-Mailman-Original-DKIM-Signature",
            });
        }
    }
    let dkim_moera: Vec<String> = moera_claims
        .iter()
        .filter(|m| m.header == "DKIM-Signature")
        .map(|m| m.domain.clone())
        .collect();

    #[derive(PartialEq)]
    enum Standing {
        Recipient,
        Anchored,
        Inconsistent(Vec<&'static str>),
        Unanchored,
    }
    let connector_tenant_at_ingress: Option<String> = headers
        .all("x-ms-exchange-crosstenant-originalattributedtenantconnectingip")
        .map(|(v, _)| fields::connecting_ip(v))
        .find(|cip| cip.ip.is_some() && cip.ip == ingress_ip)
        .and_then(|cip| cip.tenant_id);
    let mut ingress_corroboration: Vec<u32> = Vec::new();
    let mut standings: Vec<Standing> = Vec::new();
    for block in &blocks {
        let anchored_below_e =
            e_pos.is_some() && block.stamped.iter().any(|s| final_pass_hosts.contains(s));
        let stamped_in_recipient = block.stamped.iter().any(|s| recipient_hosts.contains(s));
        let anonymous_internet = block.auth_as.as_deref() == Some("anonymous")
            && block.from_entity.iter().any(|f| f == "internet")
            && block.connecting_ip.is_none();
        let recipient_side =
            stamped_in_recipient || anonymous_internet || (recipient_markers && !anchored_below_e);
        if recipient_side {
            standings.push(Standing::Recipient);
            continue;
        }
        // Sender side: check R1–R4.
        let mut inconsistent = Vec::new();
        // A connecting-IP stamp for our final ingress names the tenant the connector
        // attributed; a block of another tenant cannot be this pass's block, wherever it sits.
        if connector_tenant_at_ingress
            .as_deref()
            .is_some_and(|tid| tid != block.id)
        {
            inconsistent.push("the connecting-IP stamp for our ingress names another tenant");
        }
        if let Some(cip) = block.connecting_ip.as_ref() {
            if cip.ip.is_some() && cip.ip != ingress_ip {
                inconsistent.push("the connecting IP differs from the ingress hop");
            }
            if cip.tenant_id.as_deref().is_some_and(|t| t != block.id) {
                inconsistent.push("the connecting-IP stamp names another tenant");
            }
            if let (Some(src), Some(label)) =
                (block.auth_source.as_deref(), ingress_by_label.as_deref())
                && first_label(src) != label
            {
                inconsistent.push("AuthSource is not the ingress server");
            }
        }
        if let Some(ff) = forefront.as_ref() {
            if ff.dir().is_some_and(|d| !d.eq_ignore_ascii_case("OUT")) {
                inconsistent.push("the antispam report direction is not outbound");
            }
            match (ff.cip(), ingress_ip) {
                (Some(Cip::Ip(cip)), Some(ing)) if cip != ing => {
                    inconsistent.push("the antispam report CIP differs from the ingress hop")
                }
                (Some(Cip::Hidden), Some(_)) if block.connecting_ip.is_some() => {
                    inconsistent.push("the antispam report hides the client of a connector")
                }
                _ => {}
            }
        }
        if anchored_below_e && !synthetic_e && inconsistent.is_empty() {
            standings.push(Standing::Anchored);
        } else if inconsistent.is_empty() {
            standings.push(Standing::Unanchored);
        } else {
            standings.push(Standing::Inconsistent(inconsistent));
        }
    }
    // EXO writes one sender-side block per pass: two different tenants both claiming our
    // final pass cannot both be genuine, so neither is believed.
    let anchored_ids: Vec<&str> = blocks
        .iter()
        .zip(&standings)
        .filter(|(_, st)| **st == Standing::Anchored)
        .map(|(b, _)| b.id.as_str())
        .collect();
    let contested = anchored_ids.len() > 1;
    let anchored_id: Option<String> = (anchored_ids.len() == 1)
        .then(|| anchored_ids.first().map(|s| (*s).to_owned()))
        .flatten();
    for (block, standing) in blocks.iter().zip(standings) {
        let id_loc = loc("X-MS-Exchange-CrossTenant-Id", None, &block.id);
        match standing {
            Standing::Recipient => {
                c.flag("RECIPIENT_SIDE_STAMP");
                let eid = c.add(
                    EvidenceKind::PathFact,
                    Some(&block.id),
                    block.id.clone(),
                    id_loc,
                    Trust::Reporter,
                    0.0,
                );
                c.say(format!(
                    "E#{eid} stamp block Id={} is recipient-side (written when the complainant's copy was delivered): it names the complainant's tenant, never the sender",
                    block.id
                ));
                if recipient_tenant.is_none() {
                    recipient_tenant = Some(tenant_ref(directory, &block.id));
                }
            }
            Standing::Anchored if contested => {
                c.flag("STAMP_INCONSISTENT");
                c.flag("FORGED_STAMP_SUSPECTED");
                c.say(format!(
                    "stamp block Id={} claims our final pass, but so does another tenant's block: neither is believed",
                    block.id
                ));
            }
            Standing::Anchored => {
                if let Some(ff) = forefront.as_ref()
                    && let (Some(Cip::Ip(cip)), Some(ing)) = (ff.cip(), ingress_ip)
                    && cip == ing
                {
                    let eid = c.add(
                        EvidenceKind::PathFact,
                        None,
                        cip.to_string(),
                        loc(
                            "X-Forefront-Antispam-Report",
                            None,
                            headers.first("x-forefront-antispam-report").unwrap_or(""),
                        ),
                        Trust::Provider,
                        0.0,
                    );
                    ingress_corroboration.push(eid);
                }
                let tenant = tenant_ref(directory, &block.id);
                let eid = c.add(
                    EvidenceKind::AnchoredStamp,
                    Some(&block.id),
                    block.id.clone(),
                    id_loc,
                    Trust::Provider,
                    weight::E3,
                );
                c.say(format!(
                    "E#{eid} stamp block Id={} ({}) anchored: its stamping server {} is a hop of our final pass{}",
                    block.id,
                    tenant.name.as_deref().unwrap_or("unknown tenant"),
                    block
                        .stamped
                        .iter()
                        .find(|s| final_pass_hosts.contains(s))
                        .map(|s| s.to_ascii_uppercase())
                        .unwrap_or_default(),
                    if block.connecting_ip.is_some() { "; the connecting IP and AuthSource match the ingress hop" } else { "" }
                ));
                stamp_tenants.push((block.id.clone(), EvidenceKind::AnchoredStamp, eid));
            }
            Standing::Inconsistent(reasons)
                if anchored_id
                    .as_deref()
                    .is_some_and(|genuine| genuine != block.id) =>
            {
                // Another tenant's block is anchored and consistent: this one is a copy
                // written outside our final pass. It must not lower the genuine block.
                c.flag("STAMP_UNANCHORED");
                c.flag("FORGED_STAMP_SUSPECTED");
                c.say(format!(
                    "stamp block Id={} contradicts the anchored block ({}): it was written outside our final pass and is ignored",
                    block.id,
                    reasons.join("; ")
                ));
            }
            Standing::Inconsistent(reasons) => {
                c.flag("STAMP_INCONSISTENT");
                c.flag("STAMP_UNANCHORED");
                c.say(format!(
                    "stamp block Id={} is inconsistent: {}; not used",
                    block.id,
                    reasons.join("; ")
                ));
            }
            Standing::Unanchored => {
                c.flag("STAMP_UNANCHORED");
                if let Some(genuine) = anchored_id.as_deref()
                    && genuine != block.id
                {
                    c.flag("FORGED_STAMP_SUSPECTED");
                    c.say(format!(
                        "stamp block Id={} is not anchored while tenant {genuine}'s block is: it was written outside our final pass and is ignored",
                        block.id
                    ));
                    continue;
                }
                let moera_match = directory_initial_domain(directory, &block.id)
                    .is_some_and(|d| dkim_moera.contains(&d));
                // Server names only corroborate when no egress hop exists to anchor against:
                // below our ingress anyone can write a provider-looking line.
                let names_match = e_pos.is_none()
                    && (block.stamped.iter().any(|s| all_by_labels.contains(s))
                        || block
                            .auth_source
                            .as_deref()
                            .is_some_and(|s| all_by_labels.contains(&first_label(s))));
                if moera_match || names_match {
                    let eid = c.add(
                        EvidenceKind::CorroboratedStamp,
                        Some(&block.id),
                        block.id.clone(),
                        id_loc,
                        Trust::Sender,
                        weight::E6,
                    );
                    c.say(format!(
                        "E#{eid} stamp block Id={} is not anchored at our egress but is corroborated ({})",
                        block.id,
                        if moera_match { "its tenant's initial-domain DKIM signature is present" } else { "its server names appear in the chain" }
                    ));
                    stamp_tenants.push((block.id.clone(), EvidenceKind::CorroboratedStamp, eid));
                } else {
                    c.say(format!(
                        "stamp block Id={} is not anchored and not corroborated: ignored (anyone can write these headers)",
                        block.id
                    ));
                    if path == PathClass::NotOurs {
                        c.flag("FORGED_STAMP_SUSPECTED");
                    }
                }
            }
        }
    }
    // Provider evidence without an egress hop lifts NotOurs to EgressNotProvider.
    if path == PathClass::NotOurs
        && stamp_tenants
            .iter()
            .any(|(_, k, _)| *k == EvidenceKind::CorroboratedStamp)
    {
        path = PathClass::EgressNotProvider;
        c.flag("EGRESS_NOT_PROVIDER");
    }
    if path == PathClass::NotOurs && !input.verified_signatures.is_empty() {
        path = PathClass::EgressNotProvider;
        c.flag("EGRESS_NOT_PROVIDER");
    }

    // Ingress and origin findings.
    let mut ingress = None;
    if let Some(h) = final_ingress
        && let Some(ip) = h.hop.ip
    {
        let eid = c.add(
            EvidenceKind::PathFact,
            None,
            ip.to_string(),
            loc("Received", Some(h.hop.index), &h.hop.raw),
            Trust::Provider,
            0.0,
        );
        let mut sources = vec![eid];
        for block in &blocks {
            if block.connecting_ip.as_ref().and_then(|c| c.ip) == Some(ip) {
                let cid = c.add(
                    EvidenceKind::PathFact,
                    None,
                    ip.to_string(),
                    loc(
                        "X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp",
                        None,
                        &ip.to_string(),
                    ),
                    Trust::Provider,
                    0.0,
                );
                sources.push(cid);
            }
        }
        sources.extend(ingress_corroboration.iter().copied());
        for (value, pos) in headers.all("received-spf") {
            let spf = fields::received_spf(value);
            if spf.client_ip == Some(ip)
                && spf.receiver.as_deref().is_some_and(|r| {
                    profile.is_provider_host(r) || profile.is_provider_host(&format!("x.{r}"))
                })
            {
                let sid = c.add(
                    EvidenceKind::PathFact,
                    None,
                    ip.to_string(),
                    loc("Received-SPF", Some(pos), value),
                    Trust::Provider,
                    0.0,
                );
                sources.push(sid);
            }
        }
        for (value, _) in headers.all("arc-authentication-results") {
            let aar = fields::auth_results(value);
            if aar.client_ip() == Some(ip) {
                let aid = c.add(
                    EvidenceKind::PathFact,
                    None,
                    ip.to_string(),
                    loc("ARC-Authentication-Results", None, value),
                    Trust::Provider,
                    0.0,
                );
                sources.push(aid);
            }
        }
        let confidence = if sources.len() >= 2 {
            Confidence::High
        } else {
            Confidence::Medium
        };
        c.say(format!(
            "E#{eid} ingress hop (Received[{}], written by our server {}): the message entered our platform from {ip}{}",
            h.hop.index,
            h.hop.by.as_deref().unwrap_or("?"),
            if sources.len() >= 2 { format!(", corroborated by {} provider stamp(s)", sources.len() - 1) } else { String::new() }
        ));
        ingress = Some(IpFinding {
            ip,
            port: None,
            confidence,
            sources,
            location: loc("Received", Some(h.hop.index), &h.hop.raw),
        });
    }
    // Origin: the entry of the earliest pass. Without a hairpin that is the final ingress;
    // after one, the earliest pass was reported through a third party (§6.2 trust).
    let mut origin = if hairpin { None } else { ingress.clone() };
    if hairpin
        && let Some(h) = earliest_ingress
        && let Some(ip) = h.hop.ip
    {
        let eid = c.add(
            EvidenceKind::PathFact,
            None,
            ip.to_string(),
            loc("Received", Some(h.hop.index), &h.hop.raw),
            Trust::Reporter,
            0.0,
        );
        origin = Some(IpFinding {
            ip,
            port: None,
            confidence: Confidence::Medium,
            sources: vec![eid],
            location: loc("Received", Some(h.hop.index), &h.hop.raw),
        });
        c.say(format!(
            "E#{eid} origin: the earliest pass entered from {ip} (reported through a third party, so at most MEDIUM)"
        ));
    }
    // Stamps of a sender-side block we accepted say the message was submitted by a hosted
    // mailbox (used when the Received chain cannot show the pass, e.g. no egress hop).
    let accepted_ids: Vec<&str> = stamp_tenants.iter().map(|(id, _, _)| id.as_str()).collect();
    let stamps_say_hosted = blocks.iter().any(|b| {
        accepted_ids.contains(&b.id.as_str())
            && b.connecting_ip.is_none()
            && (b.from_entity.iter().any(|f| f == "hosted")
                || b.auth_as.as_deref() == Some("internal"))
    }) || (!accepted_ids.is_empty()
        && forefront.as_ref().is_some_and(|f| {
            f.cip() == Some(Cip::Hidden) && f.dir().is_some_and(|d| d.eq_ignore_ascii_case("OUT"))
        }));
    let connector_block = blocks.iter().find(|b| b.connecting_ip.is_some());
    let mut origin_kind = OriginKind::Unknown;
    if let Some(o) = origin.as_ref() {
        let from_entity_onprem = blocks
            .iter()
            .any(|b| b.from_entity.iter().any(|f| f == "hybridonprem"));
        let anonymous = blocks
            .iter()
            .any(|b| b.auth_as.as_deref() == Some("anonymous"));
        let hosted = blocks
            .iter()
            .any(|b| b.from_entity.iter().any(|f| f == "hosted"));
        let helo_literal = earliest_ingress
            .and_then(|h| h.hop.from_name.as_deref())
            .is_some_and(|n| n.starts_with('['));
        let auth = earliest_ingress.is_some_and(|h| h.hop.auth);
        if (from_entity_onprem || anonymous) && connector_block.is_some() {
            origin_kind = if connectors_third_party(directory, o.ip, t) {
                OriginKind::ConnectorThirdParty
            } else {
                OriginKind::ConnectorOnPrem
            };
        } else if hosted || helo_literal || auth {
            origin_kind = OriginKind::ClientSubmission;
        }
    } else if hosted_submission || (e_pos.is_none() && stamps_say_hosted) {
        origin_kind = OriginKind::HostedMailbox;
        c.flag("HOSTED_ORIGIN_NEEDS_LOGS");
        c.say("the message was submitted from a mailbox hosted on our platform: the client IP is only in our logs".to_owned());
        // A public X-Originating-IP of a single hosted pass is the client's own claim of
        // where it connected from: a LOW origin, never more (§7.1).
        if !hairpin
            && e_pos.is_some()
            && let Some((value, _)) = headers.all("x-originating-ip").next()
        {
            let text = fields::unfold(value);
            if let Some(ip) =
                crate::ip::parse_ip_lenient(text.trim_matches(|ch| ch == '[' || ch == ']'))
                && ip::classify(ip, profile, false, t) == AddressClass::External
            {
                let eid = c.add(
                    EvidenceKind::PathFact,
                    None,
                    ip.to_string(),
                    loc("X-Originating-IP", None, value),
                    Trust::Sender,
                    0.0,
                );
                c.say(format!(
                    "E#{eid} X-Originating-IP names the submitting client {ip}: a claim, LOW until the logs confirm it"
                ));
                origin = Some(IpFinding {
                    ip,
                    port: None,
                    confidence: Confidence::Low,
                    sources: vec![eid],
                    location: loc("X-Originating-IP", None, value),
                });
            }
        }
    }

    // delivered_by: without an egress, who handed the message on. On an inbound copy it is
    // the address our own inbound server accepted it from (everything below is the sender's
    // claim); otherwise the deepest public, non-provider from-IP.
    let delivered_by = if egress.is_none() {
        let inbound_hop = if path == PathClass::InboundExternal {
            handovers
                .iter()
                .take_while(|h| h.by_provider)
                .filter(|h| h.from_class == Some(AddressClass::External))
                .last()
                .copied()
        } else {
            None
        };
        let chosen = inbound_hop.or_else(|| {
            handovers
                .iter()
                .rev()
                .find(|h| h.from_class == Some(AddressClass::External) && !h.by_provider)
                .copied()
        });
        chosen.and_then(|h| {
            let ip = h.hop.ip?;
            let written_by_us = h.by_provider;
            let eid = c.add(
                EvidenceKind::PathFact,
                None,
                ip.to_string(),
                loc("Received", Some(h.hop.index), &h.hop.raw),
                if written_by_us {
                    Trust::Provider
                } else {
                    Trust::Reporter
                },
                0.0,
            );
            let mut sources = vec![eid];
            for (value, pos) in headers.all("received-spf") {
                if fields::received_spf(value).client_ip == Some(ip) {
                    sources.push(c.add(
                        EvidenceKind::PathFact,
                        None,
                        ip.to_string(),
                        loc("Received-SPF", Some(pos), value),
                        Trust::Reporter,
                        0.0,
                    ));
                }
            }
            for (value, _) in headers.all("x-microsoft-antispam-mailbox-delivery") {
                let sender_ip = fields::unfold(value).split(';').find_map(|kv| {
                    let (k, v) = kv.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("wims-senderip")
                        .then(|| crate::ip::parse_ip_lenient(v.trim()))
                        .flatten()
                });
                if sender_ip == Some(ip) {
                    sources.push(c.add(
                        EvidenceKind::PathFact,
                        None,
                        ip.to_string(),
                        loc("X-Microsoft-Antispam-Mailbox-Delivery", None, value),
                        Trust::Reporter,
                        0.0,
                    ));
                }
            }
            if let Some(sip) = reported_source_ip.as_ref()
                && sip.ip == ip
            {
                sources.extend(sip.sources.iter().copied());
            }
            let top = handovers
                .first()
                .is_some_and(|first| first.hop.index == h.hop.index);
            let confidence = if sources.len() >= 2 {
                Confidence::High
            } else if written_by_us || top {
                Confidence::Medium
            } else {
                Confidence::Low
            };
            c.say(format!(
                "E#{eid} delivered by {ip} (Received[{}], written by {}){}",
                h.hop.index,
                h.hop.by.as_deref().unwrap_or("an unnamed host"),
                if sources.len() >= 2 {
                    ", corroborated by the receiver's own records"
                } else {
                    ""
                }
            ));
            Some(IpFinding {
                ip,
                port: h.hop.port,
                confidence,
                sources,
                location: loc("Received", Some(h.hop.index), &h.hop.raw),
            })
        })
    } else {
        None
    };

    // 5. Tenant evidence (§9).
    let mut cands: BTreeMap<String, Vec<(EvidenceKind, f32, u32)>> = BTreeMap::new();
    for (tenant, kind, eid) in &stamp_tenants {
        let w = if *kind == EvidenceKind::AnchoredStamp {
            weight::E3
        } else {
            weight::E6
        };
        cands
            .entry(tenant.clone())
            .or_default()
            .push((*kind, w, *eid));
    }
    for sig in input.verified_signatures {
        let tenants = tenants_for_dkim(directory, &sig.domain, &sig.selector, t);
        for tenant in tenants {
            let w = if sig.headers_only {
                weight::E2_HEADERS
            } else {
                weight::E2_FULL
            };
            let eid = c.add(
                EvidenceKind::VerifiedDkim,
                Some(&tenant),
                format!("d={} s={}", sig.domain, sig.selector),
                loc(
                    "DKIM-Signature",
                    None,
                    &format!("d={}; s={}", sig.domain, sig.selector),
                ),
                Trust::Provider,
                w,
            );
            c.say(format!(
                "E#{eid} DKIM signature d={} s={} verified with our key{}: tenant {tenant}",
                sig.domain,
                sig.selector,
                if sig.headers_only {
                    " (headers only)"
                } else {
                    ""
                }
            ));
            cands
                .entry(tenant)
                .or_default()
                .push((EvidenceKind::VerifiedDkim, w, eid));
        }
    }
    if let Some(e) = egress.as_ref()
        && !synthetic_e
    {
        for tenant in dedicated_ip_tenants(directory, e.ip, t) {
            let eid = c.add(
                EvidenceKind::DedicatedEgressIp,
                Some(&tenant),
                e.ip.to_string(),
                e.location.clone(),
                Trust::Reporter,
                weight::E4,
            );
            c.say(format!(
                "E#{eid} egress {} is dedicated to tenant {tenant}",
                e.ip
            ));
            cands.entry(tenant).or_default().push((
                EvidenceKind::DedicatedEgressIp,
                weight::E4,
                eid,
            ));
        }
    }
    if let Some(ing) = ingress.as_ref() {
        let (exclusive, shared) = connector_tenants(directory, ing.ip, t);
        // Several tenants on one connector IP, or a connector of a third-party service that
        // many tenants use: the IP alone does not single out the tenant (§8.2).
        if shared.len() + exclusive.len() > 1 || !shared.is_empty() {
            c.flag("SHARED_CONNECTOR_IP");
            c.say(format!(
                "ingress {} is a connector address shared with other senders (a third-party service): weak tenant evidence only",
                ing.ip
            ));
        }
        for tenant in exclusive {
            let eid = c.add(
                EvidenceKind::ExclusiveConnector,
                Some(&tenant),
                ing.ip.to_string(),
                ing.location.clone(),
                Trust::Provider,
                weight::E5,
            );
            c.say(format!(
                "E#{eid} ingress {} is an exclusive connector of tenant {tenant}",
                ing.ip
            ));
            cands.entry(tenant).or_default().push((
                EvidenceKind::ExclusiveConnector,
                weight::E5,
                eid,
            ));
        }
        for tenant in shared {
            let eid = c.add(
                EvidenceKind::SharedConnector,
                Some(&tenant),
                ing.ip.to_string(),
                ing.location.clone(),
                Trust::Provider,
                weight::E11,
            );
            cands.entry(tenant).or_default().push((
                EvidenceKind::SharedConnector,
                weight::E11,
                eid,
            ));
        }
    }
    // E7: initial-domain signatures we did not verify (failed ones were dropped above).
    for claim in &moera_claims {
        let d = claim.domain.as_str();
        for tenant in tenants_for_initial_domain(directory, d, t) {
            let eid = c.add(
                EvidenceKind::MoeraDkim,
                Some(&tenant),
                d.to_owned(),
                loc(claim.header, None, &format!("d={d}; s={}", claim.selector)),
                Trust::Sender,
                weight::E7,
            );
            c.say(format!(
                "E#{eid} {} d={d} is tenant {tenant}'s initial domain (signature not verified by us)",
                claim.header
            ));
            cands
                .entry(tenant)
                .or_default()
                .push((EvidenceKind::MoeraDkim, weight::E7, eid));
        }
    }
    // E9: custom-domain DKIM d=, from DKIM-Signature fields and from the reporter's bound
    // Authentication-Results `dkim=pass header.d=` (the reporter verified that signature).
    let ar_dkim_pass = |d: &str| {
        bound_ar.iter().any(|(ar, _)| {
            ar.results.iter().any(|r| {
                r.method == "dkim"
                    && r.result == "pass"
                    && r.property("header.d")
                        .is_some_and(|hd| hd.eq_ignore_ascii_case(d))
            })
        })
    };
    let mut custom_dkim: Vec<(String, Location)> = Vec::new();
    for sig in &message.dkim_signatures {
        let Some(d) = sig.domain.as_deref() else {
            continue;
        };
        let d = d.to_ascii_lowercase();
        if fields::is_moera(&d, sig.selector.as_deref())
            || input.verified_signatures.iter().any(|v| v.domain == d)
            || custom_dkim.iter().any(|(x, _)| *x == d)
        {
            continue;
        }
        let location = loc("DKIM-Signature", None, &format!("d={d}"));
        custom_dkim.push((d, location));
    }
    for (ar, _) in &bound_ar {
        for r in &ar.results {
            if r.method == "dkim"
                && r.result == "pass"
                && let Some(d) = r.property("header.d")
            {
                let d = d.to_ascii_lowercase();
                if !d.ends_with(".onmicrosoft.com") && !custom_dkim.iter().any(|(x, _)| *x == d) {
                    let location = loc(
                        "Authentication-Results",
                        None,
                        &format!("dkim=pass header.d={d}"),
                    );
                    custom_dkim.push((d, location));
                }
            }
        }
    }
    for (d, location) in custom_dkim {
        let w = if ar_dkim_pass(&d) {
            weight::E9_AR
        } else {
            weight::E9
        };
        domain_evidence(
            &mut c,
            &mut cands,
            directory,
            &d,
            t,
            EvidenceKind::CustomDkimDomain,
            w,
            location,
            Trust::Sender,
            "DKIM d=",
        );
    }
    // Envelope domains: Return-Path, Original-Mail-From, bound AR smtp.mailfrom.
    let mut envelope_domains: Vec<(String, Location)> = Vec::new();
    let mut push_env = |addr: &str, location: Location, flags: &mut Flags| {
        let local = addr.split('@').next().unwrap_or("").to_ascii_lowercase();
        if local.starts_with("srs0=") || local.starts_with("srs1=") {
            flags.insert("SRS_ENVELOPE");
            return;
        }
        if let Some(d) = arfwire_parse::domain_of(addr) {
            let d = d.to_ascii_lowercase();
            if !envelope_domains.iter().any(|(e, _)| *e == d) {
                envelope_domains.push((d, location));
            }
        }
    };
    if let Some(rp) = message.return_path.as_deref() {
        push_env(rp, loc("Return-Path", None, rp), &mut c.flags);
    }
    if let Some(omf) = input.feedback.and_then(|f| f.original_mail_from.as_deref()) {
        push_env(omf, loc("Original-Mail-From", None, omf), &mut c.flags);
    }
    for (ar, _) in &bound_ar {
        if let Some(mf) = ar.method("spf").and_then(|r| r.property("smtp.mailfrom")) {
            let mf = mf.to_owned();
            push_env(&mf, loc("Authentication-Results", None, &mf), &mut c.flags);
        }
    }
    for (d, location) in envelope_domains {
        domain_evidence(
            &mut c,
            &mut cands,
            directory,
            &d,
            t,
            EvidenceKind::EnvelopeDomain,
            weight::E8,
            location,
            Trust::Reporter,
            "envelope sender domain",
        );
    }
    if let Some(from) = message.from.as_ref()
        && let Some(d) = from.domain.as_deref()
    {
        let dmarc_pass = bound_ar.iter().any(|(ar, _)| {
            ar.results.iter().any(|r| {
                r.method == "dmarc"
                    && r.result == "pass"
                    && r.property("header.from")
                        .is_some_and(|hf| hf.eq_ignore_ascii_case(d))
            })
        });
        let w = if dmarc_pass {
            weight::E10_AR
        } else {
            weight::E10
        };
        domain_evidence(
            &mut c,
            &mut cands,
            directory,
            d,
            t,
            EvidenceKind::FromDomain,
            w,
            loc("From", None, &from.address),
            Trust::Sender,
            "From domain",
        );
    }
    // E12: X-OriginatorOrg, sender side only (an inbound copy carries the recipient's org).
    if recipient_tenant.is_none()
        && let Some(org) = headers.first("x-originatororg")
    {
        let org = fields::unfold(org).to_ascii_lowercase();
        let mut tenants = tenants_for_domain(directory, &org, t);
        tenants.extend(tenants_for_initial_domain(directory, &org, t));
        tenants.sort();
        tenants.dedup();
        for tenant in tenants {
            let eid = c.add(
                EvidenceKind::OriginatorOrg,
                Some(&tenant),
                org.clone(),
                loc("X-OriginatorOrg", None, &org),
                Trust::Sender,
                weight::E12,
            );
            c.say(format!(
                "E#{eid} X-OriginatorOrg {org} belongs to tenant {tenant} (weak: a header anyone can write)"
            ));
            cands
                .entry(tenant)
                .or_default()
                .push((EvidenceKind::OriginatorOrg, weight::E12, eid));
        }
    }
    if let Some(fb) = input.feedback {
        let mut reported: Vec<String> = fb.reported_domain.clone();
        for uri in &fb.reported_uri {
            if let Some(host) = uri_host(uri) {
                reported.push(host);
            }
        }
        reported.sort();
        reported.dedup();
        for d in reported {
            domain_evidence(
                &mut c,
                &mut cands,
                directory,
                &d,
                t,
                EvidenceKind::ReportedDomain,
                weight::E13,
                loc("Reported-Domain", None, &d),
                Trust::Reporter,
                "reported domain",
            );
        }
        // RFC 6591: DKIM-Domain may list several domains.
        if let Some(dd) = fb.dkim_domain.as_deref() {
            for d in dd
                .split([';', ',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                if fields::is_moera(d, fb.dkim_selector.as_deref()) {
                    for tenant in tenants_for_initial_domain(directory, d, t) {
                        let eid = c.add(
                            EvidenceKind::MoeraDkim,
                            Some(&tenant),
                            d.to_owned(),
                            loc("DKIM-Domain", None, d),
                            Trust::Reporter,
                            weight::E7,
                        );
                        cands.entry(tenant).or_default().push((
                            EvidenceKind::MoeraDkim,
                            weight::E7,
                            eid,
                        ));
                    }
                } else {
                    domain_evidence(
                        &mut c,
                        &mut cands,
                        directory,
                        d,
                        t,
                        EvidenceKind::CustomDkimDomain,
                        weight::E9,
                        loc("DKIM-Domain", None, d),
                        Trust::Reporter,
                        "ARF DKIM-Domain",
                    );
                }
            }
        }
    }
    if let Some(claimed) = input.claimed_source_ip {
        let eid = c.add(
            EvidenceKind::TextHint,
            None,
            claimed.ip.to_string(),
            loc(
                if claimed.origin == "subject" {
                    "Subject"
                } else {
                    "body"
                },
                None,
                &claimed.ip.to_string(),
            ),
            Trust::Hint,
            0.0,
        );
        if let Some(e) = egress.as_ref()
            && e.ip != claimed.ip
        {
            c.flag("HINT_IP_MISMATCH");
        }
        for tenant in dedicated_ip_tenants(directory, claimed.ip, t) {
            cands
                .entry(tenant)
                .or_default()
                .push((EvidenceKind::TextHint, weight::E14, eid));
        }
        c.say(format!(
            "E#{eid} the reporter names {} in the {} (a hint only)",
            claimed.ip, claimed.origin
        ));
    }

    // 6. Score (§10).
    let mut candidates: Vec<Candidate> = cands
        .into_iter()
        .map(|(tenant_id, evs)| {
            let score = noisy_or(evs.iter().map(|(k, w, _)| (*k, *w)));
            Candidate {
                tenant: tenant_ref(directory, &tenant_id),
                score,
                confidence: Confidence::from_score(score),
                evidence: evs.iter().map(|(_, _, id)| *id).collect(),
                role: CandidateRole::Sender,
            }
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.evidence.first().cmp(&b.evidence.first()))
    });
    if let Some(rt) = recipient_tenant.as_ref() {
        // Recipient-side evidence never competes: drop the complainant's tenant unless it
        // also has sender-side evidence of its own.
        candidates.retain(|cand| cand.tenant.id != rt.id || cand.score >= weight::E6);
    }

    let mut tenant: Option<TenantRef> = None;
    let mut tenant_confidence = Confidence::None;
    let mut tenant_score = 0.0;
    let mut impersonated = Vec::new();
    let role = candidate_role(path, input.kind == ReportKind::AuthFailure);
    for cand in candidates.iter_mut() {
        cand.role = role;
    }
    if let Some(top) = candidates.first().cloned() {
        let second = candidates.get(1).map(|s| s.score);
        match choose(top.score, second) {
            Choice::Conflict => {
                c.flag("CONFLICTING_TENANTS");
                c.say(format!(
                    "two tenants have strong evidence ({} {:.3}, {} {:.3}): no tenant is named",
                    top.tenant.id,
                    top.score,
                    candidates.get(1).map_or("", |s| s.tenant.id.as_str()),
                    second.unwrap_or(0.0)
                ));
            }
            Choice::Named { conflict } => {
                if conflict {
                    c.flag("CONFLICTING_TENANTS");
                    c.say(format!(
                        "another tenant has some evidence too ({} {:.3}), far below the best",
                        candidates.get(1).map_or("", |s| s.tenant.id.as_str()),
                        second.unwrap_or(0.0)
                    ));
                }
                tenant = Some(top.tenant.clone());
                tenant_confidence = top.confidence;
                tenant_score = top.score;
            }
        }
        let has_e2 = top.evidence.iter().any(|id| {
            c.evidence
                .iter()
                .any(|e| e.id == *id && e.kind == EvidenceKind::VerifiedDkim)
        });
        // G1: no tenant on paths that never went through our outbound side.
        if !path_allows_tenant(path) {
            if path == PathClass::NotOurs {
                impersonated = candidates.iter().map(|cand| cand.tenant.clone()).collect();
                c.say(format!(
                    "the message never passed through our platform: {} (domain or stamp matches are impersonation, not a tenant offence)",
                    if role == CandidateRole::DomainOwner { "the tenant owns the domain the report is about" } else { "no tenant is named" }
                ));
            }
            if tenant.is_some() {
                tenant = None;
                tenant_confidence = Confidence::None;
                tenant_score = 0.0;
            }
        }
        if tenant.is_some() {
            let facts = GateFacts {
                path,
                provenance,
                has_e2,
                inconsistent: c.flags.contains("STAMP_INCONSISTENT")
                    || c.flags.contains("CLOCK_SKEW"),
                source_ip_in_egress: usable_source_ip
                    .is_some_and(|ip| profile.egress(ip, t).is_some()),
                synthetic_egress: synthetic_e,
            };
            let gated = gate_label(tenant_confidence, &facts);
            if gated != tenant_confidence {
                c.say(format!(
                    "gates lower the label from {} to {} ({})",
                    tenant_confidence.as_str(),
                    gated.as_str(),
                    gate_reason(&facts)
                ));
                tenant_confidence = gated;
            }
            // G3: a shared (consumer) tenant is named, but the account needs the logs.
            if let Some(t) = tenant.as_ref()
                && directory_is_shared(directory, &t.id)
            {
                c.flag("SHARED_TENANT");
                c.say("the tenant is the shared consumer tenant: the sending account is only in our logs".to_owned());
            }
        }
        if input.reporter_tier == ReporterTier::T3 && !has_e2 {
            // The label follows the evidence (spec §4: REPORT_UNAUTHENTICATED leaves the
            // parse unchanged); automated action must also require an authenticated reporter.
            c.say("the report itself is not authenticated (REPORT_UNAUTHENTICATED): its headers could be forged, so no automated action without confirmation".to_owned());
        }
        if let Some(t) = tenant.as_ref() {
            // One entry per evidence kind (its largest weight), in the order of §9.
            let mut per_kind: BTreeMap<EvidenceKind, f32> = BTreeMap::new();
            for e in top
                .evidence
                .iter()
                .filter_map(|id| c.evidence.iter().find(|e| e.id == *id))
            {
                let w = per_kind.entry(e.kind).or_insert(0.0);
                if e.weight > *w {
                    *w = e.weight;
                }
            }
            let summary: Vec<String> = per_kind
                .iter()
                .map(|(kind, w)| {
                    format!("{} {w:.2}", kind.as_str().split('_').next().unwrap_or(""))
                })
                .collect();
            c.say(format!(
                "tenant {}{} score {:.3} {} [{}]",
                t.id,
                t.name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default(),
                tenant_score,
                tenant_confidence.as_str(),
                summary.join(", ")
            ));
        }
    }
    if tenant.is_none() && (candidates.is_empty() || !impersonated.is_empty()) {
        c.say(format!("no tenant: path {}", path.as_str()));
    }
    if let Some(rt) = recipient_tenant.as_ref() {
        c.say(format!("the complainant is our tenant {}", rt.id));
    }
    if path == PathClass::ProviderOutbound || path == PathClass::ProviderToProvider {
        c.say(format!("path {}", path.as_str()));
    }

    let network_message_id = blocks
        .iter()
        .find_map(|b| b.network_message_id.clone())
        .or_else(|| {
            headers
                .first("x-ms-office365-filtering-correlation-id")
                .map(|v| fields::unfold(v).to_ascii_lowercase())
        });
    let egress_time_unix = e_pos
        .and_then(|p| handovers.get(p))
        .and_then(|h| h.hop.date_unix);
    let log_keys = LogKeys {
        network_message_id,
        message_id: message.message_id.clone(),
        egress_ip: egress.as_ref().map(|e| e.ip),
        egress_port: egress.as_ref().and_then(|e| e.port),
        egress_time_unix,
    };

    Attribution {
        path,
        provenance,
        tenant,
        tenant_confidence,
        tenant_score,
        tenant_candidates: candidates,
        recipient_tenant,
        impersonated_tenants: impersonated,
        egress,
        reported_source_ip,
        ingress,
        origin,
        origin_kind,
        delivered_by,
        log_keys,
        flags: c.flags,
        evidence: c.evidence,
        explanation: c.explanation,
    }
}

/// Noisy-OR over evidence kinds (§10.1): `1 - Π(1 - w)`, taking the largest weight within
/// each kind, rounded to 3 decimals.
pub(crate) fn noisy_or(evidence: impl IntoIterator<Item = (EvidenceKind, f32)>) -> f32 {
    let mut by_kind: BTreeMap<EvidenceKind, f32> = BTreeMap::new();
    for (kind, w) in evidence {
        let w = w.clamp(0.0, 1.0);
        let e = by_kind.entry(kind).or_insert(0.0);
        if w > *e {
            *e = w;
        }
    }
    let product: f32 = by_kind.values().map(|w| 1.0 - w).product();
    round3(1.0 - product)
}

/// What the conflict rule (§10.2) decides for the two best scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Name the best candidate; `conflict` when the runner-up still reaches LOW.
    Named { conflict: bool },
    /// Two strong candidates too close to call: name nobody.
    Conflict,
}

/// §10.2: with `second ≥ 0.60` and a gap under 0.25 nobody is named; otherwise the best is,
/// flagged when the runner-up reaches 0.25.
pub(crate) fn choose(top: f32, second: Option<f32>) -> Choice {
    let second = second.unwrap_or(0.0);
    // Compare on rounded thousandths so float noise cannot flip the rule at its edges.
    let gap = ((top - second) * 1000.0).round() as i32;
    if second >= 0.60 && gap < 250 {
        Choice::Conflict
    } else {
        Choice::Named {
            conflict: second >= 0.25,
        }
    }
}

/// G1: the paths on which a sending tenant may be named at all.
pub(crate) fn path_allows_tenant(path: PathClass) -> bool {
    !matches!(path, PathClass::NotOurs | PathClass::InboundExternal)
}

/// G4: the role candidates play. An auth-failure report is about a domain; unless our egress
/// sent the message, the tenant owning the domain is its owner, not the sender. On a path
/// that never went through us, a match is an impersonation.
pub(crate) fn candidate_role(path: PathClass, auth_failure: bool) -> CandidateRole {
    if auth_failure && path != PathClass::ProviderOutbound {
        CandidateRole::DomainOwner
    } else if path == PathClass::NotOurs {
        CandidateRole::Impersonated
    } else {
        CandidateRole::Sender
    }
}

/// The facts the label gates of §10.3 read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GateFacts {
    pub(crate) path: PathClass,
    pub(crate) provenance: Provenance,
    /// The best candidate has provider-key verified DKIM (E2).
    pub(crate) has_e2: bool,
    /// `STAMP_INCONSISTENT` or `CLOCK_SKEW`.
    pub(crate) inconsistent: bool,
    /// The ARF Source-IP is in our egress networks.
    pub(crate) source_ip_in_egress: bool,
    /// The egress boundary is the reporter's Source-IP, not a hop (weak anchoring, R1).
    pub(crate) synthetic_egress: bool,
}

/// The caps of §10.3 applied to a label (G1 caps, G2, G5). `SOURCE_IP_MISMATCH` never
/// touches the tenant label; G3/G4 change roles and flags, not the label.
pub(crate) fn gate_label(label: Confidence, g: &GateFacts) -> Confidence {
    let mut label = label;
    match g.path {
        PathClass::EgressNotProvider if !g.has_e2 => label = label.min(Confidence::Medium),
        PathClass::Unknown => {
            label = label.min(if g.source_ip_in_egress {
                Confidence::Medium
            } else {
                Confidence::Low
            });
        }
        PathClass::NotOurs | PathClass::InboundExternal => label = Confidence::None,
        _ => {}
    }
    if g.synthetic_egress && !g.has_e2 {
        label = label.min(Confidence::Medium);
    }
    match g.provenance {
        Provenance::Pasted => label = label.min(Confidence::Medium),
        Provenance::InlineQuote => label = label.min(Confidence::Low),
        _ => {}
    }
    if g.inconsistent {
        label = label.lowered(Confidence::Low);
    }
    label
}

fn gate_reason(g: &GateFacts) -> String {
    let mut why = Vec::new();
    match g.path {
        PathClass::EgressNotProvider if !g.has_e2 => {
            why.push("no egress hop and no provider-verified signature: at most MEDIUM")
        }
        PathClass::Unknown => why.push("no header block to judge the path"),
        _ => {}
    }
    if g.synthetic_egress && !g.has_e2 {
        why.push("the egress is only the reporter's Source-IP: at most MEDIUM");
    }
    match g.provenance {
        Provenance::Pasted => why.push("pasted headers: at most MEDIUM"),
        Provenance::InlineQuote => why.push("inline forward: at most LOW"),
        _ => {}
    }
    if g.inconsistent {
        why.push("inconsistent stamps or clocks: one step lower");
    }
    why.join("; ")
}

fn uri_host(uri: &str) -> Option<String> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let host = rest.split(['/', '?', '#', ':']).next()?;
    let host = host.rsplit('@').next()?.trim().to_ascii_lowercase();
    (!host.is_empty() && host.contains('.')).then_some(host)
}

#[allow(clippy::too_many_arguments)]
fn domain_evidence(
    c: &mut Collector,
    cands: &mut BTreeMap<String, Vec<(EvidenceKind, f32, u32)>>,
    directory: &DirectorySnapshot,
    domain: &str,
    t: Option<i64>,
    kind: EvidenceKind,
    weight: f32,
    location: Location,
    trust: Trust,
    what: &str,
) {
    let tenants = tenants_for_domain(directory, domain, t);
    let ambiguous = tenants.len() > 1;
    if ambiguous {
        c.flag("AMBIGUOUS_DOMAIN");
    }
    let w = if ambiguous { weight / 2.0 } else { weight };
    for tenant in tenants {
        let eid = c.add(
            kind,
            Some(&tenant),
            domain.to_owned(),
            location.clone(),
            trust,
            w,
        );
        c.say(format!(
            "E#{eid} {what} {domain} is an accepted domain of tenant {tenant}{}",
            if ambiguous {
                " (claimed by more than one tenant: weight halved)"
            } else {
                ""
            }
        ));
        cands.entry(tenant).or_default().push((kind, w, eid));
    }
}

// Directory adapters: the only place the engine touches the directory's API.

fn tenant_ref(directory: &DirectorySnapshot, id: &str) -> TenantRef {
    TenantRef {
        id: id.to_owned(),
        name: directory.tenant(id).map(|t| t.display_name.clone()),
    }
}

fn directory_initial_domain(directory: &DirectorySnapshot, id: &str) -> Option<String> {
    directory
        .tenant(id)
        .and_then(|t| t.initial_domain.clone())
        .map(|d| d.to_ascii_lowercase())
}

fn directory_is_shared(directory: &DirectorySnapshot, id: &str) -> bool {
    directory.tenant(id).is_some_and(|t| t.shared)
}

fn tenants_for_domain(directory: &DirectorySnapshot, domain: &str, t: Option<i64>) -> Vec<String> {
    let mut ids: Vec<String> = directory
        .domain_tenants(domain, t)
        .into_iter()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn tenants_for_initial_domain(
    directory: &DirectorySnapshot,
    domain: &str,
    _t: Option<i64>,
) -> Vec<String> {
    directory
        .by_initial_domain(domain)
        .into_iter()
        .map(|tenant| tenant.id.clone())
        .collect()
}

fn tenants_for_dkim(
    directory: &DirectorySnapshot,
    d: &str,
    s: &str,
    t: Option<i64>,
) -> Vec<String> {
    let mut ids: Vec<String> = directory
        .by_dkim(d, s, t)
        .into_iter()
        .map(|selector| selector.tenant_id.clone())
        .collect();
    if ids.is_empty() {
        ids = tenants_for_initial_domain(directory, d, t);
    }
    ids
}

fn dedicated_ip_tenants(directory: &DirectorySnapshot, ip: IpAddr, t: Option<i64>) -> Vec<String> {
    directory
        .dedicated_ip(ip, t)
        .into_iter()
        .map(|entry| entry.tenant_id.clone())
        .collect()
}

fn connector_tenants(
    directory: &DirectorySnapshot,
    ip: IpAddr,
    t: Option<i64>,
) -> (Vec<String>, Vec<String>) {
    let mut exclusive = Vec::new();
    let mut shared = Vec::new();
    for connector in directory.connectors_for_ip(ip, t) {
        if connector.exclusive {
            exclusive.push(connector.tenant_id.clone());
        } else {
            shared.push(connector.tenant_id.clone());
        }
    }
    (exclusive, shared)
}

fn connectors_third_party(directory: &DirectorySnapshot, ip: IpAddr, t: Option<i64>) -> bool {
    directory
        .connectors_for_ip(ip, t)
        .into_iter()
        .any(|c| c.third_party.is_some())
}

#[cfg(test)]
mod tests {
    //! Scoring and gate rules of §10 on their own: noisy-OR, the conflict rule, each gate
    //! G1–G5, and the reporter tier (a flag, never a cap).

    use super::*;

    fn facts(path: PathClass) -> GateFacts {
        GateFacts {
            path,
            provenance: Provenance::Attached,
            has_e2: false,
            inconsistent: false,
            source_ip_in_egress: false,
            synthetic_egress: false,
        }
    }

    #[test]
    fn noisy_or_combines_kinds_and_takes_the_largest_weight_within_a_kind() {
        // T01: E3, E5, E9 (bound AR), E10 (bound AR), E12.
        let score = noisy_or([
            (EvidenceKind::AnchoredStamp, 0.90),
            (EvidenceKind::ExclusiveConnector, 0.80),
            (EvidenceKind::CustomDkimDomain, 0.60),
            (EvidenceKind::FromDomain, 0.55),
            (EvidenceKind::OriginatorOrg, 0.20),
        ]);
        assert_eq!(score, 0.997);
        // Two pieces of the same kind count once, at the larger weight.
        assert_eq!(
            noisy_or([
                (EvidenceKind::CustomDkimDomain, 0.40),
                (EvidenceKind::CustomDkimDomain, 0.60)
            ]),
            0.6
        );
        // T14: E8 + E10 + E13 = 1 - 0.5 * 0.75 * 0.85.
        assert_eq!(
            noisy_or([
                (EvidenceKind::EnvelopeDomain, 0.50),
                (EvidenceKind::FromDomain, 0.25),
                (EvidenceKind::ReportedDomain, 0.15)
            ]),
            0.681
        );
        assert_eq!(noisy_or([]), 0.0);
        // Out-of-range weights are clamped, never produce a score outside [0, 1].
        assert_eq!(noisy_or([(EvidenceKind::TextHint, 7.0)]), 1.0);
        assert_eq!(noisy_or([(EvidenceKind::TextHint, -1.0)]), 0.0);
    }

    #[test]
    fn scores_are_rounded_to_three_decimals() {
        let s = noisy_or([
            (EvidenceKind::MoeraDkim, 0.55),
            (EvidenceKind::FromDomain, 0.25),
        ]);
        assert_eq!(s, 0.663);
        assert_eq!((s * 1000.0).round() / 1000.0, s);
    }

    #[test]
    fn conflict_rule() {
        // A strong runner-up within 0.25 of the best: nobody is named.
        assert_eq!(choose(0.90, Some(0.70)), Choice::Conflict);
        assert_eq!(choose(0.84, Some(0.60)), Choice::Conflict);
        // Exactly 0.25 apart: the best is named, flagged.
        assert_eq!(choose(0.85, Some(0.60)), Choice::Named { conflict: true });
        // A runner-up below 0.60 never blocks, but from 0.25 it is flagged.
        assert_eq!(choose(0.70, Some(0.59)), Choice::Named { conflict: true });
        assert_eq!(choose(0.66, Some(0.25)), Choice::Named { conflict: true });
        assert_eq!(choose(0.625, Some(0.15)), Choice::Named { conflict: false });
        assert_eq!(choose(0.40, None), Choice::Named { conflict: false });
    }

    #[test]
    fn g1_paths() {
        assert!(path_allows_tenant(PathClass::ProviderOutbound));
        assert!(path_allows_tenant(PathClass::ProviderToProvider));
        assert!(path_allows_tenant(PathClass::EgressNotProvider));
        assert!(path_allows_tenant(PathClass::Unknown));
        assert!(!path_allows_tenant(PathClass::NotOurs));
        assert!(!path_allows_tenant(PathClass::InboundExternal));

        let high = Confidence::High;
        assert_eq!(gate_label(high, &facts(PathClass::ProviderOutbound)), high);
        assert_eq!(
            gate_label(high, &facts(PathClass::EgressNotProvider)),
            Confidence::Medium
        );
        let verified = GateFacts {
            has_e2: true,
            ..facts(PathClass::EgressNotProvider)
        };
        assert_eq!(gate_label(high, &verified), high);
        assert_eq!(
            gate_label(high, &facts(PathClass::Unknown)),
            Confidence::Low
        );
        let ours = GateFacts {
            source_ip_in_egress: true,
            ..facts(PathClass::Unknown)
        };
        assert_eq!(gate_label(high, &ours), Confidence::Medium);
        assert_eq!(
            gate_label(high, &facts(PathClass::NotOurs)),
            Confidence::None
        );
        assert_eq!(
            gate_label(high, &facts(PathClass::InboundExternal)),
            Confidence::None
        );
        // A synthetic egress (Source-IP only) is weak anchoring: at most MEDIUM.
        let synthetic = GateFacts {
            synthetic_egress: true,
            ..facts(PathClass::ProviderOutbound)
        };
        assert_eq!(gate_label(high, &synthetic), Confidence::Medium);
    }

    #[test]
    fn g2_provenance() {
        let pasted = GateFacts {
            provenance: Provenance::Pasted,
            ..facts(PathClass::ProviderOutbound)
        };
        assert_eq!(gate_label(Confidence::High, &pasted), Confidence::Medium);
        assert_eq!(gate_label(Confidence::Low, &pasted), Confidence::Low);
        let inline = GateFacts {
            provenance: Provenance::InlineQuote,
            ..facts(PathClass::ProviderOutbound)
        };
        assert_eq!(gate_label(Confidence::High, &inline), Confidence::Low);
        let part = GateFacts {
            provenance: Provenance::HeadersPart,
            ..facts(PathClass::ProviderOutbound)
        };
        assert_eq!(gate_label(Confidence::High, &part), Confidence::High);
    }

    #[test]
    fn g3_shared_tenant_keeps_its_label() {
        // G3 names the shared tenant and flags it; the label itself is not gated (T08, T09
        // expect HIGH on the consumer tenant). Only the flag is added, in `attribute`.
        assert_eq!(
            gate_label(Confidence::High, &facts(PathClass::ProviderOutbound)),
            Confidence::High
        );
    }

    #[test]
    fn g4_auth_failure_roles() {
        assert_eq!(
            candidate_role(PathClass::ProviderOutbound, true),
            CandidateRole::Sender
        );
        assert_eq!(
            candidate_role(PathClass::NotOurs, true),
            CandidateRole::DomainOwner
        );
        assert_eq!(
            candidate_role(PathClass::Unknown, true),
            CandidateRole::DomainOwner
        );
        assert_eq!(
            candidate_role(PathClass::NotOurs, false),
            CandidateRole::Impersonated
        );
        assert_eq!(
            candidate_role(PathClass::ProviderToProvider, false),
            CandidateRole::Sender
        );
    }

    #[test]
    fn g5_inconsistency_lowers_one_step_never_below_low() {
        let bad = GateFacts {
            inconsistent: true,
            ..facts(PathClass::ProviderOutbound)
        };
        assert_eq!(gate_label(Confidence::High, &bad), Confidence::Medium);
        assert_eq!(gate_label(Confidence::Medium, &bad), Confidence::Low);
        assert_eq!(gate_label(Confidence::Low, &bad), Confidence::Low);
        assert_eq!(gate_label(Confidence::None, &bad), Confidence::None);
    }

    /// A minimal report through the real parser, so the tier test exercises `attribute`.
    fn one_report(headers: &str) -> arfwire_parse::Submission {
        let raw = format!(
            "From: fbl@reporter.test\r\nTo: junk@abuse-desk.test\r\nSubject: report\r\n\
             Date: Mon, 1 Jun 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nreport\r\n\
             --b\r\nContent-Type: message/feedback-report\r\n\r\n\
             Feedback-Type: abuse\r\nUser-Agent: t/1\r\nVersion: 1\r\nSource-IP: 192.0.2.3\r\n\r\n\
             --b\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n\r\nbody\r\n--b--\r\n",
            headers.replace('\n', "\r\n")
        );
        match arfwire_parse::parse(raw.as_bytes(), &arfwire_parse::ParseOptions::default()) {
            arfwire_parse::Outcome::Report(s) => s,
            other => panic!("not a report: {other:?}"),
        }
    }

    fn doc_profile() -> Profile {
        Profile::from_toml(
            "name = \"doc\"\nstamp_family = \"none\"\ntreat_documentation_ranges_as_public = true\n\
             egress_networks = [\"192.0.2.0/27\"]\nprovider_host_suffixes = [\".provider.test\"]\n",
        )
        .expect("profile")
    }

    fn doc_directory() -> DirectorySnapshot {
        DirectorySnapshot::from_toml(
            "[[tenants]]\nid = \"T-EXAMPLE-JP\"\ndisplay_name = \"T-EXAMPLE-JP\"\n\
             [[domains]]\ntenant_id = \"T-EXAMPLE-JP\"\ndomain = \"example.jp\"\n",
        )
        .expect("directory")
    }

    fn run_tier(tier: ReporterTier) -> Attribution {
        let s = one_report(
            "Return-Path: <shop@example.jp>\n\
             Received: from mta4.example.jp (mta4.example.jp [192.0.2.3])\n\tby mx.rcpt.test (Postfix) with ESMTP id 1; Wed, 10 Jun 2015 08:00:05 +0000\n\
             From: Shop <shop@example.jp>\nSubject: offer\nMessage-ID: <o@example.jp>",
        );
        let item = s.reports.first().expect("one report");
        let input = Input {
            message: &item.message,
            feedback: item.feedback.as_ref(),
            kind: s.kind,
            claimed_source_ip: None,
            report_time_unix: None,
            reporter_tier: tier,
            verified_signatures: &[],
        };
        attribute(&input, &doc_profile(), &doc_directory())
    }

    #[test]
    fn reporter_tier_is_a_flag_not_a_cap() {
        let t1 = run_tier(ReporterTier::T1);
        let t3 = run_tier(ReporterTier::T3);
        assert_eq!(t1.tenant_confidence, Confidence::Medium);
        assert_eq!(t1.tenant_score, 0.625);
        // An unauthenticated report keeps the label its evidence earns and says so.
        assert_eq!(t3.tenant_confidence, t1.tenant_confidence);
        assert_eq!(t3.tenant_score, t1.tenant_score);
        assert!(t3.flags.contains("REPORT_UNAUTHENTICATED"));
        assert!(!t1.flags.contains("REPORT_UNAUTHENTICATED"));
        assert!(
            t3.explanation
                .iter()
                .any(|l| l.contains("REPORT_UNAUTHENTICATED"))
        );
    }

    #[test]
    fn tenant_is_never_named_without_a_candidate_or_on_a_foreign_path() {
        let a = run_tier(ReporterTier::T1);
        assert_eq!(a.path, PathClass::ProviderOutbound);
        assert_eq!(
            a.egress.as_ref().map(|e| e.confidence),
            Some(Confidence::High)
        );
        assert!(a.tenant.is_some());
    }
}
