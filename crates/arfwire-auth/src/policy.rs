//! Enrolled feedback-loop operators: who may be a T1 reporter, and by which authenticated name.

use serde::Deserialize;
use std::{collections::HashSet, path::Path};

use crate::AuthError;

/// The enrolled feedback-loop operators, usually loaded from a TOML file of `[[operator]]`
/// tables:
///
/// ```toml
/// [[operator]]
/// name = "Example FBL"
/// dkim_domains = ["fbl.example.net"]   # a passing DKIM signature with one of these d= is T1
/// from_domains = []                    # a DMARC pass for one of these From domains is T1
/// ```
///
/// Domains are matched exactly (case-insensitively): no wildcards and no parent domains, so
/// enrolling `arf.mail.example` does not enrol `mail.example`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReporterPolicy {
    /// Operators, in order of precedence when more than one matches.
    #[serde(default, rename = "operator")]
    pub operators: Vec<FeedbackLoop>,
}

/// One enrolled feedback-loop operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackLoop {
    /// Shown in verdicts and explanations.
    pub name: String,
    /// DKIM `d=` domains the operator signs its reports with.
    #[serde(default)]
    pub dkim_domains: Vec<String>,
    /// `From:` domains of the operator's reports, accepted on a DMARC pass.
    #[serde(default)]
    pub from_domains: Vec<String>,
}

impl ReporterPolicy {
    /// Parses and checks a policy: every operator needs a unique non-empty name and at least
    /// one domain; domains must be plain host names. Domains are lower-cased.
    pub fn from_toml(text: &str) -> Result<Self, AuthError> {
        let mut policy: ReporterPolicy =
            toml::from_str(text).map_err(|err| AuthError::Policy(err.to_string()))?;
        policy.normalise()?;
        Ok(policy)
    }

    /// Reads and parses a policy file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|err| AuthError::Io {
            path: path.display().to_string(),
            detail: err.to_string(),
        })?;
        Self::from_toml(&text)
    }

    /// The first operator that signs with DKIM domain `d`.
    pub fn operator_for_dkim_domain(&self, d: &str) -> Option<&FeedbackLoop> {
        self.operators
            .iter()
            .find(|op| op.dkim_domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
    }

    /// The first operator whose reports come from `From:` domain `domain`.
    pub fn operator_for_from_domain(&self, domain: &str) -> Option<&FeedbackLoop> {
        self.operators.iter().find(|op| {
            op.from_domains
                .iter()
                .any(|x| x.eq_ignore_ascii_case(domain))
        })
    }

    fn normalise(&mut self) -> Result<(), AuthError> {
        let mut names = HashSet::new();
        for op in &mut self.operators {
            let name = op.name.trim().to_owned();
            if name.is_empty() {
                return Err(AuthError::Policy("an operator has an empty name".into()));
            }
            if !names.insert(name.clone()) {
                return Err(AuthError::Policy(format!(
                    "operator {name:?} is listed twice"
                )));
            }
            op.name = name;
            if op.dkim_domains.is_empty() && op.from_domains.is_empty() {
                return Err(AuthError::Policy(format!(
                    "operator {:?} has neither dkim_domains nor from_domains",
                    op.name
                )));
            }
            for domain in op.dkim_domains.iter_mut().chain(op.from_domains.iter_mut()) {
                let lower = domain.trim().to_ascii_lowercase();
                if !is_host_name(&lower) {
                    return Err(AuthError::Policy(format!(
                        "operator {:?}: {domain:?} is not a domain name",
                        op.name
                    )));
                }
                *domain = lower;
            }
        }
        Ok(())
    }
}

/// A plain host name with at least two labels: letters, digits and hyphens, no wildcard, no
/// trailing dot.
fn is_host_name(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
