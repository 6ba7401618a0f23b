//! The attribution output contract: which tenant sent a reported message, from which IPs,
//! how sure we are, and why.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// Where the reported message travelled, relative to our platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathClass {
    /// Our egress handed it to a non-provider host: normal attribution.
    ProviderOutbound,
    /// Our egress handed it to our own inbound side (both ends are our tenants).
    ProviderToProvider,
    /// No egress hop, but provider evidence below a non-provider hop (customer gateway).
    EgressNotProvider,
    /// Our platform received it from outside: the complainant is our customer.
    InboundExternal,
    /// A header block is present and shows no provider evidence at all.
    NotOurs,
    /// No header block to judge and no egress Source-IP.
    Unknown,
}

impl PathClass {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PathClass::ProviderOutbound => "provider_outbound",
            PathClass::ProviderToProvider => "provider_to_provider",
            PathClass::EgressNotProvider => "egress_not_provider",
            PathClass::InboundExternal => "inbound_external",
            PathClass::NotOurs => "not_ours",
            PathClass::Unknown => "unknown",
        }
    }
}

/// Confidence label; ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Confidence {
    /// No usable evidence.
    #[default]
    None,
    /// Score at least 0.25, or claims only.
    Low,
    /// Score at least 0.60, or one trusted source.
    Medium,
    /// Score at least 0.90, or two agreeing trusted sources.
    High,
    /// Confirmed by our own logs.
    Confirmed,
}

impl Confidence {
    /// Stable identifier used on the wire (upper case, as the abuse desk reads it).
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::None => "NONE",
            Confidence::Low => "LOW",
            Confidence::Medium => "MEDIUM",
            Confidence::High => "HIGH",
            Confidence::Confirmed => "CONFIRMED",
        }
    }

    /// The label for a noisy-OR score (§10.1 thresholds).
    pub fn from_score(score: f32) -> Self {
        if score >= 0.90 {
            Confidence::High
        } else if score >= 0.60 {
            Confidence::Medium
        } else if score >= 0.25 {
            Confidence::Low
        } else {
            Confidence::None
        }
    }

    /// One step weaker, never below `floor`.
    pub fn lowered(self, floor: Confidence) -> Self {
        let lower = match self {
            Confidence::Confirmed => Confidence::High,
            Confidence::High => Confidence::Medium,
            Confidence::Medium => Confidence::Low,
            Confidence::Low | Confidence::None => self,
        };
        lower.max(floor.min(self))
    }
}

/// How the message entered the platform on its earliest pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OriginKind {
    /// Sent from a mailbox hosted on the platform (web, MAPI, mobile): the client IP is in
    /// the logs, not the headers.
    HostedMailbox,
    /// Authenticated SMTP submission by a client.
    ClientSubmission,
    /// An inbound connector from the tenant's own servers.
    ConnectorOnPrem,
    /// An inbound connector from a third-party service shared by many tenants.
    ConnectorThirdParty,
    /// Relayed or forwarded mail.
    Relay,
    /// Not determined.
    Unknown,
}

impl OriginKind {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::HostedMailbox => "hosted_mailbox",
            OriginKind::ClientSubmission => "client_submission",
            OriginKind::ConnectorOnPrem => "connector_on_prem",
            OriginKind::ConnectorThirdParty => "connector_third_party",
            OriginKind::Relay => "relay",
            OriginKind::Unknown => "unknown",
        }
    }
}

/// How the reported header block reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provenance {
    /// A whole attached message (message/rfc822 or .eml).
    Attached,
    /// A `text/rfc822-headers` part.
    HeadersPart,
    /// Header fields pasted into a text body.
    Pasted,
    /// Display headers quoted by an inline forward.
    InlineQuote,
    /// The submission itself (redirected spam, bare JMRP).
    TopLevel,
    /// No header block at all.
    None,
}

impl Provenance {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Provenance::Attached => "attached",
            Provenance::HeadersPart => "headers_part",
            Provenance::Pasted => "pasted",
            Provenance::InlineQuote => "inline_quote",
            Provenance::TopLevel => "top_level",
            Provenance::None => "none",
        }
    }
}

/// A tenant of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantRef {
    /// The tenant id (a GUID on Exchange Online).
    pub id: String,
    /// Display name, when the directory knows the tenant.
    pub name: Option<String>,
}

/// The role a candidate tenant plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateRole {
    /// The tenant that sent the message.
    Sender,
    /// The tenant owns the domain an auth-failure report is about (usually spoofed).
    DomainOwner,
    /// The tenant's domain or stamp was used by mail that did not come from us.
    Impersonated,
}

impl CandidateRole {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateRole::Sender => "sender",
            CandidateRole::DomainOwner => "domain_owner",
            CandidateRole::Impersonated => "impersonated",
        }
    }
}

/// A tenant that evidence points to.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The tenant.
    pub tenant: TenantRef,
    /// Noisy-OR score in [0, 1], rounded to 3 decimals.
    pub score: f32,
    /// Label for the score after gates.
    pub confidence: Confidence,
    /// Evidence ids supporting this candidate.
    pub evidence: Vec<u32>,
    /// Role.
    pub role: CandidateRole,
}

/// Where a value was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Header field name (`Received`, `X-Forefront-Antispam-Report`, `Source-IP`, ...).
    pub header: String,
    /// Which occurrence of that field (0 = topmost), when it repeats.
    pub index: Option<usize>,
    /// The raw value, unfolded (shortened to 300 characters).
    pub raw: String,
}

/// An IP address found for a role (egress, ingress, origin...).
#[derive(Debug, Clone, PartialEq)]
pub struct IpFinding {
    /// The address, normalised.
    pub ip: IpAddr,
    /// Source port, when known (RFC 6692).
    pub port: Option<u16>,
    /// How sure we are.
    pub confidence: Confidence,
    /// Evidence ids that gave or corroborate it.
    pub sources: Vec<u32>,
    /// Where it was read first.
    pub location: Location,
}

/// The evidence kinds of §9, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EvidenceKind {
    /// E1: our logs.
    Logs,
    /// E2: DKIM or ARC verified with a provider-held key.
    VerifiedDkim,
    /// E3: an anchored stamp block.
    AnchoredStamp,
    /// E4: egress IP in a tenant's dedicated range.
    DedicatedEgressIp,
    /// E5: ingress IP in a tenant's exclusive connector.
    ExclusiveConnector,
    /// E6: an unanchored but corroborated stamp block.
    CorroboratedStamp,
    /// E7: MOERA d= present, not verified.
    MoeraDkim,
    /// E8: envelope domain in the tenant's accepted domains.
    EnvelopeDomain,
    /// E9: custom DKIM d= in the tenant's accepted domains.
    CustomDkimDomain,
    /// E10: From domain in the tenant's accepted domains.
    FromDomain,
    /// E11: ingress IP in a shared connector.
    SharedConnector,
    /// E12: X-OriginatorOrg.
    OriginatorOrg,
    /// E13: ARF Reported-Domain / Reported-URI host.
    ReportedDomain,
    /// E14: free-text hint.
    TextHint,
    /// A path or IP fact that names no tenant (egress hop, ingress hop, Source-IP).
    PathFact,
}

impl EvidenceKind {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Logs => "E1_logs",
            EvidenceKind::VerifiedDkim => "E2_verified_dkim",
            EvidenceKind::AnchoredStamp => "E3_anchored_stamp",
            EvidenceKind::DedicatedEgressIp => "E4_dedicated_egress_ip",
            EvidenceKind::ExclusiveConnector => "E5_exclusive_connector",
            EvidenceKind::CorroboratedStamp => "E6_corroborated_stamp",
            EvidenceKind::MoeraDkim => "E7_moera_dkim",
            EvidenceKind::EnvelopeDomain => "E8_envelope_domain",
            EvidenceKind::CustomDkimDomain => "E9_custom_dkim_domain",
            EvidenceKind::FromDomain => "E10_from_domain",
            EvidenceKind::SharedConnector => "E11_shared_connector",
            EvidenceKind::OriginatorOrg => "E12_originator_org",
            EvidenceKind::ReportedDomain => "E13_reported_domain",
            EvidenceKind::TextHint => "E14_text_hint",
            EvidenceKind::PathFact => "path_fact",
        }
    }
}

/// Who wrote the header a piece of evidence came from, i.e. who could have forged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trust {
    /// Written by our platform (between the egress and ingress boundaries) or our logs.
    Provider,
    /// Written by the reporter or the complainant's side.
    Reporter,
    /// Written by the sender (below our ingress): freely forgeable.
    Sender,
    /// Free text.
    Hint,
}

impl Trust {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Provider => "provider",
            Trust::Reporter => "reporter",
            Trust::Sender => "sender",
            Trust::Hint => "hint",
        }
    }
}

/// One piece of evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Id, unique within one attribution, in the order evidence was found.
    pub id: u32,
    /// Kind.
    pub kind: EvidenceKind,
    /// The tenant it points to, if any.
    pub tenant: Option<String>,
    /// The value (an IP, a domain, a tenant id).
    pub value: String,
    /// Where it was read.
    pub location: Location,
    /// Who could have written it.
    pub trust: Trust,
    /// Weight in the score (0 for path facts).
    pub weight: f32,
}

/// Keys for joining the report with our own logs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogKeys {
    /// `X-MS-Exchange-CrossTenant-Network-Message-Id` or our own equivalent.
    pub network_message_id: Option<String>,
    /// `Message-ID` of the reported message.
    pub message_id: Option<String>,
    /// Our egress IP.
    pub egress_ip: Option<IpAddr>,
    /// The egress source port (RFC 6692).
    pub egress_port: Option<u16>,
    /// When the message left us, seconds since the Unix epoch.
    pub egress_time_unix: Option<i64>,
}

/// Flags of §12, by their stable upper-case names.
pub type Flags = BTreeSet<&'static str>;

/// The result of attributing one reported message.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// Path class.
    pub path: PathClass,
    /// How the header block reached us.
    pub provenance: Provenance,
    /// The sending tenant, when the gates allow naming one.
    pub tenant: Option<TenantRef>,
    /// Confidence in `tenant` (or the best candidate's, when `tenant` is `None`).
    pub tenant_confidence: Confidence,
    /// Score of `tenant`, rounded to 3 decimals (0 when none).
    pub tenant_score: f32,
    /// Every candidate, best first.
    pub tenant_candidates: Vec<Candidate>,
    /// The complainant's tenant, when recipient-side stamps show the complainant is ours.
    pub recipient_tenant: Option<TenantRef>,
    /// Tenants whose domains or stamps were used by mail that did not come from us.
    pub impersonated_tenants: Vec<TenantRef>,
    /// Our IP that handed the message out.
    pub egress: Option<IpFinding>,
    /// The ARF `Source-IP`, as claimed by the reporter.
    pub reported_source_ip: Option<IpFinding>,
    /// Entry of the final pass through our platform.
    pub ingress: Option<IpFinding>,
    /// Entry of the earliest pass: the IP that sent it.
    pub origin: Option<IpFinding>,
    /// How it entered.
    pub origin_kind: OriginKind,
    /// When there is no egress: the deepest public, non-provider IP that handed it on.
    pub delivered_by: Option<IpFinding>,
    /// Log-join keys.
    pub log_keys: LogKeys,
    /// Flags.
    pub flags: Flags,
    /// Evidence, in order of discovery.
    pub evidence: Vec<Evidence>,
    /// One line per decision, in order.
    pub explanation: Vec<String>,
}
