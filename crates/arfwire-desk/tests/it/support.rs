//! Test databases, fixtures turned into records, and small helpers.
//!
//! The server comes from `DATABASE_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`). Each test creates its own database
//! and drops it afterwards, also when the test fails. An unreachable server fails the tests:
//! start it with `scripts/services.sh up`.

use std::path::{Path, PathBuf};

use arfwire_attribution::{DirectorySnapshot, Input, Profile, ReporterTier, attribute};
use arfwire_desk::{Applied, ApplyOptions, apply};
use arfwire_events::{AttributionV1, Channel, Intake, Output, Pseudonymizer, derive_with};
use arfwire_parse::Outcome;
use arfwire_store::testing::TestDatabase;
use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgPool;

/// A migrated database of its own for one test (see [`TestDatabase`]).
pub(crate) struct TestDb {
    pub(crate) pool: PgPool,
    _db: TestDatabase,
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        let db = TestDatabase::migrated("arfwire_desk_test", 4).await;
        TestDb {
            pool: db.pool().clone(),
            _db: db,
        }
    }

    pub(crate) async fn count(&self, sql: &'static str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        n
    }

    /// Apply records in one transaction, as one consumer batch does.
    pub(crate) async fn apply_all(&self, outputs: &[Output]) -> Vec<Applied> {
        let mut tx = self.pool.begin().await.expect("begin");
        let mut applied = Vec::new();
        for output in outputs {
            applied.push(
                apply(&mut tx, output, &ApplyOptions::default())
                    .await
                    .unwrap_or_else(|e| panic!("apply {}: {e}", output.event_id())),
            );
        }
        tx.commit().await.expect("commit");
        applied
    }
}

/// The workspace root.
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fixed reception time.
pub(crate) fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .with_timezone(&Utc)
}

/// Every `.eml` fixture of the parser and attribution groups, sorted.
pub(crate) fn fixture_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![workspace_root().join("fixtures")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixtures").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "eml") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(out.len() > 40, "only {} fixtures", out.len());
    out
}

/// The Exchange fixture profile and tenants, to attribute with.
pub(crate) struct Attributor {
    profile: Profile,
    directory: DirectorySnapshot,
}

impl Attributor {
    pub(crate) fn exchange() -> Self {
        let dir = workspace_root().join("fixtures/exchange");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("fixture");
        Attributor {
            profile: Profile::from_toml(&read("profile.toml")).expect("profile"),
            directory: DirectorySnapshot::from_toml(&read("tenants.toml")).expect("tenants"),
        }
    }

    fn fill(&self, outcome: &Outcome, outputs: &mut [Output], at: DateTime<Utc>) {
        let Outcome::Report(parsed) = outcome else {
            return;
        };
        for output in outputs {
            let Output::Event(event) = output else {
                continue;
            };
            let item = &parsed.reports[event.report_index as usize];
            let input = Input {
                message: &item.message,
                feedback: item.feedback.as_ref(),
                kind: parsed.kind,
                claimed_source_ip: item.claimed_source_ip.as_ref(),
                report_time_unix: Some(at.timestamp()),
                reporter_tier: ReporterTier::T3,
                verified_signatures: &[],
            };
            let attribution = attribute(&input, &self.profile, &self.directory);
            event.attribution = Some(AttributionV1::from(&attribution));
        }
    }
}

/// One submission turned into records, as the worker does.
pub(crate) struct Derived {
    pub(crate) raw: Vec<u8>,
    pub(crate) outputs: Vec<Output>,
    /// The complainant addresses the submission names (normalised).
    pub(crate) complainants: Vec<String>,
}

pub(crate) fn derive_bytes(
    raw: &[u8],
    at: DateTime<Utc>,
    p: &Pseudonymizer,
    attributor: Option<&Attributor>,
) -> Derived {
    let options = arfwire_parse::ParseOptions {
        received_at_unix: Some(at.timestamp()),
        ..Default::default()
    };
    let outcome = arfwire_parse::parse(raw, &options);
    // An envelope sender of its own per submission: a person's address for their forwards,
    // an operator's bounce address for its feedback reports.
    let tag: String = arfwire_raw::sha256_hex(raw).chars().take(8).collect();
    let intake = Intake::new(raw, Channel::Lmtp, at).with_envelope(
        Some(format!("sender-{tag}@reporter.example")),
        vec!["junk@hosted.example.net".to_owned()],
        None,
    );
    let complainants = arfwire_events::complainant_addresses(&outcome, &intake);
    let mut outputs = derive_with(&outcome, &intake, p);
    if let Some(attributor) = attributor {
        attributor.fill(&outcome, &mut outputs, at);
    }
    Derived {
        raw: raw.to_vec(),
        outputs,
        complainants,
    }
}

pub(crate) fn derive_file(
    path: &Path,
    p: &Pseudonymizer,
    attributor: Option<&Attributor>,
) -> Derived {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    derive_bytes(&raw, received_at(), p, attributor)
}

/// Only the events of some records.
pub(crate) fn events(outputs: &[Output]) -> Vec<&arfwire_events::AbuseEventV1> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.as_ref()),
            Output::Rejected(_) => None,
        })
        .collect()
}

/// Does `haystack` (lower case) contain `address` as a whole address (not inside a longer
/// one)?
pub(crate) fn names(haystack: &str, address: &str) -> bool {
    haystack.match_indices(address).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + address.len()..].chars().next();
        let boundary =
            |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || "._%+-".contains(c)));
        boundary(before) && boundary(after)
    })
}
