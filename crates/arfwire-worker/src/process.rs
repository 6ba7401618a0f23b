//! What the worker does with one submission: the [`Processor`] interface and the
//! production implementation, [`Pipeline`] (parse, verify the reporter, attribute, derive).

use std::sync::Arc;
use std::time::Duration;

use arfwire_attribution::{DirectorySnapshot, Input, Profile, ReporterTier, attribute};
use arfwire_auth::{Authenticator, ReporterPolicy, SmtpEnvelope, verify_reporter};
use arfwire_events::{
    AttributionV1, Intake, Output, Pseudonymizer, ReporterTrustV1, derive, derive_with,
};
use arfwire_parse::{Limits, Outcome, ParseOptions};
use arfwire_raw::{Channel, RawSubmission};
use arfwire_store::DirectoryHandle;

/// Why processing a submission failed. Every failure counts as one attempt; after
/// `max_attempts` the record goes to the dead-letter topic with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProcessError(pub String);

impl ProcessError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        ProcessError(message.into())
    }
}

/// Turns one raw submission into the records to publish.
///
/// The worker calls [`process`](Processor::process) on a blocking thread (never on the
/// async threads that poll the consumer) under `catch_unwind`: a panic counts as a failed
/// attempt like an `Err`. It may block, e.g. on DNS for reporter verification through
/// [`tokio::runtime::Handle::block_on`].
///
/// Any `Fn(&RawSubmission) -> Result<Vec<Output>, ProcessError>` closure is a processor,
/// which is how tests inject failures without touching production code.
pub trait Processor: Send + Sync + 'static {
    /// The records `submission` yields, in publishing order.
    fn process(&self, submission: &RawSubmission) -> Result<Vec<Output>, ProcessError>;

    /// The version of the tenant directory in use, for the `directory_version` gauge;
    /// `None` when there is no versioned directory.
    fn directory_version(&self) -> Option<i64> {
        None
    }
}

impl<F> Processor for F
where
    F: Fn(&RawSubmission) -> Result<Vec<Output>, ProcessError> + Send + Sync + 'static,
{
    fn process(&self, submission: &RawSubmission) -> Result<Vec<Output>, ProcessError> {
        self(submission)
    }
}

/// Checks each reporter's DKIM, SPF and DMARC (DNS) and assigns a trust tier.
pub struct ReporterCheck {
    /// The resolver and its caches.
    pub authenticator: Arc<Authenticator>,
    /// The known feedback-loop operators.
    pub policy: ReporterPolicy,
    /// Evaluate SPF against the SMTP/LMTP envelope (client IP, HELO, MAIL FROM) when the
    /// submission has one. Behind a local MTA that relays over LMTP the client is that MTA,
    /// not the reporter's server, and SPF says nothing; switch it off there.
    pub spf_from_envelope: bool,
    /// Our host name as the receiving MTA (SPF's `%{r}` macro).
    pub receiving_host: String,
    /// Bound on one verification; past it the reporter counts as not checked (T3).
    pub timeout: Duration,
}

impl std::fmt::Debug for ReporterCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReporterCheck")
            .field("spf_from_envelope", &self.spf_from_envelope)
            .field("receiving_host", &self.receiving_host)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The production [`Processor`]: parse with [`arfwire_parse::parse`] (receive time from
/// the record's intake facts), verify the reporter when configured, attribute every
/// reported message against the **current** directory snapshot, and derive the events
/// with `attribution` and `reporter_trust` filled in, complainant addresses replaced by
/// their pseudonyms.
///
/// Give a service the deployment's pseudonym key ([`Pipeline::with_pseudonymizer`]):
/// without it the process draws a random key (as [`arfwire_events::derive`] does), so
/// complainant tokens, and with them the records' bytes, change from one process to the
/// next (ids never change: they come from the submission bytes).
pub struct Pipeline {
    profile: Profile,
    directory: DirectoryHandle,
    reporters: Option<ReporterCheck>,
    limits: Limits,
    pseudonymizer: Option<Pseudonymizer>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("profile", &self.profile.name)
            .field("directory_version", &self.directory.version())
            .field("reporters", &self.reporters)
            .field("pseudonymizer", &self.pseudonymizer)
            .finish_non_exhaustive()
    }
}

/// The reason recorded when the reporter was not verified.
const NOT_CHECKED: &str = "not checked: reporter verification is switched off in the worker configuration (verify_reporters)";

impl Pipeline {
    /// A pipeline attributing with `profile` against `directory`: a live
    /// [`DirectoryHandle`] (e.g. refreshed from PostgreSQL by
    /// [`DirectoryHandle::spawn_refresh`]) whose current snapshot is taken per submission.
    pub fn new(profile: Profile, directory: DirectoryHandle) -> Self {
        Pipeline {
            profile,
            directory,
            reporters: None,
            limits: Limits::default(),
            pseudonymizer: None,
        }
    }

    /// A pipeline with a fixed directory (version 0), e.g. loaded from a file.
    pub fn with_static_directory(profile: Profile, directory: DirectorySnapshot) -> Self {
        Pipeline::new(profile, DirectoryHandle::new(0, directory))
    }

    /// Verify reporters with `check` (DNS). Without it the tier is T3 "not checked".
    pub fn with_reporter_check(mut self, check: ReporterCheck) -> Self {
        self.reporters = Some(check);
        self
    }

    /// Pseudonymise complainant addresses with this key (the deployment's secret) instead
    /// of a random key of this process.
    pub fn with_pseudonymizer(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    /// Parse with these limits instead of the parser's defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How far the reporter of `submission` is trusted (the parse said it is a report).
    fn trust(&self, submission: &RawSubmission) -> (ReporterTier, ReporterTrustV1) {
        let not_checked = |reason: &str| {
            (
                ReporterTier::T3,
                ReporterTrustV1 {
                    tier: "T3".to_owned(),
                    operator: None,
                    reasons: vec![reason.to_owned()],
                },
            )
        };
        let Some(check) = &self.reporters else {
            return not_checked(NOT_CHECKED);
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return not_checked("not checked: no async runtime to run DNS queries on");
        };
        let envelope = if check.spf_from_envelope {
            smtp_envelope(submission, &check.receiving_host)
        } else {
            None
        };
        let verdict = runtime.block_on(async {
            tokio::time::timeout(
                check.timeout,
                verify_reporter(
                    &submission.bytes,
                    envelope.as_ref(),
                    &check.authenticator,
                    &check.policy,
                ),
            )
            .await
        });
        match verdict {
            Ok(verdict) => {
                let tier = match verdict.tier {
                    arfwire_auth::ReporterTier::T1 => ReporterTier::T1,
                    arfwire_auth::ReporterTier::T2 => ReporterTier::T2,
                    arfwire_auth::ReporterTier::T3 => ReporterTier::T3,
                };
                (
                    tier,
                    ReporterTrustV1 {
                        tier: verdict.tier.as_str().to_owned(),
                        operator: verdict.operator,
                        reasons: verdict.reasons,
                    },
                )
            }
            Err(_elapsed) => {
                metrics::counter!(crate::stats::names::REPORTER_CHECK_TIMEOUTS).increment(1);
                not_checked("not checked: reporter verification timed out")
            }
        }
    }
}

impl Processor for Pipeline {
    fn process(&self, submission: &RawSubmission) -> Result<Vec<Output>, ProcessError> {
        let options = ParseOptions {
            limits: self.limits.clone(),
            received_at_unix: Some(submission.received_at.timestamp()),
        };
        let outcome = arfwire_parse::parse(&submission.bytes, &options);
        let intake = intake_of(submission);
        let mut outputs = match &self.pseudonymizer {
            Some(pseudonymizer) => derive_with(&outcome, &intake, pseudonymizer),
            None => derive(&outcome, &intake),
        };
        let Outcome::Report(parsed) = &outcome else {
            return Ok(outputs);
        };
        let (tier, trust) = self.trust(submission);
        // One snapshot for the whole submission, however often the directory changes.
        let directory = self.directory.current();
        for output in &mut outputs {
            let Output::Event(event) = output else {
                continue;
            };
            let index = usize::try_from(event.report_index).unwrap_or(usize::MAX);
            let item = parsed.reports.get(index).ok_or_else(|| {
                ProcessError::new(format!(
                    "event {index} has no reported message (the submission has {})",
                    parsed.reports.len()
                ))
            })?;
            let input = Input {
                message: &item.message,
                feedback: item.feedback.as_ref(),
                kind: parsed.kind,
                claimed_source_ip: item.claimed_source_ip.as_ref(),
                report_time_unix: Some(submission.received_at.timestamp()),
                reporter_tier: tier,
                verified_signatures: &[],
            };
            let attribution = attribute(&input, &self.profile, &directory.snapshot);
            event.attribution = Some(AttributionV1::from(&attribution));
            event.reporter_trust = Some(trust.clone());
        }
        Ok(outputs)
    }

    fn directory_version(&self) -> Option<i64> {
        Some(self.directory.version())
    }
}

/// The events' intake object of a raw submission: channel, receive time, digest and size,
/// the envelope for SMTP/LMTP, the file path for Maildir and file channels.
pub fn intake_of(submission: &RawSubmission) -> Intake {
    let channel = match submission.channel {
        Channel::Lmtp => arfwire_events::Channel::Lmtp,
        Channel::Smtp => arfwire_events::Channel::Smtp,
        Channel::Maildir => arfwire_events::Channel::Maildir,
        Channel::Imap => arfwire_events::Channel::Imap,
        Channel::File => arfwire_events::Channel::File,
    };
    let intake = Intake::new(&submission.bytes, channel, submission.received_at);
    match submission.channel {
        Channel::Lmtp | Channel::Smtp => {
            let envelope = &submission.envelope;
            intake.with_envelope(
                envelope.mail_from.clone(),
                envelope.rcpt_to.clone(),
                envelope.peer_ip,
            )
        }
        Channel::Maildir | Channel::File => match &submission.source {
            Some(path) => intake.with_file(path.clone(), None),
            None => intake,
        },
        Channel::Imap => intake,
    }
}

/// The SMTP envelope for SPF, when the submission has a client IP and a MAIL FROM.
fn smtp_envelope(submission: &RawSubmission, receiving_host: &str) -> Option<SmtpEnvelope> {
    let envelope = &submission.envelope;
    Some(SmtpEnvelope {
        client_ip: envelope.peer_ip?,
        helo: envelope.helo.clone().unwrap_or_default(),
        mail_from: envelope.mail_from.clone()?,
        receiving_host: receiving_host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arfwire_raw::Envelope;
    use chrono::TimeZone;

    #[test]
    fn lmtp_intake_carries_the_envelope_and_maildir_the_path() {
        let at = chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let mut raw = RawSubmission::new(b"Subject: x\r\n\r\nbody\r\n".to_vec(), Channel::Lmtp, at);
        raw.envelope = Envelope {
            mail_from: Some(String::new()),
            rcpt_to: vec!["junk@example.net".to_owned()],
            peer_ip: Some("192.0.2.1".parse().unwrap()),
            helo: Some("mx.example.org".to_owned()),
        };
        let intake = intake_of(&raw);
        assert_eq!(intake.channel, arfwire_events::Channel::Lmtp);
        assert_eq!(intake.mail_from.as_deref(), Some(""));
        assert_eq!(intake.rcpt_to, Some(vec!["junk@example.net".to_owned()]));
        assert_eq!(intake.received_at, "2024-05-01T12:00:00.000Z");
        assert_eq!(intake.raw_sha256, raw.sha256_hex());
        assert!(smtp_envelope(&raw, "in.example.net").is_some());

        raw.channel = Channel::Maildir;
        raw.source = Some("new/1.eml".to_owned());
        let intake = intake_of(&raw);
        assert_eq!(intake.file_path.as_deref(), Some("new/1.eml"));
        assert_eq!(intake.rcpt_to, None);
    }

    #[test]
    fn a_pipeline_without_reporter_check_says_not_checked() {
        let profile = Profile::from_toml(include_str!(
            "../../../deploy/profiles/documentation-test.toml"
        ))
        .unwrap();
        let pipeline = Pipeline::with_static_directory(profile, DirectorySnapshot::default());
        let at = chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let raw = RawSubmission::new(
            include_bytes!("../../../fixtures/arf/001-rfc5965-every-field.eml").to_vec(),
            Channel::Lmtp,
            at,
        );
        let outputs = pipeline.process(&raw).unwrap();
        assert!(!outputs.is_empty());
        for output in &outputs {
            let Output::Event(event) = output else {
                panic!("an ARF fixture yields events")
            };
            assert!(event.attribution.is_some());
            let trust = event.reporter_trust.as_ref().unwrap();
            assert_eq!(trust.tier, "T3");
            assert_eq!(trust.reasons, vec![NOT_CHECKED.to_owned()]);
        }
        assert_eq!(pipeline.directory_version(), Some(0));

        // With a fixed key two pipelines (two processes) write byte-identical records.
        let keyed = |profile: Profile| {
            Pipeline::with_static_directory(profile, DirectorySnapshot::default())
                .with_pseudonymizer(Pseudonymizer::development())
        };
        let profile = || {
            Profile::from_toml(include_str!(
                "../../../deploy/profiles/documentation-test.toml"
            ))
            .unwrap()
        };
        let one = keyed(profile()).process(&raw).unwrap();
        let two = keyed(profile()).process(&raw).unwrap();
        assert_eq!(one, two);
    }
}
