//! Provider-key verification of reported messages (evidence E2; test plan P4). These are plain
//! `#[test]`s without an async runtime: the registry path must complete without any IO.

use std::time::{SystemTime, UNIX_EPOCH};

use arfwire_auth::{
    RegistryKey, RegistryOutcome, VerifiedSignature, verify_with_registry,
    verify_with_registry_detailed,
};

use crate::support::{Sign, TestKey, crlf, outbound_message, replace_once};

const DAY: i64 = 86_400;

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("time")
}

fn registry_key(
    key: &TestKey,
    domain: &str,
    selector: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> RegistryKey {
    RegistryKey {
        domain: domain.to_owned(),
        selector: selector.to_owned(),
        public_key_txt: key.txt.clone(),
        active_from: from,
        active_to: to,
    }
}

fn verified(domain: &str, selector: &str, headers_only: bool) -> VerifiedSignature {
    VerifiedSignature {
        domain: domain.to_owned(),
        selector: selector.to_owned(),
        headers_only,
    }
}

/// Verifies and checks that nothing beyond the registry was asked for.
fn check(message: &[u8], registry: &[RegistryKey], at: Option<i64>) -> RegistryOutcome {
    let outcome = verify_with_registry_detailed(message, registry, at);
    assert_eq!(outcome.lookups_outside_registry, 0, "{outcome:#?}");
    assert_eq!(
        outcome.verified,
        verify_with_registry(message, registry, at)
    );
    outcome
}

fn rejected_because(outcome: &RegistryOutcome, needle: &str) -> bool {
    outcome.rejected.iter().any(|r| r.reason.contains(needle))
}

#[test]
fn message_signed_with_a_registry_key_verifies_in_full() {
    let key = TestKey::generate();
    let registry = [registry_key(
        &key,
        "tenant-a.example",
        "s2026",
        Some(now() - DAY),
        None,
    )];
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());

    let outcome = check(&signed, &registry, Some(now()));

    assert_eq!(
        outcome.verified,
        [verified("tenant-a.example", "s2026", false)]
    );
    assert!(outcome.rejected.is_empty(), "{outcome:#?}");
}

#[test]
fn domain_and_selector_match_case_insensitively() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "Tenant-A.Example", "S2026", None, None)];
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());

    let outcome = check(&signed, &registry, None);

    assert_eq!(
        outcome.verified,
        [verified("tenant-a.example", "s2026", false)]
    );
}

#[test]
fn altered_body_verifies_headers_only() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());
    // A list footer appended, and the unsubscribe link redacted by the reporter.
    let mut altered = replace_once(&signed, "https://tenant-a.example/u", "[redacted]");
    altered.extend_from_slice(b"--\r\nSent through a mailing list\r\n");

    let outcome = check(&altered, &registry, Some(now()));

    assert_eq!(
        outcome.verified,
        [verified("tenant-a.example", "s2026", true)]
    );
}

#[test]
fn altered_signed_header_verifies_nothing() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());
    let altered = replace_once(
        &signed,
        "From: Sales <sales@tenant-a.example>",
        "From: Sales <sales@tenant-b.example>",
    );

    let outcome = check(&altered, &registry, Some(now()));

    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert_eq!(outcome.rejected.len(), 1);
}

#[test]
fn altered_header_and_body_verifies_nothing() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());
    let altered = replace_once(&signed, "Subject: Spring offer", "Subject: Winter offer");
    let altered = replace_once(&altered, "only this week", "only this month");

    let outcome = check(&altered, &registry, Some(now()));

    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert!(
        rejected_because(&outcome, "body hash mismatch"),
        "{outcome:#?}"
    );
}

#[test]
fn body_length_signature_verifies_headers_only() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    let mut sign = Sign::new(&key, "tenant-a.example", "s2026");
    sign.body_length = true;
    let mut signed = sign.sign(&outbound_message());
    signed.extend_from_slice(b"Text appended past l=\r\n");

    let outcome = check(&signed, &registry, Some(now()));

    assert_eq!(
        outcome.verified,
        [verified("tenant-a.example", "s2026", true)]
    );
}

#[test]
fn key_not_in_the_registry_verifies_nothing() {
    let ours = TestKey::generate();
    let theirs = TestKey::generate();
    let registry = [registry_key(&ours, "tenant-a.example", "s2026", None, None)];

    // Same domain and selector, different key: a forgery in our name.
    let forged = Sign::new(&theirs, "tenant-a.example", "s2026").sign(&outbound_message());
    let outcome = check(&forged, &registry, Some(now()));
    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert_eq!(outcome.rejected.len(), 1);

    // A selector the registry does not know: not even tried.
    let unknown = Sign::new(&ours, "tenant-a.example", "s1999").sign(&outbound_message());
    let outcome = check(&unknown, &registry, Some(now()));
    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert!(
        rejected_because(
            &outcome,
            "no registry key for s1999._domainkey.tenant-a.example"
        ),
        "{outcome:#?}"
    );
}

#[test]
fn key_outside_its_validity_window_verifies_nothing() {
    let key = TestKey::generate();
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());
    let t = now();

    // Retired before the message time.
    let retired = [registry_key(
        &key,
        "tenant-a.example",
        "s2026",
        Some(t - 30 * DAY),
        Some(t - DAY),
    )];
    let outcome = check(&signed, &retired, Some(t));
    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert!(rejected_because(&outcome, "was active at"), "{outcome:#?}");

    // Not yet in use at the message time.
    let future = [registry_key(
        &key,
        "tenant-a.example",
        "s2026",
        Some(t + DAY),
        None,
    )];
    assert!(check(&signed, &future, Some(t)).verified.is_empty());

    // The end of the window is exclusive.
    let ends_now = [registry_key(
        &key,
        "tenant-a.example",
        "s2026",
        None,
        Some(t),
    )];
    assert!(check(&signed, &ends_now, Some(t)).verified.is_empty());

    // Without a message time the signed t= (now, at signing) decides.
    assert!(check(&signed, &retired, None).verified.is_empty());
    let current = [registry_key(
        &key,
        "tenant-a.example",
        "s2026",
        Some(t - DAY),
        Some(t + DAY),
    )];
    assert_eq!(check(&signed, &current, None).verified.len(), 1);
}

#[test]
fn reused_selector_uses_the_key_active_at_the_message_time() {
    let old = TestKey::generate();
    let new = TestKey::generate();
    let t = now();
    let registry = [
        registry_key(
            &old,
            "tenant-a.example",
            "default",
            Some(t - 400 * DAY),
            Some(t - 10 * DAY),
        ),
        registry_key(
            &new,
            "tenant-a.example",
            "default",
            Some(t - 10 * DAY),
            None,
        ),
    ];
    let signed_old = Sign::new(&old, "tenant-a.example", "default").sign(&outbound_message());
    let signed_new = Sign::new(&new, "tenant-a.example", "default").sign(&outbound_message());

    // An old message signed with the old key, reported today with its original time.
    assert_eq!(
        check(&signed_old, &registry, Some(t - 100 * DAY))
            .verified
            .len(),
        1
    );
    assert_eq!(check(&signed_new, &registry, Some(t)).verified.len(), 1);
    // Keys are only good for their own window.
    assert!(check(&signed_old, &registry, Some(t)).verified.is_empty());
    assert!(
        check(&signed_new, &registry, Some(t - 100 * DAY))
            .verified
            .is_empty()
    );
}

#[test]
fn expired_signature_verifies_nothing() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    let mut sign = Sign::new(&key, "tenant-a.example", "s2026");
    sign.expire_after = 3600;
    let signed = sign.sign(&outbound_message());

    assert_eq!(check(&signed, &registry, Some(now())).verified.len(), 1);
    let outcome = check(&signed, &registry, Some(now() + 2 * 3600));
    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert!(rejected_because(&outcome, "expired"), "{outcome:#?}");
}

#[test]
fn only_signatures_made_with_registry_keys_are_returned() {
    let ours = TestKey::generate();
    let esp = TestKey::generate();
    let registry = [registry_key(&ours, "tenant-a.example", "s2026", None, None)];
    let signed = Sign::new(&ours, "tenant-a.example", "s2026").sign(&outbound_message());
    let signed = Sign::new(&esp, "esp.example.org", "e1").sign(&signed);

    let outcome = check(&signed, &registry, Some(now()));

    assert_eq!(
        outcome.verified,
        [verified("tenant-a.example", "s2026", false)]
    );
    assert!(
        rejected_because(
            &outcome,
            "no registry key for e1._domainkey.esp.example.org"
        ),
        "{outcome:#?}"
    );
}

#[test]
fn p4_message_claiming_our_domain_without_our_signature_verifies_nothing() {
    let ours = TestKey::generate();
    let attacker = TestKey::generate();
    let registry = [registry_key(&ours, "tenant-a.example", "s2026", None, None)];

    // No signature at all.
    let unsigned = outbound_message();
    let outcome = check(&unsigned, &registry, Some(now()));
    assert!(outcome.verified.is_empty());
    assert!(outcome.rejected.is_empty());

    // Signed by the attacker's own domain, From our tenant.
    let own_domain = Sign::new(&attacker, "attacker.example", "a").sign(&unsigned);
    assert!(
        check(&own_domain, &registry, Some(now()))
            .verified
            .is_empty()
    );

    // A hand-written DKIM-Signature naming our domain and selector with garbage values.
    let mut hand_written = crlf(
        "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=tenant-a.example; s=s2026;\n h=From:To:Subject; bh=AAAA; b=AAAA\n",
    );
    hand_written.extend_from_slice(&unsigned);
    assert!(
        check(&hand_written, &registry, Some(now()))
            .verified
            .is_empty()
    );

    // A malformed one.
    let mut malformed = crlf("DKIM-Signature: v=1; d=tenant-a.example; s=s2026\n");
    malformed.extend_from_slice(&unsigned);
    let outcome = check(&malformed, &registry, Some(now()));
    assert!(outcome.verified.is_empty());
    assert!(
        rejected_because(&outcome, "malformed DKIM-Signature"),
        "{outcome:#?}"
    );
}

#[test]
fn unusable_registry_key_verifies_nothing() {
    let key = TestKey::generate();
    let signed = Sign::new(&key, "tenant-a.example", "s2026").sign(&outbound_message());
    let mut broken = registry_key(&key, "tenant-a.example", "s2026", None, None);
    broken.public_key_txt = "v=DKIM1; k=ed25519; p=".to_owned();

    let outcome = check(&signed, &[broken], Some(now()));

    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert_eq!(outcome.rejected.len(), 1);
}

#[test]
fn signature_not_covering_from_verifies_nothing() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    let mut sign = Sign::new(&key, "tenant-a.example", "s2026");
    sign.headers = &["Subject", "Message-ID"];
    let signed = sign.sign(&outbound_message());

    let outcome = check(&signed, &registry, Some(now()));

    assert!(outcome.verified.is_empty(), "{outcome:#?}");
    assert!(
        rejected_because(&outcome, "does not cover From"),
        "{outcome:#?}"
    );
}

#[test]
fn not_a_message_verifies_nothing() {
    let key = TestKey::generate();
    let registry = [registry_key(&key, "tenant-a.example", "s2026", None, None)];
    assert!(check(b"", &registry, None).verified.is_empty());
}
