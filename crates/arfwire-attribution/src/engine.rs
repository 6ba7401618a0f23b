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
    let take = if matches!(second, "co" | "com" | "net" | "org" | "ac" | "gov" | "ne" | "or")
        && labels.get(n - 1).is_some_and(|tld| tld.len() == 2)
    {
        3
    } else {
        2
    };
    labels[n.saturating_sub(take)..].join(".")
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
pub fn attribute(input: &Input<'_>, profile: &Profile, directory: &DirectorySnapshot) -> Attribution {
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
        Provenance::None => c.flag("REDACTED_MESSAGE"),
        _ => {}
    }
    if input.kind == ReportKind::AuthFailure {
        c.flag("AUTH_FAILURE_REPORT");
    }
    if input.reporter_tier == ReporterTier::T3 {
        c.flag("REPORT_UNAUTHENTICATED");
    }

    // Message time T: arrival date, stamp arrival time, Date, else the report time.
    let stamp_time = headers
        .first("x-ms-exchange-crosstenant-originalarrivaltime")
        .and_then(fields::original_arrival_time);
    let mut t = input
        .feedback
        .and_then(|f| f.arrival_date_unix)
        .or(stamp_time)
        .or(message.date_unix);
    if t.is_none() {
        t = input.report_time_unix;
        c.flag("T_GUESSED");
    }

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
            let by_provider = hop.by.as_deref().is_some_and(|b| profile.is_provider_host(b));
            let from_class = hop.ip.map(|ip| ip::classify(ip, profile, by_provider, t));
            let egress_by_name = hop.ip.is_none()
                && (hop.from_name.as_deref().is_some_and(|n| profile.is_egress_host(n))
                    || hop.rdns.as_deref().is_some_and(|n| profile.is_egress_host(n)));
            Classified {
                hop,
                by_provider,
                from_class,
                egress_by_name,
            }
        })
        .collect();
    let handovers: Vec<&Classified<'_>> =
        classified.iter().filter(|h| h.hop.skipped.is_none()).collect();
    if handovers.iter().any(|h| h.from_class == Some(AddressClass::Reserved)) {
        c.flag("RESERVED_IP");
    }
    if provenance != Provenance::None && handovers.len() < 2 && !message.received.is_empty() {
        c.flag("HEADERS_TRUNCATED");
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
    let mut synthetic_e = false;
    let mut egress: Option<IpFinding> = None;
    if let Some(pos) = e_pos {
        let e = handovers[pos];
        if let Some(ip) = e.hop.ip {
            let id = c.add(
                EvidenceKind::PathFact,
                None,
                ip.to_string(),
                loc("Received", Some(e.hop.index), &e.hop.raw),
                Trust::Reporter,
                0.0,
            );
            let by = e.hop.by.clone().unwrap_or_else(|| "an unnamed host".to_owned());
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
        let id = reported_source_ip.as_ref().and_then(|f| f.sources.first().copied());
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
    let ar_sources = headers
        .all("authentication-results")
        .map(|(v, p)| (v, p))
        .chain(
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
        if own_ids.iter().any(|o| *o == id) {
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

    // 2. Passes below E (§6.2).
    let mut final_ingress: Option<&Classified<'_>> = None;
    let mut earliest_ingress: Option<&Classified<'_>> = None;
    let mut final_pass_hosts: Vec<String> = Vec::new();
    let mut hosted_submission = false;
    let mut hairpin = false;
    let mut pass_count = 0usize;
    if let Some(pos) = e_pos {
        #[derive(PartialEq)]
        enum State {
            InProvider,
            BelowIngress,
            ThirdParty,
        }
        let mut state = State::InProvider;
        let mut in_final = true;
        pass_count = 1;
        let mut i = pos + 1;
        while i < handovers.len() {
            let h = handovers[i];
            match state {
                State::InProvider => {
                    if h.by_provider {
                        if matches!(
                            h.from_class,
                            Some(AddressClass::ProviderInternal | AddressClass::ProviderEgress)
                        ) {
                            if in_final && let Some(by) = h.hop.by.as_deref() {
                                final_pass_hosts.push(first_label(by));
                            }
                            if h.hop.submission_marker {
                                hosted_submission = true;
                            }
                        } else {
                            if in_final {
                                if let Some(by) = h.hop.by.as_deref() {
                                    final_pass_hosts.push(first_label(by));
                                }
                                final_ingress = Some(h);
                            }
                            earliest_ingress = Some(h);
                            state = State::BelowIngress;
                        }
                    } else if h.is_egress() || h.egress_by_name {
                        hairpin = true;
                        in_final = false;
                        state = State::ThirdParty;
                    } else {
                        state = State::BelowIngress;
                    }
                }
                State::BelowIngress => {
                    if (h.is_egress() || h.egress_by_name) && !h.by_provider {
                        hairpin = true;
                        in_final = false;
                        state = State::ThirdParty;
                    }
                }
                State::ThirdParty => {
                    if h.by_provider {
                        state = State::InProvider;
                        pass_count += 1;
                        continue; // reprocess this hop as provider
                    }
                }
            }
            i += 1;
        }
    }
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
            if handovers[pos].by_provider {
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
            let Some(bi) = nearest(&mut blocks, *pos) else {
                continue;
            };
            let block = &mut blocks[bi];
            match rest {
                "originalattributedtenantconnectingip" => {
                    block.connecting_ip = Some(fields::connecting_ip(value));
                }
                "authsource" => block.auth_source = Some(fields::unfold(value).to_ascii_lowercase()),
                "authas" => block.auth_as = Some(fields::unfold(value).to_ascii_lowercase()),
                "fromentityheader" => block.from_entity.push(fields::unfold(value).to_ascii_lowercase()),
                "network-message-id" => block.network_message_id = Some(fields::unfold(value).to_ascii_lowercase()),
                "originalarrivaltime" => block.arrival_time = fields::original_arrival_time(value),
                _ => {}
            }
        }
    }
    let stamped: Vec<String> = headers
        .all("x-ms-exchange-transport-crosstenantheadersstamped")
        .map(|(v, _)| fields::unfold(v).to_ascii_lowercase())
        .collect();
    let forefront: Option<Forefront> = headers.first("x-forefront-antispam-report").map(fields::forefront);
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
    let dkim_moera: Vec<String> = message
        .dkim_signatures
        .iter()
        .filter_map(|s| {
            let d = s.domain.as_deref()?;
            fields::is_moera(d, s.selector.as_deref()).then(|| d.to_owned())
        })
        .collect();

    let mut ingress_corroboration: Vec<u32> = Vec::new();
    for block in &blocks {
        let id_loc = loc("X-MS-Exchange-CrossTenant-Id", None, &block.id);
        let stamped_in_recipient = stamped.iter().any(|s| recipient_hosts.contains(s));
        let anonymous_internet = block.auth_as.as_deref() == Some("anonymous")
            && block.from_entity.iter().any(|f| f == "internet")
            && block.connecting_ip.is_none();
        let recipient_side = stamped_in_recipient || recipient_markers || anonymous_internet;
        if recipient_side {
            c.flag("RECIPIENT_SIDE_STAMP");
            let tenant = tenant_ref(directory, &block.id);
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
                recipient_tenant = Some(tenant);
            }
            continue;
        }
        // Sender side: check R1–R4.
        let r1 = e_pos.is_some();
        let r2 = stamped.iter().any(|s| final_pass_hosts.contains(s));
        let mut inconsistent = Vec::new();
        if let Some(cip) = block.connecting_ip.as_ref() {
            if cip.ip.is_some() && cip.ip != ingress_ip {
                inconsistent.push("the connecting IP differs from the ingress hop");
            }
            if cip.tenant_id.as_deref().is_some_and(|t| t != block.id) {
                inconsistent.push("the connecting-IP stamp names another tenant");
            }
            if let (Some(src), Some(label)) = (block.auth_source.as_deref(), ingress_by_label.as_deref())
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
                (Some(Cip::Ip(cip)), Some(ing)) if cip == ing => {
                    let eid = c.add(
                        EvidenceKind::PathFact,
                        None,
                        cip.to_string(),
                        loc("X-Forefront-Antispam-Report", None, headers.first("x-forefront-antispam-report").unwrap_or("")),
                        Trust::Provider,
                        0.0,
                    );
                    ingress_corroboration.push(eid);
                }
                _ => {}
            }
        }
        if r1 && r2 && !synthetic_e && inconsistent.is_empty() {
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
                "E#{eid} stamp block Id={} ({}) anchored: its stamping server is a hop of our final pass{}",
                block.id,
                tenant.name.as_deref().unwrap_or("unknown tenant"),
                if block.connecting_ip.is_some() { "; the connecting IP and AuthSource match the ingress hop" } else { "" }
            ));
            stamp_tenants.push((block.id.clone(), EvidenceKind::AnchoredStamp, eid));
        } else {
            if !inconsistent.is_empty() {
                c.flag("STAMP_INCONSISTENT");
                c.say(format!(
                    "stamp block Id={} is inconsistent: {}",
                    block.id,
                    inconsistent.join("; ")
                ));
            }
            let moera_match = directory_initial_domain(directory, &block.id)
                .is_some_and(|d| dkim_moera.iter().any(|m| *m == d));
            let names_match = stamped.iter().any(|s| all_by_labels.contains(s))
                || block
                    .auth_source
                    .as_deref()
                    .is_some_and(|s| all_by_labels.contains(&first_label(s)));
            if (moera_match || names_match) && inconsistent.is_empty() {
                let eid = c.add(
                    EvidenceKind::CorroboratedStamp,
                    Some(&block.id),
                    block.id.clone(),
                    id_loc,
                    Trust::Sender,
                    weight::E6,
                );
                c.flag("STAMP_UNANCHORED");
                c.say(format!(
                    "E#{eid} stamp block Id={} is not anchored at our egress but is corroborated ({})",
                    block.id,
                    if moera_match { "its tenant's initial-domain DKIM signature is present" } else { "its server names appear in the chain" }
                ));
                stamp_tenants.push((block.id.clone(), EvidenceKind::CorroboratedStamp, eid));
            } else {
                c.flag("STAMP_UNANCHORED");
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
                    loc("X-MS-Exchange-CrossTenant-OriginalAttributedTenantConnectingIp", None, &ip.to_string()),
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
                && spf.receiver.as_deref().is_some_and(|r| profile.is_provider_host(r) || profile.is_provider_host(&format!("x.{r}")))
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
        let confidence = if sources.len() >= 2 { Confidence::High } else { Confidence::Medium };
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
    let mut origin = ingress.clone();
    if let Some(h) = earliest_ingress
        && hairpin
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
    let connector_block = blocks.iter().find(|b| b.connecting_ip.is_some());
    let mut origin_kind = OriginKind::Unknown;
    if origin.is_some() {
        let from_entity_onprem = blocks.iter().any(|b| b.from_entity.iter().any(|f| f == "hybridonprem"));
        let anonymous = blocks.iter().any(|b| b.auth_as.as_deref() == Some("anonymous"));
        let hosted = blocks.iter().any(|b| b.from_entity.iter().any(|f| f == "hosted"));
        let helo_literal = earliest_ingress
            .and_then(|h| h.hop.from_name.as_deref())
            .is_some_and(|n| n.starts_with('['));
        let auth = earliest_ingress.is_some_and(|h| h.hop.auth);
        if (from_entity_onprem || anonymous) && connector_block.is_some() {
            let third_party = origin
                .as_ref()
                .is_some_and(|o| connectors_third_party(directory, o.ip, t));
            origin_kind = if third_party { OriginKind::ConnectorThirdParty } else { OriginKind::ConnectorOnPrem };
        } else if hosted || helo_literal || auth {
            origin_kind = OriginKind::ClientSubmission;
        }
    } else if hosted_submission {
        origin_kind = OriginKind::HostedMailbox;
        c.flag("HOSTED_ORIGIN_NEEDS_LOGS");
        c.say("the message was submitted from a mailbox hosted on our platform: the client IP is only in our logs".to_owned());
    }

    // delivered_by: without an egress, the deepest public, non-provider from-IP.
    let delivered_by = if egress.is_none() {
        handovers
            .iter()
            .rev()
            .find(|h| h.from_class == Some(AddressClass::External) && !h.by_provider)
            .and_then(|h| {
                h.hop.ip.map(|ip| IpFinding {
                    ip,
                    port: None,
                    confidence: Confidence::Low,
                    sources: Vec::new(),
                    location: loc("Received", Some(h.hop.index), &h.hop.raw),
                })
            })
    } else {
        None
    };

    // 5. Tenant evidence (§9).
    let mut cands: BTreeMap<String, Vec<(EvidenceKind, f32, u32)>> = BTreeMap::new();
    for (tenant, kind, eid) in &stamp_tenants {
        let w = if *kind == EvidenceKind::AnchoredStamp { weight::E3 } else { weight::E6 };
        cands.entry(tenant.clone()).or_default().push((*kind, w, *eid));
    }
    for sig in input.verified_signatures {
        let tenants = tenants_for_dkim(directory, &sig.domain, &sig.selector, t);
        for tenant in tenants {
            let w = if sig.headers_only { weight::E2_HEADERS } else { weight::E2_FULL };
            let eid = c.add(
                EvidenceKind::VerifiedDkim,
                Some(&tenant),
                format!("d={} s={}", sig.domain, sig.selector),
                loc("DKIM-Signature", None, &format!("d={}; s={}", sig.domain, sig.selector)),
                Trust::Provider,
                w,
            );
            c.say(format!(
                "E#{eid} DKIM signature d={} s={} verified with our key{}: tenant {tenant}",
                sig.domain,
                sig.selector,
                if sig.headers_only { " (headers only)" } else { "" }
            ));
            cands.entry(tenant).or_default().push((EvidenceKind::VerifiedDkim, w, eid));
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
            c.say(format!("E#{eid} egress {} is dedicated to tenant {tenant}", e.ip));
            cands.entry(tenant).or_default().push((EvidenceKind::DedicatedEgressIp, weight::E4, eid));
        }
    }
    if let Some(ing) = ingress.as_ref() {
        let (exclusive, shared) = connector_tenants(directory, ing.ip, t);
        if shared.len() + exclusive.len() > 1 {
            c.flag("SHARED_CONNECTOR_IP");
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
            c.say(format!("E#{eid} ingress {} is an exclusive connector of tenant {tenant}", ing.ip));
            cands.entry(tenant).or_default().push((EvidenceKind::ExclusiveConnector, weight::E5, eid));
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
            cands.entry(tenant).or_default().push((EvidenceKind::SharedConnector, weight::E11, eid));
        }
    }
    for sig in &message.dkim_signatures {
        let Some(d) = sig.domain.as_deref() else { continue };
        if input.verified_signatures.iter().any(|v| v.domain == d) {
            continue;
        }
        if fields::is_moera(d, sig.selector.as_deref()) {
            for tenant in tenants_for_initial_domain(directory, d, t) {
                let eid = c.add(
                    EvidenceKind::MoeraDkim,
                    Some(&tenant),
                    d.to_owned(),
                    loc("DKIM-Signature", None, &format!("d={d}; s={}", sig.selector.as_deref().unwrap_or(""))),
                    Trust::Sender,
                    weight::E7,
                );
                c.say(format!("E#{eid} DKIM d={d} is tenant {tenant}'s initial domain (signature not verified by us)"));
                cands.entry(tenant).or_default().push((EvidenceKind::MoeraDkim, weight::E7, eid));
            }
        } else {
            let ar_pass = bound_ar.iter().any(|(ar, _)| {
                ar.results.iter().any(|r| {
                    r.method == "dkim"
                        && r.result == "pass"
                        && r.property("header.d").is_some_and(|hd| hd.eq_ignore_ascii_case(d))
                })
            });
            let w = if ar_pass { weight::E9_AR } else { weight::E9 };
            domain_evidence(&mut c, &mut cands, directory, d, t, EvidenceKind::CustomDkimDomain, w, loc("DKIM-Signature", None, &format!("d={d}")), Trust::Sender, "DKIM d=");
        }
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
        domain_evidence(&mut c, &mut cands, directory, &d, t, EvidenceKind::EnvelopeDomain, weight::E8, location, Trust::Reporter, "envelope sender domain");
    }
    if let Some(from) = message.from.as_ref()
        && let Some(d) = from.domain.as_deref()
    {
        let dmarc_pass = bound_ar.iter().any(|(ar, _)| {
            ar.results.iter().any(|r| {
                r.method == "dmarc"
                    && r.result == "pass"
                    && r.property("header.from").is_some_and(|hf| hf.eq_ignore_ascii_case(d))
            })
        });
        let w = if dmarc_pass { weight::E10_AR } else { weight::E10 };
        domain_evidence(&mut c, &mut cands, directory, d, t, EvidenceKind::FromDomain, w, loc("From", None, &from.address), Trust::Sender, "From domain");
    }
    if blocks.is_empty() || stamp_tenants.iter().any(|_| true) || recipient_tenant.is_none() {
        if let Some(org) = headers.first("x-originatororg") {
            let org = fields::unfold(org).to_ascii_lowercase();
            if recipient_tenant.is_none() {
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
                    cands.entry(tenant).or_default().push((EvidenceKind::OriginatorOrg, weight::E12, eid));
                }
            }
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
            domain_evidence(&mut c, &mut cands, directory, &d, t, EvidenceKind::ReportedDomain, weight::E13, loc("Reported-Domain", None, &d), Trust::Reporter, "reported domain");
        }
        // RFC 6591: DKIM-Domain may list several domains.
        if let Some(dd) = fb.dkim_domain.as_deref() {
            for d in dd.split([';', ',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
                if fields::is_moera(d, fb.dkim_selector.as_deref()) {
                    for tenant in tenants_for_initial_domain(directory, d, t) {
                        let eid = c.add(EvidenceKind::MoeraDkim, Some(&tenant), d.to_owned(), loc("DKIM-Domain", None, d), Trust::Reporter, weight::E7);
                        cands.entry(tenant).or_default().push((EvidenceKind::MoeraDkim, weight::E7, eid));
                    }
                } else {
                    domain_evidence(&mut c, &mut cands, directory, d, t, EvidenceKind::CustomDkimDomain, weight::E9, loc("DKIM-Domain", None, d), Trust::Reporter, "ARF DKIM-Domain");
                }
            }
        }
    }
    if let Some(claimed) = input.claimed_source_ip {
        let eid = c.add(
            EvidenceKind::TextHint,
            None,
            claimed.ip.to_string(),
            loc(if claimed.origin == "subject" { "Subject" } else { "body" }, None, &claimed.ip.to_string()),
            Trust::Hint,
            0.0,
        );
        if let Some(e) = egress.as_ref()
            && e.ip != claimed.ip
        {
            c.flag("HINT_IP_MISMATCH");
        }
        for tenant in dedicated_ip_tenants(directory, claimed.ip, t) {
            cands.entry(tenant).or_default().push((EvidenceKind::TextHint, weight::E14, eid));
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
            let mut by_kind: BTreeMap<EvidenceKind, f32> = BTreeMap::new();
            for (k, w, _) in &evs {
                let e = by_kind.entry(*k).or_insert(0.0);
                if *w > *e {
                    *e = *w;
                }
            }
            let product: f32 = by_kind.values().map(|w| 1.0 - w).product();
            let score = round3(1.0 - product);
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
    if let Some(top) = candidates.first().cloned() {
        let second = candidates.get(1).map_or(0.0, |s| s.score);
        if second >= 0.60 && top.score - second < 0.25 {
            c.flag("CONFLICTING_TENANTS");
            c.say(format!(
                "two tenants have strong evidence ({} {:.3}, {} {:.3}): no tenant is named",
                top.tenant.id, top.score, candidates.get(1).map_or("", |s| s.tenant.id.as_str()), second
            ));
        } else {
            if second >= 0.25 {
                c.flag("CONFLICTING_TENANTS");
            }
            tenant = Some(top.tenant.clone());
            tenant_confidence = top.confidence;
            tenant_score = top.score;
        }
        // Gates.
        let has_e2 = top.evidence.iter().any(|id| {
            c.evidence
                .iter()
                .any(|e| e.id == *id && e.kind == EvidenceKind::VerifiedDkim)
        });
        match path {
            PathClass::NotOurs | PathClass::InboundExternal => {
                if path == PathClass::NotOurs {
                    impersonated = candidates.iter().map(|cand| cand.tenant.clone()).collect();
                    for cand in candidates.iter_mut() {
                        cand.role = CandidateRole::Impersonated;
                    }
                    if tenant.is_some() {
                        c.say("the message never passed through our platform: domain matches are impersonation, not a tenant offence".to_owned());
                    }
                }
                tenant = None;
            }
            PathClass::EgressNotProvider if !has_e2 => {
                tenant_confidence = tenant_confidence.min(Confidence::Medium);
            }
            PathClass::Unknown => {
                let cap = if usable_source_ip.is_some_and(|ip| profile.egress(ip, t).is_some()) {
                    Confidence::Medium
                } else {
                    Confidence::Low
                };
                tenant_confidence = tenant_confidence.min(cap);
            }
            _ => {}
        }
        if matches!(provenance, Provenance::Pasted | Provenance::InlineQuote) {
            tenant_confidence = tenant_confidence.min(if provenance == Provenance::InlineQuote { Confidence::Low } else { Confidence::Medium });
        }
        if input.kind == ReportKind::AuthFailure && path != PathClass::ProviderOutbound {
            for cand in candidates.iter_mut() {
                if cand.role == CandidateRole::Sender {
                    cand.role = CandidateRole::DomainOwner;
                }
            }
        }
        if c.flags.contains("STAMP_INCONSISTENT") {
            tenant_confidence = tenant_confidence.lowered(Confidence::Low);
        }
        if input.reporter_tier == ReporterTier::T3 && !has_e2 {
            // The label follows the evidence (spec §4: REPORT_UNAUTHENTICATED leaves the
            // parse unchanged); automated action must also require an authenticated reporter.
            c.say("the report itself is not authenticated (REPORT_UNAUTHENTICATED): its headers could be forged, so no automated action without confirmation".to_owned());
        }
        if let Some(t) = tenant.as_ref() {
            let summary: Vec<String> = top
                .evidence
                .iter()
                .filter_map(|id| c.evidence.iter().find(|e| e.id == *id))
                .map(|e| format!("{} {:.2}", e.kind.as_str().split('_').next().unwrap_or(""), e.weight))
                .collect();
            c.say(format!(
                "tenant {}{} score {:.3} {} [{}]",
                t.id,
                t.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
                tenant_score,
                tenant_confidence.as_str(),
                summary.join(", ")
            ));
        }
    }
    for cand in candidates.iter_mut() {
        cand.confidence = Confidence::from_score(cand.score);
    }
    if tenant.is_none() && candidates.is_empty() {
        c.say(format!("no tenant: path {}", path.as_str()));
    } else if tenant.is_none() && !impersonated.is_empty() {
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
        if directory_is_shared(directory, &tenant) {
            c.flag("SHARED_TENANT");
        }
        let eid = c.add(kind, Some(&tenant), domain.to_owned(), location.clone(), trust, w);
        c.say(format!(
            "E#{eid} {what} {domain} is an accepted domain of tenant {tenant}{}",
            if ambiguous { " (claimed by more than one tenant: weight halved)" } else { "" }
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

fn tenants_for_initial_domain(directory: &DirectorySnapshot, domain: &str, _t: Option<i64>) -> Vec<String> {
    directory
        .by_initial_domain(domain)
        .into_iter()
        .map(|tenant| tenant.id.clone())
        .collect()
}

fn tenants_for_dkim(directory: &DirectorySnapshot, d: &str, s: &str, t: Option<i64>) -> Vec<String> {
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

fn connector_tenants(directory: &DirectorySnapshot, ip: IpAddr, t: Option<i64>) -> (Vec<String>, Vec<String>) {
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
