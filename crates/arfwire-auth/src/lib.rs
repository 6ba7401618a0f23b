//! Authentication for the abuse pipeline, on top of mail-auth: how far to trust a report's
//! sender, and which DKIM signatures of a reported message the provider itself can vouch for.
//!
//! * [`verify_reporter`] checks DKIM, SPF (when we received the report over SMTP/LMTP) and DMARC
//!   of the submission and assigns a [`ReporterTier`] against the enrolled feedback-loop
//!   operators of a [`ReporterPolicy`]. Authentication results written by anyone but us are
//!   never trusted.
//! * [`verify_with_registry`] verifies the reported message's DKIM signatures with the
//!   provider's own key registry and returns the [`VerifiedSignature`]s (evidence E2). It makes
//!   no DNS query and needs no async runtime.
//! * [`Authenticator`] is the DNS side: the system resolver with TTL caches in production, or
//!   a closed world of records we supply ([`Authenticator::offline`]).
//!
//! This is an IO adapter: DNS lookups happen here (and only in [`verify_reporter`]); the
//! attribution engine receives the resulting tier and signatures as plain values.

mod dns;
mod policy;
mod registry;
mod reporter;

pub use dns::{Authenticator, DEFAULT_CACHE_CAPACITY, DnsCache, DnsCaches};
pub use policy::{FeedbackLoop, ReporterPolicy};
pub use registry::{
    RegistryKey, RegistryOutcome, RejectedSignature, verify_with_registry,
    verify_with_registry_detailed,
};
pub use reporter::{
    DmarcCheck, ReporterVerdict, SignatureCheck, SmtpEnvelope, SpfCheck, verify_reporter,
};

/// How far a report's sender is trusted (reliability test plan §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReporterTier {
    /// An enrolled feedback-loop operator, authenticated by DKIM or DMARC.
    T1,
    /// Authenticated by DKIM or DMARC, but not an enrolled operator.
    T2,
    /// Not authenticated: anything in the report could be forged.
    #[default]
    T3,
}

impl ReporterTier {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            ReporterTier::T1 => "T1",
            ReporterTier::T2 => "T2",
            ReporterTier::T3 => "T3",
        }
    }
}

/// A DKIM signature of a reported message that verified with a key from the provider's own
/// registry, so only the provider could have made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifiedSignature {
    /// `d=`, lower case.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// Only the header signature verified: the body was altered or redacted, or `l=` left part
    /// of it unsigned. The signed headers (From, Message-ID, Date, ...) are still proven.
    pub headers_only: bool,
}

/// Result of one authentication check, in RFC 8601 terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthResult {
    /// Verified.
    Pass,
    /// Verification failed.
    Fail,
    /// SPF `~all`.
    SoftFail,
    /// No assertion (DKIM: e.g. body hash mismatch, expired signature).
    Neutral,
    /// Nothing to evaluate.
    None,
    /// A transient error, usually DNS.
    TempError,
    /// A permanent error: malformed record or signature, missing key.
    PermError,
}

impl AuthResult {
    /// RFC 8601 result keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The DNS resolver could not be set up.
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// A DNS record supplied to a cache did not parse.
    #[error("record at {name}: {detail}")]
    Record {
        /// Where it was to be inserted.
        name: String,
        /// mail-auth's complaint.
        detail: String,
    },
    /// The feedback-loop policy is invalid.
    #[error("feedback-loop policy: {0}")]
    Policy(String),
    /// A file could not be read.
    #[error("reading {path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        detail: String,
    },
}
