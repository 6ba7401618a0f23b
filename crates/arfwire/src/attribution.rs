//! Attribution wiring for the offline commands: load a provider profile and a tenant
//! directory, attribute every reported message, and fill the events' `attribution` object.

use std::path::{Path, PathBuf};

use anyhow::Context;
use arfwire_attribution::{
    Attribution, DirectorySnapshot, Input, Profile, ReporterTier, attribute,
};
use arfwire_events::{AttributionV1, Output};
use arfwire_parse::{Outcome, ReportedItem, Submission};
use chrono::{DateTime, Utc};
use clap::Args;

/// The reference profile (Exchange Online), built in so that a plain run needs no files.
const DEFAULT_PROFILE: &str = include_str!("../../../deploy/profiles/exchange-online.toml");

/// Attribution options shared by `process`, `parse` and `explain`.
#[derive(Debug, Clone, Args)]
pub(crate) struct AttributionArgs {
    /// Provider profile (TOML). Default: the built-in Exchange Online reference profile
    #[arg(long, value_name = "FILE")]
    pub(crate) profile: Option<PathBuf>,

    /// Tenant directory: a TOML or JSON file, or a postgres:// URL of the directory
    /// database. Without it no tenant can be named, but path classes, IPs and flags are
    /// still derived
    #[arg(long, value_name = "FILE|URL")]
    pub(crate) tenants: Option<PathBuf>,

    /// Skip attribution: events carry "attribution": null
    #[arg(long)]
    pub(crate) no_attribution: bool,
}

/// A loaded profile and directory.
pub(crate) struct Attributor {
    profile: Profile,
    directory: DirectorySnapshot,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

impl Attributor {
    /// Load from the command-line options; `None` when attribution is switched off.
    pub(crate) fn load(args: &AttributionArgs) -> anyhow::Result<Option<Self>> {
        if args.no_attribution {
            return Ok(None);
        }
        let profile = match args.profile.as_deref() {
            Some(path) => Profile::from_toml(&read(path)?)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("loading the provider profile {}", path.display()))?,
            None => Profile::from_toml(DEFAULT_PROFILE)
                .map_err(anyhow::Error::msg)
                .context("loading the built-in provider profile")?,
        };
        let directory = match args.tenants.as_deref() {
            Some(path)
                if path.to_str().is_some_and(|p| {
                    p.starts_with("postgres://") || p.starts_with("postgresql://")
                }) =>
            {
                crate::tenants::load_from_database(path.to_str().unwrap_or_default())?
            }
            Some(path) => load_directory(path)?,
            None => DirectorySnapshot::default(),
        };
        Ok(Some(Attributor { profile, directory }))
    }

    /// The profile's name.
    pub(crate) fn profile_name(&self) -> &str {
        &self.profile.name
    }

    /// Attribute one reported message.
    pub(crate) fn attribute(
        &self,
        submission: &Submission,
        item: &ReportedItem,
        received_at: DateTime<Utc>,
    ) -> Attribution {
        let input = Input {
            message: &item.message,
            feedback: item.feedback.as_ref(),
            kind: submission.kind,
            claimed_source_ip: item.claimed_source_ip.as_ref(),
            report_time_unix: Some(received_at.timestamp()),
            // Offline runs cannot check the reporter's DKIM/SPF/DMARC (no DNS), so every
            // reporter is treated as unauthenticated.
            reporter_tier: ReporterTier::T3,
            verified_signatures: &[],
        };
        attribute(&input, &self.profile, &self.directory)
    }

    /// Fill the `attribution` object of every event derived from `outcome`.
    pub(crate) fn enrich(
        &self,
        outcome: &Outcome,
        outputs: &mut [Output],
        received_at: DateTime<Utc>,
    ) {
        let Outcome::Report(submission) = outcome else {
            return;
        };
        for output in outputs.iter_mut() {
            if let Output::Event(event) = output {
                let index = usize::try_from(event.report_index).unwrap_or(usize::MAX);
                if let Some(item) = submission.reports.get(index) {
                    let attribution = self.attribute(submission, item, received_at);
                    event.attribution = Some(AttributionV1::from(&attribution));
                }
            }
        }
    }
}

/// Load a directory file, by extension: `.json`, else TOML.
pub(crate) fn load_directory(path: &Path) -> anyhow::Result<DirectorySnapshot> {
    let text = read(path)?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let loaded = if is_json {
        serde_json::from_str::<DirectorySnapshot>(&text).map_err(|e| e.to_string())
    } else {
        DirectorySnapshot::from_toml(&text)
    };
    loaded
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("loading the tenant directory {}", path.display()))
}
