//! Data-driven end-to-end attribution tests: every file under `fixtures/attribution/cases/`
//! is one case (specification §13.1 T01–T20, §13.4 A01–A09, reliability plan P3/P4). Each
//! case wraps its header block in a report message, runs it through the real parser and the
//! engine, and checks every expectation it states. All failures of all cases are reported
//! together, each with the attribution's explanation lines.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use arfwire_attribution::{
    Attribution, Candidate, Confidence, IpFinding, Profile, ReporterTier, TenantRef,
    VerifiedSignature,
};
use serde::Deserialize;

const CASES_DIR: &str = "fixtures/attribution/cases";

/// Every id the specification and the reliability plan name; each must have a case file.
const REQUIRED_IDS: &[&str] = &[
    "T01", "T02", "T03", "T04", "T05", "T06", "T07", "T08", "T09", "T10", "T11", "T12", "T13",
    "T14", "T15", "T16", "T17", "T18", "T19", "T20", "A01", "A02", "A03", "A04", "A05", "A06",
    "A07", "A08", "A09", "P3", "P4",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    id: String,
    title: String,
    profile: String,
    #[serde(default)]
    profile_overrides: ProfileOverrides,
    #[serde(default = "default_directory")]
    directory: String,
    report_kind: String,
    #[serde(default)]
    feedback: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    headers_part: bool,
    #[serde(default)]
    verbatim: bool,
    #[serde(default)]
    body: Option<String>,
    headers: String,
    #[serde(default = "default_tier")]
    reporter_tier: String,
    #[serde(default)]
    verified_signatures: Vec<SignatureSpec>,
    #[serde(default)]
    provider_dkim_checked: bool,
    expect: Expect,
}

fn default_directory() -> String {
    "td".to_owned()
}

fn default_tier() -> String {
    "T1".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileOverrides {
    treat_documentation_ranges_as_public: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSpec {
    domain: String,
    selector: String,
    #[serde(default)]
    headers_only: bool,
}

/// Expectations. An absent key is not checked; `"none"` asserts absence.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    parsed_kind: Option<String>,
    provenance: Option<String>,
    path: Option<String>,
    tenant: Option<String>,
    confidence: Option<String>,
    min_score: Option<f32>,
    max_score: Option<f32>,
    #[serde(default)]
    tenant_never: Vec<String>,
    #[serde(default)]
    candidates_absent: Vec<String>,
    #[serde(default)]
    candidate_roles: BTreeMap<String, String>,
    egress: Option<String>,
    egress_confidence: Option<String>,
    reported_source_ip: Option<String>,
    ingress: Option<String>,
    ingress_confidence: Option<String>,
    origin: Option<String>,
    origin_confidence: Option<String>,
    origin_kind: Option<String>,
    recipient_tenant: Option<String>,
    delivered_by: Option<String>,
    delivered_by_confidence: Option<String>,
    impersonated: Option<Vec<String>>,
    network_message_id: Option<String>,
    egress_time_unix: Option<i64>,
    #[serde(default)]
    flags_present: Vec<String>,
    #[serde(default)]
    flags_absent: Vec<String>,
    #[serde(default)]
    explanation_contains: Vec<String>,
    feedback: Option<FeedbackExpect>,
}

/// Expectations on the parsed ARF fields (§13.4).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackExpect {
    feedback_type: Option<String>,
    source_ip: Option<String>,
    arrival_date_unix: Option<i64>,
    original_mail_from: Option<String>,
    original_rcpt_to: Option<Vec<String>>,
    reported_domain: Option<Vec<String>>,
    dkim_domain_values: Option<Vec<String>>,
    auth_failure: Option<String>,
    authentication_results_nonempty: Option<usize>,
}

fn tier(name: &str) -> ReporterTier {
    match name {
        "T1" => ReporterTier::T1,
        "T2" => ReporterTier::T2,
        "T3" => ReporterTier::T3,
        other => panic!("unknown reporter tier {other}"),
    }
}

fn tenant_matches(t: &TenantRef, want: &str) -> bool {
    t.id.eq_ignore_ascii_case(want) || t.name.as_deref().is_some_and(|n| n == want)
}

fn tenant_text(t: Option<&TenantRef>) -> String {
    t.map_or_else(
        || "none".to_owned(),
        |t| t.name.clone().unwrap_or_else(|| t.id.clone()),
    )
}

fn finding_text(f: Option<&IpFinding>) -> String {
    f.map_or_else(|| "none".to_owned(), |f| f.ip.to_string())
}

fn conf_text(c: Confidence) -> &'static str {
    c.as_str()
}

struct Checker<'a> {
    id: &'a str,
    failures: Vec<String>,
}

impl Checker<'_> {
    fn eq(&mut self, what: &str, want: &str, got: &str) {
        if !want.eq_ignore_ascii_case(got) {
            self.failures.push(format!(
                "{}: {what}: expected {want:?}, got {got:?}",
                self.id
            ));
        }
    }

    fn fail(&mut self, msg: String) {
        self.failures.push(format!("{}: {msg}", self.id));
    }

    fn finding(
        &mut self,
        what: &str,
        want: Option<&String>,
        conf: Option<&String>,
        got: Option<&IpFinding>,
    ) {
        if let Some(want) = want {
            let got_text = finding_text(got);
            let want_ip = want
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| want.clone());
            self.eq(what, &want_ip, &got_text);
        }
        if let Some(conf) = conf {
            let got_conf = got.map_or("none (no finding)", |f| conf_text(f.confidence));
            self.eq(&format!("{what} confidence"), conf, got_conf);
        }
    }
}

fn check(case: &Case, submission: &arfwire_parse::Submission, a: &Attribution) -> Vec<String> {
    let e = &case.expect;
    let mut c = Checker {
        id: &case.id,
        failures: Vec::new(),
    };
    if let Some(kind) = &e.parsed_kind {
        c.eq("parsed report kind", kind, submission.kind.as_str());
    }
    if let Some(p) = &e.provenance {
        c.eq("provenance", p, a.provenance.as_str());
    }
    if let Some(path) = &e.path {
        c.eq("path", path, a.path.as_str());
    }
    if let Some(t) = &e.tenant {
        if t == "none" {
            if a.tenant.is_some() {
                c.fail(format!(
                    "tenant: expected none, got {}",
                    tenant_text(a.tenant.as_ref())
                ));
            }
        } else if !a.tenant.as_ref().is_some_and(|got| tenant_matches(got, t)) {
            c.fail(format!(
                "tenant: expected {t}, got {}",
                tenant_text(a.tenant.as_ref())
            ));
        }
    }
    if let Some(conf) = &e.confidence {
        c.eq("tenant confidence", conf, conf_text(a.tenant_confidence));
    }
    if let Some(min) = e.min_score
        && a.tenant_score < min
    {
        c.fail(format!(
            "tenant score: expected >= {min}, got {}",
            a.tenant_score
        ));
    }
    if let Some(max) = e.max_score
        && a.tenant_score > max
    {
        c.fail(format!(
            "tenant score: expected <= {max}, got {}",
            a.tenant_score
        ));
    }
    for never in &e.tenant_never {
        if a.tenant.as_ref().is_some_and(|t| tenant_matches(t, never)) {
            c.fail(format!("tenant must never be {never}, got it"));
        }
    }
    for absent in &e.candidates_absent {
        if a.tenant_candidates
            .iter()
            .any(|cand| tenant_matches(&cand.tenant, absent))
        {
            c.fail(format!("{absent} must not be a candidate"));
        }
    }
    for (tenant, role) in &e.candidate_roles {
        match a
            .tenant_candidates
            .iter()
            .find(|cand| tenant_matches(&cand.tenant, tenant))
        {
            Some(cand) => c.eq(
                &format!("role of candidate {tenant}"),
                role,
                cand.role.as_str(),
            ),
            None => c.fail(format!(
                "expected candidate {tenant} with role {role}, not found"
            )),
        }
    }
    c.finding(
        "egress",
        e.egress.as_ref(),
        e.egress_confidence.as_ref(),
        a.egress.as_ref(),
    );
    c.finding(
        "reported_source_ip",
        e.reported_source_ip.as_ref(),
        None,
        a.reported_source_ip.as_ref(),
    );
    c.finding(
        "ingress",
        e.ingress.as_ref(),
        e.ingress_confidence.as_ref(),
        a.ingress.as_ref(),
    );
    c.finding(
        "origin",
        e.origin.as_ref(),
        e.origin_confidence.as_ref(),
        a.origin.as_ref(),
    );
    c.finding(
        "delivered_by",
        e.delivered_by.as_ref(),
        e.delivered_by_confidence.as_ref(),
        a.delivered_by.as_ref(),
    );
    if let Some(kind) = &e.origin_kind {
        c.eq("origin_kind", kind, a.origin_kind.as_str());
    }
    if let Some(rt) = &e.recipient_tenant {
        if rt == "none" {
            if a.recipient_tenant.is_some() {
                c.fail(format!(
                    "recipient_tenant: expected none, got {}",
                    tenant_text(a.recipient_tenant.as_ref())
                ));
            }
        } else if !a
            .recipient_tenant
            .as_ref()
            .is_some_and(|t| tenant_matches(t, rt))
        {
            c.fail(format!(
                "recipient_tenant: expected {rt}, got {}",
                tenant_text(a.recipient_tenant.as_ref())
            ));
        }
    }
    if let Some(imp) = &e.impersonated {
        let got: Vec<String> = a
            .impersonated_tenants
            .iter()
            .map(|t| tenant_text(Some(t)))
            .collect();
        let ok = imp.len() == got.len()
            && imp.iter().all(|want| {
                a.impersonated_tenants
                    .iter()
                    .any(|t| tenant_matches(t, want))
            });
        if !ok {
            c.fail(format!("impersonated: expected {imp:?}, got {got:?}"));
        }
    }
    if let Some(nmi) = &e.network_message_id {
        let got = a.log_keys.network_message_id.as_deref().unwrap_or("none");
        c.eq("log_keys.network_message_id", nmi, got);
    }
    if let Some(want) = e.egress_time_unix {
        let got = a
            .log_keys
            .egress_time_unix
            .map_or_else(|| "none".to_owned(), |t| t.to_string());
        c.eq("log_keys.egress_time_unix", &want.to_string(), &got);
    }
    for flag in &e.flags_present {
        if !a.flags.contains(flag.as_str()) {
            c.fail(format!(
                "flag {flag} expected, absent (flags: {:?})",
                a.flags
            ));
        }
    }
    for flag in &e.flags_absent {
        if a.flags.contains(flag.as_str()) {
            c.fail(format!("flag {flag} must be absent, present"));
        }
    }
    for needle in &e.explanation_contains {
        if !a.explanation.iter().any(|l| l.contains(needle.as_str())) {
            c.fail(format!("no explanation line contains {needle:?}"));
        }
    }
    if let Some(fe) = &e.feedback {
        check_feedback(&mut c, fe, submission);
    }
    c.failures
}

fn check_feedback(
    c: &mut Checker<'_>,
    fe: &FeedbackExpect,
    submission: &arfwire_parse::Submission,
) {
    let Some(fb) = submission.reports.first().and_then(|r| r.feedback.as_ref()) else {
        c.fail("expected a feedback report, none parsed".to_owned());
        return;
    };
    if let Some(t) = &fe.feedback_type {
        c.eq(
            "Feedback-Type",
            t,
            fb.feedback_type.as_deref().unwrap_or("none"),
        );
    }
    if let Some(ip) = &fe.source_ip {
        let got = fb
            .source_ip
            .map_or_else(|| "none".to_owned(), |ip| ip.to_string());
        c.eq("Source-IP", ip, &got);
    }
    if let Some(t) = fe.arrival_date_unix {
        let got = fb
            .arrival_date_unix
            .map_or_else(|| "none".to_owned(), |t| t.to_string());
        c.eq("Arrival-Date (unix)", &t.to_string(), &got);
    }
    if let Some(omf) = &fe.original_mail_from {
        c.eq(
            "Original-Mail-From",
            omf,
            fb.original_mail_from.as_deref().unwrap_or("none"),
        );
    }
    if let Some(list) = &fe.original_rcpt_to
        && *list != fb.original_rcpt_to
    {
        c.fail(format!(
            "Original-Rcpt-To: expected {list:?}, got {:?}",
            fb.original_rcpt_to
        ));
    }
    if let Some(list) = &fe.reported_domain
        && *list != fb.reported_domain
    {
        c.fail(format!(
            "Reported-Domain: expected {list:?}, got {:?}",
            fb.reported_domain
        ));
    }
    if let Some(list) = &fe.dkim_domain_values {
        let got: Vec<String> = fb
            .dkim_domain
            .as_deref()
            .unwrap_or("")
            .split([';', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if *list != got {
            c.fail(format!(
                "DKIM-Domain values: expected {list:?}, got {got:?}"
            ));
        }
    }
    if let Some(af) = &fe.auth_failure {
        c.eq(
            "Auth-Failure",
            af,
            fb.auth_failure.as_deref().unwrap_or("none"),
        );
    }
    if let Some(n) = fe.authentication_results_nonempty {
        let got = fb
            .authentication_results
            .iter()
            .filter(|v| !v.trim().is_empty())
            .count();
        c.eq(
            "non-empty Authentication-Results",
            &n.to_string(),
            &got.to_string(),
        );
    }
}

fn render(a: &Attribution) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "    got: path={} tenant={} {} {:.3} egress={} ingress={} origin={} ({}) delivered_by={} recipient={} flags={:?}",
        a.path.as_str(),
        tenant_text(a.tenant.as_ref()),
        a.tenant_confidence.as_str(),
        a.tenant_score,
        finding_text(a.egress.as_ref()),
        finding_text(a.ingress.as_ref()),
        finding_text(a.origin.as_ref()),
        a.origin_kind.as_str(),
        finding_text(a.delivered_by.as_ref()),
        tenant_text(a.recipient_tenant.as_ref()),
        a.flags
    );
    for cand in &a.tenant_candidates {
        let Candidate {
            tenant,
            score,
            role,
            ..
        } = cand;
        let _ = writeln!(
            s,
            "    candidate {} {score:.3} {}",
            tenant_text(Some(tenant)),
            role.as_str()
        );
    }
    for line in &a.explanation {
        let _ = writeln!(s, "    | {line}");
    }
    s
}

fn load_cases() -> Vec<(String, Case)> {
    let dir = common::workspace_root().join(CASES_DIR);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read case");
            let case: Case = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("bad case file {}: {e}", p.display()));
            (
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                case,
            )
        })
        .collect()
}

fn case_profile(case: &Case) -> Profile {
    let mut p = common::profile(&case.profile);
    if let Some(v) = case.profile_overrides.treat_documentation_ranges_as_public {
        p.treat_documentation_ranges_as_public = v;
    }
    p
}

#[test]
fn every_case_file_passes() {
    let cases = load_cases();
    let mut failures: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let only = std::env::var("CASE").ok();
    for (file, case) in &cases {
        if seen.contains(&case.id) {
            failures.push(format!("{file}: duplicate case id {}", case.id));
        }
        seen.push(case.id.clone());
        if only.as_deref().is_some_and(|o| o != case.id) {
            continue;
        }
        assert!(!case.title.is_empty(), "{file}: empty title");
        let profile = case_profile(case);
        let directory = common::directory(&case.directory);
        let raw = common::wrap(&common::Wrapper {
            kind: &case.report_kind,
            feedback: case.feedback.as_deref(),
            headers_part: case.headers_part,
            headers: &case.headers,
            body: case.body.as_deref(),
            verbatim: case.verbatim,
            subject: case.subject.as_deref(),
        });
        let submission = match common::parse_report(&raw) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!(
                    "{}: the wrapper did not parse as a report: {e}",
                    case.id
                ));
                continue;
            }
        };
        if case.report_kind != submission.kind.as_str() {
            failures.push(format!(
                "{}: report kind: built {}, parsed {}",
                case.id,
                case.report_kind,
                submission.kind.as_str()
            ));
        }
        let Some(item) = submission.reports.first() else {
            failures.push(format!("{}: no reported message", case.id));
            continue;
        };
        let verified: Vec<VerifiedSignature> = case
            .verified_signatures
            .iter()
            .map(|s| VerifiedSignature {
                domain: s.domain.to_ascii_lowercase(),
                selector: s.selector.clone(),
                headers_only: s.headers_only,
            })
            .collect();
        let a = common::run(
            &submission,
            item,
            &profile,
            &directory,
            tier(&case.reporter_tier),
            &verified,
            case.provider_dkim_checked,
        );
        // The invariants hold for every case.
        let mut problems = check(case, &submission, &a);
        problems.extend(invariants(&case.id, &a));
        if !problems.is_empty() {
            let mut block = problems.join("\n");
            block.push('\n');
            block.push_str(&render(&a));
            failures.push(block);
        } else if std::env::var("SHOW").is_ok() {
            eprintln!("{} ok\n{}", case.id, render(&a));
        }
    }
    if only.is_none() {
        for id in REQUIRED_IDS {
            if !seen.iter().any(|s| s == id) {
                failures.push(format!("missing case file for {id}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Output invariants: every IP finding cites where it was read, scores have 3 decimals,
/// candidates are best first, and a tenant is named only on paths that allow one.
fn invariants(id: &str, a: &Attribution) -> Vec<String> {
    let mut out = Vec::new();
    for (role, f) in [
        ("egress", &a.egress),
        ("ingress", &a.ingress),
        ("origin", &a.origin),
        ("delivered_by", &a.delivered_by),
        ("reported_source_ip", &a.reported_source_ip),
    ] {
        if let Some(f) = f {
            if f.location.header.is_empty() || f.location.raw.is_empty() {
                out.push(format!("{id}: invariant: {role} finding cites no header"));
            }
            if f.sources.is_empty() {
                out.push(format!(
                    "{id}: invariant: {role} finding has no evidence id"
                ));
            }
            if !f
                .sources
                .iter()
                .all(|s| a.evidence.iter().any(|e| e.id == *s))
            {
                out.push(format!("{id}: invariant: {role} cites unknown evidence"));
            }
        }
    }
    let rounded = |x: f32| ((x * 1000.0).round() / 1000.0 - x).abs() < 1e-6;
    if !rounded(a.tenant_score) {
        out.push(format!(
            "{id}: invariant: score {} not rounded",
            a.tenant_score
        ));
    }
    for w in a.tenant_candidates.windows(2) {
        if let [x, y] = w
            && x.score < y.score
        {
            out.push(format!("{id}: invariant: candidates not best first"));
        }
    }
    if a.tenant.is_some()
        && matches!(
            a.path,
            arfwire_attribution::PathClass::NotOurs
                | arfwire_attribution::PathClass::InboundExternal
        )
    {
        out.push(format!(
            "{id}: invariant: tenant named on path {}",
            a.path.as_str()
        ));
    }
    out
}
