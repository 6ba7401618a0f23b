//! DKIM of a reported message, verified with keys the provider holds (evidence E2).
//!
//! As the provider we hold every key we ever signed with, retired ones included, so we verify
//! against our key registry instead of DNS: no query, no dependence on what DNS says today, and
//! keys rotated out of DNS still verify old mail.
//!
//! How DNS is kept out: each signature is verified on its own against a closed-world TXT cache
//! holding exactly one registry key, under the name mail-auth will ask for; `r=` and `atps=` are
//! cleared first, so that key is the only name asked. The resolver behind the cache has no name
//! server, and the verification future is polled once without an async runtime: it completes in
//! that poll because every answer comes from memory, and a future that wanted to wait for the
//! network would be dropped and its signature rejected.

use mail_auth::{
    AuthenticatedMessage, DkimResult, Error as MailAuthError, MessageAuthenticator,
    common::crypto::HashAlgorithm, dkim::DkimError,
};
use std::{
    future::Future,
    pin::pin,
    sync::OnceLock,
    task::{Context, Poll, Waker},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    DnsCaches, VerifiedSignature,
    dns::no_network_resolver,
    reporter::{describe_error, dkim_result, refuse_passing_signature},
};

/// One DKIM key of the provider's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryKey {
    /// `d=` the key signs for.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// The DKIM TXT record value as published, e.g. `v=DKIM1; k=rsa; p=MIIB...`.
    pub public_key_txt: String,
    /// First second (Unix time, inclusive) the key was in use; `None` for no lower bound.
    pub active_from: Option<i64>,
    /// End of use (Unix time, exclusive); `None` while still in use.
    pub active_to: Option<i64>,
}

impl RegistryKey {
    /// Whether the key was in use at `time` (Unix seconds).
    pub fn is_active_at(&self, time: i64) -> bool {
        self.active_from.is_none_or(|from| time >= from)
            && self.active_to.is_none_or(|to| time < to)
    }
}

/// A signature [`verify_with_registry_detailed`] did not accept, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedSignature {
    /// `d=`, lower case; empty if the field could not be parsed.
    pub domain: String,
    /// `s=`; empty if the field could not be parsed.
    pub selector: String,
    /// One line.
    pub reason: String,
}

/// Everything [`verify_with_registry_detailed`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryOutcome {
    /// Signatures that verified with a registry key active at the message time.
    pub verified: Vec<VerifiedSignature>,
    /// The others.
    pub rejected: Vec<RejectedSignature>,
    /// Names verification asked for that were not the registry key it was given. Always 0
    /// unless mail-auth starts asking for more; kept so tests and metrics can prove it.
    pub lookups_outside_registry: u64,
}

/// Verifies every `DKIM-Signature` of `reported_message` with the keys of `registry` only, and
/// returns those that pass (see [`verify_with_registry_detailed`]).
pub fn verify_with_registry(
    reported_message: &[u8],
    registry: &[RegistryKey],
    at: Option<i64>,
) -> Vec<VerifiedSignature> {
    verify_with_registry_detailed(reported_message, registry, at).verified
}

/// Verifies every `DKIM-Signature` of `reported_message` with the keys of `registry` only.
///
/// * A signature is tried with each registry key whose domain and selector match (case-
///   insensitively) and that was active at the message time: `at` when given, else the
///   signature's own `t=` (signed, so trustworthy once the signature verifies), else now. A
///   selector reused across key rotations is handled: every active key is tried.
/// * Body hash and header signature verify: `headers_only = false`.
/// * The body hash fails (body altered or redacted) but `b=` verifies over the signed headers,
///   which include the `bh=` value: `headers_only = true`. The same applies to a signature with
///   `l=` (the body past `l` bytes is not covered).
/// * Anything else, or a key not in the registry or not active at that time: rejected.
/// * rsa-sha1 signatures and signatures that do not cover `From` are rejected; an `x=` expiry
///   earlier than the message time rejects the signature.
///
/// Needs no async runtime and makes no DNS query.
pub fn verify_with_registry_detailed(
    reported_message: &[u8],
    registry: &[RegistryKey],
    at: Option<i64>,
) -> RegistryOutcome {
    let mut outcome = RegistryOutcome::default();
    // Not strict: accept `l=` here and report such signatures as headers-only.
    let Some(message) = AuthenticatedMessage::parse_with_opts(reported_message, None, false) else {
        return outcome;
    };
    for error in &message.errors {
        if error
            .name
            .trim_ascii()
            .eq_ignore_ascii_case(b"DKIM-Signature")
        {
            outcome.rejected.push(RejectedSignature {
                domain: String::new(),
                selector: String::new(),
                reason: format!("malformed DKIM-Signature: {}", error.header),
            });
        }
    }
    if message.dkim_headers.is_empty() {
        return outcome;
    }
    let Some(resolver) = registry_resolver() else {
        for header in &message.dkim_headers {
            outcome.rejected.push(RejectedSignature {
                domain: header.header.d.to_ascii_lowercase(),
                selector: header.header.s.clone(),
                reason: "could not set up the offline verifier".to_owned(),
            });
        }
        return outcome;
    };

    for header in &message.dkim_headers {
        let signature = &header.header;
        let domain = signature.d.to_ascii_lowercase();
        let selector = signature.s.clone();
        let reject = |reason: String| RejectedSignature {
            domain: domain.clone(),
            selector: selector.clone(),
            reason,
        };
        if let Some(refusal) = refuse_passing_signature(signature) {
            outcome.rejected.push(reject(refusal.to_owned()));
            continue;
        }
        let time = at
            .or_else(|| i64::try_from(signature.t).ok().filter(|t| *t > 0))
            .unwrap_or_else(now);
        if signature.x != 0 && i64::try_from(signature.x).is_ok_and(|x| time > x) {
            outcome.rejected.push(reject(format!(
                "signature expired (x={}) before the message time {time}",
                signature.x
            )));
            continue;
        }
        let mut matching = registry.iter().filter(|key| {
            key.domain.eq_ignore_ascii_case(&domain) && key.selector.eq_ignore_ascii_case(&selector)
        });
        let Some(first) = matching.next() else {
            outcome.rejected.push(reject(format!(
                "no registry key for {selector}._domainkey.{domain}"
            )));
            continue;
        };
        let active: Vec<&RegistryKey> = std::iter::once(first)
            .chain(matching)
            .filter(|key| key.is_active_at(time))
            .collect();
        if active.is_empty() {
            outcome.rejected.push(reject(format!(
                "no key for {selector}._domainkey.{domain} was active at {time}"
            )));
            continue;
        }

        // This signature alone, without the tags that would make mail-auth look up more names,
        // and with expiry already judged against the message time.
        let mut single = message.clone();
        single.errors.clear();
        single.dkim_headers = vec![header.clone()];
        {
            let only = &mut single.dkim_headers[0].header;
            only.r = false;
            only.atps = None;
            only.atpsh = None;
            only.x = 0;
        }

        let mut result: Result<bool, String> = Err("no active key".to_owned());
        for key in active {
            let caches = DnsCaches::closed();
            if let Err(err) = caches.insert_dkim_key(&selector, &domain, &key.public_key_txt) {
                result = Err(format!("registry key unusable: {err}"));
                continue;
            }
            result = match verify_offline(resolver, &caches, &single) {
                Some(DkimResult::Pass) => Ok(signature.l > 0),
                Some(DkimResult::Neutral(MailAuthError::Dkim(DkimError::FailedBodyHashMatch))) => {
                    verify_headers_only(resolver, &caches, &single)
                }
                Some(other) => Err(describe(&other)),
                None => Err("verification wanted a DNS answer the registry does not hold".into()),
            };
            outcome.lookups_outside_registry += caches.misses();
            if result.is_ok() {
                break;
            }
        }
        match result {
            Ok(headers_only) => {
                let verified = VerifiedSignature {
                    domain: domain.clone(),
                    selector: selector.clone(),
                    headers_only,
                };
                if !outcome.verified.contains(&verified) {
                    outcome.verified.push(verified);
                }
            }
            Err(reason) => outcome.rejected.push(reject(reason)),
        }
    }
    outcome
}

/// Re-verifies `message` (one signature) as if its body hash had matched: the header
/// signature `b=` is checked over the signed headers, which include the claimed `bh=`.
fn verify_headers_only(
    resolver: &MessageAuthenticator,
    caches: &DnsCaches,
    message: &AuthenticatedMessage<'_>,
) -> Result<bool, String> {
    let signature = &message.dkim_headers[0].header;
    let hash = HashAlgorithm::from(signature.a);
    let mut claimed = message.clone();
    let Some(entry) = claimed
        .body_hashes
        .iter_mut()
        .find(|(c, h, l, _)| *c == signature.cb && *h == hash && *l == signature.l)
    else {
        return Err("body hash mismatch".to_owned());
    };
    entry.3 = signature.bh.clone();
    match verify_offline(resolver, caches, &claimed) {
        Some(DkimResult::Pass) => Ok(true),
        Some(other) => Err(format!(
            "body hash mismatch, and the header signature: {}",
            describe(&other)
        )),
        None => Err("verification wanted a DNS answer the registry does not hold".into()),
    }
}

fn describe(result: &DkimResult) -> String {
    match result {
        DkimResult::Neutral(err)
        | DkimResult::Fail(err)
        | DkimResult::PermError(err)
        | DkimResult::TempError(err) => {
            format!("{}: {}", dkim_result(result).as_str(), describe_error(err))
        }
        DkimResult::Pass | DkimResult::None => result.to_string(),
    }
}

fn verify_offline(
    resolver: &MessageAuthenticator,
    caches: &DnsCaches,
    message: &AuthenticatedMessage<'_>,
) -> Option<DkimResult> {
    let outputs = complete_without_waiting(resolver.verify_dkim(caches.parameters(message)))?;
    outputs
        .into_iter()
        .next()
        .map(|output| output.result().clone())
}

/// Polls `future` once. `None` if it is not ready, i.e. it wanted to wait for IO.
fn complete_without_waiting<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

fn registry_resolver() -> Option<&'static MessageAuthenticator> {
    static RESOLVER: OnceLock<Option<MessageAuthenticator>> = OnceLock::new();
    RESOLVER.get_or_init(|| no_network_resolver().ok()).as_ref()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
