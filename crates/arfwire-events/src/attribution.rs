//! The `attribution` object of an abuse event: which tenant sent the reported message, from
//! which IPs, how sure we are, and why.
//!
//! Events from this release always carry `"attribution": null`. The shape below is fixed
//! by the v1 schema so that consumers can be written now and the attribution release only
//! fills it in. Vocabulary fields owned by the attribution engine (`path_class`,
//! `provenance`, `origin_kind`, evidence `kind` and `trust`, candidate `role`, `flags`) are
//! strings; the schema lists their values.
//!
//! Evidence text (`location.raw`, evidence `value`, `explanation`) has every address masked
//! as `[address]`, except in locations read from sender fields (`From`, `Return-Path`,
//! `Original-Mail-From`, DKIM fields): a `Received` `for` clause or a `Received-SPF`
//! `receiver=` names the complainant, and this conversion has no key to write pseudonyms.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Attribution of one reported message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionV1 {
    /// Where the message travelled relative to the platform: `provider_outbound`,
    /// `provider_to_provider`, `egress_not_provider`, `inbound_external`, `not_ours`,
    /// `unknown`.
    pub path_class: String,
    /// How the header block that was judged reached us: `attached`, `headers_part`,
    /// `pasted`, `inline_quote`, `top_level`, `none`.
    pub provenance: String,
    /// The sending tenant, when the evidence allows naming one.
    pub sending_tenant: Option<TenantRefV1>,
    /// Confidence in `sending_tenant` (or in the best candidate when none is named).
    pub confidence: ConfidenceV1,
    /// Score behind `confidence`, in [0, 1], rounded to 3 decimals (0 when no candidate).
    pub score: f64,
    /// Every tenant the evidence points to, best first.
    pub sending_tenant_candidates: Vec<TenantCandidateV1>,
    /// The complainant's own tenant, when recipient-side stamps show they are a customer.
    pub recipient_tenant: Option<TenantRefV1>,
    /// Tenants whose domains or stamps were used by mail that did not come from the platform.
    pub impersonated_tenants: Vec<TenantRefV1>,
    /// The platform IP that handed the message out.
    pub egress_ip: Option<IpFindingV1>,
    /// The feedback report's `Source-IP`, as the reporter claims it.
    pub reported_source_ip: Option<IpFindingV1>,
    /// Where the message entered the platform on its final pass.
    pub ingress_ip: Option<IpFindingV1>,
    /// Where the message entered the platform on its earliest pass: the IP that sent it.
    pub origin_ip: Option<IpFindingV1>,
    /// Without an egress hop: the deepest public non-platform IP that handed it on.
    pub delivered_by_ip: Option<IpFindingV1>,
    /// How the message entered the platform: `hosted_mailbox`, `client_submission`,
    /// `connector_on_prem`, `connector_third_party`, `relay`, `unknown`.
    pub origin_kind: String,
    /// Keys for joining the report with the platform's own logs.
    pub log_keys: LogKeysV1,
    /// Stable upper-case flags (`^[A-Z][A-Z0-9_]*$`), sorted.
    pub flags: Vec<String>,
    /// Every piece of evidence, in the order it was found.
    pub evidence: Vec<EvidenceV1>,
    /// One line per decision, in order, for a person.
    pub explanation: Vec<String>,
}

/// Confidence label, from weakest to strongest. Upper case on the wire, as the abuse desk
/// reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConfidenceV1 {
    /// No usable evidence.
    None,
    /// Weak evidence or claims only.
    Low,
    /// One trusted source, or a medium score.
    Medium,
    /// Two agreeing trusted sources, or a high score.
    High,
    /// Confirmed by the platform's own logs.
    Confirmed,
}

/// A tenant of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRefV1 {
    /// The tenant id.
    pub id: String,
    /// Display name, when the directory knows the tenant.
    pub name: Option<String>,
}

/// A tenant that evidence points to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantCandidateV1 {
    /// The tenant id.
    pub id: String,
    /// Display name, when the directory knows the tenant.
    pub name: Option<String>,
    /// The role the tenant plays: `sender`, `domain_owner`, `impersonated`.
    pub role: String,
    /// Score in [0, 1], rounded to 3 decimals.
    pub score: f64,
    /// Label for the score.
    pub confidence: ConfidenceV1,
    /// Ids of the evidence supporting this candidate.
    pub evidence_ids: Vec<u64>,
}

/// An IP address found for one role (egress, ingress, origin, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpFindingV1 {
    /// The address, normalised.
    pub ip: IpAddr,
    /// Source port, when known (RFC 6692).
    pub port: Option<u16>,
    /// How sure we are.
    pub confidence: ConfidenceV1,
    /// Every place it was read, the first one first.
    pub sources: Vec<LocationV1>,
    /// Ids of the evidence that gave or corroborates it.
    pub evidence_ids: Vec<u64>,
}

/// Where a value was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationV1 {
    /// Header or feedback field name (`Received`, `X-Forefront-Antispam-Report`,
    /// `Source-IP`, ...).
    pub header: String,
    /// Which occurrence of that field, zero-based, topmost first; `null` when it does not
    /// repeat.
    pub index: Option<u64>,
    /// The raw value, unfolded, shortened to at most 300 characters.
    pub raw: String,
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceV1 {
    /// Id, unique within one attribution, in the order evidence was found.
    pub id: u64,
    /// Evidence kind (`E1_logs` ... `E14_text_hint`, `path_fact`).
    pub kind: String,
    /// The tenant id it points to, if any.
    pub tenant_id: Option<String>,
    /// The value (an IP, a domain, a tenant id).
    pub value: String,
    /// Where it was read.
    pub location: LocationV1,
    /// Who could have written it: `provider`, `reporter`, `sender`, `hint`.
    pub trust: String,
    /// Weight in the score (0 for path facts).
    pub weight: f64,
}

/// Keys for joining the report with the platform's logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKeysV1 {
    /// The platform's network message id (`X-MS-Exchange-CrossTenant-Network-Message-Id`).
    pub network_message_id: Option<String>,
    /// `Message-ID` of the reported message, without angle brackets.
    pub message_id: Option<String>,
    /// The platform IP that handed the message out.
    pub egress_ip: Option<IpAddr>,
    /// The egress source port (RFC 6692).
    pub egress_port: Option<u16>,
    /// When the message left the platform, RFC 3339 UTC.
    pub egress_time: Option<String>,
}

/// How far the reporter of the submission is trusted, from the submission's own DKIM, SPF and
/// DMARC results and the list of known feedback-loop operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReporterTrustV1 {
    /// `T1` (known feedback-loop operator, authenticated), `T2` (authenticated, not a known
    /// operator) or `T3` (not authenticated: anything in the report could be forged).
    pub tier: String,
    /// The known operator, for `T1`.
    pub operator: Option<String>,
    /// One line per check, for a person.
    pub reasons: Vec<String>,
}

fn confidence_v1(c: arfwire_attribution::Confidence) -> ConfidenceV1 {
    use arfwire_attribution::Confidence as C;
    match c {
        C::None => ConfidenceV1::None,
        C::Low => ConfidenceV1::Low,
        C::Medium => ConfidenceV1::Medium,
        C::High => ConfidenceV1::High,
        C::Confirmed => ConfidenceV1::Confirmed,
    }
}

/// Headers whose addresses are the sender's by definition; addresses read anywhere else
/// (a `Received` `for` clause, `Received-SPF` `receiver=`, provider stamps) may be the
/// complainant's and are masked.
const SENDER_ADDRESS_HEADERS: &[&str] = &[
    "from",
    "return-path",
    "original-mail-from",
    "dkim-signature",
    "x-mailman-original-dkim-signature",
    "dkim-domain",
];

fn keeps_addresses(header: &str) -> bool {
    SENDER_ADDRESS_HEADERS.contains(&header.to_ascii_lowercase().as_str())
}

/// Evidence text with NUL replaced and, unless it was read from a sender header, every
/// address masked (this conversion has no key to write pseudonyms with).
fn evidence_text(text: &str, header: &str) -> String {
    let text = text.replace('\0', "\u{fffd}");
    if keeps_addresses(header) {
        text
    } else {
        crate::pseudonym::mask_addresses(&text).into_owned()
    }
}

fn location_v1(l: &arfwire_attribution::Location) -> LocationV1 {
    LocationV1 {
        header: l.header.clone(),
        index: l.index.map(|i| i as u64),
        raw: evidence_text(&l.raw, &l.header),
    }
}

fn tenant_v1(t: &arfwire_attribution::TenantRef) -> TenantRefV1 {
    TenantRefV1 {
        id: t.id.clone(),
        name: t.name.clone(),
    }
}

fn round3(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

fn finding_v1(
    f: &arfwire_attribution::IpFinding,
    evidence: &[arfwire_attribution::Evidence],
) -> IpFindingV1 {
    let mut sources = vec![location_v1(&f.location)];
    for id in &f.sources {
        if let Some(e) = evidence.iter().find(|e| e.id == *id) {
            let l = location_v1(&e.location);
            if !sources.contains(&l) {
                sources.push(l);
            }
        }
    }
    IpFindingV1 {
        ip: f.ip,
        port: f.port,
        confidence: confidence_v1(f.confidence),
        sources,
        evidence_ids: f.sources.iter().map(|id| u64::from(*id)).collect(),
    }
}

impl From<&arfwire_attribution::Attribution> for AttributionV1 {
    fn from(a: &arfwire_attribution::Attribution) -> Self {
        let finding = |f: &Option<arfwire_attribution::IpFinding>| {
            f.as_ref().map(|f| finding_v1(f, &a.evidence))
        };
        AttributionV1 {
            path_class: a.path.as_str().to_owned(),
            provenance: a.provenance.as_str().to_owned(),
            sending_tenant: a.tenant.as_ref().map(tenant_v1),
            confidence: confidence_v1(a.tenant_confidence),
            score: round3(a.tenant_score),
            sending_tenant_candidates: a
                .tenant_candidates
                .iter()
                .map(|c| TenantCandidateV1 {
                    id: c.tenant.id.clone(),
                    name: c.tenant.name.clone(),
                    role: c.role.as_str().to_owned(),
                    score: round3(c.score),
                    confidence: confidence_v1(c.confidence),
                    evidence_ids: c.evidence.iter().map(|id| u64::from(*id)).collect(),
                })
                .collect(),
            recipient_tenant: a.recipient_tenant.as_ref().map(tenant_v1),
            impersonated_tenants: a.impersonated_tenants.iter().map(tenant_v1).collect(),
            egress_ip: finding(&a.egress),
            reported_source_ip: finding(&a.reported_source_ip),
            ingress_ip: finding(&a.ingress),
            origin_ip: finding(&a.origin),
            delivered_by_ip: finding(&a.delivered_by),
            origin_kind: a.origin_kind.as_str().to_owned(),
            log_keys: LogKeysV1 {
                network_message_id: a.log_keys.network_message_id.clone(),
                message_id: a.log_keys.message_id.clone(),
                egress_ip: a.log_keys.egress_ip,
                egress_port: a.log_keys.egress_port,
                egress_time: a
                    .log_keys
                    .egress_time_unix
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            },
            flags: a.flags.iter().map(|f| (*f).to_owned()).collect(),
            evidence: a
                .evidence
                .iter()
                .map(|e| EvidenceV1 {
                    id: u64::from(e.id),
                    kind: e.kind.as_str().to_owned(),
                    tenant_id: e.tenant.clone(),
                    value: evidence_text(&e.value, &e.location.header),
                    location: location_v1(&e.location),
                    trust: e.trust.as_str().to_owned(),
                    weight: round3(e.weight),
                })
                .collect(),
            explanation: a
                .explanation
                .iter()
                .map(|line| evidence_text(line, ""))
                .collect(),
        }
    }
}
