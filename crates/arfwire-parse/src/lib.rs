//! Parse and classify mail sent to an abuse mailbox.
//!
//! The one entry point is [`parse`]: the caller passes the raw bytes of a submission and the
//! time it was received, and gets an [`Outcome`]: a [`Submission`] holding every reported
//! message, a [`NotReport`] (a bounce, an auto-reply, ordinary mail) with a reason, or a
//! [`Rejection`] when the input breaks a hard limit or is not mail at all.
//!
//! This crate does no IO, reads no clock, draws no random numbers and never panics: limits
//! are checked by a linear pre-scan before the MIME parser runs, and the whole parse runs
//! under `catch_unwind` as a last resort. Deviations from the standards are reported as
//! [`Diagnostic`]s with stable codes rather than refused.
//!
//! ```ignore
//! let outcome = arfwire_parse::parse(&bytes, &arfwire_parse::ParseOptions::default());
//! ```

mod address;
mod arf;
mod classify;
mod diag;
mod headers;
mod inline;
mod limits;
mod message;
mod types;

#[cfg(test)]
mod tests;

pub use address::domain_of;
pub use diag::{Code, Diagnostic, Severity};
pub use limits::Limits;
pub use types::*;

/// Options for one parse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParseOptions {
    /// Hard resource limits.
    pub limits: Limits,
    /// When the submission was received, as seconds since the Unix epoch. Used only for
    /// plausibility diagnostics (an arrival date in the future); `None` skips them.
    pub received_at_unix: Option<i64>,
}

/// Parse and classify one submission. Never panics.
pub fn parse(raw: &[u8], options: &ParseOptions) -> Outcome {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| classify::run(raw, options))) {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Rejected(Rejection {
            reason: RejectReason::ParserFailure,
            detail: "the parser failed on this input; it was contained and the input kept"
                .to_owned(),
            diagnostics: Vec::new(),
        }),
    }
}

/// Parse one `message/feedback-report` body on its own (used by fuzzing and tooling).
pub fn parse_feedback_fields(body: &[u8], limits: &Limits) -> (FeedbackReport, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let report = arf::parse_fields(body, limits, None, &mut diagnostics);
    (report, diagnostics)
}

/// The version of this parser, recorded in every event so a replay can tell old from new.
pub const PARSER_VERSION: &str = env!("CARGO_PKG_VERSION");
