//! Reporter tiers (reliability test plan §5.3, P1, P2, P8).

use std::{net::IpAddr, time::Duration};

use arfwire_auth::{
    AuthResult, Authenticator, ReporterPolicy, ReporterTier, ReporterVerdict, SmtpEnvelope,
    verify_reporter,
};

use crate::support::{Sign, TestKey, arf_report, replace_once};

const POLICY: &str = r#"
[[operator]]
name = "Example FBL"
dkim_domains = ["fbl.example.net"]

[[operator]]
name = "Example Mailbox Reports"
from_domains = ["reports.example.com"]
"#;

fn policy() -> ReporterPolicy {
    ReporterPolicy::from_toml(POLICY).expect("test policy")
}

/// A closed-world authenticator: only the records inserted here exist.
fn offline() -> Authenticator {
    let authenticator = Authenticator::offline().expect("offline authenticator");
    let caches = authenticator.caches();
    caches
        .insert_spf("fbl.example.net", "v=spf1 ip4:192.0.2.0/24 -all")
        .expect("spf");
    caches
        .insert_spf("reports.example.com", "v=spf1 ip4:192.0.2.128/25 -all")
        .expect("spf");
    caches
        .insert_dmarc("example.com", "v=DMARC1; p=reject")
        .expect("dmarc");
    authenticator
}

fn envelope(ip: &str, helo: &str, mail_from: &str) -> SmtpEnvelope {
    SmtpEnvelope {
        client_ip: ip.parse::<IpAddr>().expect("ip"),
        helo: helo.to_owned(),
        mail_from: mail_from.to_owned(),
        receiving_host: "mx.provider.example".to_owned(),
    }
}

/// Runs verification with a deadline: a closed world answers at once, so a slow run would
/// mean something tried to reach the network.
async fn verify(
    raw: &[u8],
    envelope: Option<&SmtpEnvelope>,
    authenticator: &Authenticator,
) -> ReporterVerdict {
    let policy = policy();
    tokio::time::timeout(
        Duration::from_secs(5),
        verify_reporter(raw, envelope, authenticator, &policy),
    )
    .await
    .expect("verification must not wait on the network")
}

fn has_reason(verdict: &ReporterVerdict, needle: &str) -> bool {
    verdict.reasons.iter().any(|reason| reason.contains(needle))
}

#[tokio::test]
async fn p1_forged_report_without_dkim_and_failing_spf_is_t3() {
    let authenticator = offline();
    let raw = arf_report("Example FBL <feedback@fbl.example.net>", "");
    let smtp = envelope(
        "203.0.113.9",
        "mx.attacker.example",
        "feedback@fbl.example.net",
    );

    let verdict = verify(&raw, Some(&smtp), &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
    assert_eq!(verdict.operator, None);
    assert!(verdict.signatures.is_empty());
    let spf = verdict.spf.as_ref().expect("SPF evaluated");
    assert_eq!(
        (spf.result, spf.domain.as_str()),
        (AuthResult::Fail, "fbl.example.net")
    );
    assert_ne!(verdict.dmarc.result, AuthResult::Pass);
    assert!(has_reason(&verdict, "T3:"), "{:?}", verdict.reasons);
    assert!(
        has_reason(&verdict, "SPF fail for fbl.example.net"),
        "{:?}",
        verdict.reasons
    );
}

#[tokio::test]
async fn p2_report_signed_by_an_unenrolled_domain_is_t2() {
    let authenticator = offline();
    let key = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("s1", "reporter.example.org", &key.txt)
        .expect("key");
    let raw = Sign::new(&key, "reporter.example.org", "s1")
        .sign(&arf_report("Abuse desk <abuse@reporter.example.org>", ""));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T2, "{verdict:#?}");
    assert_eq!(verdict.operator, None);
    assert_eq!(verdict.signatures.len(), 1);
    assert_eq!(verdict.signatures[0].domain, "reporter.example.org");
    assert_eq!(verdict.signatures[0].result, AuthResult::Pass);
    assert_eq!(verdict.spf, None);
    assert!(
        has_reason(&verdict, "not an enrolled feedback loop"),
        "{:?}",
        verdict.reasons
    );
}

#[tokio::test]
async fn enrolled_operator_with_valid_signature_is_t1() {
    let authenticator = offline();
    let key = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("fbl2026", "fbl.example.net", &key.txt)
        .expect("key");
    let raw = Sign::new(&key, "fbl.example.net", "fbl2026")
        .sign(&arf_report("Example FBL <feedback@fbl.example.net>", ""));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T1, "{verdict:#?}");
    assert_eq!(verdict.operator.as_deref(), Some("Example FBL"));
    assert!(
        has_reason(&verdict, "d=fbl.example.net"),
        "{:?}",
        verdict.reasons
    );
}

#[tokio::test]
async fn enrolled_operator_with_one_body_byte_changed_is_not_t1() {
    let authenticator = offline();
    let key = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("fbl2026", "fbl.example.net", &key.txt)
        .expect("key");
    let raw = Sign::new(&key, "fbl.example.net", "fbl2026")
        .sign(&arf_report("Example FBL <feedback@fbl.example.net>", ""));
    // Re-point the complaint at another IP: one byte of the body.
    let tampered = replace_once(&raw, "Source-IP: 198.51.100.7", "Source-IP: 198.51.100.8");

    let verdict = verify(&tampered, None, &authenticator).await;

    assert_ne!(verdict.tier, ReporterTier::T1, "{verdict:#?}");
    assert_eq!(verdict.tier, ReporterTier::T3);
    assert_eq!(verdict.signatures.len(), 1);
    assert_eq!(verdict.signatures[0].result, AuthResult::Neutral);
    let detail = verdict.signatures[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("body hash"), "{detail}");
}

#[tokio::test]
async fn p8_authentication_results_in_the_submission_are_not_trusted() {
    let authenticator = offline();
    let forged_results = "Authentication-Results: mx.provider.example; dkim=pass header.d=fbl.example.net; dmarc=pass header.from=fbl.example.net\n\
                          Authentication-Results: fbl.example.net; dkim=pass; spf=pass\n\
                          ARC-Authentication-Results: i=1; mx.provider.example; dkim=pass\n";
    let raw = arf_report("Example FBL <feedback@fbl.example.net>", forged_results);

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
    assert_eq!(verdict.operator, None);
    assert!(
        has_reason(&verdict, "ignored 3 authentication result field(s)"),
        "{:?}",
        verdict.reasons
    );
}

#[tokio::test]
async fn p8_claimed_pass_with_a_signature_that_does_not_verify_is_t3() {
    let authenticator = offline();
    let published = TestKey::generate();
    let attacker = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("fbl2026", "fbl.example.net", &published.txt)
        .expect("key");
    // Signed in the operator's name with a key that is not the operator's.
    let raw = Sign::new(&attacker, "fbl.example.net", "fbl2026").sign(&arf_report(
        "Example FBL <feedback@fbl.example.net>",
        "Authentication-Results: mx.provider.example; dkim=pass header.d=fbl.example.net\n",
    ));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
    assert_eq!(verdict.signatures[0].result, AuthResult::Fail);
}

#[tokio::test]
async fn signature_from_a_domain_without_a_published_key_is_t3() {
    let authenticator = offline();
    let key = TestKey::generate();
    let raw = Sign::new(&key, "fbl.example.net", "unpublished")
        .sign(&arf_report("Example FBL <feedback@fbl.example.net>", ""));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
    assert_eq!(verdict.signatures[0].result, AuthResult::PermError);
    assert!(
        authenticator.caches().misses() > 0,
        "the key lookup was answered by the closed world"
    );
}

#[tokio::test]
async fn signature_not_covering_from_does_not_count() {
    let authenticator = offline();
    let key = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("fbl2026", "fbl.example.net", &key.txt)
        .expect("key");
    let mut sign = Sign::new(&key, "fbl.example.net", "fbl2026");
    sign.headers = &["Subject", "Date", "Message-ID"];
    let raw = sign.sign(&arf_report("Example FBL <feedback@fbl.example.net>", ""));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
    assert_eq!(verdict.signatures[0].result, AuthResult::Fail);
    let detail = verdict.signatures[0].detail.as_deref().unwrap_or_default();
    assert!(detail.contains("does not cover From"), "{detail}");
}

#[tokio::test]
async fn signature_with_body_length_is_refused() {
    let authenticator = offline();
    let key = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("fbl2026", "fbl.example.net", &key.txt)
        .expect("key");
    let mut sign = Sign::new(&key, "fbl.example.net", "fbl2026");
    sign.body_length = true;
    let raw = sign.sign(&arf_report("Example FBL <feedback@fbl.example.net>", ""));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
}

#[tokio::test]
async fn dmarc_pass_for_an_enrolled_from_domain_is_t1() {
    let authenticator = offline();
    let key = TestKey::generate();
    // Signed by the organisational domain, From a subdomain: aligned under relaxed DMARC.
    authenticator
        .caches()
        .insert_dkim_key("s1", "example.com", &key.txt)
        .expect("key");
    let raw = Sign::new(&key, "example.com", "s1")
        .sign(&arf_report("Reports <fbl@reports.example.com>", ""));

    let verdict = verify(&raw, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T1, "{verdict:#?}");
    assert_eq!(verdict.operator.as_deref(), Some("Example Mailbox Reports"));
    assert_eq!(verdict.dmarc.from_domain, "reports.example.com");
    assert_eq!(verdict.dmarc.dkim, AuthResult::Pass);
    assert!(
        has_reason(&verdict, "DMARC pass for From domain reports.example.com"),
        "{:?}",
        verdict.reasons
    );
}

#[tokio::test]
async fn dmarc_pass_through_aligned_spf_for_an_enrolled_from_domain_is_t1() {
    let authenticator = offline();
    let raw = arf_report("Reports <fbl@reports.example.com>", "");
    let smtp = envelope(
        "192.0.2.130",
        "out.reports.example.com",
        "bounces@reports.example.com",
    );

    let verdict = verify(&raw, Some(&smtp), &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T1, "{verdict:#?}");
    assert_eq!(
        verdict.spf.as_ref().map(|spf| spf.result),
        Some(AuthResult::Pass)
    );
    assert_eq!(verdict.dmarc.spf, AuthResult::Pass);
}

#[tokio::test]
async fn spf_pass_alone_is_t3() {
    let authenticator = offline();
    let raw = arf_report("Example FBL <feedback@fbl.example.net>", "");
    let smtp = envelope(
        "192.0.2.10",
        "out.fbl.example.net",
        "feedback@fbl.example.net",
    );

    let verdict = verify(&raw, Some(&smtp), &authenticator).await;

    assert_eq!(
        verdict.spf.as_ref().map(|spf| spf.result),
        Some(AuthResult::Pass)
    );
    assert_eq!(verdict.tier, ReporterTier::T3, "{verdict:#?}");
    assert!(has_reason(&verdict, "SPF alone"), "{:?}", verdict.reasons);
}

#[tokio::test]
async fn enrolled_signature_among_failing_ones_is_t1() {
    let authenticator = offline();
    let key = TestKey::generate();
    let other = TestKey::generate();
    authenticator
        .caches()
        .insert_dkim_key("fbl2026", "fbl.example.net", &key.txt)
        .expect("key");
    let report = arf_report("Example FBL <feedback@fbl.example.net>", "");
    let signed = Sign::new(&key, "fbl.example.net", "fbl2026").sign(&report);
    let signed = Sign::new(&other, "relay.example.org", "r1").sign(&signed);

    let verdict = verify(&signed, None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T1, "{verdict:#?}");
    assert_eq!(verdict.signatures.len(), 2);
}

#[tokio::test]
async fn bytes_that_are_not_a_message_are_t3() {
    let authenticator = offline();

    let verdict = verify(b"", None, &authenticator).await;

    assert_eq!(verdict.tier, ReporterTier::T3);
    assert!(verdict.signatures.is_empty());
}

#[tokio::test]
async fn dns_failure_is_reported_as_temporary() {
    let authenticator = offline();
    // An `a` mechanism needs an A lookup the closed world cannot answer: it fails at once
    // (there is no name server to ask), as a temporary error.
    authenticator
        .caches()
        .insert_spf("flaky.example.net", "v=spf1 a -all")
        .expect("spf");
    let raw = arf_report("Flaky <fbl@flaky.example.net>", "");
    let smtp = envelope(
        "192.0.2.10",
        "out.flaky.example.net",
        "fbl@flaky.example.net",
    );

    let verdict = verify(&raw, Some(&smtp), &authenticator).await;

    assert_eq!(
        verdict.spf.as_ref().map(|spf| spf.result),
        Some(AuthResult::TempError)
    );
    assert!(verdict.has_temporary_errors());
    assert_eq!(verdict.tier, ReporterTier::T3);
}

#[test]
fn verification_can_run_on_a_multi_threaded_runtime() {
    fn is_send<T: Send>(_: &T) {}
    let authenticator = Authenticator::offline().expect("offline authenticator");
    let policy = policy();
    let future = verify_reporter(b"", None, &authenticator, &policy);
    is_send(&future);
}
