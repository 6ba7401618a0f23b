//! The tenant directory (specification §8): which tenant held which domain, DKIM selector,
//! dedicated range and connector, and when.
//!
//! A [`DirectorySnapshot`] is an immutable, validated, indexed copy of the directory. It is
//! built from [`DirectoryData`] (plain records, as they come from a file or a database) by
//! [`DirectorySnapshot::new`], which normalises the records, reports every problem it finds and
//! builds the lookup indexes once, so lookups cost a few hash probes however large the
//! directory is.
//!
//! Every mapping is effective-dated: `valid_from` is inclusive, `valid_to` exclusive, and an
//! absent bound is open. Lookups take `at`, seconds since the Unix epoch, and `None` means "at
//! any time". They return every match, so the caller can see ambiguity (`AMBIGUOUS_DOMAIN`,
//! `SHARED_CONNECTOR_IP`) instead of a silent pick.
//!
//! Pure: no IO, no clock, never panics.

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::TenantRef;

// ------------------------------------------------------------------------------------------------
// Records

/// Lifecycle state of a tenant.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// In service.
    #[default]
    Active,
    /// Sending blocked, data kept.
    Suspended,
    /// Removed; kept so old mail can still be attributed.
    Deleted,
}

impl TenantStatus {
    /// Stable identifier used in files and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        }
    }

    /// Parse the stable identifier (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "active" => Some(TenantStatus::Active),
            "suspended" => Some(TenantStatus::Suspended),
            "deleted" => Some(TenantStatus::Deleted),
            _ => None,
        }
    }
}

/// A tenant of the platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Tenant id (a GUID on Exchange Online; any non-empty text here).
    pub id: String,
    /// Name for people.
    #[serde(default)]
    pub display_name: String,
    /// The initial ("MOERA", `*.onmicrosoft.com`-style) domain, lowercase A-label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_domain: Option<String>,
    /// A shared (consumer) tenant: its domains prove the platform, not an organisation.
    #[serde(default)]
    pub shared: bool,
    /// Lifecycle state.
    #[serde(default)]
    pub status: TenantStatus,
}

/// A domain a tenant held (specification §8.1 `AcceptedDomain`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedDomain {
    /// The tenant.
    pub tenant_id: String,
    /// Lowercase IDNA A-label, no trailing dot.
    pub domain: String,
    /// Names below `domain` belong to the tenant too.
    #[serde(default)]
    pub include_subdomains: bool,
    /// First moment held (inclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_from: Option<DateTime<Utc>>,
    /// Moment released (exclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_to: Option<DateTime<Utc>>,
}

/// A DKIM selector registered to a tenant (the key registry of §8.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSelector {
    /// The tenant.
    pub tenant_id: String,
    /// The signing domain `d=`, lowercase A-label.
    pub domain: String,
    /// The selector `s=`, lowercase.
    pub selector: String,
    /// Fingerprint of the public key (for example `sha256:<hex>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// First moment the key signed (inclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_from: Option<DateTime<Utc>>,
    /// Moment the key was retired (exclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub active_to: Option<DateTime<Utc>>,
}

/// An egress range sold to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedicatedIp {
    /// The tenant.
    pub tenant_id: String,
    /// The range (host bits are cleared on load).
    pub cidr: IpNet,
    /// First moment in use (inclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_from: Option<DateTime<Utc>>,
    /// Moment released (exclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_to: Option<DateTime<Utc>>,
}

/// What an inbound connector connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// The tenant's own mail servers.
    OnPremises,
    /// A partner organisation or service.
    Partner,
}

impl ConnectorKind {
    /// Stable identifier used in files and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::OnPremises => "on_premises",
            ConnectorKind::Partner => "partner",
        }
    }

    /// Parse the stable identifier (case-insensitive; `-` accepted for `_`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "on_premises" | "onpremises" => Some(ConnectorKind::OnPremises),
            "partner" => Some(ConnectorKind::Partner),
            _ => None,
        }
    }
}

/// An inbound connector of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// The tenant.
    pub tenant_id: String,
    /// What it connects.
    pub kind: ConnectorKind,
    /// Ranges mail arrives from (sorted, deduplicated and host bits cleared on load).
    #[serde(default)]
    pub sender_ips: Vec<IpNet>,
    /// Certificate names the connector accepts (lowercase, sorted, deduplicated on load).
    #[serde(default)]
    pub tls_cert_domains: Vec<String>,
    /// Only this tenant sends from these ranges.
    #[serde(default)]
    pub exclusive: bool,
    /// The third-party service behind it (`codetwo`, `tessian`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub third_party: Option<String>,
    /// First moment in use (inclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_from: Option<DateTime<Utc>>,
    /// Moment removed (exclusive); open when absent.
    #[serde(
        default,
        deserialize_with = "de_time",
        skip_serializing_if = "Option::is_none"
    )]
    pub valid_to: Option<DateTime<Utc>>,
}

/// Is a `[from, to)` window in force at `at` (seconds since the epoch)? `None` is "any time".
fn in_window(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>, at: Option<i64>) -> bool {
    let Some(at) = at else { return true };
    from.is_none_or(|f| f.timestamp() <= at) && to.is_none_or(|t| at < t.timestamp())
}

/// Do two `[from, to)` windows share a moment?
fn windows_overlap(
    a: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    b: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> bool {
    let a_starts_before_b_ends = match (a.0, b.1) {
        (Some(start), Some(end)) => start < end,
        _ => true,
    };
    let b_starts_before_a_ends = match (b.0, a.1) {
        (Some(start), Some(end)) => start < end,
        _ => true,
    };
    a_starts_before_b_ends && b_starts_before_a_ends
}

impl AcceptedDomain {
    /// Was the domain held at `at`?
    pub fn in_force(&self, at: Option<i64>) -> bool {
        in_window(self.valid_from, self.valid_to, at)
    }
}

impl DkimSelector {
    /// Did the key sign at `at`?
    pub fn in_force(&self, at: Option<i64>) -> bool {
        in_window(self.active_from, self.active_to, at)
    }
}

impl DedicatedIp {
    /// Was the range the tenant's at `at`?
    pub fn in_force(&self, at: Option<i64>) -> bool {
        in_window(self.valid_from, self.valid_to, at)
    }
}

impl Connector {
    /// Was the connector in use at `at`?
    pub fn in_force(&self, at: Option<i64>) -> bool {
        in_window(self.valid_from, self.valid_to, at)
    }
}

// ------------------------------------------------------------------------------------------------
// Times

/// Parse a directory time: RFC 3339 with an offset (`2024-03-01T00:00:00Z`) or a bare date
/// (`2024-03-01`, meaning midnight UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && let Some(midnight) = date.and_hms_opt(0, 0, 0)
    {
        return Ok(midnight.and_utc());
    }
    Err(format!(
        "invalid time {text:?}: expected RFC 3339 with an offset (2024-03-01T00:00:00Z) or a date (2024-03-01)"
    ))
}

/// A time as files may write it: text (JSON, TOML strings) or a TOML date-time value.
#[derive(Deserialize)]
#[serde(untagged)]
enum TimeSpec {
    Text(String),
    Toml(toml::value::Datetime),
}

fn de_time<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let spec = Option::<TimeSpec>::deserialize(deserializer)?;
    let text = match spec {
        None => return Ok(None),
        Some(TimeSpec::Text(text)) => text,
        Some(TimeSpec::Toml(datetime)) => {
            if datetime.time.is_some() && datetime.offset.is_none() {
                return Err(serde::de::Error::custom(format!(
                    "time {datetime} has no UTC offset (write it with Z or +hh:mm)"
                )));
            }
            datetime.to_string()
        }
    };
    parse_time(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

// ------------------------------------------------------------------------------------------------
// Plain data and validation

/// The directory as plain records: the shape of the TOML and JSON files and of the database
/// tables. Turn it into a [`DirectorySnapshot`] to validate and index it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryData {
    /// Tenants.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// Accepted domains.
    #[serde(default)]
    pub domains: Vec<AcceptedDomain>,
    /// DKIM selectors.
    #[serde(default)]
    pub dkim_selectors: Vec<DkimSelector>,
    /// Dedicated egress ranges.
    #[serde(default)]
    pub dedicated_ips: Vec<DedicatedIp>,
    /// Inbound connectors.
    #[serde(default)]
    pub connectors: Vec<Connector>,
}

/// A list of [`DirectoryData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// `tenants`
    Tenants,
    /// `domains`
    Domains,
    /// `dkim_selectors`
    DkimSelectors,
    /// `dedicated_ips`
    DedicatedIps,
    /// `connectors`
    Connectors,
}

impl Collection {
    /// The list's name in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Collection::Tenants => "tenants",
            Collection::Domains => "domains",
            Collection::DkimSelectors => "dkim_selectors",
            Collection::DedicatedIps => "dedicated_ips",
            Collection::Connectors => "connectors",
        }
    }
}

/// One record of [`DirectoryData`], by list and position (0-based, in input order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryRef {
    /// The list.
    pub collection: Collection,
    /// Position in the list as given to [`DirectorySnapshot::new`].
    pub index: usize,
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.collection.as_str(), self.index)
    }
}

/// A problem found while validating directory data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryIssue {
    /// The record at fault.
    pub entry: EntryRef,
    /// The record it conflicts with, if any.
    pub other: Option<EntryRef>,
    /// What is wrong, naming the values involved.
    pub message: String,
}

impl fmt::Display for DirectoryIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.entry, self.message)?;
        if let Some(other) = self.other {
            write!(f, " (see {other})")?;
        }
        Ok(())
    }
}

/// Directory data that failed validation; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDirectory {
    /// The problems, in input order.
    pub issues: Vec<DirectoryIssue>,
}

/// How many issues [`InvalidDirectory`]'s `Display` prints before summarising.
const ISSUES_SHOWN: usize = 50;

impl fmt::Display for InvalidDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid tenant directory ({} problems)",
            self.issues.len()
        )?;
        for issue in self.issues.iter().take(ISSUES_SHOWN) {
            write!(f, "\n  {issue}")?;
        }
        if self.issues.len() > ISSUES_SHOWN {
            write!(f, "\n  ... and {} more", self.issues.len() - ISSUES_SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidDirectory {}

/// Normalise a domain name: trim, drop one trailing dot, lowercase; then check it is an
/// A-label host name. `min_labels` is 2 for domains a tenant can hold, 1 for selectors.
fn normalise_name(text: &str, min_labels: usize, allow_underscore: bool) -> Result<String, String> {
    let trimmed = text.trim();
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if !name.is_ascii() {
        return Err(format!(
            "{name:?} is not ASCII: give the IDNA A-label (xn--...)"
        ));
    }
    if name.len() > 253 {
        return Err(format!("{name:?} is longer than 253 characters"));
    }
    let mut labels = 0;
    for label in name.split('.') {
        labels += 1;
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "{name:?} has a label that is empty or longer than 63 characters"
            ));
        }
        let allowed =
            |c: char| c.is_ascii_alphanumeric() || c == '-' || (allow_underscore && c == '_');
        if !label.chars().all(allowed) {
            return Err(format!(
                "{name:?} contains a character not allowed in a host name"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("{name:?} has a label starting or ending with '-'"));
        }
    }
    if labels < min_labels {
        return Err(format!("{name:?} needs at least {min_labels} labels"));
    }
    Ok(name)
}

/// A certificate name may start with a `*.` wildcard.
fn normalise_cert_name(text: &str) -> Result<String, String> {
    let trimmed = text.trim().to_ascii_lowercase();
    match trimmed.strip_prefix("*.") {
        Some(rest) => normalise_name(rest, 2, false).map(|name| format!("*.{name}")),
        None => normalise_name(&trimmed, 2, false),
    }
}

fn optional_text(value: Option<String>) -> Option<String> {
    value
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

fn microseconds(time: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    // Databases keep microseconds; trimming here keeps a stored copy equal to its source.
    time.map(|t| t.trunc_subsecs(6))
}

/// Collects issues while validating.
struct Checker {
    issues: Vec<DirectoryIssue>,
}

impl Checker {
    fn issue(&mut self, collection: Collection, index: usize, message: String) {
        self.issues.push(DirectoryIssue {
            entry: EntryRef { collection, index },
            other: None,
            message,
        });
    }

    fn conflict(&mut self, entry: EntryRef, other: EntryRef, message: String) {
        self.issues.push(DirectoryIssue {
            entry,
            other: Some(other),
            message,
        });
    }

    fn window(
        &mut self,
        collection: Collection,
        index: usize,
        what: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) {
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            self.issue(
                collection,
                index,
                format!("{what}: the window starts ({from}) at or after it ends ({to})"),
            );
        }
    }

    fn tenant_known(
        &mut self,
        tenants: &HashSet<String>,
        collection: Collection,
        index: usize,
        tenant_id: &str,
        what: &str,
    ) {
        if !tenants.contains(tenant_id) {
            self.issue(
                collection,
                index,
                format!("{what}: unknown tenant id {tenant_id:?}"),
            );
        }
    }

    fn name(
        &mut self,
        collection: Collection,
        index: usize,
        field: &str,
        value: &mut String,
        min_labels: usize,
        allow_underscore: bool,
    ) {
        match normalise_name(value, min_labels, allow_underscore) {
            Ok(name) => *value = name,
            Err(problem) => self.issue(collection, index, format!("{field} {problem}")),
        }
    }
}

/// Normalise every record in place and collect per-record problems. Positions do not move.
fn normalise(data: &mut DirectoryData, checker: &mut Checker) {
    for (index, tenant) in data.tenants.iter_mut().enumerate() {
        if tenant.id.trim().is_empty() || tenant.id.trim() != tenant.id {
            checker.issue(
                Collection::Tenants,
                index,
                format!(
                    "tenant id {:?} is empty or has surrounding spaces",
                    tenant.id
                ),
            );
        }
        tenant.display_name = tenant.display_name.trim().to_owned();
        if let Some(initial) = tenant.initial_domain.take() {
            match normalise_name(&initial, 2, false) {
                Ok(name) => tenant.initial_domain = Some(name),
                Err(problem) => {
                    tenant.initial_domain = Some(initial);
                    checker.issue(
                        Collection::Tenants,
                        index,
                        format!("tenant {:?}: initial_domain {problem}", tenant.id),
                    );
                }
            }
        }
    }
    for (index, domain) in data.domains.iter_mut().enumerate() {
        checker.name(
            Collection::Domains,
            index,
            "domain",
            &mut domain.domain,
            2,
            false,
        );
        domain.valid_from = microseconds(domain.valid_from);
        domain.valid_to = microseconds(domain.valid_to);
        let what = format!("domain {:?}", domain.domain);
        checker.window(
            Collection::Domains,
            index,
            &what,
            domain.valid_from,
            domain.valid_to,
        );
    }
    for (index, dkim) in data.dkim_selectors.iter_mut().enumerate() {
        checker.name(
            Collection::DkimSelectors,
            index,
            "domain",
            &mut dkim.domain,
            2,
            false,
        );
        checker.name(
            Collection::DkimSelectors,
            index,
            "selector",
            &mut dkim.selector,
            1,
            true,
        );
        dkim.key_fingerprint = optional_text(dkim.key_fingerprint.take());
        dkim.active_from = microseconds(dkim.active_from);
        dkim.active_to = microseconds(dkim.active_to);
        let what = format!("selector {:?} of {:?}", dkim.selector, dkim.domain);
        checker.window(
            Collection::DkimSelectors,
            index,
            &what,
            dkim.active_from,
            dkim.active_to,
        );
    }
    for (index, ip) in data.dedicated_ips.iter_mut().enumerate() {
        ip.cidr = ip.cidr.trunc();
        ip.valid_from = microseconds(ip.valid_from);
        ip.valid_to = microseconds(ip.valid_to);
        let what = format!("dedicated range {}", ip.cidr);
        checker.window(
            Collection::DedicatedIps,
            index,
            &what,
            ip.valid_from,
            ip.valid_to,
        );
    }
    for (index, connector) in data.connectors.iter_mut().enumerate() {
        for net in &mut connector.sender_ips {
            *net = net.trunc();
        }
        connector.sender_ips.sort();
        connector.sender_ips.dedup();
        let mut names = Vec::with_capacity(connector.tls_cert_domains.len());
        for name in &connector.tls_cert_domains {
            match normalise_cert_name(name) {
                Ok(name) => names.push(name),
                Err(problem) => {
                    names.push(name.clone());
                    checker.issue(
                        Collection::Connectors,
                        index,
                        format!("tls_cert_domains entry {problem}"),
                    );
                }
            }
        }
        names.sort();
        names.dedup();
        connector.tls_cert_domains = names;
        connector.third_party = optional_text(connector.third_party.take());
        connector.valid_from = microseconds(connector.valid_from);
        connector.valid_to = microseconds(connector.valid_to);
        if connector.sender_ips.is_empty() && connector.tls_cert_domains.is_empty() {
            checker.issue(
                Collection::Connectors,
                index,
                format!(
                    "connector of tenant {:?} has neither sender_ips nor tls_cert_domains",
                    connector.tenant_id
                ),
            );
        }
        let what = format!("connector of tenant {:?}", connector.tenant_id);
        checker.window(
            Collection::Connectors,
            index,
            &what,
            connector.valid_from,
            connector.valid_to,
        );
    }
}

/// Report records whose key was already seen in the same list.
fn check_duplicates<K: std::hash::Hash + Eq>(
    checker: &mut Checker,
    collection: Collection,
    keys: impl Iterator<Item = (K, String)>,
) {
    let mut seen: HashMap<K, usize> = HashMap::new();
    for (index, (key, label)) in keys.enumerate() {
        if let Some(&first) = seen.get(&key) {
            checker.conflict(
                EntryRef { collection, index },
                EntryRef {
                    collection,
                    index: first,
                },
                format!("duplicate of an earlier record: {label}"),
            );
        } else {
            seen.insert(key, index);
        }
    }
}

/// One range of a validity-dated owner, for overlap checks.
struct Range<'a> {
    net: IpNet,
    index: usize,
    tenant_id: &'a str,
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    exclusive: bool,
}

/// Find ranges of different tenants that share addresses during a shared period, where at least
/// one of the two is exclusive. Each pair is reported once.
fn check_overlaps(checker: &mut Checker, collection: Collection, ranges: &[Range<'_>], what: &str) {
    let mut all = PrefixIndex::default();
    let mut exclusive = PrefixIndex::default();
    for (position, range) in ranges.iter().enumerate() {
        all.insert(range.net, position);
        if range.exclusive {
            exclusive.insert(range.net, position);
        }
    }
    all.finish();
    exclusive.finish();
    let mut reported: HashSet<(usize, usize)> = HashSet::new();
    for (position, range) in ranges.iter().enumerate() {
        // Every range that contains this one; an exclusive range checks against all of them,
        // others only against exclusive ones.
        let index = if range.exclusive { &all } else { &exclusive };
        for (_, containing) in index.containing(range.net) {
            for &other_position in containing {
                let Some(other) = ranges.get(other_position) else {
                    continue;
                };
                if other_position == position
                    || other.tenant_id == range.tenant_id
                    || !windows_overlap(range.window, other.window)
                {
                    continue;
                }
                let pair = (range.index.min(other.index), range.index.max(other.index));
                if pair.0 == pair.1 || !reported.insert(pair) {
                    continue;
                }
                checker.conflict(
                    EntryRef {
                        collection,
                        index: range.index.max(other.index),
                    },
                    EntryRef {
                        collection,
                        index: range.index.min(other.index),
                    },
                    format!(
                        "{what} {} of tenant {:?} overlaps {} of tenant {:?} in the same period",
                        range.net, range.tenant_id, other.net, other.tenant_id
                    ),
                );
            }
        }
    }
}

/// Cross-record checks: unknown tenants, duplicates, exclusivity.
fn cross_check(data: &DirectoryData, checker: &mut Checker) {
    check_duplicates(
        checker,
        Collection::Tenants,
        data.tenants
            .iter()
            .map(|t| (t.id.clone(), format!("tenant {:?}", t.id))),
    );
    let mut initial_seen: HashMap<&str, usize> = HashMap::new();
    for (index, tenant) in data.tenants.iter().enumerate() {
        let Some(initial) = tenant.initial_domain.as_deref() else {
            continue;
        };
        if let Some(&first) = initial_seen.get(initial) {
            checker.conflict(
                EntryRef {
                    collection: Collection::Tenants,
                    index,
                },
                EntryRef {
                    collection: Collection::Tenants,
                    index: first,
                },
                format!("initial domain {initial:?} is already another tenant's"),
            );
        } else {
            initial_seen.insert(initial, index);
        }
    }

    let tenants: HashSet<String> = data.tenants.iter().map(|t| t.id.clone()).collect();
    for (index, d) in data.domains.iter().enumerate() {
        let what = format!("domain {:?}", d.domain);
        checker.tenant_known(&tenants, Collection::Domains, index, &d.tenant_id, &what);
    }
    for (index, d) in data.dkim_selectors.iter().enumerate() {
        let what = format!("selector {:?} of {:?}", d.selector, d.domain);
        checker.tenant_known(
            &tenants,
            Collection::DkimSelectors,
            index,
            &d.tenant_id,
            &what,
        );
    }
    for (index, d) in data.dedicated_ips.iter().enumerate() {
        let what = format!("dedicated range {}", d.cidr);
        checker.tenant_known(
            &tenants,
            Collection::DedicatedIps,
            index,
            &d.tenant_id,
            &what,
        );
    }
    for (index, c) in data.connectors.iter().enumerate() {
        let what = format!("connector {}", describe_connector(c));
        checker.tenant_known(&tenants, Collection::Connectors, index, &c.tenant_id, &what);
    }

    check_duplicates(
        checker,
        Collection::Domains,
        data.domains.iter().map(|d| {
            (
                domain_key(d),
                format!(
                    "tenant {:?} domain {:?} from {:?}",
                    d.tenant_id, d.domain, d.valid_from
                ),
            )
        }),
    );
    check_duplicates(
        checker,
        Collection::DkimSelectors,
        data.dkim_selectors.iter().map(|d| {
            (
                dkim_key(d),
                format!(
                    "tenant {:?} selector {:?} of {:?} from {:?}",
                    d.tenant_id, d.selector, d.domain, d.active_from
                ),
            )
        }),
    );
    check_duplicates(
        checker,
        Collection::DedicatedIps,
        data.dedicated_ips.iter().map(|d| {
            (
                dedicated_key(d),
                format!(
                    "tenant {:?} range {} from {:?}",
                    d.tenant_id, d.cidr, d.valid_from
                ),
            )
        }),
    );
    check_duplicates(
        checker,
        Collection::Connectors,
        data.connectors.iter().map(|c| {
            (
                connector_key(c),
                format!("connector {}", describe_connector(c)),
            )
        }),
    );

    let dedicated: Vec<Range<'_>> = data
        .dedicated_ips
        .iter()
        .enumerate()
        .map(|(index, d)| Range {
            net: d.cidr,
            index,
            tenant_id: &d.tenant_id,
            window: (d.valid_from, d.valid_to),
            exclusive: true,
        })
        .collect();
    check_overlaps(
        checker,
        Collection::DedicatedIps,
        &dedicated,
        "dedicated range",
    );

    let connector_ranges: Vec<Range<'_>> = data
        .connectors
        .iter()
        .enumerate()
        .flat_map(|(index, c)| {
            c.sender_ips.iter().map(move |net| Range {
                net: *net,
                index,
                tenant_id: &c.tenant_id,
                window: (c.valid_from, c.valid_to),
                exclusive: c.exclusive,
            })
        })
        .collect();
    check_overlaps(
        checker,
        Collection::Connectors,
        &connector_ranges,
        "connector range (one side exclusive)",
    );
}

fn describe_connector(connector: &Connector) -> String {
    let ips: Vec<String> = connector.sender_ips.iter().map(|n| n.to_string()).collect();
    format!(
        "{} of tenant {:?} [{}]{}",
        connector.kind.as_str(),
        connector.tenant_id,
        ips.join(" "),
        if connector.tls_cert_domains.is_empty() {
            String::new()
        } else {
            format!(" cert {}", connector.tls_cert_domains.join(" "))
        }
    )
}

// Natural keys: what identifies a record across imports.

/// Natural key of an accepted domain: tenant, domain, start.
pub type DomainKey = (String, String, Option<DateTime<Utc>>);
/// Natural key of a DKIM selector: tenant, domain, selector, start.
pub type DkimKey = (String, String, String, Option<DateTime<Utc>>);
/// Natural key of a dedicated range: tenant, range, start.
pub type DedicatedKey = (String, IpNet, Option<DateTime<Utc>>);
/// Natural key of a connector: tenant, kind, sender ranges, certificate names, start.
pub type ConnectorKey = (
    String,
    ConnectorKind,
    Vec<IpNet>,
    Vec<String>,
    Option<DateTime<Utc>>,
);

/// The natural key of an accepted domain (the database enforces the same key).
pub fn domain_key(d: &AcceptedDomain) -> DomainKey {
    (d.tenant_id.clone(), d.domain.clone(), d.valid_from)
}

/// The natural key of a DKIM selector.
pub fn dkim_key(d: &DkimSelector) -> DkimKey {
    (
        d.tenant_id.clone(),
        d.domain.clone(),
        d.selector.clone(),
        d.active_from,
    )
}

/// The natural key of a dedicated range.
pub fn dedicated_key(d: &DedicatedIp) -> DedicatedKey {
    (d.tenant_id.clone(), d.cidr, d.valid_from)
}

/// The natural key of a connector.
pub fn connector_key(c: &Connector) -> ConnectorKey {
    (
        c.tenant_id.clone(),
        c.kind,
        c.sender_ips.clone(),
        c.tls_cert_domains.clone(),
        c.valid_from,
    )
}

/// Put every list in a canonical order, so equal directories compare equal whatever order their
/// records came in.
fn canonical_order(data: &mut DirectoryData) {
    data.tenants.sort_by(|a, b| a.id.cmp(&b.id));
    data.domains
        .sort_by_cached_key(|d| (d.domain.clone(), domain_key(d)));
    data.dkim_selectors
        .sort_by_cached_key(|d| (d.domain.clone(), d.selector.clone(), dkim_key(d)));
    data.dedicated_ips
        .sort_by_cached_key(|d| (d.cidr, dedicated_key(d)));
    data.connectors.sort_by_cached_key(connector_key);
}

// ------------------------------------------------------------------------------------------------
// Indexes

/// Exact-prefix hash index: a longest-prefix lookup probes one hash per prefix length in use.
#[derive(Debug, Clone, Default)]
struct PrefixIndex {
    by_net: HashMap<IpNet, Vec<usize>>,
    v4_lengths: Vec<u8>,
    v6_lengths: Vec<u8>,
}

impl PrefixIndex {
    fn insert(&mut self, net: IpNet, position: usize) {
        let net = net.trunc();
        match net {
            IpNet::V4(_) => self.v4_lengths.push(net.prefix_len()),
            IpNet::V6(_) => self.v6_lengths.push(net.prefix_len()),
        }
        self.by_net.entry(net).or_default().push(position);
    }

    /// Sort the lengths longest first.
    fn finish(&mut self) {
        for lengths in [&mut self.v4_lengths, &mut self.v6_lengths] {
            lengths.sort_unstable_by(|a, b| b.cmp(a));
            lengths.dedup();
        }
        for positions in self.by_net.values_mut() {
            positions.dedup();
        }
    }

    /// Every indexed network containing `net` (itself included), longest prefix first.
    fn containing(&self, net: IpNet) -> impl Iterator<Item = (u8, &[usize])> {
        let lengths = match net {
            IpNet::V4(_) => &self.v4_lengths,
            IpNet::V6(_) => &self.v6_lengths,
        };
        lengths
            .iter()
            .filter(move |&&length| length <= net.prefix_len())
            .filter_map(move |&length| {
                let candidate = IpNet::new(net.addr(), length).ok()?.trunc();
                self.by_net
                    .get(&candidate)
                    .map(|positions| (length, positions.as_slice()))
            })
    }

    /// Every indexed network containing the address, longest prefix first.
    fn containing_ip(&self, ip: IpAddr) -> impl Iterator<Item = (u8, &[usize])> {
        let ip = ip.to_canonical();
        self.containing(IpNet::from(ip))
    }
}

#[derive(Debug, Clone, Default)]
struct Indexes {
    tenant_by_id: HashMap<String, usize>,
    tenant_by_initial_domain: HashMap<String, usize>,
    domains_by_name: HashMap<String, Vec<usize>>,
    dkim_by_domain: HashMap<String, Vec<usize>>,
    dedicated: PrefixIndex,
    connectors_by_net: PrefixIndex,
    connectors_by_cert: HashMap<String, Vec<usize>>,
}

impl Indexes {
    fn build(data: &DirectoryData) -> Self {
        let mut indexes = Indexes::default();
        for (position, tenant) in data.tenants.iter().enumerate() {
            indexes.tenant_by_id.insert(tenant.id.clone(), position);
            if let Some(initial) = &tenant.initial_domain {
                indexes
                    .tenant_by_initial_domain
                    .insert(initial.clone(), position);
            }
        }
        for (position, domain) in data.domains.iter().enumerate() {
            indexes
                .domains_by_name
                .entry(domain.domain.clone())
                .or_default()
                .push(position);
        }
        for (position, dkim) in data.dkim_selectors.iter().enumerate() {
            indexes
                .dkim_by_domain
                .entry(dkim.domain.clone())
                .or_default()
                .push(position);
        }
        for (position, ip) in data.dedicated_ips.iter().enumerate() {
            indexes.dedicated.insert(ip.cidr, position);
        }
        for (position, connector) in data.connectors.iter().enumerate() {
            for net in &connector.sender_ips {
                indexes.connectors_by_net.insert(*net, position);
            }
            for name in &connector.tls_cert_domains {
                indexes
                    .connectors_by_cert
                    .entry(name.clone())
                    .or_default()
                    .push(position);
            }
        }
        indexes.dedicated.finish();
        indexes.connectors_by_net.finish();
        indexes
    }
}

// ------------------------------------------------------------------------------------------------
// Snapshot

/// A validated, indexed, point-in-time copy of the tenant directory.
///
/// Loads from TOML or JSON (`serde` deserialisation validates too) and serialises back to the
/// same shape. Two snapshots are equal when their records are equal; record order in the input
/// does not matter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "DirectoryData")]
pub struct DirectorySnapshot {
    data: DirectoryData,
    indexes: Indexes,
}

impl PartialEq for DirectorySnapshot {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Eq for DirectorySnapshot {}

impl Serialize for DirectorySnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.data.serialize(serializer)
    }
}

impl TryFrom<DirectoryData> for DirectorySnapshot {
    type Error = InvalidDirectory;

    fn try_from(data: DirectoryData) -> Result<Self, Self::Error> {
        DirectorySnapshot::new(data)
    }
}

/// Strip one trailing dot and lowercase a name given to a lookup.
fn lookup_name(name: &str) -> String {
    let trimmed = name.trim();
    trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase()
}

impl DirectorySnapshot {
    /// Validate, normalise and index directory data.
    ///
    /// Normalisation: names are trimmed and lowercased (a trailing dot is dropped), ranges lose
    /// their host bits, connector lists are sorted and deduplicated, times are cut to whole
    /// microseconds. Every problem is reported, with its position in the input: unknown tenant
    /// ids, malformed names, empty or inverted windows, duplicates, an initial domain used
    /// twice, dedicated ranges of different tenants overlapping in time, and exclusive
    /// connectors whose ranges another tenant's connector shares in time.
    pub fn new(mut data: DirectoryData) -> Result<Self, InvalidDirectory> {
        let mut checker = Checker { issues: Vec::new() };
        normalise(&mut data, &mut checker);
        cross_check(&data, &mut checker);
        if !checker.issues.is_empty() {
            checker.issues.sort_by_key(|issue| issue.entry);
            return Err(InvalidDirectory {
                issues: checker.issues,
            });
        }
        canonical_order(&mut data);
        let indexes = Indexes::build(&data);
        Ok(DirectorySnapshot { data, indexes })
    }

    /// Parse and validate a TOML directory file.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let data: DirectoryData = toml::from_str(text).map_err(|e| e.to_string())?;
        DirectorySnapshot::new(data).map_err(|e| e.to_string())
    }

    /// The records, in canonical order.
    pub fn data(&self) -> &DirectoryData {
        &self.data
    }

    /// Give the records back.
    pub fn into_data(self) -> DirectoryData {
        self.data
    }

    /// All tenants, by id.
    pub fn tenants(&self) -> &[Tenant] {
        &self.data.tenants
    }

    /// All accepted domains, by domain.
    pub fn domains(&self) -> &[AcceptedDomain] {
        &self.data.domains
    }

    /// All DKIM selectors, by domain and selector.
    pub fn dkim_selectors(&self) -> &[DkimSelector] {
        &self.data.dkim_selectors
    }

    /// All dedicated ranges, by range.
    pub fn dedicated_ips(&self) -> &[DedicatedIp] {
        &self.data.dedicated_ips
    }

    /// All connectors, by tenant.
    pub fn connectors(&self) -> &[Connector] {
        &self.data.connectors
    }

    /// No tenants at all.
    pub fn is_empty(&self) -> bool {
        self.data.tenants.is_empty()
    }

    /// The tenant with this id (exact, case-sensitive). Tenants are not effective-dated.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        let position = *self.indexes.tenant_by_id.get(id)?;
        self.data.tenants.get(position)
    }

    /// A [`TenantRef`] for an id, with the display name when the directory knows the tenant.
    pub fn tenant_ref(&self, id: &str) -> TenantRef {
        TenantRef {
            id: id.to_owned(),
            name: self
                .tenant(id)
                .map(|t| t.display_name.clone())
                .filter(|name| !name.is_empty()),
        }
    }

    /// Is the tenant a shared (consumer) tenant? Unknown tenants are not.
    pub fn is_shared(&self, tenant_id: &str) -> bool {
        self.tenant(tenant_id).is_some_and(|t| t.shared)
    }

    /// The tenant whose initial (MOERA) domain this is; exact, case-insensitive. Initial
    /// domains are unique (validation), so there is at most one.
    pub fn by_initial_domain(&self, domain: &str) -> Option<&Tenant> {
        let position = *self
            .indexes
            .tenant_by_initial_domain
            .get(&lookup_name(domain))?;
        self.data.tenants.get(position)
    }

    fn domain_entries<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a AcceptedDomain> {
        self.indexes
            .domains_by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|&position| self.data.domains.get(position))
    }

    /// The accepted-domain records that hold `domain` at `at`.
    ///
    /// An exact record wins; otherwise the walk goes up one label at a time and a parent matches
    /// only through a record with `include_subdomains`. The first level with a match is the
    /// answer, and every record at that level is returned (ordered by tenant id): more than
    /// one tenant means the name was claimed twice (`AMBIGUOUS_DOMAIN`).
    pub fn by_domain(&self, domain: &str, at: Option<i64>) -> Vec<&AcceptedDomain> {
        let name = lookup_name(domain);
        let exact: Vec<&AcceptedDomain> = self
            .domain_entries(&name)
            .filter(|d| d.in_force(at))
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            let held: Vec<&AcceptedDomain> = self
                .domain_entries(parent)
                .filter(|d| d.include_subdomains && d.in_force(at))
                .collect();
            if !held.is_empty() {
                return held;
            }
            rest = parent;
        }
        Vec::new()
    }

    /// The ids of the tenants holding `domain` at `at` ([`Self::by_domain`], deduplicated).
    pub fn domain_tenants(&self, domain: &str, at: Option<i64>) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .by_domain(domain, at)
            .into_iter()
            .map(|d| d.tenant_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The DKIM selector records for `(d, s)` active at `at` (exact, case-insensitive).
    pub fn by_dkim(&self, domain: &str, selector: &str, at: Option<i64>) -> Vec<&DkimSelector> {
        let domain = lookup_name(domain);
        let selector = selector.trim().to_ascii_lowercase();
        self.indexes
            .dkim_by_domain
            .get(&domain)
            .into_iter()
            .flatten()
            .filter_map(|&position| self.data.dkim_selectors.get(position))
            .filter(|d| d.selector == selector && d.in_force(at))
            .collect()
    }

    /// The dedicated ranges holding `ip` at `at`: those with the longest prefix among the
    /// ranges in force (more than one only if the data has several owners).
    pub fn dedicated_ip(&self, ip: IpAddr, at: Option<i64>) -> Vec<&DedicatedIp> {
        for (_, positions) in self.indexes.dedicated.containing_ip(ip) {
            let found: Vec<&DedicatedIp> = positions
                .iter()
                .filter_map(|&position| self.data.dedicated_ips.get(position))
                .filter(|d| d.in_force(at))
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// The connectors whose sender ranges hold `ip` at `at`: every connector at the longest
    /// prefix among those in force. Several tenants here is `SHARED_CONNECTOR_IP`.
    pub fn connectors_for_ip(&self, ip: IpAddr, at: Option<i64>) -> Vec<&Connector> {
        for (_, positions) in self.indexes.connectors_by_net.containing_ip(ip) {
            let found: Vec<&Connector> = positions
                .iter()
                .filter_map(|&position| self.data.connectors.get(position))
                .filter(|c| c.in_force(at))
                .collect();
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// The connectors accepting a TLS certificate name at `at`: exact name, then the
    /// `*.parent` wildcard.
    pub fn connectors_for_cert(&self, name: &str, at: Option<i64>) -> Vec<&Connector> {
        let name = lookup_name(name);
        let wildcard = name
            .split_once('.')
            .map(|(_, parent)| format!("*.{parent}"));
        let mut positions: Vec<usize> = Vec::new();
        for key in std::iter::once(Some(name))
            .chain(std::iter::once(wildcard))
            .flatten()
        {
            if let Some(found) = self.indexes.connectors_by_cert.get(&key) {
                positions.extend(found);
            }
        }
        positions.sort_unstable();
        positions.dedup();
        positions
            .into_iter()
            .filter_map(|position| self.data.connectors.get(position))
            .filter(|c| c.in_force(at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = include_str!("../../../fixtures/attribution/directory/td.toml");

    const AMD: &str = "3dd8961f-e488-4e60-8e11-a82d994e183d";
    const ARM: &str = "f34e5979-57d9-4aaa-ad4d-b122a662184d";
    const TOPIC: &str = "449607a5-3517-482d-8d16-41dd868cbda3";
    const CONSUMER: &str = "84df9e7f-e9f6-40af-b435-aaaaaaaaaaaa";
    const CONTOSO: &str = "00000000-0000-4000-8000-00000000c0de";
    const FABRIKAM: &str = "00000000-0000-4000-8000-0000000fab01";

    fn td() -> DirectorySnapshot {
        match DirectorySnapshot::from_toml(TD) {
            Ok(snapshot) => snapshot,
            Err(e) => panic!("TD fixture does not load: {e}"),
        }
    }

    fn ts(text: &str) -> Option<i64> {
        Some(parse_time(text).expect("test time").timestamp())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn tenants_of(found: Vec<&AcceptedDomain>) -> Vec<&str> {
        found.iter().map(|d| d.tenant_id.as_str()).collect()
    }

    fn invalid(text: &str) -> InvalidDirectory {
        let data: DirectoryData = toml::from_str(text).expect("test TOML parses");
        match DirectorySnapshot::new(data) {
            Ok(_) => panic!("expected validation to fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn td_loads_with_every_spec_tenant() {
        let td = td();
        assert_eq!(td.tenants().len(), 14);
        assert_eq!(td.tenant(AMD).map(|t| t.display_name.as_str()), Some("AMD"));
        assert_eq!(
            td.tenant("T-EXAMPLE-EDJP").map(|t| t.display_name.as_str()),
            Some("T-EXAMPLE-EDJP")
        );
        assert!(td.tenant("e96afb08-eeaf-49be-90d6-526571a42d8a").is_some());
        assert!(td.tenant("3DD8961F-E488-4E60-8E11-A82D994E183D").is_none());
        assert_eq!(td.tenant_ref(AMD).name.as_deref(), Some("AMD"));
        assert_eq!(td.tenant_ref("unknown").name, None);
    }

    #[test]
    fn initial_domains_are_exact_and_case_insensitive() {
        let td = td();
        assert_eq!(
            td.by_initial_domain("amdcloud.onmicrosoft.com")
                .map(|t| t.id.as_str()),
            Some(AMD)
        );
        assert_eq!(
            td.by_initial_domain("Citrix.OnMicrosoft.com.")
                .map(|t| t.display_name.as_str()),
            Some("CITRIX")
        );
        assert!(td.by_initial_domain("onmicrosoft.com").is_none());
        assert!(td.by_initial_domain("amd.com").is_none());
    }

    #[test]
    fn shared_tenant() {
        let td = td();
        assert!(td.is_shared(CONSUMER));
        assert!(!td.is_shared(AMD));
        assert!(!td.is_shared("nobody"));
        assert_eq!(
            tenants_of(td.by_domain("hotmail.com", None)),
            vec![CONSUMER]
        );
    }

    #[test]
    fn exact_domains_and_no_implicit_subdomains() {
        let td = td();
        assert_eq!(
            tenants_of(td.by_domain("amd.com", ts("2025-01-01"))),
            vec![AMD]
        );
        assert_eq!(tenants_of(td.by_domain("AMD.COM.", None)), vec![AMD]);
        assert!(td.by_domain("mail.amd.com", None).is_empty());
        assert_eq!(
            tenants_of(td.by_domain("example.ed.jp", None)),
            vec!["T-EXAMPLE-EDJP"]
        );
        assert!(td.by_domain("ed.jp", None).is_empty());
        assert!(td.by_domain("example.org", None).is_empty());
        assert!(td.by_domain("", None).is_empty());
    }

    #[test]
    fn subdomains_match_only_with_include_subdomains() {
        let td = td();
        let found = td.by_domain("smtp.mail.tailspintoys.com", None);
        assert_eq!(tenants_of(found.clone()), vec![FABRIKAM]);
        assert_eq!(found[0].domain, "tailspintoys.com");
        assert_eq!(
            tenants_of(td.by_domain("tailspintoys.com", None)),
            vec![FABRIKAM]
        );
    }

    #[test]
    fn domain_moved_between_tenants_on_a_date() {
        let td = td();
        assert_eq!(
            tenants_of(td.by_domain("woodgrove.com", ts("2024-02-29T23:59:59Z"))),
            vec![FABRIKAM]
        );
        assert_eq!(
            tenants_of(td.by_domain("woodgrove.com", ts("2024-03-01T00:00:00Z"))),
            vec![CONTOSO]
        );
        // At any time: both held it.
        assert_eq!(
            td.domain_tenants("woodgrove.com", None),
            vec![CONTOSO, FABRIKAM]
        );
    }

    #[test]
    fn migration_overlap_returns_every_tenant() {
        let td = td();
        assert_eq!(
            td.domain_tenants("litware.com", ts("2024-06-10")),
            vec![CONTOSO, FABRIKAM]
        );
        assert_eq!(
            td.domain_tenants("litware.com", ts("2024-05-01")),
            vec![FABRIKAM]
        );
        assert_eq!(
            td.domain_tenants("litware.com", ts("2024-06-15")),
            vec![CONTOSO]
        );
    }

    #[test]
    fn retired_dkim_selector() {
        let td = td();
        let before = td.by_dkim("contoso.com", "selector2", ts("2023-12-31T23:59:59Z"));
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].tenant_id, CONTOSO);
        assert!(
            before[0]
                .key_fingerprint
                .as_deref()
                .is_some_and(|f| f.starts_with("sha256:"))
        );
        assert!(
            td.by_dkim("contoso.com", "selector2", ts("2024-01-01"))
                .is_empty()
        );
        assert_eq!(
            td.by_dkim("Contoso.com", "SELECTOR1", ts("2024-06-01"))
                .len(),
            1
        );
        assert!(
            td.by_dkim("contoso.com", "selector1", ts("2023-01-01"))
                .is_empty()
        );
        assert!(td.by_dkim("contoso.com", "selector3", None).is_empty());
        // The same (d, s) changed hands with the domain.
        let early = td.by_dkim("woodgrove.com", "selector1", ts("2024-01-01"));
        let late = td.by_dkim("woodgrove.com", "selector1", ts("2024-04-01"));
        assert_eq!(
            early
                .iter()
                .map(|d| d.tenant_id.as_str())
                .collect::<Vec<_>>(),
            vec![FABRIKAM]
        );
        assert_eq!(
            late.iter()
                .map(|d| d.tenant_id.as_str())
                .collect::<Vec<_>>(),
            vec![CONTOSO]
        );
        assert_eq!(td.by_dkim("woodgrove.com", "selector1", None).len(), 2);
    }

    #[test]
    fn connectors_by_ip() {
        let td = td();
        let amd = td.connectors_for_ip(ip("165.204.84.17"), ts("2024-01-01"));
        assert_eq!(amd.len(), 1);
        assert_eq!(amd[0].tenant_id, AMD);
        assert!(amd[0].exclusive);
        assert_eq!(amd[0].kind, ConnectorKind::OnPremises);
        assert!(td.connectors_for_ip(ip("165.204.84.18"), None).is_empty());
        // IPv4-mapped IPv6 is the same address.
        assert_eq!(
            td.connectors_for_ip(ip("::ffff:165.204.84.17"), None).len(),
            1
        );

        let arm = td.connectors_for_ip(ip("63.35.35.123"), None);
        assert_eq!(arm[0].tenant_id, ARM);
        assert_eq!(arm[0].third_party.as_deref(), Some("tessian"));
        assert!(!arm[0].exclusive);
        let topic = td.connectors_for_ip(ip("20.93.157.195"), None);
        assert_eq!(topic[0].third_party.as_deref(), Some("codetwo"));
        assert_eq!(topic[0].tenant_id, TOPIC);
    }

    #[test]
    fn shared_connector_range_lists_every_tenant_in_force() {
        let td = td();
        let shared = td.connectors_for_ip(ip("2001:db8:7e55::25"), ts("2024-01-01"));
        let mut tenants: Vec<&str> = shared.iter().map(|c| c.tenant_id.as_str()).collect();
        tenants.sort_unstable();
        assert_eq!(tenants, vec![CONTOSO, FABRIKAM]);
        // FABRIKAM's connector only started in June 2023.
        let early = td.connectors_for_ip(ip("2001:db8:7e55::25"), ts("2023-01-01"));
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].tenant_id, CONTOSO);
    }

    #[test]
    fn connectors_by_certificate_name() {
        let td = td();
        let found = td.connectors_for_cert("MAIL.contoso.com", ts("2024-01-01"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tenant_id, CONTOSO);
        assert!(
            td.connectors_for_cert("mail.contoso.com", ts("2022-12-31"))
                .is_empty()
        );
        assert!(td.connectors_for_cert("contoso.com", None).is_empty());
    }

    #[test]
    fn dedicated_ranges_are_dated() {
        let td = td();
        let contoso = td.dedicated_ip(ip("2001:db8:c0de:e001::1"), ts("2024-02-01"));
        assert_eq!(contoso.len(), 1);
        assert_eq!(contoso[0].tenant_id, CONTOSO);
        assert!(
            td.dedicated_ip(ip("2001:db8:c0de:e001::1"), ts("2023-12-31"))
                .is_empty()
        );
        assert!(
            td.dedicated_ip(ip("2001:db8:c0de:f000::1"), None)
                .is_empty()
        );
        assert_eq!(
            td.dedicated_ip(ip("2001:db8:fab::9"), ts("2024-01-01"))
                .len(),
            1
        );
        assert!(
            td.dedicated_ip(ip("2001:db8:fab::9"), ts("2024-03-01"))
                .is_empty()
        );
        assert!(td.dedicated_ip(ip("40.107.0.1"), None).is_empty());
    }

    const LPM: &str = r#"
        [[tenants]]
        id = "a"
        [[tenants]]
        id = "b"
        [[dedicated_ips]]
        tenant_id = "a"
        cidr = "10.0.0.0/16"
        [[dedicated_ips]]
        tenant_id = "a"
        cidr = "10.0.5.0/24"
        valid_to = "2024-01-01"
        [[connectors]]
        tenant_id = "a"
        kind = "partner"
        sender_ips = ["192.0.2.0/24"]
        [[connectors]]
        tenant_id = "b"
        kind = "on_premises"
        sender_ips = ["192.0.2.7/32"]
        valid_from = "2024-01-01"
    "#;

    #[test]
    fn longest_prefix_among_entries_in_force() {
        let snapshot = DirectorySnapshot::from_toml(LPM).expect("LPM fixture loads");
        let early = snapshot.dedicated_ip(ip("10.0.5.1"), ts("2023-06-01"));
        assert_eq!(early.len(), 1);
        assert_eq!(early[0].cidr.to_string(), "10.0.5.0/24");
        // The /24 expired: the /16 answers.
        let late = snapshot.dedicated_ip(ip("10.0.5.1"), ts("2024-06-01"));
        assert_eq!(late[0].cidr.to_string(), "10.0.0.0/16");

        let before = snapshot.connectors_for_ip(ip("192.0.2.7"), ts("2023-06-01"));
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].tenant_id, "a");
        let after = snapshot.connectors_for_ip(ip("192.0.2.7"), ts("2024-06-01"));
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].tenant_id, "b");
        assert_eq!(
            snapshot.connectors_for_ip(ip("192.0.2.8"), None)[0].tenant_id,
            "a"
        );
    }

    #[test]
    fn window_bounds_are_inclusive_then_exclusive() {
        let from = parse_time("2024-01-01").ok();
        let to = parse_time("2024-02-01").ok();
        assert!(in_window(from, to, ts("2024-01-01T00:00:00Z")));
        assert!(!in_window(from, to, ts("2023-12-31T23:59:59Z")));
        assert!(!in_window(from, to, ts("2024-02-01T00:00:00Z")));
        assert!(in_window(from, to, None));
        assert!(in_window(None, None, Some(i64::MIN)));
        assert!(windows_overlap((from, to), (None, None)));
        assert!(!windows_overlap((from, to), (to, None)));
    }

    #[test]
    fn times_in_every_accepted_form() {
        let text = r#"
            [[tenants]]
            id = "a"
            [[domains]]
            tenant_id = "a"
            domain = "one.test"
            valid_from = 2024-03-01T00:00:00Z
            [[domains]]
            tenant_id = "a"
            domain = "two.test"
            valid_from = 2024-03-01
            [[domains]]
            tenant_id = "a"
            domain = "three.test"
            valid_from = "2024-03-01T01:00:00+01:00"
        "#;
        let snapshot = DirectorySnapshot::from_toml(text).expect("times parse");
        let expected = parse_time("2024-03-01T00:00:00Z").ok();
        assert!(snapshot.domains().iter().all(|d| d.valid_from == expected));

        let local = r#"
            [[tenants]]
            id = "a"
            [[domains]]
            tenant_id = "a"
            domain = "one.test"
            valid_from = 2024-03-01T00:00:00
        "#;
        let error = DirectorySnapshot::from_toml(local).expect_err("no offset is rejected");
        assert!(error.contains("offset"), "{error}");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn normalises_names_and_ranges() {
        let text = r#"
            [[tenants]]
            id = "a"
            display_name = "  A  "
            initial_domain = "A.OnMicrosoft.com."
            [[domains]]
            tenant_id = "a"
            domain = "Example.TEST."
            [[dedicated_ips]]
            tenant_id = "a"
            cidr = "10.1.2.3/8"
            [[connectors]]
            tenant_id = "a"
            kind = "partner"
            sender_ips = ["192.0.2.9/24", "192.0.2.0/24", "10.0.0.0/8"]
            tls_cert_domains = ["MX.Example.test", "mx.example.test", "*.Example.test"]
            third_party = "  "
        "#;
        let snapshot = DirectorySnapshot::from_toml(text).expect("loads");
        let tenant = &snapshot.tenants()[0];
        assert_eq!(tenant.display_name, "A");
        assert_eq!(tenant.initial_domain.as_deref(), Some("a.onmicrosoft.com"));
        assert_eq!(snapshot.domains()[0].domain, "example.test");
        assert_eq!(snapshot.dedicated_ips()[0].cidr.to_string(), "10.0.0.0/8");
        let connector = &snapshot.connectors()[0];
        let ips: Vec<String> = connector.sender_ips.iter().map(|n| n.to_string()).collect();
        assert_eq!(ips, vec!["10.0.0.0/8", "192.0.2.0/24"]);
        assert_eq!(
            connector.tls_cert_domains,
            vec!["*.example.test", "mx.example.test"]
        );
        assert_eq!(connector.third_party, None);
        assert_eq!(
            snapshot
                .connectors_for_cert("other.example.test", None)
                .len(),
            1
        );
    }

    #[test]
    fn record_order_does_not_matter() {
        let td = td();
        let mut data = td.data().clone();
        data.tenants.reverse();
        data.domains.reverse();
        data.connectors.reverse();
        data.dkim_selectors.reverse();
        let shuffled = DirectorySnapshot::new(data).expect("still valid");
        assert_eq!(shuffled, td);
    }

    #[test]
    fn json_shape_round_trips_through_serde() {
        // Serialising and reading back through TOML keeps the snapshot equal; JSON uses the
        // same serde shape.
        let td = td();
        let text = toml::to_string(&td).expect("serialises");
        let back = DirectorySnapshot::from_toml(&text).expect("reads back");
        assert_eq!(back, td);
        let via_serde: DirectorySnapshot = toml::from_str(&text).expect("deserialises");
        assert_eq!(via_serde, td);
    }

    #[test]
    fn serde_deserialisation_validates() {
        let text = r#"
            [[domains]]
            tenant_id = "ghost"
            domain = "ghost.test"
        "#;
        let error = toml::from_str::<DirectorySnapshot>(text).expect_err("unknown tenant");
        assert!(error.to_string().contains("unknown tenant id"), "{error}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = r#"
            [[tenants]]
            id = "a"
            colour = "blue"
        "#;
        let error = DirectorySnapshot::from_toml(text).expect_err("unknown field");
        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn every_problem_is_listed_with_its_position() {
        let error = invalid(
            r#"
            [[tenants]]
            id = "a"
            initial_domain = "shared.onmicrosoft.com"
            [[tenants]]
            id = "a"
            [[tenants]]
            id = "b"
            initial_domain = "shared.onmicrosoft.com"
            [[tenants]]
            id = " c"
            [[domains]]
            tenant_id = "ghost"
            domain = "ghost.test"
            [[domains]]
            tenant_id = "a"
            domain = "bad_name.test"
            [[domains]]
            tenant_id = "a"
            domain = "tld"
            [[domains]]
            tenant_id = "a"
            domain = "dated.test"
            valid_from = "2024-02-01"
            valid_to = "2024-01-01"
            [[domains]]
            tenant_id = "a"
            domain = "bücher.test"
            [[dkim_selectors]]
            tenant_id = "a"
            domain = "dated.test"
            selector = "s1"
            [[dkim_selectors]]
            tenant_id = "a"
            domain = "dated.test"
            selector = "S1"
            [[connectors]]
            tenant_id = "a"
            kind = "partner"
        "#,
        );
        let text = error.to_string();
        let entries: Vec<String> = error.issues.iter().map(|i| i.entry.to_string()).collect();
        for expected in [
            "tenants[1]",
            "tenants[2]",
            "tenants[3]",
            "domains[0]",
            "domains[1]",
            "domains[2]",
            "domains[3]",
            "domains[4]",
            "dkim_selectors[1]",
            "connectors[0]",
        ] {
            assert!(
                entries.iter().any(|e| e == expected),
                "{expected} missing in {text}"
            );
        }
        assert!(text.contains("unknown tenant id \"ghost\""), "{text}");
        assert!(text.contains("A-label"), "{text}");
        assert!(text.contains("at least 2 labels"), "{text}");
        assert!(text.contains("starts (2024-02-01"), "{text}");
        assert!(
            text.contains("neither sender_ips nor tls_cert_domains"),
            "{text}"
        );
        let duplicate = error
            .issues
            .iter()
            .find(|i| i.entry.to_string() == "dkim_selectors[1]")
            .expect("duplicate selector reported");
        assert_eq!(
            duplicate.other.map(|o| o.to_string()).as_deref(),
            Some("dkim_selectors[0]")
        );
    }

    #[test]
    fn overlapping_exclusive_connectors_are_rejected() {
        let error = invalid(
            r#"
            [[tenants]]
            id = "a"
            [[tenants]]
            id = "b"
            [[connectors]]
            tenant_id = "a"
            kind = "on_premises"
            sender_ips = ["198.51.100.0/24"]
            exclusive = true
            [[connectors]]
            tenant_id = "b"
            kind = "partner"
            sender_ips = ["198.51.100.7/32"]
        "#,
        );
        assert_eq!(error.issues.len(), 1, "{error}");
        let issue = &error.issues[0];
        assert_eq!(issue.entry.to_string(), "connectors[1]");
        assert_eq!(
            issue.other.map(|o| o.to_string()).as_deref(),
            Some("connectors[0]")
        );
        assert!(issue.message.contains("198.51.100.0/24"), "{error}");
    }

    #[test]
    fn exclusive_connectors_may_follow_each_other_in_time() {
        let text = r#"
            [[tenants]]
            id = "a"
            [[tenants]]
            id = "b"
            [[connectors]]
            tenant_id = "a"
            kind = "on_premises"
            sender_ips = ["198.51.100.0/24"]
            exclusive = true
            valid_to = "2024-01-01"
            [[connectors]]
            tenant_id = "b"
            kind = "on_premises"
            sender_ips = ["198.51.100.0/24"]
            exclusive = true
            valid_from = "2024-01-01"
            [[connectors]]
            tenant_id = "b"
            kind = "partner"
            sender_ips = ["198.51.100.0/25"]
            valid_from = "2024-02-01"
            [[connectors]]
            tenant_id = "a"
            kind = "partner"
            sender_ips = ["203.0.113.0/24"]
            [[connectors]]
            tenant_id = "b"
            kind = "partner"
            sender_ips = ["203.0.113.0/24"]
        "#;
        let snapshot = DirectorySnapshot::from_toml(text).expect("no overlap in time");
        let at_2023 = snapshot.connectors_for_ip(ip("198.51.100.200"), ts("2023-06-01"));
        assert_eq!(at_2023[0].tenant_id, "a");
        let at_2024 = snapshot.connectors_for_ip(ip("198.51.100.200"), ts("2024-06-01"));
        assert_eq!(at_2024[0].tenant_id, "b");
    }

    #[test]
    fn dedicated_ranges_of_two_tenants_must_not_overlap() {
        let error = invalid(
            r#"
            [[tenants]]
            id = "a"
            [[tenants]]
            id = "b"
            [[dedicated_ips]]
            tenant_id = "a"
            cidr = "2001:db8::/32"
            [[dedicated_ips]]
            tenant_id = "b"
            cidr = "2001:db8:1::/48"
            valid_from = "2024-01-01"
        "#,
        );
        assert_eq!(error.issues.len(), 1, "{error}");
        assert!(error.to_string().contains("dedicated range"), "{error}");
    }

    #[test]
    fn empty_directory() {
        let snapshot = DirectorySnapshot::from_toml("").expect("empty is valid");
        assert!(snapshot.is_empty());
        assert!(snapshot.by_domain("amd.com", None).is_empty());
        assert!(snapshot.connectors_for_ip(ip("10.0.0.1"), None).is_empty());
        assert_eq!(snapshot, DirectorySnapshot::default());
    }

    #[test]
    fn lookups_use_indexes_not_scans() {
        // 100k tenants, each with a domain, a selector and a connector. A scan per lookup would
        // take minutes in a debug build; the indexes answer 60k lookups well inside the bound.
        let n: usize = 100_000;
        let mut data = DirectoryData::default();
        for i in 0..n {
            let id = format!("t{i}");
            let domain = format!("d{i}.test");
            data.tenants.push(Tenant {
                id: id.clone(),
                display_name: id.clone(),
                initial_domain: Some(format!("t{i}.onmicrosoft.test")),
                shared: false,
                status: TenantStatus::Active,
            });
            data.domains.push(AcceptedDomain {
                tenant_id: id.clone(),
                domain: domain.clone(),
                include_subdomains: i % 2 == 0,
                valid_from: None,
                valid_to: None,
            });
            data.dkim_selectors.push(DkimSelector {
                tenant_id: id.clone(),
                domain,
                selector: "selector1".to_owned(),
                key_fingerprint: None,
                active_from: None,
                active_to: None,
            });
            let net: IpNet = format!("2001:db8:{:x}:{:x}::/64", i >> 16, i & 0xffff)
                .parse()
                .expect("test range");
            data.connectors.push(Connector {
                tenant_id: id,
                kind: ConnectorKind::OnPremises,
                sender_ips: vec![net],
                tls_cert_domains: Vec::new(),
                exclusive: true,
                third_party: None,
                valid_from: None,
                valid_to: None,
            });
        }
        let started = std::time::Instant::now();
        let snapshot = match DirectorySnapshot::new(data) {
            Ok(snapshot) => snapshot,
            Err(e) => panic!("{e}"),
        };
        let mut hits = 0;
        for i in (0..n).step_by(5) {
            hits += snapshot
                .by_domain(&format!("mail.d{i}.test"), Some(0))
                .len();
            hits += snapshot
                .by_dkim(&format!("d{i}.test"), "selector1", None)
                .len();
            let address = ip(&format!("2001:db8:{:x}:{:x}::25", i >> 16, i & 0xffff));
            hits += usize::from(!snapshot.connectors_for_ip(address, None).is_empty());
        }
        // Odd tenants hold their domain without subdomains, so only even ones match mail.*.
        assert_eq!(hits, n / 10 + n / 5 + n / 5);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "building and querying took {:?}",
            started.elapsed()
        );
    }
}
