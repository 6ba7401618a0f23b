//! The schemas agree with the Rust vocabularies, document every property, close every
//! object, and describe the Rust types exactly.

use std::collections::BTreeSet;

use arfwire_events::{
    ABUSE_EVENT_SCHEMA, ABUSE_EVENT_SCHEMA_JSON, AttributionV1, Channel, ComplaintTypeSource,
    ConfidenceV1, DiagnosticScope, DiagnosticSeverity, EvidenceV1, IpFindingV1, LocationV1,
    LogKeysV1, Output, REJECTED_SCHEMA, REJECTED_SCHEMA_JSON, RejectionCategory,
    SenderDomainSource, TenantCandidateV1, TenantRefV1,
};
use arfwire_parse::{Code, MessageSource, NotReportReason, RejectReason, ReportFormat, ReportKind};
use serde::Serialize;
use serde_json::Value;

use crate::support::{Validators, corpus_dir, derive_file, schema};

const EVENT: &str = "abuse-event.v1.json";
const REJECTED: &str = "rejected.v1.json";

// The parser's enums are `#[non_exhaustive]`, so only `ReportKind` and `Code`, which have an
// `ALL` list, can be enumerated from here; the other lists are written out and compared both
// ways with the schema.
const FORMATS: &[ReportFormat] = &[
    ReportFormat::Rfc5965,
    ReportFormat::DraftArf,
    ReportFormat::ArfInMixed,
    ReportFormat::Jmrp,
    ReportFormat::JmrpBare,
    ReportFormat::DmarcText,
    ReportFormat::Rfc822Attachment,
    ReportFormat::EmlAttachment,
    ReportFormat::OutlookInline,
    ReportFormat::GmailInline,
    ReportFormat::AppleInline,
    ReportFormat::GenericInline,
    ReportFormat::Rfc822HeadersPart,
    ReportFormat::PastedHeaders,
    ReportFormat::Resent,
];
const SOURCES: &[MessageSource] = &[
    MessageSource::Rfc822Part,
    MessageSource::HeadersPart,
    MessageSource::Attachment,
    MessageSource::InlineForward,
    MessageSource::Pasted,
    MessageSource::TopLevel,
];
const NOT_REPORT_REASONS: &[NotReportReason] = &[
    NotReportReason::Bounce,
    NotReportReason::AutoReply,
    NotReportReason::DmarcAggregate,
    NotReportReason::TlsReport,
    NotReportReason::NonMailNotice,
    NotReportReason::ProviderNotification,
    NotReportReason::OrdinaryMail,
];
const REFUSAL_REASONS: &[RejectReason] = &[
    RejectReason::Empty,
    RejectReason::NotMail,
    RejectReason::TooLarge,
    RejectReason::HeaderBlockTooLarge,
    RejectReason::HeaderFieldTooLarge,
    RejectReason::TooManyHeaderFields,
    RejectReason::TooManyParts,
    RejectReason::NestingTooDeep,
    RejectReason::TooManyReportedMessages,
    RejectReason::ParserFailure,
];

/// Every parser severity; the exhaustive match breaks the build when one is added.
fn parser_severities() -> Vec<&'static str> {
    use arfwire_parse::Severity;
    let all = [Severity::Info, Severity::Warning, Severity::Error];
    for s in all {
        match s {
            Severity::Info | Severity::Warning | Severity::Error => {}
        }
    }
    all.iter().map(|s| s.as_str()).collect()
}

/// The wire form of a serde unit variant.
fn wire<T: Serialize>(value: T) -> String {
    match serde_json::to_value(value).unwrap() {
        Value::String(s) => s,
        other => panic!("not a string: {other}"),
    }
}

/// The wire forms of every variant of this crate's own enums; the exhaustive matches break
/// the build when a variant is added without updating this list.
fn own_vocabularies() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let categories = [RejectionCategory::NotReport, RejectionCategory::Refused];
    for c in categories {
        match c {
            RejectionCategory::NotReport | RejectionCategory::Refused => {}
        }
    }
    let sources = [
        ComplaintTypeSource::FeedbackType,
        ComplaintTypeSource::ImpliedByKind,
    ];
    for s in sources {
        match s {
            ComplaintTypeSource::FeedbackType | ComplaintTypeSource::ImpliedByKind => {}
        }
    }
    let scopes = [DiagnosticScope::Submission, DiagnosticScope::Report];
    for s in scopes {
        match s {
            DiagnosticScope::Submission | DiagnosticScope::Report => {}
        }
    }
    let severities = [
        DiagnosticSeverity::Info,
        DiagnosticSeverity::Warning,
        DiagnosticSeverity::Error,
    ];
    for s in severities {
        match s {
            DiagnosticSeverity::Info | DiagnosticSeverity::Warning | DiagnosticSeverity::Error => {}
        }
    }
    let domain_sources = [
        SenderDomainSource::HeaderFrom,
        SenderDomainSource::OriginalMailFrom,
    ];
    for s in domain_sources {
        match s {
            SenderDomainSource::HeaderFrom | SenderDomainSource::OriginalMailFrom => {}
        }
    }
    let confidences = [
        ConfidenceV1::None,
        ConfidenceV1::Low,
        ConfidenceV1::Medium,
        ConfidenceV1::High,
        ConfidenceV1::Confirmed,
    ];
    for c in confidences {
        match c {
            ConfidenceV1::None
            | ConfidenceV1::Low
            | ConfidenceV1::Medium
            | ConfidenceV1::High
            | ConfidenceV1::Confirmed => {}
        }
    }
    for c in Channel::ALL {
        match c {
            Channel::File
            | Channel::Maildir
            | Channel::Mbox
            | Channel::Lmtp
            | Channel::Smtp
            | Channel::Imap => {}
        }
        assert_eq!(wire(c), c.as_str());
    }
    vec![
        (
            REJECTED,
            "/properties/category/enum",
            categories.iter().map(|&v| wire(v)).collect(),
        ),
        (
            EVENT,
            "/properties/complaint_type_source/enum",
            sources.iter().map(|&v| wire(v)).collect(),
        ),
        (
            EVENT,
            "/$defs/diagnostic/properties/scope/enum",
            scopes.iter().map(|&v| wire(v)).collect(),
        ),
        (
            EVENT,
            "/$defs/diagnostic/properties/severity/enum",
            severities.iter().map(|&v| wire(v)).collect(),
        ),
        (
            EVENT,
            "/$defs/confidence/enum",
            confidences.iter().map(|&v| wire(v)).collect(),
        ),
        (
            EVENT,
            "/$defs/intake/properties/channel/enum",
            Channel::ALL.iter().map(|&v| wire(v)).collect(),
        ),
        (
            EVENT,
            "/$defs/reported_message/properties/sender_domain_source/enum",
            domain_sources
                .iter()
                .map(|&v| wire(v))
                .chain(["null".to_owned()])
                .collect(),
        ),
    ]
}

/// The enum at `pointer` in a schema file, as strings (`null` written as `"null"`), in order.
fn schema_enum(file: &str, pointer: &str) -> Vec<String> {
    let schema = schema(file);
    let values = schema
        .pointer(pointer)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{file} has no enum at {pointer}"));
    values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Null => "null".to_owned(),
            other => panic!("{file}{pointer} holds {other}"),
        })
        .collect()
}

fn assert_same(file: &str, pointer: &str, rust: Vec<String>) {
    let in_schema = schema_enum(file, pointer);
    let a: BTreeSet<&String> = in_schema.iter().collect();
    let b: BTreeSet<&String> = rust.iter().collect();
    assert_eq!(
        in_schema.len(),
        a.len(),
        "{file}{pointer} lists a value twice"
    );
    assert!(
        a == b,
        "{file}{pointer} and the Rust vocabulary differ.\nonly in the schema: {:?}\nonly in Rust: {:?}",
        a.difference(&b).collect::<Vec<_>>(),
        b.difference(&a).collect::<Vec<_>>()
    );
}

fn strs<T: Copy>(items: &[T], f: fn(T) -> &'static str) -> Vec<String> {
    items.iter().map(|&i| f(i).to_owned()).collect()
}

#[test]
fn schema_enums_match_the_parser() {
    assert_same(
        EVENT,
        "/properties/kind/enum",
        strs(&ReportKind::ALL, ReportKind::as_str),
    );
    assert_same(
        EVENT,
        "/properties/format/enum",
        strs(FORMATS, ReportFormat::as_str),
    );
    assert_same(
        EVENT,
        "/$defs/reported_message/properties/source/enum",
        strs(SOURCES, MessageSource::as_str),
    );
    assert_same(
        EVENT,
        "/$defs/diagnostic_code/enum",
        strs(Code::ALL, Code::as_str),
    );
    assert_same(
        EVENT,
        "/$defs/diagnostic/properties/severity/enum",
        parser_severities().into_iter().map(str::to_owned).collect(),
    );
    assert_same(
        REJECTED,
        "/$defs/not_report_reason/enum",
        strs(NOT_REPORT_REASONS, NotReportReason::as_str),
    );
    assert_same(
        REJECTED,
        "/$defs/refusal_reason/enum",
        strs(REFUSAL_REASONS, RejectReason::as_str),
    );
}

#[test]
fn schema_enums_match_this_crate() {
    for (file, pointer, values) in own_vocabularies() {
        assert_same(file, pointer, values);
    }
    assert_eq!(
        schema(EVENT).pointer("/properties/schema/const"),
        Some(&Value::from(ABUSE_EVENT_SCHEMA))
    );
    assert_eq!(
        schema(REJECTED).pointer("/properties/schema/const"),
        Some(&Value::from(REJECTED_SCHEMA))
    );
}

/// The hand-written lists above must cover every value the corpus produces, so a variant
/// added to the parser shows up here even before the lists are updated.
#[test]
fn corpus_vocabulary_is_listed() {
    let corpus = corpus_dir();
    let formats = strs(FORMATS, ReportFormat::as_str);
    let sources = strs(SOURCES, MessageSource::as_str);
    let mut reasons = strs(NOT_REPORT_REASONS, NotReportReason::as_str);
    reasons.extend(strs(REFUSAL_REASONS, RejectReason::as_str));
    for path in crate::support::files_under(&corpus) {
        let raw = std::fs::read(&path).unwrap();
        let (_, outputs) = derive_file(&raw, "corpus");
        for output in outputs {
            match output {
                Output::Event(e) => {
                    assert!(formats.contains(&e.format), "unlisted format {}", e.format);
                    assert!(
                        sources.contains(&e.reported_message.source),
                        "unlisted source {}",
                        e.reported_message.source
                    );
                }
                Output::Rejected(r) => {
                    assert!(reasons.contains(&r.reason), "unlisted reason {}", r.reason);
                }
            }
        }
    }
}

/// Walk a schema: every property and every definition has a description, and every object
/// with properties is closed and requires all of them.
fn check_schema_node(node: &Value, at: &str, problems: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                // `if` clauses constrain existing properties; they define none.
                let defines = !at.ends_with("/if") && !at.ends_with("/then");
                for (name, sub) in props {
                    let has_description = sub
                        .get("description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| !d.trim().is_empty());
                    if defines && !has_description {
                        problems.push(format!("{at}/properties/{name} has no description"));
                    }
                }
                if defines {
                    if map.get("additionalProperties") != Some(&Value::Bool(false)) {
                        problems.push(format!("{at} is not closed (additionalProperties)"));
                    }
                    let required: BTreeSet<&str> = map
                        .get("required")
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let keys: BTreeSet<&str> = props.keys().map(String::as_str).collect();
                    // Every v1.0 property is always written. Properties added later within
                    // v1 are optional and must be listed here by name.
                    const OPTIONAL_ADDITIONS: &[&str] = &[];
                    for key in keys.difference(&required) {
                        if !OPTIONAL_ADDITIONS.contains(key) {
                            problems.push(format!("{at}/properties/{key} is not required"));
                        }
                    }
                    for key in required.difference(&keys) {
                        problems.push(format!("{at} requires undefined {key}"));
                    }
                }
            }
            if let Some(Value::Object(defs)) = map.get("$defs") {
                for (name, def) in defs {
                    if def.get("description").and_then(Value::as_str).is_none() {
                        problems.push(format!("{at}/$defs/{name} has no description"));
                    }
                }
            }
            for (key, value) in map {
                if key == "enum" || key == "const" || key == "required" {
                    continue;
                }
                check_schema_node(value, &format!("{at}/{key}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_schema_node(item, &format!("{at}/{i}"), problems);
            }
        }
        _ => {}
    }
}

#[test]
fn every_property_is_documented_and_closed() {
    for file in [EVENT, REJECTED] {
        let schema = schema(file);
        for key in ["$schema", "$id", "title", "description"] {
            assert!(
                schema.get(key).and_then(Value::as_str).is_some(),
                "{file} has no {key}"
            );
        }
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file} is not draft 2020-12"
        );
        let description = schema["description"].as_str().unwrap();
        assert!(
            description.contains("Versioning policy") && description.contains("v2"),
            "{file} does not state the versioning policy"
        );
        let mut problems = Vec::new();
        check_schema_node(&schema, "", &mut problems);
        assert!(problems.is_empty(), "{file}:\n{}", problems.join("\n"));
    }
}

#[test]
fn shared_definitions_are_identical() {
    let event = schema(EVENT);
    let rejected = schema(REJECTED);
    let rejected_defs = rejected["$defs"].as_object().unwrap();
    let mut shared = 0;
    for (name, def) in rejected_defs {
        if let Some(in_event) = event["$defs"].get(name) {
            assert_eq!(
                def, in_event,
                "$defs/{name} differs between the two schemas"
            );
            shared += 1;
        }
    }
    assert!(shared >= 8, "only {shared} shared definitions");
}

#[test]
fn embedded_schema_text_is_the_file() {
    let event: Value = serde_json::from_str(ABUSE_EVENT_SCHEMA_JSON).unwrap();
    let rejected: Value = serde_json::from_str(REJECTED_SCHEMA_JSON).unwrap();
    assert_eq!(event, schema(EVENT));
    assert_eq!(rejected, schema(REJECTED));
}

fn location(header: &str, index: Option<u64>) -> LocationV1 {
    LocationV1 {
        header: header.to_owned(),
        index,
        raw: "from mail.example.net (mail.example.net [192.0.2.25])".to_owned(),
    }
}

fn finding(ip: &str) -> IpFindingV1 {
    IpFindingV1 {
        ip: ip.parse().unwrap(),
        port: Some(25),
        confidence: ConfidenceV1::High,
        sources: vec![location("Received", Some(1))],
        evidence_ids: vec![0],
    }
}

/// A fully populated attribution, to check that its Rust type and the schema agree.
pub(crate) fn full_attribution() -> AttributionV1 {
    let tenant = TenantRefV1 {
        id: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0".to_owned(),
        name: Some("Example Tenant".to_owned()),
    };
    AttributionV1 {
        path_class: "provider_outbound".to_owned(),
        provenance: "attached".to_owned(),
        sending_tenant: Some(tenant.clone()),
        confidence: ConfidenceV1::High,
        score: 0.93,
        sending_tenant_candidates: vec![TenantCandidateV1 {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            role: "sender".to_owned(),
            score: 0.93,
            confidence: ConfidenceV1::High,
            evidence_ids: vec![0, 1],
        }],
        recipient_tenant: None,
        impersonated_tenants: vec![TenantRefV1 {
            id: "other".to_owned(),
            name: None,
        }],
        egress_ip: Some(finding("192.0.2.25")),
        reported_source_ip: Some(finding("2001:db8::25")),
        ingress_ip: Some(finding("198.51.100.7")),
        origin_ip: None,
        delivered_by_ip: None,
        origin_kind: "client_submission".to_owned(),
        log_keys: LogKeysV1 {
            network_message_id: Some("4c6f1d3e-0000-4000-8000-000000000001".to_owned()),
            message_id: Some("abc@example.net".to_owned()),
            egress_ip: Some("192.0.2.25".parse().unwrap()),
            egress_port: Some(25),
            egress_time: Some("2024-05-01T11:59:58Z".to_owned()),
        },
        flags: vec![
            "EGRESS_FROM_SOURCE_IP".to_owned(),
            "STAMP_ANCHORED".to_owned(),
        ],
        evidence: vec![
            EvidenceV1 {
                id: 0,
                kind: "E3_anchored_stamp".to_owned(),
                tenant_id: Some(tenant.id.clone()),
                value: tenant.id.clone(),
                location: location("X-MS-Exchange-CrossTenant-Id", None),
                trust: "provider".to_owned(),
                weight: 0.8,
            },
            EvidenceV1 {
                id: 1,
                kind: "path_fact".to_owned(),
                tenant_id: None,
                value: "192.0.2.25".to_owned(),
                location: location("Received", Some(1)),
                trust: "provider".to_owned(),
                weight: 0.0,
            },
        ],
        explanation: vec!["the egress hop is a provider address".to_owned()],
    }
}

#[test]
fn a_filled_attribution_validates() {
    let validators = Validators::new();
    let corpus = corpus_dir();
    let raw = std::fs::read(corpus.join("rfc/rfc5965-appendix-B.2.eml"))
        .or_else(|_| {
            // Any report will do; take the first that yields an event.
            crate::support::files_under(&corpus)
                .into_iter()
                .find_map(|p| {
                    let raw = std::fs::read(&p).ok()?;
                    matches!(derive_file(&raw, "x").1.first(), Some(Output::Event(_)))
                        .then_some(raw)
                })
                .ok_or(())
        })
        .expect("a corpus report");
    let (_, outputs) = derive_file(&raw, "corpus");
    let Some(Output::Event(event)) = outputs.into_iter().next() else {
        panic!("no event");
    };
    let mut event = *event;
    event.attribution = Some(full_attribution());
    let output = Output::Event(Box::new(event));
    let errors = validators.errors(&output);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    let back = Output::from_json(&output.to_json_line()).unwrap();
    assert_eq!(back, output);
}
