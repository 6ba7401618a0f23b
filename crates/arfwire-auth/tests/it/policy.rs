//! The feedback-loop policy file.

use arfwire_auth::ReporterPolicy;

#[test]
fn shipped_feedback_loop_list_loads() {
    let text = include_str!("../../../../deploy/feedback-loops.toml");
    let policy = ReporterPolicy::from_toml(text).expect("deploy/feedback-loops.toml");
    assert!(!policy.operators.is_empty());
    let yahoo = policy
        .operator_for_dkim_domain("arf.mail.yahoo.com")
        .expect("Yahoo CFL enrolled");
    assert_eq!(yahoo.name, "Yahoo CFL");
    // A consumer mailbox domain must never be enrolled by domain.
    for shared in [
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "gmail.com",
        "aol.com",
    ] {
        assert!(
            policy.operator_for_dkim_domain(shared).is_none(),
            "{shared}"
        );
        assert!(
            policy.operator_for_from_domain(shared).is_none(),
            "{shared}"
        );
    }
}

#[test]
fn domains_are_matched_exactly_and_case_insensitively() {
    let policy = ReporterPolicy::from_toml(
        "[[operator]]\nname = \"A\"\ndkim_domains = [\"FBL.Example.NET\"]\n",
    )
    .expect("policy");
    assert_eq!(policy.operators[0].dkim_domains, ["fbl.example.net"]);
    assert!(policy.operator_for_dkim_domain("fbl.EXAMPLE.net").is_some());
    assert!(policy.operator_for_dkim_domain("example.net").is_none());
    assert!(
        policy
            .operator_for_dkim_domain("x.fbl.example.net")
            .is_none()
    );
}

#[test]
fn unknown_fields_and_bad_entries_are_rejected() {
    for (text, what) in [
        (
            "[[operator]]\nname = \"A\"\ndkim_domains = [\"a.example\"]\ntier = 1\n",
            "unknown field",
        ),
        ("trust_everyone = true\n", "unknown top-level field"),
        ("[[operator]]\nname = \"A\"\n", "no domains"),
        (
            "[[operator]]\nname = \"\"\ndkim_domains = [\"a.example\"]\n",
            "empty name",
        ),
        (
            "[[operator]]\nname = \"A\"\ndkim_domains = [\"a.example\"]\n[[operator]]\nname = \"A\"\ndkim_domains = [\"b.example\"]\n",
            "duplicate name",
        ),
        (
            "[[operator]]\nname = \"A\"\ndkim_domains = [\"*.example\"]\n",
            "wildcard",
        ),
        (
            "[[operator]]\nname = \"A\"\nfrom_domains = [\"example\"]\n",
            "single label",
        ),
        (
            "[[operator]]\nname = \"A\"\nfrom_domains = [\"a.example.\"]\n",
            "trailing dot",
        ),
    ] {
        assert!(ReporterPolicy::from_toml(text).is_err(), "{what} accepted");
    }
}

#[test]
fn an_empty_policy_enrols_nobody() {
    let policy = ReporterPolicy::from_toml("").expect("empty policy");
    assert!(policy.operators.is_empty());
}
