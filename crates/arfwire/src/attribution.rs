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

    /// Check each reporter's DKIM, SPF and DMARC with the system's DNS resolver and assign a
    /// trust tier (T1 known feedback loop, T2 authenticated, T3 not). Without it the tier is
    /// T3 ("not checked") and attributions carry REPORT_UNAUTHENTICATED
    #[arg(long)]
    pub(crate) verify_reporters: bool,

    /// Known feedback-loop operators (TOML). Default: the built-in list
    /// (deploy/feedback-loops.toml)
    #[arg(long, value_name = "FILE")]
    pub(crate) feedback_loops: Option<PathBuf>,
}

/// The built-in list of known feedback-loop operators.
const DEFAULT_FEEDBACK_LOOPS: &str = include_str!("../../../deploy/feedback-loops.toml");

/// Checks reporters' DKIM/SPF/DMARC with DNS.
struct ReporterCheck {
    runtime: tokio::runtime::Runtime,
    authenticator: arfwire_auth::Authenticator,
    policy: arfwire_auth::ReporterPolicy,
}

/// The trust verdict used for one submission.
pub(crate) struct Trust {
    pub(crate) tier: ReporterTier,
    pub(crate) record: arfwire_events::ReporterTrustV1,
}

fn tier_of(tier: arfwire_auth::ReporterTier) -> ReporterTier {
    match tier {
        arfwire_auth::ReporterTier::T1 => ReporterTier::T1,
        arfwire_auth::ReporterTier::T2 => ReporterTier::T2,
        arfwire_auth::ReporterTier::T3 => ReporterTier::T3,
    }
}

/// A loaded profile and directory, and the reporter check when asked for.
pub(crate) struct Attributor {
    profile: Profile,
    directory: DirectorySnapshot,
    reporters: Option<ReporterCheck>,
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
        let reporters = if args.verify_reporters {
            let policy = match args.feedback_loops.as_deref() {
                Some(path) => arfwire_auth::ReporterPolicy::load(path),
                None => arfwire_auth::ReporterPolicy::from_toml(DEFAULT_FEEDBACK_LOOPS),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("loading the list of known feedback-loop operators")?;
            let authenticator = arfwire_auth::Authenticator::system()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("setting up the DNS resolver")?;
            Some(ReporterCheck {
                runtime: crate::tenants::runtime()?,
                authenticator,
                policy,
            })
        } else {
            None
        };
        Ok(Some(Attributor {
            profile,
            directory,
            reporters,
        }))
    }

    /// The profile's name.
    pub(crate) fn profile_name(&self) -> &str {
        &self.profile.name
    }

    /// How far the reporter of `raw` is trusted.
    pub(crate) fn trust(&self, raw: Option<&[u8]>) -> Trust {
        match (self.reporters.as_ref(), raw) {
            (Some(check), Some(raw)) => {
                let verdict = check.runtime.block_on(arfwire_auth::verify_reporter(
                    raw,
                    None,
                    &check.authenticator,
                    &check.policy,
                ));
                Trust {
                    tier: tier_of(verdict.tier),
                    record: arfwire_events::ReporterTrustV1 {
                        tier: verdict.tier.as_str().to_owned(),
                        operator: verdict.operator.clone(),
                        reasons: verdict.reasons.clone(),
                    },
                }
            }
            _ => Trust {
                tier: ReporterTier::T3,
                record: arfwire_events::ReporterTrustV1 {
                    tier: "T3".to_owned(),
                    operator: None,
                    reasons: vec![
                        "not checked: this run did not verify the reporter's DKIM, SPF and DMARC (use --verify-reporters)".to_owned(),
                    ],
                },
            },
        }
    }

    /// Attribute one reported message, the reporter trusted as `reporter_tier`.
    pub(crate) fn attribute_with_tier(
        &self,
        submission: &Submission,
        item: &ReportedItem,
        received_at: DateTime<Utc>,
        reporter_tier: ReporterTier,
    ) -> Attribution {
        let input = Input {
            message: &item.message,
            feedback: item.feedback.as_ref(),
            kind: submission.kind,
            claimed_source_ip: item.claimed_source_ip.as_ref(),
            report_time_unix: Some(received_at.timestamp()),
            reporter_tier,
            verified_signatures: &[],
        };
        attribute(&input, &self.profile, &self.directory)
    }

    /// Fill the `attribution` object of every event derived from `outcome`.
    pub(crate) fn enrich(
        &self,
        outcome: &Outcome,
        raw: Option<&[u8]>,
        outputs: &mut [Output],
        received_at: DateTime<Utc>,
    ) {
        let Outcome::Report(submission) = outcome else {
            return;
        };
        let trust = self.trust(raw);
        for output in outputs.iter_mut() {
            if let Output::Event(event) = output {
                let index = usize::try_from(event.report_index).unwrap_or(usize::MAX);
                if let Some(item) = submission.reports.get(index) {
                    let attribution =
                        self.attribute_with_tier(submission, item, received_at, trust.tier);
                    event.attribution = Some(AttributionV1::from(&attribution));
                    event.reporter_trust = Some(trust.record.clone());
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
