//! Reading directory files: TOML, JSON and CSV, chosen by file extension.
//!
//! TOML and JSON files have the shape of [`DirectoryData`]: top-level lists `tenants`,
//! `domains`, `dkim_selectors`, `dedicated_ips` and `connectors` of full records.
//!
//! # CSV
//!
//! One row per fact, with a header row naming the columns (any order, case-insensitive).
//! Lines starting with `#` are comments; fields are trimmed. `tenant_id` and `kind` are
//! required columns; every other column is optional and may be left out of the file.
//!
//! | column | kinds | meaning |
//! |---|---|---|
//! | `tenant_id` | all | the tenant |
//! | `display_name` | all | the tenant's name; may be repeated on every row, but must agree |
//! | `kind` | all | `tenant`, `domain`, `dkim`, `dedicated_ip` or `connector` |
//! | `value` | all | `tenant`: initial domain (optional); `domain`: the domain; `dkim`: the signing domain `d=`; `dedicated_ip`: a CIDR or address; `connector`: sender CIDRs separated by spaces or `;` |
//! | `valid_from`, `valid_to` | all but `tenant` | RFC 3339 with an offset, or a date (midnight UTC); blank is open; from inclusive, to exclusive |
//! | `include_subdomains` | `domain` | boolean |
//! | `selector` | `dkim` | the selector `s=` (required) |
//! | `key_fingerprint` | `dkim` | e.g. `sha256:<hex>` |
//! | `connector_kind` | `connector` | `on_premises` or `partner` (required) |
//! | `exclusive` | `connector` | boolean |
//! | `third_party` | `connector` | the service behind a shared connector (`codetwo`, ...) |
//! | `tls_cert_domains` | `connector` | certificate names separated by spaces or `;` |
//! | `shared` | `tenant` | boolean: a shared (consumer) tenant |
//! | `status` | `tenant` | `active`, `suspended` or `deleted` |
//!
//! Booleans are `true`/`false`, `yes`/`no`, `1`/`0`; blank is false. A column filled on a row
//! whose kind it does not apply to is an error, which catches shifted columns.
//!
//! A tenant exists as soon as a row names it. A `tenant` row is needed only to set its initial
//! domain, `shared` or `status`, or to list a tenant with no mappings. Tenants that only
//! mapping rows name are *implied*: a merge keeps their stored initial domain, `shared` and
//! `status`, and their stored display name unless a row gives one.
//!
//! Every problem is reported with its line number (the header is line 1).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use arfwire_attribution::directory::{
    AcceptedDomain, Collection, Connector, ConnectorKind, DedicatedIp, DirectoryData,
    DirectorySnapshot, DkimSelector, EntryRef, Tenant, TenantStatus, parse_time,
};
use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::error::{CsvIssue, CsvIssues, StoreError};

/// A directory file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryFormat {
    /// One row per fact (see the module documentation).
    Csv,
    /// The [`DirectoryData`] shape.
    Json,
    /// The [`DirectoryData`] shape.
    Toml,
}

impl DirectoryFormat {
    /// The format a file name's extension names (`.csv`, `.json`, `.toml`, any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "csv" => Some(DirectoryFormat::Csv),
            "json" => Some(DirectoryFormat::Json),
            "toml" => Some(DirectoryFormat::Toml),
            _ => None,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryFormat::Csv => "csv",
            DirectoryFormat::Json => "json",
            DirectoryFormat::Toml => "toml",
        }
    }
}

impl fmt::Display for DirectoryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, validated directory file, ready to import.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectoryImport {
    /// The directory the file describes.
    pub snapshot: DirectorySnapshot,
    /// Tenants the file names without giving their fields (CSV without a `tenant` row). A merge
    /// keeps their stored fields; only a non-empty display name from the file replaces the
    /// stored one.
    pub implied_tenants: BTreeSet<String>,
}

impl From<DirectorySnapshot> for DirectoryImport {
    fn from(snapshot: DirectorySnapshot) -> Self {
        DirectoryImport {
            snapshot,
            implied_tenants: BTreeSet::new(),
        }
    }
}

/// Parse a JSON directory file.
pub fn parse_json(text: &str) -> Result<DirectorySnapshot, StoreError> {
    let data: DirectoryData = serde_json::from_str(text).map_err(|e| StoreError::Parse {
        format: DirectoryFormat::Json,
        message: e.to_string(),
    })?;
    Ok(DirectorySnapshot::new(data)?)
}

/// Parse a TOML directory file.
pub fn parse_toml(text: &str) -> Result<DirectorySnapshot, StoreError> {
    let data: DirectoryData = toml::from_str(text).map_err(|e| StoreError::Parse {
        format: DirectoryFormat::Toml,
        message: e.to_string(),
    })?;
    Ok(DirectorySnapshot::new(data)?)
}

/// Parse directory text in the given format.
pub fn parse(text: &str, format: DirectoryFormat) -> Result<DirectoryImport, StoreError> {
    match format {
        DirectoryFormat::Csv => parse_csv(text),
        DirectoryFormat::Json => parse_json(text).map(DirectoryImport::from),
        DirectoryFormat::Toml => parse_toml(text).map(DirectoryImport::from),
    }
}

/// Read and parse a directory file, choosing the format by its extension.
pub fn read_file(path: &Path) -> Result<DirectoryImport, StoreError> {
    let format = DirectoryFormat::from_path(path).ok_or_else(|| StoreError::UnknownFormat {
        path: path.display().to_string(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, format)
}

// ------------------------------------------------------------------------------------------------
// CSV

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    TenantId,
    DisplayName,
    Kind,
    Value,
    ValidFrom,
    ValidTo,
    IncludeSubdomains,
    Selector,
    KeyFingerprint,
    ConnectorKind,
    Exclusive,
    ThirdParty,
    TlsCertDomains,
    Shared,
    Status,
}

const COLUMNS: &[(&str, Column)] = &[
    ("tenant_id", Column::TenantId),
    ("display_name", Column::DisplayName),
    ("kind", Column::Kind),
    ("value", Column::Value),
    ("valid_from", Column::ValidFrom),
    ("valid_to", Column::ValidTo),
    ("include_subdomains", Column::IncludeSubdomains),
    ("selector", Column::Selector),
    ("key_fingerprint", Column::KeyFingerprint),
    ("connector_kind", Column::ConnectorKind),
    ("exclusive", Column::Exclusive),
    ("third_party", Column::ThirdParty),
    ("tls_cert_domains", Column::TlsCertDomains),
    ("shared", Column::Shared),
    ("status", Column::Status),
];

impl Column {
    fn name(self) -> &'static str {
        COLUMNS
            .iter()
            .find(|(_, column)| *column == self)
            .map_or("?", |(name, _)| name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Tenant,
    Domain,
    Dkim,
    DedicatedIp,
    Connector,
}

impl RowKind {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "tenant" => Some(RowKind::Tenant),
            "domain" => Some(RowKind::Domain),
            "dkim" => Some(RowKind::Dkim),
            "dedicated_ip" => Some(RowKind::DedicatedIp),
            "connector" => Some(RowKind::Connector),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            RowKind::Tenant => "tenant",
            RowKind::Domain => "domain",
            RowKind::Dkim => "dkim",
            RowKind::DedicatedIp => "dedicated_ip",
            RowKind::Connector => "connector",
        }
    }

    /// The optional columns that mean something for this kind.
    fn applies(self, column: Column) -> bool {
        use Column as C;
        match column {
            C::TenantId | C::DisplayName | C::Kind | C::Value => true,
            C::ValidFrom | C::ValidTo => self != RowKind::Tenant,
            C::IncludeSubdomains => self == RowKind::Domain,
            C::Selector | C::KeyFingerprint => self == RowKind::Dkim,
            C::ConnectorKind | C::Exclusive | C::ThirdParty | C::TlsCertDomains => {
                self == RowKind::Connector
            }
            C::Shared | C::Status => self == RowKind::Tenant,
        }
    }
}

/// One CSV record, by column.
struct Row<'a> {
    record: &'a csv::StringRecord,
    positions: &'a HashMap<Column, usize>,
    line: u64,
}

impl Row<'_> {
    fn get(&self, column: Column) -> &str {
        self.positions
            .get(&column)
            .and_then(|&position| self.record.get(position))
            .unwrap_or("")
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "0" | "n" | "f" => Some(false),
        "true" | "yes" | "1" | "y" | "t" => Some(true),
        _ => None,
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not a CIDR range or an IP address"))
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == ';')
        .filter(|item| !item.is_empty())
}

/// Builds [`DirectoryData`] from rows, remembering the line of every record.
#[derive(Default)]
struct CsvBuilder {
    data: DirectoryData,
    tenant_lines: Vec<u64>,
    domain_lines: Vec<u64>,
    dkim_lines: Vec<u64>,
    dedicated_lines: Vec<u64>,
    connector_lines: Vec<u64>,
    tenant_positions: HashMap<String, usize>,
    explicit_tenants: HashMap<String, u64>,
    display_name_lines: HashMap<String, u64>,
    issues: Vec<CsvIssue>,
}

impl CsvBuilder {
    fn issue(&mut self, line: u64, message: impl Into<String>) {
        self.issues.push(CsvIssue {
            line,
            message: message.into(),
        });
    }

    /// The tenant's position, creating an implied tenant on first mention.
    fn tenant(&mut self, id: &str, display_name: &str, line: u64) -> usize {
        let position = match self.tenant_positions.get(id) {
            Some(&position) => position,
            None => {
                let position = self.data.tenants.len();
                self.data.tenants.push(Tenant {
                    id: id.to_owned(),
                    display_name: String::new(),
                    initial_domain: None,
                    shared: false,
                    status: TenantStatus::Active,
                });
                self.tenant_lines.push(line);
                self.tenant_positions.insert(id.to_owned(), position);
                position
            }
        };
        if !display_name.is_empty() {
            let earlier = self
                .data
                .tenants
                .get(position)
                .map(|t| t.display_name.clone())
                .unwrap_or_default();
            if earlier.is_empty() {
                if let Some(tenant) = self.data.tenants.get_mut(position) {
                    tenant.display_name = display_name.to_owned();
                }
                self.display_name_lines.insert(id.to_owned(), line);
            } else if earlier != display_name {
                let first = self.display_name_lines.get(id).copied().unwrap_or(0);
                self.issue(
                    line,
                    format!(
                        "display_name {display_name:?} differs from {earlier:?} given for tenant {id:?} on line {first}"
                    ),
                );
            }
        }
        position
    }

    fn time(&mut self, row: &Row<'_>, column: Column) -> Result<Option<DateTime<Utc>>, ()> {
        let text = row.get(column);
        if text.is_empty() {
            return Ok(None);
        }
        parse_time(text).map(Some).map_err(|message| {
            self.issue(row.line, format!("{}: {message}", column.name()));
        })
    }

    fn boolean(&mut self, row: &Row<'_>, column: Column) -> Result<bool, ()> {
        let text = row.get(column);
        parse_bool(text).ok_or_else(|| {
            self.issue(
                row.line,
                format!("{}: {text:?} is not a boolean (true/false)", column.name()),
            );
        })
    }

    fn required<'r>(
        &mut self,
        row: &'r Row<'_>,
        column: Column,
        kind: RowKind,
    ) -> Result<&'r str, ()> {
        let text = row.get(column);
        if text.is_empty() {
            self.issue(
                row.line,
                format!("{} is required on a {} row", column.name(), kind.name()),
            );
            return Err(());
        }
        Ok(text)
    }

    fn row(&mut self, row: &Row<'_>) {
        let line = row.line;
        let tenant_id = row.get(Column::TenantId);
        if tenant_id.is_empty() {
            self.issue(line, "tenant_id is empty");
            return;
        }
        let kind_text = row.get(Column::Kind);
        let Some(kind) = RowKind::parse(kind_text) else {
            self.issue(
                line,
                format!(
                    "unknown kind {kind_text:?}: expected tenant, domain, dkim, dedicated_ip or connector"
                ),
            );
            return;
        };
        let mut misplaced = false;
        for &(name, column) in COLUMNS {
            if !kind.applies(column) && !row.get(column).is_empty() {
                self.issue(
                    line,
                    format!("column {name} does not apply to a {} row", kind.name()),
                );
                misplaced = true;
            }
        }
        if misplaced {
            return;
        }
        let position = self.tenant(tenant_id, row.get(Column::DisplayName), line);
        // Each arm reports its own problems and adds nothing when one is found.
        let _ = match kind {
            RowKind::Tenant => self.tenant_row(row, tenant_id, position),
            RowKind::Domain => self.domain_row(row, tenant_id),
            RowKind::Dkim => self.dkim_row(row, tenant_id),
            RowKind::DedicatedIp => self.dedicated_row(row, tenant_id),
            RowKind::Connector => self.connector_row(row, tenant_id),
        };
    }

    fn tenant_row(&mut self, row: &Row<'_>, tenant_id: &str, position: usize) -> Result<(), ()> {
        if let Some(first) = self.explicit_tenants.get(tenant_id) {
            let message = format!("tenant {tenant_id:?} already has a tenant row on line {first}");
            self.issue(row.line, message);
            return Err(());
        }
        let shared = self.boolean(row, Column::Shared)?;
        let status_text = row.get(Column::Status);
        let status = if status_text.is_empty() {
            TenantStatus::Active
        } else {
            TenantStatus::parse(status_text).ok_or_else(|| {
                self.issue(
                    row.line,
                    format!("status {status_text:?} is not active, suspended or deleted"),
                );
            })?
        };
        let initial = row.get(Column::Value);
        if let Some(tenant) = self.data.tenants.get_mut(position) {
            tenant.initial_domain = (!initial.is_empty()).then(|| initial.to_owned());
            tenant.shared = shared;
            tenant.status = status;
        }
        if let Some(line) = self.tenant_lines.get_mut(position) {
            *line = row.line;
        }
        self.explicit_tenants.insert(tenant_id.to_owned(), row.line);
        Ok(())
    }

    fn domain_row(&mut self, row: &Row<'_>, tenant_id: &str) -> Result<(), ()> {
        let domain = self
            .required(row, Column::Value, RowKind::Domain)?
            .to_owned();
        let include_subdomains = self.boolean(row, Column::IncludeSubdomains)?;
        let valid_from = self.time(row, Column::ValidFrom)?;
        let valid_to = self.time(row, Column::ValidTo)?;
        self.data.domains.push(AcceptedDomain {
            tenant_id: tenant_id.to_owned(),
            domain,
            include_subdomains,
            valid_from,
            valid_to,
        });
        self.domain_lines.push(row.line);
        Ok(())
    }

    fn dkim_row(&mut self, row: &Row<'_>, tenant_id: &str) -> Result<(), ()> {
        let domain = self.required(row, Column::Value, RowKind::Dkim)?.to_owned();
        let selector = self
            .required(row, Column::Selector, RowKind::Dkim)?
            .to_owned();
        let fingerprint = row.get(Column::KeyFingerprint);
        let active_from = self.time(row, Column::ValidFrom)?;
        let active_to = self.time(row, Column::ValidTo)?;
        self.data.dkim_selectors.push(DkimSelector {
            tenant_id: tenant_id.to_owned(),
            domain,
            selector,
            key_fingerprint: (!fingerprint.is_empty()).then(|| fingerprint.to_owned()),
            active_from,
            active_to,
        });
        self.dkim_lines.push(row.line);
        Ok(())
    }

    fn dedicated_row(&mut self, row: &Row<'_>, tenant_id: &str) -> Result<(), ()> {
        let text = self.required(row, Column::Value, RowKind::DedicatedIp)?;
        let cidr = parse_net(text).map_err(|message| self.issue(row.line, message))?;
        let valid_from = self.time(row, Column::ValidFrom)?;
        let valid_to = self.time(row, Column::ValidTo)?;
        self.data.dedicated_ips.push(DedicatedIp {
            tenant_id: tenant_id.to_owned(),
            cidr,
            valid_from,
            valid_to,
        });
        self.dedicated_lines.push(row.line);
        Ok(())
    }

    fn connector_row(&mut self, row: &Row<'_>, tenant_id: &str) -> Result<(), ()> {
        let kind_text = self.required(row, Column::ConnectorKind, RowKind::Connector)?;
        let kind = ConnectorKind::parse(kind_text).ok_or_else(|| {
            self.issue(
                row.line,
                format!("connector_kind {kind_text:?} is not on_premises or partner"),
            );
        })?;
        let mut sender_ips = Vec::new();
        let mut bad = false;
        for item in split_list(row.get(Column::Value)) {
            match parse_net(item) {
                Ok(net) => sender_ips.push(net),
                Err(message) => {
                    self.issue(row.line, message);
                    bad = true;
                }
            }
        }
        let tls_cert_domains: Vec<String> = split_list(row.get(Column::TlsCertDomains))
            .map(str::to_owned)
            .collect();
        let exclusive = self.boolean(row, Column::Exclusive)?;
        let third_party = row.get(Column::ThirdParty);
        let valid_from = self.time(row, Column::ValidFrom)?;
        let valid_to = self.time(row, Column::ValidTo)?;
        if bad {
            return Err(());
        }
        self.data.connectors.push(Connector {
            tenant_id: tenant_id.to_owned(),
            kind,
            sender_ips,
            tls_cert_domains,
            exclusive,
            third_party: (!third_party.is_empty()).then(|| third_party.to_owned()),
            valid_from,
            valid_to,
        });
        self.connector_lines.push(row.line);
        Ok(())
    }

    fn line_of(&self, entry: EntryRef) -> u64 {
        let lines = match entry.collection {
            Collection::Tenants => &self.tenant_lines,
            Collection::Domains => &self.domain_lines,
            Collection::DkimSelectors => &self.dkim_lines,
            Collection::DedicatedIps => &self.dedicated_lines,
            Collection::Connectors => &self.connector_lines,
        };
        lines.get(entry.index).copied().unwrap_or(0)
    }
}

/// Parse a CSV directory file (format in the module documentation). Every problem found is
/// reported, each with its line.
pub fn parse_csv(text: &str) -> Result<DirectoryImport, StoreError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => {
            let line = e.position().map_or(1, |p| p.line());
            return Err(StoreError::Csv(CsvIssues(vec![CsvIssue {
                line,
                message: format!("cannot read the header row: {e}"),
            }])));
        }
    };
    let header_line = headers.position().map_or(1, |p| p.line());
    let mut positions: HashMap<Column, usize> = HashMap::new();
    let mut header_issues = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (position, name) in headers.iter().enumerate() {
        let name = name
            .trim()
            .trim_start_matches('\u{feff}')
            .to_ascii_lowercase();
        if !seen.insert(name.clone()) {
            header_issues.push(format!("column {name:?} appears twice"));
            continue;
        }
        match COLUMNS.iter().find(|(known, _)| *known == name) {
            Some(&(_, column)) => {
                positions.insert(column, position);
            }
            None => header_issues.push(format!("unknown column {name:?}")),
        }
    }
    for required in [Column::TenantId, Column::Kind] {
        if !positions.contains_key(&required) {
            header_issues.push(format!("the header has no {} column", required.name()));
        }
    }
    if !header_issues.is_empty() {
        let issues = header_issues
            .into_iter()
            .map(|message| CsvIssue {
                line: header_line,
                message,
            })
            .collect();
        return Err(StoreError::Csv(CsvIssues(issues)));
    }

    let mut builder = CsvBuilder::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                let row = Row {
                    record: &record,
                    positions: &positions,
                    line,
                };
                builder.row(&row);
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("has {len} fields, the header has {expected_len}"),
                    _ => e.to_string(),
                };
                builder.issue(line, message);
                if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                    // Invalid UTF-8 or an IO error: the reader cannot resynchronise.
                    break;
                }
            }
        }
    }

    let implied_tenants: BTreeSet<String> = builder
        .tenant_positions
        .keys()
        .filter(|id| !builder.explicit_tenants.contains_key(*id))
        .cloned()
        .collect();
    let data = std::mem::take(&mut builder.data);
    match DirectorySnapshot::new(data) {
        Ok(snapshot) if builder.issues.is_empty() => Ok(DirectoryImport {
            snapshot,
            implied_tenants,
        }),
        Ok(_) => {
            builder.issues.sort_by_key(|issue| issue.line);
            Err(StoreError::Csv(CsvIssues(builder.issues)))
        }
        Err(invalid) => {
            for issue in &invalid.issues {
                let line = builder.line_of(issue.entry);
                let mut message = issue.message.clone();
                if let Some(other) = issue.other {
                    message.push_str(&format!(
                        " (conflicts with line {})",
                        builder.line_of(other)
                    ));
                }
                builder.issue(line, message);
            }
            builder.issues.sort_by_key(|issue| issue.line);
            Err(StoreError::Csv(CsvIssues(builder.issues)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_issues(text: &str) -> Vec<CsvIssue> {
        match parse_csv(text) {
            Err(StoreError::Csv(CsvIssues(issues))) => issues,
            other => panic!("expected CSV issues, got {other:?}"),
        }
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(
            DirectoryFormat::from_path(Path::new("a/tenants.CSV")),
            Some(DirectoryFormat::Csv)
        );
        assert_eq!(
            DirectoryFormat::from_path(Path::new("t.json")),
            Some(DirectoryFormat::Json)
        );
        assert_eq!(
            DirectoryFormat::from_path(Path::new("t.toml")),
            Some(DirectoryFormat::Toml)
        );
        assert_eq!(DirectoryFormat::from_path(Path::new("t.yaml")), None);
        assert_eq!(DirectoryFormat::from_path(Path::new("tenants")), None);
        assert!(matches!(
            read_file(Path::new("tenants.xlsx")),
            Err(StoreError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn csv_rows_build_a_directory() {
        let text = "\u{feff}tenant_id,display_name,kind,value,valid_from,valid_to,selector,connector_kind,exclusive,tls_cert_domains,shared\n\
            # a comment line\n\
            t1,One,tenant,one.onmicrosoft.test,,,,,,,\n\
            t1,One,domain,One.test,2024-01-01,,,,,,\n\
            t1,,dkim,one.test,,,selector1,,,,\n\
            t2,Two,dedicated_ip,192.0.2.9,,,,,,,\n\
            t2,,connector,198.51.100.0/24;2001:db8::/32,,,,partner,yes,mx.two.test,\n\
            \n\
            t3,Consumer,tenant,,,,,,,,true\n";
        let import = parse_csv(text).expect("valid CSV");
        let snapshot = &import.snapshot;
        assert_eq!(snapshot.tenants().len(), 3);
        assert_eq!(
            import.implied_tenants.iter().collect::<Vec<_>>(),
            vec!["t2"]
        );
        assert_eq!(
            snapshot
                .by_initial_domain("one.onmicrosoft.test")
                .map(|t| t.id.as_str()),
            Some("t1")
        );
        assert_eq!(snapshot.domains()[0].domain, "one.test");
        assert!(snapshot.domains()[0].valid_from.is_some());
        assert_eq!(snapshot.by_dkim("one.test", "selector1", None).len(), 1);
        assert_eq!(snapshot.dedicated_ips()[0].cidr.to_string(), "192.0.2.9/32");
        let connector = &snapshot.connectors()[0];
        assert_eq!(connector.sender_ips.len(), 2);
        assert!(connector.exclusive);
        assert_eq!(connector.tls_cert_domains, vec!["mx.two.test"]);
        assert!(snapshot.is_shared("t3"));
        assert_eq!(
            snapshot.tenant("t2").map(|t| t.display_name.as_str()),
            Some("Two")
        );
    }

    #[test]
    fn csv_problems_name_their_lines() {
        let text = "tenant_id,display_name,kind,value,valid_from,selector,include_subdomains\n\
            t1,One,domain,one.test,,,\n\
            t1,Uno,domain,zero.test,,,\n\
            t1,,domian,x.test,,,\n\
            t1,,domain,two.test,someday,,\n\
            t1,,domain,three.test,,s1,\n\
            ,,domain,four.test,,,\n\
            t1,,dkim,one.test,,,\n\
            t1,,domain,five.test,,,maybe\n\
            t1,,domain,six.test\n\
            t1,,domain,one.test,,,\n";
        let issues = csv_issues(text);
        let lines: Vec<u64> = issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 9, 10, 11], "{issues:?}");
        let text_of = |line: u64| {
            issues
                .iter()
                .find(|i| i.line == line)
                .map(|i| i.message.clone())
                .unwrap_or_default()
        };
        assert!(text_of(3).contains("differs from \"One\" given for tenant \"t1\" on line 2"));
        assert!(text_of(4).contains("unknown kind \"domian\""));
        assert!(text_of(5).contains("valid_from"));
        assert!(text_of(6).contains("selector does not apply"));
        assert!(text_of(7).contains("tenant_id is empty"));
        assert!(text_of(8).contains("selector is required"));
        assert!(text_of(9).contains("not a boolean"));
        assert!(text_of(10).contains("has 4 fields"));
        // A duplicate found by directory validation still points at its line and the first.
        assert!(
            text_of(11).contains("conflicts with line 2"),
            "{}",
            text_of(11)
        );
    }

    #[test]
    fn csv_header_problems() {
        let issues = csv_issues("tenant,kind,value\n");
        assert!(issues.iter().all(|i| i.line == 1));
        assert!(
            issues
                .iter()
                .any(|i| i.message.contains("unknown column \"tenant\""))
        );
        assert!(
            issues
                .iter()
                .any(|i| i.message.contains("no tenant_id column"))
        );
        let issues = csv_issues("tenant_id,kind,kind\n");
        assert!(issues[0].message.contains("appears twice"));
    }

    #[test]
    fn csv_validation_issues_map_to_lines() {
        let text = "tenant_id,kind,value,connector_kind,exclusive\n\
            a,connector,198.51.100.0/24,on_premises,true\n\
            b,connector,198.51.100.7,partner,false\n";
        let issues = csv_issues(text);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].line, 3);
        assert!(issues[0].message.contains("conflicts with line 2"));
    }

    #[test]
    fn duplicate_tenant_rows() {
        let issues = csv_issues("tenant_id,kind\nt1,tenant\nt1,tenant\n");
        assert_eq!(issues[0].line, 3);
        assert!(
            issues[0]
                .message
                .contains("already has a tenant row on line 2")
        );
    }

    #[test]
    fn json_and_toml_errors_say_which_format() {
        let error = parse_json("{\"tenants\": 5}").expect_err("bad JSON");
        assert!(
            error
                .to_string()
                .starts_with("json directory does not parse"),
            "{error}"
        );
        let error = parse_toml("tenants = 5").expect_err("bad TOML");
        assert!(
            error
                .to_string()
                .starts_with("toml directory does not parse"),
            "{error}"
        );
        let error = parse_json("{\"domains\": [{\"tenant_id\": \"x\", \"domain\": \"x.test\"}]}")
            .expect_err("unknown tenant");
        assert!(matches!(error, StoreError::InvalidDirectory(_)), "{error}");
    }
}
