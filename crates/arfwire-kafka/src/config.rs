//! The `[kafka]` section of the service configuration and the librdkafka client settings
//! derived from it.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// Kafka connection and topic settings, shared by the front door (raw producer), the worker
/// (raw consumer, event producer) and the `topics` command.
///
/// Deserialised from the service configuration file; unknown fields are an error so a
/// misspelt option is never silently ignored. Only `bootstrap_servers` is required.
///
/// ```toml
/// [kafka]
/// bootstrap_servers = "kafka-1.example.net:9093,kafka-2.example.net:9093"
/// client_id = "arfwire-worker"
///
/// [kafka.security]
/// protocol = "SASL_SSL"
/// mechanism = "SCRAM-SHA-512"
/// username_env = "ARFWIRE_KAFKA_USERNAME"
/// password_env = "ARFWIRE_KAFKA_PASSWORD"
/// ```
///
/// Credentials never appear in the file: it names the environment variables that hold
/// them, and the binary reads them with [`KafkaConfig::resolve_credentials`]. `Debug`
/// prints `[REDACTED]` for credentials and for escape-hatch options whose name suggests a
/// secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from (librdkafka
    /// `bootstrap.servers`).
    pub bootstrap_servers: String,
    /// Client id reported to the brokers, visible in broker logs and quotas (librdkafka
    /// `client.id`). Default `arfwire`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Topic names. Each defaults to its `*.v1` name.
    #[serde(default)]
    pub topics: TopicNames,
    /// Upper bound, in milliseconds, on how long one record may take from `send` to its
    /// acknowledgement, retries included (librdkafka `message.timeout.ms`). A submission not
    /// acknowledged in this time is reported as unavailable (the front door answers 451 and
    /// the sender retries). Default 30000.
    #[serde(default = "default_produce_timeout_ms")]
    pub produce_timeout_ms: u64,
    /// Largest record the producers send, in bytes, headers and key included (librdkafka
    /// `message.max.bytes`; also the topics' `max.message.bytes` when `ensure_topics`
    /// creates them). Must exceed the largest submission the front door accepts. Default
    /// 32 MiB.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: usize,
    /// CloudEvents `source` attribute (`ce_source` header) of published events and
    /// rejection records. Default `urn:arfwire:worker`.
    #[serde(default = "default_event_source")]
    pub event_source: String,
    /// Consumer group of the worker. Default `arfwire-worker`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// How often, in milliseconds, the consumer commits the offsets stored after
    /// processing (librdkafka `auto.commit.interval.ms`). This bounds how much is
    /// re-processed after a crash. Default 5000.
    #[serde(default = "default_auto_commit_interval_ms")]
    pub auto_commit_interval_ms: u64,
    /// Longest time, in milliseconds, a consumer's fetch request waits at the broker for
    /// new records (librdkafka `fetch.wait.max.ms`). A broker answers as soon as records
    /// arrive, but some Kafka-compatible brokers hold every empty fetch for the full wait,
    /// which then adds up to this much to each hop (raw topic → worker → events topic).
    /// A short wait costs only idle fetch requests (a few per second and broker). Default
    /// 100.
    #[serde(default = "default_fetch_wait_max_ms")]
    pub fetch_wait_max_ms: u64,
    /// Transport security. Default `PLAINTEXT`.
    #[serde(default)]
    pub security: Security,
    /// Extra librdkafka properties applied to every client (escape hatch), e.g.
    /// `"compression.type" = "lz4"`. Properties that carry arfwire's delivery guarantees or
    /// are set from the fields above are refused (see [`PROTECTED_OPTIONS`]).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

/// librdkafka properties that `librdkafka_options` may not set: they are either derived from
/// the typed fields or they carry the delivery guarantees (idempotence, acks=all, offsets
/// stored only after processing).
pub const PROTECTED_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "group.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "message.max.bytes",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.commit.interval.ms",
    "fetch.wait.max.ms",
    "transactional.id",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
];

/// Names of the four topics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Raw submissions as received: the durability point. Default `abuse.raw.v1`.
    pub raw: String,
    /// Published abuse events. Default `abuse.events.v1`.
    pub events: String,
    /// Rejection records (not a report, refused). Default `abuse.rejected.v1`.
    pub rejected: String,
    /// Raw submissions the worker gave up on, with the failure. Default `abuse.dlq.v1`.
    pub dlq: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            raw: "abuse.raw.v1".to_owned(),
            events: "abuse.events.v1".to_owned(),
            rejected: "abuse.rejected.v1".to_owned(),
            dlq: "abuse.dlq.v1".to_owned(),
        }
    }
}

impl TopicNames {
    /// The default names with `suffix` appended to each (`abuse.raw.v1.<suffix>`), for
    /// tests that need topics of their own.
    pub fn with_suffix(suffix: &str) -> Self {
        let base = TopicNames::default();
        TopicNames {
            raw: format!("{}.{suffix}", base.raw),
            events: format!("{}.{suffix}", base.events),
            rejected: format!("{}.{suffix}", base.rejected),
            dlq: format!("{}.{suffix}", base.dlq),
        }
    }

    /// All four names: raw, events, rejected, dlq.
    pub fn all(&self) -> [&str; 4] {
        [&self.raw, &self.events, &self.rejected, &self.dlq]
    }
}

/// Transport security, tagged by librdkafka's `security.protocol` name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(tag = "protocol")]
pub enum Security {
    /// No TLS, no authentication. For tests and trusted local networks only.
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    /// TLS with SASL authentication.
    #[serde(rename = "SASL_SSL")]
    SaslSsl(SaslSsl),
}

/// `SASL_SSL` settings. The username and password are read from the environment variables
/// named here, by the binary, through [`KafkaConfig::resolve_credentials`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSsl {
    /// SASL mechanism: `SCRAM-SHA-512` (default), `SCRAM-SHA-256` or `PLAIN`.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Environment variable holding the username. Default `ARFWIRE_KAFKA_USERNAME`.
    #[serde(default = "default_username_env")]
    pub username_env: String,
    /// Environment variable holding the password. Default `ARFWIRE_KAFKA_PASSWORD`.
    #[serde(default = "default_password_env")]
    pub password_env: String,
    /// PEM file of the CA that signs the brokers' certificates; the system trust store
    /// when absent (librdkafka `ssl.ca.location`). Certificate and host name verification
    /// stay on.
    #[serde(default)]
    pub ca_location: Option<String>,
    /// The resolved credentials; never deserialised.
    #[serde(skip)]
    pub credentials: Option<Credentials>,
}

/// SASL mechanism.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// SCRAM with SHA-512 (recommended).
    #[default]
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// SCRAM with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// PLAIN (the password crosses the wire inside TLS).
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    /// librdkafka's name of the mechanism.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::Plain => "PLAIN",
        }
    }
}

/// SASL username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Username.
    pub username: Secret,
    /// Password.
    pub password: Secret,
}

/// A string that `Debug` and `Display` print as `[REDACTED]`; read it with
/// [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Why a [`KafkaConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field has an unusable value.
    #[error("kafka.{field}: {reason}")]
    Invalid {
        /// The field, as written in the configuration file.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `librdkafka_options` tries to set a property arfwire sets itself.
    #[error(
        "kafka.librdkafka_options: {0:?} is set by arfwire (it carries a delivery guarantee or has a typed field) and may not be overridden"
    )]
    ProtectedOption(String),
    /// `SASL_SSL` is configured but the credentials were not resolved.
    #[error(
        "kafka.security: SASL_SSL credentials are not loaded (environment variable {0} is unset or empty)"
    )]
    MissingCredentials(String),
}

fn default_client_id() -> String {
    "arfwire".to_owned()
}
fn default_produce_timeout_ms() -> u64 {
    30_000
}
fn default_message_max_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_event_source() -> String {
    "urn:arfwire:worker".to_owned()
}
fn default_group_id() -> String {
    "arfwire-worker".to_owned()
}
fn default_auto_commit_interval_ms() -> u64 {
    5_000
}
fn default_fetch_wait_max_ms() -> u64 {
    100
}
fn default_username_env() -> String {
    "ARFWIRE_KAFKA_USERNAME".to_owned()
}
fn default_password_env() -> String {
    "ARFWIRE_KAFKA_PASSWORD".to_owned()
}

/// Largest value librdkafka accepts for `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000_000;

impl KafkaConfig {
    /// A configuration with every default and the given bootstrap servers.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            client_id: default_client_id(),
            topics: TopicNames::default(),
            produce_timeout_ms: default_produce_timeout_ms(),
            message_max_bytes: default_message_max_bytes(),
            event_source: default_event_source(),
            group_id: default_group_id(),
            auto_commit_interval_ms: default_auto_commit_interval_ms(),
            fetch_wait_max_ms: default_fetch_wait_max_ms(),
            security: Security::Plaintext,
            librdkafka_options: BTreeMap::new(),
        }
    }

    /// Read the SASL credentials through `lookup` (the binary passes an environment
    /// lookup). Does nothing for `PLAINTEXT`.
    pub fn resolve_credentials(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Security::SaslSsl(sasl) = &mut self.security {
            let read = |name: &str| {
                lookup(name)
                    .filter(|value| !value.is_empty())
                    .ok_or_else(|| ConfigError::MissingCredentials(name.to_owned()))
            };
            let username = read(&sasl.username_env)?;
            let password = read(&sasl.password_env)?;
            sasl.credentials = Some(Credentials {
                username: Secret::new(username),
                password: Secret::new(password),
            });
        }
        Ok(())
    }

    /// Check every field; called by every client constructor.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: &str| ConfigError::Invalid {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "bootstrap_servers",
                "must name at least one broker",
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(invalid("client_id", "must not be empty"));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("group_id", "must not be empty"));
        }
        if self.event_source.trim().is_empty() {
            return Err(invalid("event_source", "must not be empty"));
        }
        let names = self.topics.all();
        for (field, name) in ["raw", "events", "rejected", "dlq"].iter().zip(names) {
            if let Err(reason) = check_topic_name(name) {
                return Err(invalid(&format!("topics.{field}"), &reason));
            }
        }
        for (i, a) in names.iter().enumerate() {
            if names[i + 1..].contains(a) {
                return Err(invalid("topics", &format!("{a:?} is used twice")));
            }
        }
        if self.produce_timeout_ms == 0 {
            return Err(invalid("produce_timeout_ms", "must be positive"));
        }
        if self.produce_timeout_ms > i32::MAX as u64 {
            return Err(invalid("produce_timeout_ms", "is too large"));
        }
        if self.auto_commit_interval_ms == 0 || self.auto_commit_interval_ms > i32::MAX as u64 {
            return Err(invalid(
                "auto_commit_interval_ms",
                "must be positive and fit in 32 bits",
            ));
        }
        if !(1..=300_000).contains(&self.fetch_wait_max_ms) {
            return Err(invalid("fetch_wait_max_ms", "must be between 1 and 300000"));
        }
        if !(1_000..=LIBRDKAFKA_MESSAGE_MAX_BYTES).contains(&self.message_max_bytes) {
            return Err(invalid(
                "message_max_bytes",
                "must be between 1000 and 1000000000",
            ));
        }
        for key in self.librdkafka_options.keys() {
            let key = key.trim();
            if PROTECTED_OPTIONS.contains(&key) {
                return Err(ConfigError::ProtectedOption(key.to_owned()));
            }
        }
        Ok(())
    }

    /// The librdkafka settings common to every client: brokers, client id, security and
    /// the escape-hatch options. Never log the result: it holds the credentials.
    pub(crate) fn base_client_config(&self) -> Result<ClientConfig, ConfigError> {
        self.validate()?;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id);
        match &self.security {
            Security::Plaintext => {
                client.set("security.protocol", "plaintext");
            }
            Security::SaslSsl(sasl) => {
                let credentials = sasl
                    .credentials
                    .as_ref()
                    .ok_or_else(|| ConfigError::MissingCredentials(sasl.username_env.clone()))?;
                client
                    .set("security.protocol", "sasl_ssl")
                    .set("sasl.mechanism", sasl.mechanism.as_str())
                    .set("sasl.username", credentials.username.expose())
                    .set("sasl.password", credentials.password.expose())
                    .set("enable.ssl.certificate.verification", "true")
                    .set("ssl.endpoint.identification.algorithm", "https");
                if let Some(ca) = &sasl.ca_location {
                    client.set("ssl.ca.location", ca);
                }
            }
        }
        for (key, value) in &self.librdkafka_options {
            client.set(key.trim(), value);
        }
        Ok(client)
    }
}

/// Kafka's topic-name rule: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err("a topic name has 1 to 249 characters".to_owned());
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are not topic names".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a topic name (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// Whether an escape-hatch property probably holds a secret and must not be printed.
fn is_sensitive_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "key", "username", "token", "jaas"]
        .iter()
        .any(|word| key.contains(word))
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Options<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Options<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (key, value) in self.0 {
                    if is_sensitive_option(key) {
                        map.entry(key, &"[REDACTED]");
                    } else {
                        map.entry(key, value);
                    }
                }
                map.finish()
            }
        }
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("topics", &self.topics)
            .field("produce_timeout_ms", &self.produce_timeout_ms)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("event_source", &self.event_source)
            .field("group_id", &self.group_id)
            .field("auto_commit_interval_ms", &self.auto_commit_interval_ms)
            .field("fetch_wait_max_ms", &self.fetch_wait_max_ms)
            .field("security", &self.security)
            .field("librdkafka_options", &Options(&self.librdkafka_options))
            .finish()
    }
}
