//! Attribute a reported message to the tenant of our platform that sent it, and to the IPs
//! that sent it, with evidence, a confidence and a plain explanation.
//!
//! Pure: no IO, no clock, no randomness, never panics. Inputs are a parsed reported message
//! (from `arfwire-parse`), a provider [`Profile`], a [`DirectorySnapshot`] of tenants and the
//! time of the report; the output is an [`Attribution`]. Only what the provider's own servers
//! wrote (between the egress and ingress trust boundaries, and anchored stamps) can make an
//! attribution strong; anything a reporter or sender could type is weaker evidence.

pub mod directory;
mod engine;
pub mod fields;
pub mod ip;
pub mod profile;
pub mod received;
mod types;

pub use directory::DirectorySnapshot;
pub use engine::{Input, Options, ReporterTier, VerifiedSignature, attribute, attribute_with};
pub use profile::Profile;
pub use types::*;
