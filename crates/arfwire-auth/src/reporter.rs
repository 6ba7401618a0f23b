//! How far to trust the sender of a report: DKIM, SPF and DMARC of the submission itself.
//!
//! Only what we verify counts. `Authentication-Results`, `ARC-*` and `Received-SPF` fields in
//! the submission were written by the reporter or by hops before us; they are counted in the
//! reasons and otherwise ignored.

use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, SpfOutput, SpfResult,
    common::crypto::Algorithm, dmarc::verify::DmarcParameters, spf::verify::SpfParameters,
};
use std::net::IpAddr;

use crate::{AuthResult, Authenticator, ReporterPolicy, ReporterTier};

/// What the SMTP or LMTP session told us about the submission, when we received it that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEnvelope {
    /// Address of the client that connected to us.
    pub client_ip: IpAddr,
    /// Its HELO/EHLO name.
    pub helo: String,
    /// MAIL FROM address, empty for the null sender `<>`.
    pub mail_from: String,
    /// Our own host name as the receiving MTA (SPF's `%{r}` macro).
    pub receiving_host: String,
}

/// The result for one `DKIM-Signature` of the submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// `d=`, lower case; empty if the field could not be parsed.
    pub domain: String,
    /// `s=`; empty if the field could not be parsed.
    pub selector: String,
    /// Our result, which may be stricter than the library's (see [`verify_reporter`]).
    pub result: AuthResult,
    /// Why it did not pass, if it did not.
    pub detail: Option<String>,
}

/// SPF of the SMTP session (MAIL FROM, or HELO for the null sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    /// Domain whose SPF record was evaluated.
    pub domain: String,
    /// Result.
    pub result: AuthResult,
}

/// DMARC of the submission's `From:` domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCheck {
    /// The `From:` domain; empty when there is none (or several different ones).
    pub from_domain: String,
    /// Overall result: pass if an aligned DKIM or SPF identity passed.
    pub result: AuthResult,
    /// Aligned DKIM.
    pub dkim: AuthResult,
    /// Aligned SPF.
    pub spf: AuthResult,
}

/// How far to trust the reporter, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterVerdict {
    /// T1 enrolled and authenticated; T2 authenticated, unknown; T3 unauthenticated.
    pub tier: ReporterTier,
    /// The enrolled operator, for T1.
    pub operator: Option<String>,
    /// Every `DKIM-Signature` of the submission.
    pub signatures: Vec<SignatureCheck>,
    /// `None` when no SMTP envelope was known.
    pub spf: Option<SpfCheck>,
    /// DMARC of the `From:` domain.
    pub dmarc: DmarcCheck,
    /// One-line reasons, for the explanation.
    pub reasons: Vec<String>,
}

impl ReporterVerdict {
    /// Whether a DNS failure (temperror) affected the verdict: verifying again later may give
    /// a higher tier, so an intake that can defer (SMTP 451) or re-check should.
    pub fn has_temporary_errors(&self) -> bool {
        self.signatures
            .iter()
            .any(|s| s.result == AuthResult::TempError)
            || self
                .spf
                .as_ref()
                .is_some_and(|spf| spf.result == AuthResult::TempError)
            || self.dmarc.result == AuthResult::TempError
    }
}

/// Verifies DKIM of the submission, SPF when `envelope` is known (SMTP/LMTP intake) and DMARC
/// on its `From:` domain, then assigns a tier:
///
/// * **T1**: a DKIM signature passes with a `d=` in `policy`, or DMARC passes for a `From:`
///   domain in `policy`;
/// * **T2**: some DKIM signature or DMARC passes, but nothing enrolled;
/// * **T3**: everything else. SPF on its own does not authenticate the report's content.
///
/// A DKIM signature counts as a pass only if mail-auth verifies it, it signs `From:` (RFC 6376
/// §5.4) and it does not use rsa-sha1 (RFC 8301). Signatures with `l=` are refused by the parser.
/// `r=` (failure reports) and `atps=` (third-party signatures) are ignored, so verifying a report
/// never looks up names beyond the signer's key and the SPF and DMARC records.
///
/// `raw_submission` must be the bytes as received: DKIM fails if line endings or anything else
/// were changed.
pub async fn verify_reporter(
    raw_submission: &[u8],
    envelope: Option<&SmtpEnvelope>,
    authenticator: &Authenticator,
    policy: &ReporterPolicy,
) -> ReporterVerdict {
    let Some(mut message) = AuthenticatedMessage::parse(raw_submission) else {
        return ReporterVerdict {
            tier: ReporterTier::T3,
            operator: None,
            signatures: Vec::new(),
            spf: None,
            dmarc: DmarcCheck {
                from_domain: String::new(),
                result: AuthResult::None,
                dkim: AuthResult::None,
                spf: AuthResult::None,
            },
            reasons: vec!["T3: the submission has no header section to authenticate".to_owned()],
        };
    };
    for header in &mut message.dkim_headers {
        header.header.r = false;
        header.header.atps = None;
        header.header.atpsh = None;
    }
    let resolver = authenticator.resolver();
    let caches = authenticator.caches();
    let mut reasons = Vec::new();

    // DKIM.
    let dkim_outputs = resolver.verify_dkim(caches.parameters(&message)).await;
    let mut signatures = Vec::with_capacity(dkim_outputs.len());
    let mut accepted_outputs: Vec<DkimOutput<'_>> = Vec::with_capacity(dkim_outputs.len());
    for output in &dkim_outputs {
        let check = check_signature(output);
        if check.result == AuthResult::Pass || output.result() != &DkimResult::Pass {
            accepted_outputs.push(output.clone());
        }
        signatures.push(check);
    }

    // SPF, only when we received the submission over SMTP ourselves.
    let (spf_output, spf, mail_from_domain) = match envelope {
        Some(envelope) => {
            let params = SpfParameters::verify(
                envelope.client_ip,
                &envelope.helo,
                &envelope.receiving_host,
                &envelope.mail_from,
            );
            let output = resolver.verify_spf(caches.parameters(params)).await;
            let check = SpfCheck {
                domain: output.domain().to_ascii_lowercase(),
                result: spf_result(output.result()),
            };
            let domain = match envelope.mail_from.rsplit_once('@') {
                Some((_, domain)) => domain.to_owned(),
                None => envelope.helo.clone(),
            };
            (output, Some(check), domain)
        }
        None => (SpfOutput::default(), None, String::new()),
    };

    // DMARC, fed only the DKIM results we accept.
    let dmarc_output = resolver
        .verify_dmarc(caches.parameters(DmarcParameters::new(
            &message,
            &accepted_outputs,
            &mail_from_domain,
            &spf_output,
        )))
        .await;
    let dmarc = DmarcCheck {
        from_domain: dmarc_output.domain().to_ascii_lowercase(),
        result: dmarc_result(&dmarc_output.result()),
        dkim: dmarc_result(dmarc_output.dkim_result()),
        spf: dmarc_result(dmarc_output.spf_result()),
    };

    // Tier.
    let passing: Vec<&SignatureCheck> = signatures
        .iter()
        .filter(|s| s.result == AuthResult::Pass)
        .collect();
    let dmarc_pass = dmarc.result == AuthResult::Pass;
    let enrolled_dkim = passing
        .iter()
        .find_map(|s| policy.operator_for_dkim_domain(&s.domain).map(|op| (s, op)));
    let enrolled_from = if dmarc_pass {
        policy.operator_for_from_domain(&dmarc.from_domain)
    } else {
        None
    };
    let (tier, operator) = if let Some((signature, op)) = enrolled_dkim {
        reasons.push(format!(
            "T1: DKIM pass for d={} s={}, enrolled as feedback loop {:?}",
            signature.domain, signature.selector, op.name
        ));
        (ReporterTier::T1, Some(op.name.clone()))
    } else if let Some(op) = enrolled_from {
        reasons.push(format!(
            "T1: DMARC pass for From domain {}, enrolled as feedback loop {:?}",
            dmarc.from_domain, op.name
        ));
        (ReporterTier::T1, Some(op.name.clone()))
    } else if !passing.is_empty() || dmarc_pass {
        let mut identities: Vec<String> =
            passing.iter().map(|s| format!("d={}", s.domain)).collect();
        if dmarc_pass {
            identities.push(format!("DMARC From {}", dmarc.from_domain));
        }
        reasons.push(format!(
            "T2: authenticated ({}) but not an enrolled feedback loop",
            identities.join(", ")
        ));
        (ReporterTier::T2, None)
    } else {
        reasons.push(
            "T3: no valid DKIM signature and no DMARC pass: anyone could have written this report"
                .to_owned(),
        );
        (ReporterTier::T3, None)
    };

    for signature in &signatures {
        if signature.result != AuthResult::Pass {
            reasons.push(format!(
                "DKIM {} for d={} s={}: {}",
                signature.result.as_str(),
                if signature.domain.is_empty() {
                    "?"
                } else {
                    &signature.domain
                },
                if signature.selector.is_empty() {
                    "?"
                } else {
                    &signature.selector
                },
                signature.detail.as_deref().unwrap_or("no detail")
            ));
        }
    }
    if signatures.is_empty() {
        reasons.push("the submission carries no DKIM signature".to_owned());
    }
    match &spf {
        Some(spf) => {
            let note = if spf.result == AuthResult::Pass && tier == ReporterTier::T3 {
                " (SPF alone authenticates the connection, not the report)"
            } else {
                ""
            };
            reasons.push(format!(
                "SPF {} for {}{note}",
                spf.result.as_str(),
                spf.domain
            ));
        }
        None => reasons.push("SPF not evaluated: no SMTP envelope".to_owned()),
    }
    if !dmarc.from_domain.is_empty() {
        reasons.push(format!(
            "DMARC {} for From domain {}",
            dmarc.result.as_str(),
            dmarc.from_domain
        ));
    }
    let foreign_results = message
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.trim_ascii();
            name.eq_ignore_ascii_case(b"Authentication-Results")
                || name.eq_ignore_ascii_case(b"ARC-Authentication-Results")
                || name.eq_ignore_ascii_case(b"Received-SPF")
        })
        .count();
    if foreign_results > 0 {
        reasons.push(format!(
            "ignored {foreign_results} authentication result field(s) written before us"
        ));
    }

    ReporterVerdict {
        tier,
        operator,
        signatures,
        spf,
        dmarc,
        reasons,
    }
}

fn check_signature(output: &DkimOutput<'_>) -> SignatureCheck {
    let (domain, selector) = match output.signature() {
        Some(signature) => (signature.d.to_ascii_lowercase(), signature.s.clone()),
        None => (String::new(), String::new()),
    };
    let mut check = SignatureCheck {
        domain,
        selector,
        result: dkim_result(output.result()),
        detail: dkim_detail(output.result()),
    };
    if let (AuthResult::Pass, Some(signature)) = (check.result, output.signature()) {
        if let Some(refusal) = refuse_passing_signature(signature) {
            check.result = AuthResult::Fail;
            check.detail = Some(refusal.to_owned());
        }
    } else if output.signature().is_none() && check.detail.is_none() {
        check.detail = Some("malformed DKIM-Signature".to_owned());
    }
    check
}

/// Rules on top of mail-auth's verification that a signature must meet to count.
pub(crate) fn refuse_passing_signature(
    signature: &mail_auth::dkim::Signature,
) -> Option<&'static str> {
    if signature.a == Algorithm::RsaSha1 {
        Some("rsa-sha1 signatures are not accepted (RFC 8301)")
    } else if !signature
        .h
        .iter()
        .any(|h| h.trim().eq_ignore_ascii_case("from"))
    {
        Some("the signature does not cover From (RFC 6376 section 5.4)")
    } else {
        None
    }
}

pub(crate) fn dkim_result(result: &DkimResult) -> AuthResult {
    match result {
        DkimResult::Pass => AuthResult::Pass,
        DkimResult::Neutral(_) => AuthResult::Neutral,
        DkimResult::Fail(_) => AuthResult::Fail,
        DkimResult::PermError(_) => AuthResult::PermError,
        DkimResult::TempError(_) => AuthResult::TempError,
        DkimResult::None => AuthResult::None,
    }
}

fn dkim_detail(result: &DkimResult) -> Option<String> {
    match result {
        DkimResult::Neutral(err)
        | DkimResult::Fail(err)
        | DkimResult::PermError(err)
        | DkimResult::TempError(err) => Some(describe_error(err)),
        DkimResult::Pass | DkimResult::None => None,
    }
}

/// mail-auth's error text, except for a failed signature check, whose text is the crypto
/// library's.
pub(crate) fn describe_error(err: &mail_auth::Error) -> String {
    match err {
        mail_auth::Error::Crypto(_) => "the signature does not verify with the key".to_owned(),
        other => other.to_string(),
    }
}

fn spf_result(result: SpfResult) -> AuthResult {
    match result {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

fn dmarc_result(result: &DmarcResult) -> AuthResult {
    match result {
        DmarcResult::Pass => AuthResult::Pass,
        DmarcResult::Fail(_) => AuthResult::Fail,
        DmarcResult::TempError(_) => AuthResult::TempError,
        DmarcResult::PermError(_) => AuthResult::PermError,
        DmarcResult::None => AuthResult::None,
    }
}
