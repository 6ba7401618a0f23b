//! The PostgreSQL store: schema, load and import of the tenant directory.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::path::Path;
use std::time::Duration;

use arfwire_attribution::directory::{
    AcceptedDomain, Connector, ConnectorKind, DedicatedIp, DirectoryData, DirectorySnapshot,
    DkimSelector, Tenant, TenantStatus, connector_key, dedicated_key, dkim_key, domain_key,
};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

use crate::error::StoreError;
use crate::import::{self, DirectoryImport};

/// The schema migrations (`migrations/` of this crate), embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How an import treats what is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImportMode {
    /// The import becomes the whole directory: stored tenants and mappings it does not list
    /// are deleted.
    Replace,
    /// Tenants and mappings are inserted or updated by their natural keys; nothing is deleted.
    Merge,
}

impl ImportMode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::Replace => "replace",
            ImportMode::Merge => "merge",
        }
    }
}

/// Row counts for one table of an import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// New rows.
    pub inserted: usize,
    /// Rows whose fields changed.
    pub updated: usize,
    /// Rows removed (replace only).
    pub deleted: usize,
    /// Rows the import listed that were already stored as given.
    pub unchanged: usize,
}

impl ChangeCounts {
    /// Did anything change?
    pub fn changed(&self) -> bool {
        self.inserted + self.updated + self.deleted > 0
    }
}

impl fmt::Display for ChangeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "+{} ~{} -{} ={}",
            self.inserted, self.updated, self.deleted, self.unchanged
        )
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The mode used.
    pub mode: ImportMode,
    /// `tenants`.
    pub tenants: ChangeCounts,
    /// `tenant_domains`.
    pub domains: ChangeCounts,
    /// `tenant_dkim_selectors`.
    pub dkim_selectors: ChangeCounts,
    /// `tenant_dedicated_ips`.
    pub dedicated_ips: ChangeCounts,
    /// `tenant_connectors`.
    pub connectors: ChangeCounts,
    /// `directory_version` before the import.
    pub version_before: i64,
    /// `directory_version` after it (equal to `version_before` when nothing changed).
    pub version_after: i64,
}

impl ImportReport {
    /// Did the import change the stored directory?
    pub fn changed(&self) -> bool {
        [
            self.tenants,
            self.domains,
            self.dkim_selectors,
            self.dedicated_ips,
            self.connectors,
        ]
        .iter()
        .any(ChangeCounts::changed)
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} import: tenants {}, domains {}, dkim selectors {}, dedicated ips {}, connectors {}; directory version {} -> {}",
            self.mode.as_str(),
            self.tenants,
            self.domains,
            self.dkim_selectors,
            self.dedicated_ips,
            self.connectors,
            self.version_before,
            self.version_after
        )
    }
}

/// The tenant directory in PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

/// Stored rows, with their database ids.
#[derive(Debug, Default)]
struct Stored {
    tenants: Vec<Tenant>,
    domains: Vec<(i64, AcceptedDomain)>,
    dkim_selectors: Vec<(i64, DkimSelector)>,
    dedicated_ips: Vec<(i64, DedicatedIp)>,
    connectors: Vec<(i64, Connector)>,
}

impl Stored {
    fn data(&self) -> DirectoryData {
        fn records<T: Clone>(rows: &[(i64, T)]) -> Vec<T> {
            rows.iter().map(|(_, record)| record.clone()).collect()
        }
        DirectoryData {
            tenants: self.tenants.clone(),
            domains: records(&self.domains),
            dkim_selectors: records(&self.dkim_selectors),
            dedicated_ips: records(&self.dedicated_ips),
            connectors: records(&self.connectors),
        }
    }
}

type TenantRow = (String, String, Option<String>, bool, String);
type DomainRow = (
    i64,
    String,
    String,
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);
type DkimRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);
type DedicatedRow = (
    i64,
    String,
    IpNet,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);
type ConnectorRow = (
    i64,
    String,
    String,
    Vec<IpNet>,
    Vec<String>,
    bool,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

async fn read_version(conn: &mut PgConnection) -> Result<i64, StoreError> {
    let (version,): (i64,) = sqlx::query_as("SELECT version FROM directory_version")
        .fetch_one(&mut *conn)
        .await?;
    Ok(version)
}

async fn read_stored(conn: &mut PgConnection) -> Result<Stored, StoreError> {
    let tenant_rows: Vec<TenantRow> = sqlx::query_as(
        "SELECT id, display_name, initial_domain, shared, status FROM tenants ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut tenants = Vec::with_capacity(tenant_rows.len());
    for (id, display_name, initial_domain, shared, status_text) in tenant_rows {
        let status = TenantStatus::parse(&status_text).ok_or_else(|| {
            StoreError::Corrupt(format!("tenant {id:?} has status {status_text:?}"))
        })?;
        tenants.push(Tenant {
            id,
            display_name,
            initial_domain,
            shared,
            status,
        });
    }

    let domain_rows: Vec<DomainRow> = sqlx::query_as(
        "SELECT id, tenant_id, domain, include_subdomains, valid_from, valid_to \
         FROM tenant_domains ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let domains = domain_rows
        .into_iter()
        .map(
            |(id, tenant_id, domain, include_subdomains, valid_from, valid_to)| {
                let record = AcceptedDomain {
                    tenant_id,
                    domain,
                    include_subdomains,
                    valid_from,
                    valid_to,
                };
                (id, record)
            },
        )
        .collect();

    let dkim_rows: Vec<DkimRow> = sqlx::query_as(
        "SELECT id, tenant_id, domain, selector, key_fingerprint, active_from, active_to \
         FROM tenant_dkim_selectors ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let dkim_selectors = dkim_rows
        .into_iter()
        .map(
            |(id, tenant_id, domain, selector, key_fingerprint, active_from, active_to)| {
                let record = DkimSelector {
                    tenant_id,
                    domain,
                    selector,
                    key_fingerprint,
                    active_from,
                    active_to,
                };
                (id, record)
            },
        )
        .collect();

    let dedicated_rows: Vec<DedicatedRow> = sqlx::query_as(
        "SELECT id, tenant_id, cidr, valid_from, valid_to FROM tenant_dedicated_ips ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let dedicated_ips = dedicated_rows
        .into_iter()
        .map(|(id, tenant_id, cidr, valid_from, valid_to)| {
            let record = DedicatedIp {
                tenant_id,
                cidr,
                valid_from,
                valid_to,
            };
            (id, record)
        })
        .collect();

    let connector_rows: Vec<ConnectorRow> = sqlx::query_as(
        "SELECT id, tenant_id, kind, sender_ips, tls_cert_domains, exclusive, third_party, \
                valid_from, valid_to \
         FROM tenant_connectors ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut connectors = Vec::with_capacity(connector_rows.len());
    for row in connector_rows {
        let (id, tenant_id, kind_text, mut sender_ips, mut tls, exclusive, third_party, from, to) =
            row;
        let kind = ConnectorKind::parse(&kind_text)
            .ok_or_else(|| StoreError::Corrupt(format!("connector {id} has kind {kind_text:?}")))?;
        // Rows written by hand may hold the lists in any order; the snapshot keeps them sorted.
        sender_ips.sort();
        sender_ips.dedup();
        tls.sort();
        tls.dedup();
        let record = Connector {
            tenant_id,
            kind,
            sender_ips,
            tls_cert_domains: tls,
            exclusive,
            third_party,
            valid_from: from,
            valid_to: to,
        };
        connectors.push((id, record));
    }

    Ok(Stored {
        tenants,
        domains,
        dkim_selectors,
        dedicated_ips,
        connectors,
    })
}

/// The changes to one mapping table.
struct MappingPlan<T> {
    inserts: Vec<T>,
    updates: Vec<(i64, T)>,
    deletes: Vec<i64>,
    counts: ChangeCounts,
    /// The table's records after the import.
    result: Vec<T>,
}

fn plan_mappings<T, K>(
    stored: &[(i64, T)],
    imported: &[T],
    key: impl Fn(&T) -> K,
    mode: ImportMode,
) -> MappingPlan<T>
where
    T: Clone + PartialEq,
    K: Hash + Eq,
{
    let by_key: HashMap<K, (i64, &T)> = stored
        .iter()
        .map(|(id, record)| (key(record), (*id, record)))
        .collect();
    let mut plan = MappingPlan {
        inserts: Vec::new(),
        updates: Vec::new(),
        deletes: Vec::new(),
        counts: ChangeCounts::default(),
        result: Vec::new(),
    };
    let mut kept: HashSet<i64> = HashSet::new();
    for record in imported {
        match by_key.get(&key(record)) {
            Some(&(id, current)) => {
                kept.insert(id);
                if current == record {
                    plan.counts.unchanged += 1;
                } else {
                    plan.counts.updated += 1;
                    plan.updates.push((id, record.clone()));
                }
            }
            None => {
                plan.counts.inserted += 1;
                plan.inserts.push(record.clone());
            }
        }
        plan.result.push(record.clone());
    }
    for (id, record) in stored {
        if kept.contains(id) {
            continue;
        }
        match mode {
            ImportMode::Replace => {
                plan.counts.deleted += 1;
                plan.deletes.push(*id);
            }
            ImportMode::Merge => plan.result.push(record.clone()),
        }
    }
    plan
}

/// The changes to `tenants`.
struct TenantPlan {
    inserts: Vec<Tenant>,
    updates: Vec<Tenant>,
    deletes: Vec<String>,
    /// Tenants whose initial domain changes: cleared first so domains can swap owners.
    clear_initial: Vec<String>,
    counts: ChangeCounts,
    result: Vec<Tenant>,
}

fn plan_tenants(stored: &[Tenant], import: &DirectoryImport, mode: ImportMode) -> TenantPlan {
    let by_id: HashMap<&str, &Tenant> = stored.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut plan = TenantPlan {
        inserts: Vec::new(),
        updates: Vec::new(),
        deletes: Vec::new(),
        clear_initial: Vec::new(),
        counts: ChangeCounts::default(),
        result: Vec::new(),
    };
    let mut listed: HashSet<&str> = HashSet::new();
    for tenant in import.snapshot.tenants() {
        listed.insert(tenant.id.as_str());
        let current = by_id.get(tenant.id.as_str()).copied();
        let desired = match current {
            // The file says nothing about an implied tenant's fields but, perhaps, its name.
            Some(current) if import.implied_tenants.contains(&tenant.id) => {
                let mut kept = current.clone();
                if !tenant.display_name.is_empty() {
                    kept.display_name = tenant.display_name.clone();
                }
                kept
            }
            _ => tenant.clone(),
        };
        match current {
            Some(current) if *current == desired => plan.counts.unchanged += 1,
            Some(current) => {
                if current.initial_domain.is_some()
                    && current.initial_domain != desired.initial_domain
                {
                    plan.clear_initial.push(desired.id.clone());
                }
                plan.counts.updated += 1;
                plan.updates.push(desired.clone());
            }
            None => {
                plan.counts.inserted += 1;
                plan.inserts.push(desired.clone());
            }
        }
        plan.result.push(desired);
    }
    for tenant in stored {
        if listed.contains(tenant.id.as_str()) {
            continue;
        }
        match mode {
            ImportMode::Replace => {
                plan.counts.deleted += 1;
                plan.deletes.push(tenant.id.clone());
            }
            ImportMode::Merge => plan.result.push(tenant.clone()),
        }
    }
    plan
}

fn join_nets(nets: &[IpNet]) -> String {
    nets.iter()
        .map(IpNet::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn delete_ids(
    conn: &mut PgConnection,
    sql: &'static str,
    rows: &[i64],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(sql)
        .bind(rows.to_vec())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn write_tenants(conn: &mut PgConnection, plan: &TenantPlan) -> Result<(), StoreError> {
    if !plan.deletes.is_empty() {
        sqlx::query("DELETE FROM tenants WHERE id = ANY($1::text[])")
            .bind(plan.deletes.clone())
            .execute(&mut *conn)
            .await?;
    }
    if !plan.clear_initial.is_empty() {
        sqlx::query("UPDATE tenants SET initial_domain = NULL WHERE id = ANY($1::text[])")
            .bind(plan.clear_initial.clone())
            .execute(&mut *conn)
            .await?;
    }
    for (sql, rows) in [
        (
            "UPDATE tenants AS t \
             SET display_name = u.display_name, initial_domain = u.initial_domain, \
                 shared = u.shared, status = u.status, updated_at = now() \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[]) \
                  AS u(id, display_name, initial_domain, shared, status) \
             WHERE t.id = u.id",
            &plan.updates,
        ),
        (
            "INSERT INTO tenants (id, display_name, initial_domain, shared, status) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[])",
            &plan.inserts,
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        sqlx::query(sql)
            .bind(rows.iter().map(|t| t.id.clone()).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|t| t.display_name.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|t| t.initial_domain.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|t| t.shared).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|t| t.status.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn write_domains(
    conn: &mut PgConnection,
    plan: &MappingPlan<AcceptedDomain>,
) -> Result<(), StoreError> {
    if !plan.updates.is_empty() {
        let rows = &plan.updates;
        sqlx::query(
            "UPDATE tenant_domains AS d \
             SET include_subdomains = u.include_subdomains, valid_to = u.valid_to \
             FROM UNNEST($1::bigint[], $2::bool[], $3::timestamptz[]) \
                  AS u(id, include_subdomains, valid_to) \
             WHERE d.id = u.id",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(_, d)| d.include_subdomains)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(_, d)| d.valid_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "INSERT INTO tenant_domains (tenant_id, domain, include_subdomains, valid_from, valid_to) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bool[], $4::timestamptz[], $5::timestamptz[])",
        )
        .bind(rows.iter().map(|d| d.tenant_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.domain.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.include_subdomains).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.valid_from).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.valid_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_dkim(
    conn: &mut PgConnection,
    plan: &MappingPlan<DkimSelector>,
) -> Result<(), StoreError> {
    if !plan.updates.is_empty() {
        let rows = &plan.updates;
        sqlx::query(
            "UPDATE tenant_dkim_selectors AS d \
             SET key_fingerprint = u.key_fingerprint, active_to = u.active_to \
             FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[]) \
                  AS u(id, key_fingerprint, active_to) \
             WHERE d.id = u.id",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(_, d)| d.key_fingerprint.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(_, d)| d.active_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "INSERT INTO tenant_dkim_selectors \
                 (tenant_id, domain, selector, key_fingerprint, active_from, active_to) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], \
                                  $5::timestamptz[], $6::timestamptz[])",
        )
        .bind(rows.iter().map(|d| d.tenant_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.domain.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.selector.clone()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|d| d.key_fingerprint.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|d| d.active_from).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.active_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_dedicated(
    conn: &mut PgConnection,
    plan: &MappingPlan<DedicatedIp>,
) -> Result<(), StoreError> {
    if !plan.updates.is_empty() {
        let rows = &plan.updates;
        sqlx::query(
            "UPDATE tenant_dedicated_ips AS d SET valid_to = u.valid_to \
             FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(id, valid_to) \
             WHERE d.id = u.id",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, d)| d.valid_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "INSERT INTO tenant_dedicated_ips (tenant_id, cidr, valid_from, valid_to) \
             SELECT u.tenant_id, u.cidr::cidr, u.valid_from, u.valid_to \
             FROM UNNEST($1::text[], $2::inet[], $3::timestamptz[], $4::timestamptz[]) \
                  AS u(tenant_id, cidr, valid_from, valid_to)",
        )
        .bind(rows.iter().map(|d| d.tenant_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.cidr).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.valid_from).collect::<Vec<_>>())
        .bind(rows.iter().map(|d| d.valid_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_connectors(
    conn: &mut PgConnection,
    plan: &MappingPlan<Connector>,
) -> Result<(), StoreError> {
    // A connector's lists travel as space-separated text (arrays of arrays cannot be unnested
    // row by row); neither CIDRs nor certificate names contain spaces.
    if !plan.updates.is_empty() {
        let rows = &plan.updates;
        sqlx::query(
            "UPDATE tenant_connectors AS c \
             SET sender_ips = string_to_array(u.sender_ips, ' ')::cidr[], \
                 tls_cert_domains = string_to_array(u.tls_cert_domains, ' '), \
                 exclusive = u.exclusive, third_party = u.third_party, valid_to = u.valid_to \
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bool[], $5::text[], \
                         $6::timestamptz[]) \
                  AS u(id, sender_ips, tls_cert_domains, exclusive, third_party, valid_to) \
             WHERE c.id = u.id",
        )
        .bind(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(_, c)| join_nets(&c.sender_ips))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|(_, c)| c.tls_cert_domains.join(" "))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(_, c)| c.exclusive).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|(_, c)| c.third_party.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|(_, c)| c.valid_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !plan.inserts.is_empty() {
        let rows = &plan.inserts;
        sqlx::query(
            "INSERT INTO tenant_connectors \
                 (tenant_id, kind, sender_ips, tls_cert_domains, exclusive, third_party, \
                  valid_from, valid_to) \
             SELECT u.tenant_id, u.kind, string_to_array(u.sender_ips, ' ')::cidr[], \
                    string_to_array(u.tls_cert_domains, ' '), u.exclusive, u.third_party, \
                    u.valid_from, u.valid_to \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], \
                         $6::text[], $7::timestamptz[], $8::timestamptz[]) \
                  AS u(tenant_id, kind, sender_ips, tls_cert_domains, exclusive, third_party, \
                       valid_from, valid_to)",
        )
        .bind(rows.iter().map(|c| c.tenant_id.clone()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|c| c.kind.as_str().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|c| join_nets(&c.sender_ips))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|c| c.tls_cert_domains.join(" "))
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|c| c.exclusive).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|c| c.third_party.clone())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|c| c.valid_from).collect::<Vec<_>>())
        .bind(rows.iter().map(|c| c.valid_to).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Connect to PostgreSQL (`postgres://user:password@host:port/database`). Waits at most
    /// 10 seconds for the first connection.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Store { pool })
    }

    /// Use an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Store { pool }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Apply the schema migrations that are not applied yet (safe to run repeatedly and from
    /// several processes at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The current directory version; it changes with every committed change to the directory.
    pub async fn directory_version(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        read_version(&mut conn).await
    }

    /// Load the whole directory.
    pub async fn load_directory(&self) -> Result<DirectorySnapshot, StoreError> {
        Ok(self.load_directory_versioned().await?.1)
    }

    /// Load the whole directory and the version it had, read in one consistent transaction.
    pub async fn load_directory_versioned(&self) -> Result<(i64, DirectorySnapshot), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        let version = read_version(&mut tx).await?;
        let stored = read_stored(&mut tx).await?;
        tx.commit().await?;
        let snapshot = DirectorySnapshot::new(stored.data())?;
        Ok((version, snapshot))
    }

    /// Import a directory in one transaction (see [`ImportMode`]). The directory that would
    /// result is validated first; if it breaks a rule nothing is written.
    pub async fn import_directory(
        &self,
        snapshot: &DirectorySnapshot,
        mode: ImportMode,
    ) -> Result<ImportReport, StoreError> {
        self.import(&DirectoryImport::from(snapshot.clone()), mode)
            .await
    }

    /// Import a parsed directory file in one transaction (see [`ImportMode`] and
    /// [`DirectoryImport::implied_tenants`]).
    pub async fn import(
        &self,
        import: &DirectoryImport,
        mode: ImportMode,
    ) -> Result<ImportReport, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Locking the version row first serialises importers.
        let (version_before,): (i64,) =
            sqlx::query_as("SELECT version FROM directory_version FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        let stored = read_stored(&mut tx).await?;

        let snapshot = &import.snapshot;
        let tenants = plan_tenants(&stored.tenants, import, mode);
        let domains = plan_mappings(&stored.domains, snapshot.domains(), domain_key, mode);
        let dkim = plan_mappings(
            &stored.dkim_selectors,
            snapshot.dkim_selectors(),
            dkim_key,
            mode,
        );
        let dedicated = plan_mappings(
            &stored.dedicated_ips,
            snapshot.dedicated_ips(),
            dedicated_key,
            mode,
        );
        let connectors = plan_mappings(
            &stored.connectors,
            snapshot.connectors(),
            connector_key,
            mode,
        );

        let mut report = ImportReport {
            mode,
            tenants: tenants.counts,
            domains: domains.counts,
            dkim_selectors: dkim.counts,
            dedicated_ips: dedicated.counts,
            connectors: connectors.counts,
            version_before,
            version_after: version_before,
        };
        if !report.changed() {
            tx.rollback().await?;
            return Ok(report);
        }

        // The directory as it will be must pass the same rules as any snapshot.
        DirectorySnapshot::new(DirectoryData {
            tenants: tenants.result.clone(),
            domains: domains.result.clone(),
            dkim_selectors: dkim.result.clone(),
            dedicated_ips: dedicated.result.clone(),
            connectors: connectors.result.clone(),
        })?;

        delete_ids(
            &mut tx,
            "DELETE FROM tenant_domains WHERE id = ANY($1::bigint[])",
            &domains.deletes,
        )
        .await?;
        delete_ids(
            &mut tx,
            "DELETE FROM tenant_dkim_selectors WHERE id = ANY($1::bigint[])",
            &dkim.deletes,
        )
        .await?;
        delete_ids(
            &mut tx,
            "DELETE FROM tenant_dedicated_ips WHERE id = ANY($1::bigint[])",
            &dedicated.deletes,
        )
        .await?;
        delete_ids(
            &mut tx,
            "DELETE FROM tenant_connectors WHERE id = ANY($1::bigint[])",
            &connectors.deletes,
        )
        .await?;
        write_tenants(&mut tx, &tenants).await?;
        write_domains(&mut tx, &domains).await?;
        write_dkim(&mut tx, &dkim).await?;
        write_dedicated(&mut tx, &dedicated).await?;
        write_connectors(&mut tx, &connectors).await?;

        report.version_after = read_version(&mut tx).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Parse and import CSV text (format in [`crate::import`]).
    pub async fn import_csv(
        &self,
        text: &str,
        mode: ImportMode,
    ) -> Result<ImportReport, StoreError> {
        let import = import::parse_csv(text)?;
        self.import(&import, mode).await
    }

    /// Parse and import JSON text (the shape of the directory files).
    pub async fn import_json(
        &self,
        text: &str,
        mode: ImportMode,
    ) -> Result<ImportReport, StoreError> {
        let snapshot = import::parse_json(text)?;
        self.import_directory(&snapshot, mode).await
    }

    /// Parse and import TOML text (the shape of the directory files).
    pub async fn import_toml(
        &self,
        text: &str,
        mode: ImportMode,
    ) -> Result<ImportReport, StoreError> {
        let snapshot = import::parse_toml(text)?;
        self.import_directory(&snapshot, mode).await
    }

    /// Read a `.csv`, `.json` or `.toml` directory file and import it.
    pub async fn import_file(
        &self,
        path: &Path,
        mode: ImportMode,
    ) -> Result<ImportReport, StoreError> {
        let import = import::read_file(path)?;
        self.import(&import, mode).await
    }
}
