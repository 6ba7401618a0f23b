//! The answer caches behind `Authenticator`.

use std::time::{Duration, Instant};

use arfwire_auth::DnsCaches;
use mail_auth::{ResolverCache, Txt};

#[test]
fn closed_world_answers_unknown_names_with_nxdomain_and_counts_them() {
    let caches = DnsCaches::closed();
    caches
        .insert_spf("known.example", "v=spf1 -all")
        .expect("spf");

    assert!(matches!(
        caches.txt.get("known.example."),
        Some(Txt::Spf(_))
    ));
    assert!(matches!(
        caches.txt.get("unknown.example."),
        Some(Txt::Error(_))
    ));
    assert_eq!(caches.misses(), 1);
}

#[test]
fn resolving_caches_keep_answers_for_their_ttl_only() {
    let caches = DnsCaches::new(16);
    let now = Instant::now();
    let answer = || Txt::Error(mail_auth::Error::ParseError);

    caches.txt.insert(
        "fresh.example.".into(),
        answer(),
        now + Duration::from_secs(60),
    );
    caches.txt.insert("stale.example.".into(), answer(), now);

    assert!(caches.txt.get("fresh.example.").is_some());
    assert!(caches.txt.get("stale.example.").is_none());
    assert!(caches.txt.get("never.example.").is_none());
    assert_eq!(caches.txt.misses(), 2);
}

#[test]
fn full_caches_drop_learnt_answers_but_keep_pinned_records() {
    let caches = DnsCaches::new(2);
    let later = Instant::now() + Duration::from_secs(60);
    let answer = || Txt::Error(mail_auth::Error::ParseError);
    caches
        .insert_spf("pinned.example", "v=spf1 -all")
        .expect("spf");
    caches.txt.insert("a.example.".into(), answer(), later);
    caches.txt.insert("b.example.".into(), answer(), later);

    assert!(caches.txt.len() <= 2);
    assert!(caches.txt.get("pinned.example.").is_some());
    assert!(caches.txt.get("b.example.").is_some());
}

#[test]
fn records_that_do_not_parse_are_refused() {
    let caches = DnsCaches::closed();
    assert!(caches.insert_dmarc("example.com", "v=spf1 -all").is_err());
    assert!(
        caches
            .insert_dkim_key("s", "example.com", "v=DKIM1; k=rsa; p=!!")
            .is_err()
    );
}
