//! Helpers shared by the integration tests.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use arfwire_events::Output;
use arfwire_kafka::{KafkaConfig, RawConsumer, RawRecord, StartPosition};
use arfwire_raw::{Channel, Envelope, RawSubmission};
use chrono::{TimeZone, Utc};

/// Run `future`, failing the test if it takes longer than `seconds`.
pub(crate) async fn within<T>(seconds: u64, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(seconds), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: did not finish within {seconds} s"),
    }
}

/// The `n`-th distinct test submission; the channel and envelope vary with `n`.
pub(crate) fn submission(n: usize) -> RawSubmission {
    let received_at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
        + chrono::TimeDelta::milliseconds(i64::try_from(n).unwrap());
    let bytes = format!(
        "From: reporter{n}@example.org\r\nTo: junk@example.net\r\nSubject: report {n}\r\n\r\nspam sample {n}\r\n"
    )
    .into_bytes();
    let mut raw = RawSubmission::new(bytes, Channel::Lmtp, received_at);
    match n % 3 {
        0 => {
            raw.envelope = Envelope {
                mail_from: Some(format!("reporter{n}@example.org")),
                rcpt_to: vec![
                    "junk@example.net".to_owned(),
                    "abuse@example.net".to_owned(),
                ],
                peer_ip: Some("192.0.2.25".parse().unwrap()),
                helo: Some("mx.example.org".to_owned()),
            };
        }
        1 => {
            raw.channel = Channel::Smtp;
            raw.envelope = Envelope {
                mail_from: Some(String::new()),
                rcpt_to: vec!["junk@example.net".to_owned()],
                peer_ip: Some("2001:db8::1".parse().unwrap()),
                helo: None,
            };
        }
        _ => {
            raw.channel = Channel::Maildir;
            raw.source = Some(format!("Maildir/new/{n}.eml"));
        }
    }
    raw
}

/// Outputs derived from real fixtures: several abuse events (one submission with
/// several attached messages) and one rejection record.
pub(crate) fn sample_outputs() -> Vec<Output> {
    let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
    let mut outputs = Vec::new();
    for raw in [
        &include_bytes!("../../../../fixtures/forward/004-several-attachments.eml")[..],
        &include_bytes!("../../../../fixtures/arf/001-rfc5965-every-field.eml")[..],
        b"this is not an email message at all",
    ] {
        let outcome = arfwire_parse::parse(raw, &arfwire_parse::ParseOptions::default());
        let intake = arfwire_events::Intake::new(raw, arfwire_events::Channel::Lmtp, at);
        outputs.extend(arfwire_events::derive(&outcome, &intake));
    }
    assert!(
        outputs
            .iter()
            .filter(|o| matches!(o, Output::Event(_)))
            .count()
            >= 2
    );
    assert!(outputs.iter().any(|o| matches!(o, Output::Rejected(_))));
    outputs
}

/// Read `count` records of `topic` from its beginning (every partition), as raw records
/// (decoding fails for topics that are not raw; the bytes and headers are there anyway).
pub(crate) async fn read_topic(
    config: &KafkaConfig,
    topic: &str,
    count: usize,
    seconds: u64,
) -> Vec<RawRecord> {
    let group = format!("reader-{}", arfwire_kafka::testing::unique_suffix());
    let consumer = RawConsumer::assign_to(
        config,
        &group,
        topic,
        StartPosition::Beginning,
        Duration::from_secs(5),
    )
    .await
    .expect("reader assigned");
    let mut records = Vec::with_capacity(count);
    within(
        seconds,
        &format!("reading {count} records of {topic}"),
        async {
            while records.len() < count {
                match consumer.recv().await {
                    Ok(record) => records.push(record),
                    Err(error) => eprintln!("reader: {error}"),
                }
            }
        },
    )
    .await;
    records
}

/// Text value of the only header `name`.
pub(crate) fn header<'a>(record: &'a RawRecord, name: &str) -> Option<&'a str> {
    let mut values = record.headers.iter().filter(|h| h.key == name);
    let value = values.next()?;
    assert!(
        values.next().is_none(),
        "header {name} appears more than once"
    );
    Some(std::str::from_utf8(value.value.as_deref().unwrap_or_default()).unwrap())
}

/// Check CloudEvents headers, key and value of published outputs read back.
pub(crate) fn check_published(outputs: &[Output], records: &[RawRecord], source: &str) {
    let by_id: HashMap<&str, &RawRecord> = records
        .iter()
        .map(|r| (header(r, "ce_id").expect("ce_id"), r))
        .collect();
    assert_eq!(by_id.len(), records.len(), "every ce_id once");
    for output in outputs {
        let record = by_id
            .get(output.event_id())
            .expect("every output published");
        assert_eq!(header(record, "ce_specversion"), Some("1.0"));
        assert_eq!(header(record, "ce_source"), Some(source));
        assert_eq!(
            header(record, "ce_time"),
            Some(output.intake().received_at.as_str())
        );
        assert_eq!(header(record, "content-type"), Some("application/json"));
        let (ce_type, key) = match output {
            Output::Event(event) => ("arfwire.abuse-event.v1", event.partition_key().to_owned()),
            Output::Rejected(rejected) => ("arfwire.rejected.v1", rejected.submission_id.clone()),
        };
        assert_eq!(header(record, "ce_type"), Some(ce_type));
        assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(record.payload(), output.to_json_line().as_bytes());
        let back = Output::from_json(std::str::from_utf8(record.payload()).unwrap()).unwrap();
        assert_eq!(&back, output);
    }
}
