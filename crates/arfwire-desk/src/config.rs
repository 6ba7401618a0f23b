//! The desk's configuration file.
//!
//! ```toml
//! # Only for development set-ups: allows the published development pseudonym key.
//! development = false
//!
//! [privacy]
//! pseudonym_key_env = "ARFWIRE_PSEUDONYM_KEY"   # the variable holding the key (hex)
//! raw_retention_days = 90
//!
//! [consumer]
//! group_id = "arfwire-desk"
//! consume_raw = true
//! batch_size = 200
//! batch_wait_ms = 100
//!
//! [alerts]
//! enabled = true
//! topic = "abuse.alerts.v1"
//! source = "urn:arfwire:desk"
//! evaluate_every_secs = 60
//!
//! [alerts.default_rule]            # omit to keep only the rules stored in alert_rules
//! threshold = 10
//! window_hours = 24
//! min_confidence = "MEDIUM"
//!
//! [kafka]                          # the shared Kafka section (topics, security)
//! bootstrap_servers = "kafka-1.example.net:9093"
//! ```
//!
//! Unknown fields are an error, so a misspelt option is never silently ignored. Secrets
//! (the pseudonym key, Kafka credentials) are read from the environment; `Debug` never
//! prints them.

use std::fmt;
use std::path::Path;

use arfwire_events::Pseudonymizer;
use arfwire_kafka::KafkaConfig;
use serde::Deserialize;

use crate::error::DeskError;

/// The whole configuration file. The database URL is not part of it: commands take it from
/// `--database-url` / `DATABASE_URL`.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeskConfig {
    /// A development set-up: the published development pseudonym key may be used when no key
    /// is configured. Never in production.
    #[serde(default)]
    pub development: bool,
    /// `[privacy]`.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// `[consumer]`.
    #[serde(default)]
    pub consumer: ConsumerConfig,
    /// `[alerts]`.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// `[kafka]`: needed by `consume` and alert publishing only.
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
}

impl fmt::Debug for DeskConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeskConfig")
            .field("development", &self.development)
            .field("privacy", &self.privacy)
            .field("consumer", &self.consumer)
            .field("alerts", &self.alerts)
            .field("kafka", &self.kafka)
            .finish()
    }
}

/// `[privacy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// The environment variable holding the pseudonym key (hex, at least 16 bytes). Default
    /// `ARFWIRE_PSEUDONYM_KEY`.
    pub pseudonym_key_env: String,
    /// How many days raw evidence is kept after it was received. Default 90.
    pub raw_retention_days: u32,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            pseudonym_key_env: "ARFWIRE_PSEUDONYM_KEY".to_owned(),
            raw_retention_days: 90,
        }
    }
}

/// `[consumer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// The desk's own consumer group. Default `arfwire-desk`.
    pub group_id: String,
    /// Also read the raw topic, to keep the raw evidence. Default true.
    pub consume_raw: bool,
    /// Most records applied in one transaction. Default 200.
    pub batch_size: usize,
    /// How long a batch waits for more records once it has one, in milliseconds. Default 100.
    pub batch_wait_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: "arfwire-desk".to_owned(),
            consume_raw: true,
            batch_size: 200,
            batch_wait_ms: 100,
        }
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Evaluate and publish alerts in the consumer. Default true.
    pub enabled: bool,
    /// Topic of alert records. Default `abuse.alerts.v1`.
    pub topic: String,
    /// CloudEvents `source` of alert records. Default `urn:arfwire:desk`.
    pub source: String,
    /// How often the consumer evaluates when no batch arrives, in seconds. Default 60.
    pub evaluate_every_secs: u64,
    /// The global rule kept in `alert_rules` under the name `default`; `None` keeps only the
    /// stored rules.
    pub default_rule: Option<RuleConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            topic: "abuse.alerts.v1".to_owned(),
            source: "urn:arfwire:desk".to_owned(),
            evaluate_every_secs: 60,
            default_rule: Some(RuleConfig::default()),
        }
    }
}

/// A threshold rule in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Reports within the window that fire an alert. Default 10.
    pub threshold: u32,
    /// The window, in hours. Default 24.
    pub window_hours: u32,
    /// Only reports attributed with at least this confidence count. Default `MEDIUM`.
    pub min_confidence: String,
    /// Only these complaint types count; absent: every type except `not-spam`.
    pub complaint_types: Option<Vec<String>>,
    /// Resolve an open alert when the count falls below this; absent: half the threshold
    /// (at least 1).
    pub clear_below: Option<u32>,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            threshold: 10,
            window_hours: 24,
            min_confidence: "MEDIUM".to_owned(),
            complaint_types: None,
            clear_below: None,
        }
    }
}

impl DeskConfig {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Self, DeskError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeskError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parse and check configuration text.
    pub fn parse(text: &str) -> Result<Self, DeskError> {
        let config: DeskConfig =
            toml::from_str(text).map_err(|e| DeskError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check every field.
    pub fn validate(&self) -> Result<(), DeskError> {
        let bad = |what: &str| Err(DeskError::Config(what.to_owned()));
        if self.privacy.raw_retention_days == 0 {
            return bad("privacy.raw_retention_days must be at least 1");
        }
        if self.consumer.group_id.trim().is_empty() {
            return bad("consumer.group_id must not be empty");
        }
        if self.consumer.batch_size == 0 {
            return bad("consumer.batch_size must be at least 1");
        }
        if self.alerts.evaluate_every_secs == 0 {
            return bad("alerts.evaluate_every_secs must be at least 1");
        }
        if let Some(rule) = &self.alerts.default_rule {
            rule.validate("alerts.default_rule")?;
        }
        if let Some(kafka) = &self.kafka {
            kafka
                .validate()
                .map_err(|e| DeskError::Config(e.to_string()))?;
        }
        Ok(())
    }

    /// Options for [`crate::apply`].
    pub fn apply_options(&self) -> crate::ApplyOptions {
        crate::ApplyOptions {
            raw_retention: chrono::Duration::days(i64::from(self.privacy.raw_retention_days)),
        }
    }

    /// The pseudonymizer: the key from the configured environment variable (read through
    /// `lookup`), else, only when `development = true`, the published development key.
    pub fn pseudonymizer(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Pseudonymizer, DeskError> {
        let name = &self.privacy.pseudonym_key_env;
        match lookup(name).filter(|v| !v.trim().is_empty()) {
            Some(hex) => {
                Pseudonymizer::from_hex(&hex).map_err(|e| DeskError::Config(format!("{name}: {e}")))
            }
            None if self.development => {
                tracing::warn!(
                    "no pseudonym key in {name}: using the published development key \
                     (development = true); never do this with real reports"
                );
                Ok(Pseudonymizer::development())
            }
            None => Err(DeskError::Config(format!(
                "the pseudonym key is not set: put it (hex, at least 16 bytes) in the \
                 environment variable {name}"
            ))),
        }
    }
}

impl RuleConfig {
    fn validate(&self, at: &str) -> Result<(), DeskError> {
        let bad = |what: String| Err(DeskError::Config(what));
        if self.threshold == 0 {
            return bad(format!("{at}.threshold must be at least 1"));
        }
        if self.window_hours == 0 {
            return bad(format!("{at}.window_hours must be at least 1"));
        }
        if !matches!(
            self.min_confidence.as_str(),
            "NONE" | "LOW" | "MEDIUM" | "HIGH" | "CONFIRMED"
        ) {
            return bad(format!(
                "{at}.min_confidence must be NONE, LOW, MEDIUM, HIGH or CONFIRMED"
            ));
        }
        if self.clear_below.is_some_and(|c| c >= self.threshold) {
            return bad(format!("{at}.clear_below must be below the threshold"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let config = DeskConfig::parse("").unwrap();
        assert_eq!(config.privacy.raw_retention_days, 90);
        assert_eq!(config.consumer.group_id, "arfwire-desk");
        assert_eq!(config.alerts.default_rule, Some(RuleConfig::default()));
        assert!(DeskConfig::parse("typo = 1").is_err());
        assert!(DeskConfig::parse("[alerts.default_rule]\nmin_confidence = \"medium\"").is_err());
        let no_rule = DeskConfig::parse("[alerts]\ndefault_rule = {threshold = 3}").unwrap();
        assert_eq!(no_rule.alerts.default_rule.unwrap().threshold, 3);
    }

    #[test]
    fn the_development_key_needs_development() {
        let production = DeskConfig::parse("").unwrap();
        assert!(production.pseudonymizer(|_| None).is_err());
        let key = "ab".repeat(32);
        let p = production.pseudonymizer(|_| Some(key.clone())).unwrap();
        assert_eq!(
            p.token("a@example.com"),
            Pseudonymizer::from_hex(&key)
                .unwrap()
                .token("a@example.com")
        );
        assert!(production.pseudonymizer(|_| Some("xyz".into())).is_err());
        let development = DeskConfig::parse("development = true").unwrap();
        let p = development.pseudonymizer(|_| None).unwrap();
        assert_eq!(
            p.token("a@example.com"),
            Pseudonymizer::development().token("a@example.com")
        );
    }
}
