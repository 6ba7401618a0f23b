//! The provider profile (specification §7.6): which networks and host names are ours.
//!
//! A profile is versioned data, loaded from TOML by the caller. Every network entry is
//! effective-dated so old mail is judged against the ranges of its time.

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

/// Which family of provider stamps the platform writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StampFamily {
    /// Exchange Online `X-MS-Exchange-CrossTenant-*` stamps.
    MicrosoftExo,
    /// No stamps.
    #[default]
    None,
}

/// The pool an egress range belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The shared pool: proves the provider, not a tenant.
    #[default]
    Normal,
    /// A relay pool for forwarded mail (the author may be outside the tenant).
    Relay,
    /// A pool for high-risk (likely spam) mail.
    HighRisk,
    /// A range dedicated to one tenant (see the directory).
    Dedicated,
}

/// One network of the profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    /// The range.
    pub cidr: IpNet,
    /// First moment the range was in use (inclusive); open when absent.
    #[serde(default)]
    pub valid_from: Option<DateTime<Utc>>,
    /// Moment the range stopped being in use (exclusive); open when absent.
    #[serde(default)]
    pub valid_to: Option<DateTime<Utc>>,
    /// Pool, for egress ranges.
    #[serde(default)]
    pub pool: Pool,
    /// Where the range comes from (documentation, inventory); for people.
    #[serde(default)]
    pub source: Option<String>,
}

/// A network given either as a bare CIDR string or as a table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum NetworkSpec {
    Bare(IpNet),
    Full(NetworkEntry),
}

fn networks<'de, D>(deserializer: D) -> Result<Vec<NetworkEntry>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let specs = Vec::<NetworkSpec>::deserialize(deserializer)?;
    Ok(specs
        .into_iter()
        .map(|s| match s {
            NetworkSpec::Bare(cidr) => NetworkEntry {
                cidr,
                valid_from: None,
                valid_to: None,
                pool: Pool::Normal,
                source: None,
            },
            NetworkSpec::Full(entry) => entry,
        })
        .collect())
}

impl NetworkEntry {
    /// Is the entry in force at `at` (seconds since the epoch)? `None` means "any time".
    pub fn in_force(&self, at: Option<i64>) -> bool {
        let Some(at) = at else { return true };
        let after_start = self.valid_from.is_none_or(|f| f.timestamp() <= at);
        let before_end = self.valid_to.is_none_or(|t| at < t.timestamp());
        after_start && before_end
    }
}

/// The provider profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name, for explanations.
    pub name: String,
    /// Networks our mail leaves from.
    #[serde(default, deserialize_with = "networks")]
    pub egress_networks: Vec<NetworkEntry>,
    /// Infrastructure-only networks inside our platform (exact and narrow).
    #[serde(default, deserialize_with = "networks")]
    pub internal_networks: Vec<NetworkEntry>,
    /// Suffixes of the by-hosts our servers write (leading dot, lower case).
    #[serde(default)]
    pub provider_host_suffixes: Vec<String>,
    /// Suffixes of the names our egress uses in HELO/PTR.
    #[serde(default)]
    pub egress_host_suffixes: Vec<String>,
    /// Suffixes of our front doors.
    #[serde(default)]
    pub ingress_host_suffixes: Vec<String>,
    /// The stamp family our platform writes.
    #[serde(default)]
    pub stamp_family: StampFamily,
    /// Let documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
    /// 2001:db8::/32) count as public addresses. For tests only.
    #[serde(default)]
    pub treat_documentation_ranges_as_public: bool,
    /// Our own `Authentication-Results` authserv-ids: such headers found inside a report were
    /// not written by us for this message and are ignored.
    #[serde(default)]
    pub own_authserv_ids: Vec<String>,
}

fn longest_match(entries: &[NetworkEntry], ip: IpAddr, at: Option<i64>) -> Option<&NetworkEntry> {
    entries
        .iter()
        .filter(|e| e.in_force(at) && e.cidr.contains(&ip))
        .max_by_key(|e| e.cidr.prefix_len())
}

fn host_matches(host: &str, suffixes: &[String]) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    suffixes.iter().any(|s| {
        let s = s.to_ascii_lowercase();
        let bare = s.trim_start_matches('.');
        host.ends_with(&s) || host == bare
    })
}

impl Profile {
    /// Parse a profile from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml_parse(text)
    }

    /// The egress entry holding `ip` at `at`, longest prefix first.
    pub fn egress(&self, ip: IpAddr, at: Option<i64>) -> Option<&NetworkEntry> {
        longest_match(&self.egress_networks, ip, at)
    }

    /// Is `ip` one of our infrastructure-internal addresses at `at`?
    pub fn is_internal(&self, ip: IpAddr, at: Option<i64>) -> bool {
        longest_match(&self.internal_networks, ip, at).is_some()
    }

    /// Did one of our servers write a line with this by-host?
    pub fn is_provider_host(&self, host: &str) -> bool {
        host_matches(host, &self.provider_host_suffixes)
    }

    /// Is this name one our egress uses?
    pub fn is_egress_host(&self, host: &str) -> bool {
        host_matches(host, &self.egress_host_suffixes)
    }
}

fn toml_parse(text: &str) -> Result<Profile, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}
