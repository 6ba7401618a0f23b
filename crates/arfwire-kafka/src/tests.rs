//! Unit tests: framing round trips and configuration.

use std::collections::BTreeMap;

use arfwire_raw::{Channel, Envelope, RawSubmission};
use chrono::{TimeZone, Utc};
use rdkafka::message::{OwnedMessage, Timestamp};

use crate::config::{ConfigError, KafkaConfig, Security};
use crate::framing::{
    DecodeError, HeaderField, RAW_SCHEMA, decode_raw, decode_raw_parts, encode_raw, header,
    header_safe_text,
};

fn lmtp_submission() -> RawSubmission {
    let received_at = Utc
        .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
        .unwrap()
        .checked_add_signed(chrono::TimeDelta::nanoseconds(123_456_789))
        .unwrap();
    RawSubmission {
        bytes: b"From: reporter@example.org\r\nSubject: spam\r\n\r\nbody\r\n".to_vec(),
        channel: Channel::Lmtp,
        received_at,
        envelope: Envelope {
            mail_from: Some("reporter@example.org".to_owned()),
            rcpt_to: vec![
                "junk@example.net".to_owned(),
                "abuse@example.net".to_owned(),
                "junk@example.net".to_owned(),
            ],
            peer_ip: Some("2001:db8::25".parse().unwrap()),
            helo: Some("mx.example.org".to_owned()),
        },
        source: None,
    }
}

/// Build the message a consumer would see from an encoded submission.
fn as_message(submission: &RawSubmission) -> OwnedMessage {
    let encoded = encode_raw(submission).unwrap();
    OwnedMessage::new(
        Some(encoded.payload.to_vec()),
        Some(encoded.key.clone().into_bytes()),
        "abuse.raw.v1".to_owned(),
        Timestamp::CreateTime(1_714_564_800_000),
        0,
        42,
        Some(encoded.owned_headers()),
    )
}

#[test]
fn round_trip_with_full_envelope() {
    let submission = lmtp_submission();
    let message = as_message(&submission);
    assert_eq!(decode_raw(&message).unwrap(), submission);
}

#[test]
fn round_trip_null_reverse_path_and_no_envelope() {
    let mut bounce = lmtp_submission();
    bounce.envelope.mail_from = Some(String::new());
    bounce.envelope.rcpt_to.clear();
    bounce.envelope.peer_ip = Some("192.0.2.7".parse().unwrap());
    bounce.envelope.helo = None;
    assert_eq!(decode_raw(&as_message(&bounce)).unwrap(), bounce);

    let mut file = RawSubmission::new(
        vec![0, 159, 255, b'\r', b'\n'],
        Channel::File,
        Utc.with_ymd_and_hms(2020, 1, 2, 3, 4, 5).unwrap(),
    );
    file.source = Some("spool/ünïcode name.eml".to_owned());
    assert_eq!(decode_raw(&as_message(&file)).unwrap(), file);

    let empty = RawSubmission::new(Vec::new(), Channel::Imap, Utc.timestamp_opt(0, 0).unwrap());
    assert_eq!(decode_raw(&as_message(&empty)).unwrap(), empty);
}

#[test]
fn round_trip_every_channel() {
    for channel in [
        Channel::Lmtp,
        Channel::Smtp,
        Channel::Maildir,
        Channel::Imap,
        Channel::File,
    ] {
        let mut submission = lmtp_submission();
        submission.channel = channel;
        assert_eq!(decode_raw(&as_message(&submission)).unwrap(), submission);
    }
}

#[test]
fn encoding_layout() {
    let submission = lmtp_submission();
    let encoded = encode_raw(&submission).unwrap();
    assert_eq!(encoded.key, submission.sha256_hex());
    assert_eq!(encoded.payload, submission.bytes.as_slice());
    let text: Vec<(&str, &str)> = encoded
        .headers
        .iter()
        .map(|h| {
            (
                h.key.as_str(),
                std::str::from_utf8(h.value.as_deref().unwrap()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        text,
        vec![
            ("arfwire-schema", "arfwire.raw.v1"),
            ("arfwire-channel", "lmtp"),
            ("arfwire-received-at", "2024-05-01T12:00:00.123456789Z"),
            ("arfwire-sha256", submission.sha256_hex().as_str()),
            ("arfwire-mail-from", "reporter@example.org"),
            ("arfwire-rcpt-to", "junk@example.net"),
            ("arfwire-rcpt-to", "abuse@example.net"),
            ("arfwire-rcpt-to", "junk@example.net"),
            ("arfwire-peer-ip", "2001:db8::25"),
            ("arfwire-helo", "mx.example.org"),
        ]
    );
    // Whole seconds are written without a fraction.
    let plain = RawSubmission::new(
        b"x".to_vec(),
        Channel::File,
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
    );
    let encoded = encode_raw(&plain).unwrap();
    assert_eq!(
        encoded.headers[2].value.as_deref(),
        Some(&b"2024-05-01T12:00:00Z"[..])
    );
}

#[test]
fn encoding_refuses_cr_lf_nul() {
    for bad in ["a\rb", "a\nb", "a\0b", "x\r\nBcc: victim@example.com"] {
        let mut submission = lmtp_submission();
        submission.envelope.helo = Some(bad.to_owned());
        let error = encode_raw(&submission).unwrap_err();
        assert_eq!(error.header, header::HELO);

        let mut submission = lmtp_submission();
        submission.envelope.rcpt_to.push(bad.to_owned());
        assert_eq!(encode_raw(&submission).unwrap_err().header, header::RCPT_TO);

        let mut submission = lmtp_submission();
        submission.source = Some(bad.to_owned());
        assert_eq!(encode_raw(&submission).unwrap_err().header, header::SOURCE);
    }
}

fn parts(submission: &RawSubmission) -> (String, Vec<HeaderField>, Vec<u8>) {
    let encoded = encode_raw(submission).unwrap();
    (encoded.key, encoded.headers, encoded.payload.to_vec())
}

#[test]
fn decoding_verifies_the_digest() {
    let submission = lmtp_submission();
    let (key, headers, mut payload) = parts(&submission);
    payload[0] ^= 1;
    assert!(matches!(
        decode_raw_parts(Some(key.as_bytes()), &headers, Some(&payload)),
        Err(DecodeError::Sha256Mismatch { .. })
    ));

    // A key that disagrees with the value is caught too; no key is accepted.
    let (_, headers, payload) = parts(&submission);
    let other = "0".repeat(64);
    assert!(matches!(
        decode_raw_parts(Some(other.as_bytes()), &headers, Some(&payload)),
        Err(DecodeError::Sha256Mismatch { .. })
    ));
    assert_eq!(
        decode_raw_parts(None, &headers, Some(&payload)).unwrap(),
        submission
    );
}

#[test]
fn decoding_refuses_bad_headers() {
    let submission = lmtp_submission();
    let (key, headers, payload) = parts(&submission);
    let decode =
        |headers: &[HeaderField]| decode_raw_parts(Some(key.as_bytes()), headers, Some(&payload));

    let replace = |name: &str, value: &[u8]| -> Vec<HeaderField> {
        headers
            .iter()
            .map(|h| {
                if h.key == name {
                    HeaderField {
                        key: h.key.clone(),
                        value: Some(value.to_vec()),
                    }
                } else {
                    h.clone()
                }
            })
            .collect()
    };
    let without = |name: &str| -> Vec<HeaderField> {
        headers.iter().filter(|h| h.key != name).cloned().collect()
    };

    assert_eq!(
        decode(&without(header::SCHEMA)),
        Err(DecodeError::MissingHeader(header::SCHEMA))
    );
    assert_eq!(
        decode(&replace(header::SCHEMA, b"arfwire.raw.v2")),
        Err(DecodeError::UnknownSchema("arfwire.raw.v2".to_owned()))
    );
    assert_eq!(
        decode(&without(header::SHA256)),
        Err(DecodeError::MissingHeader(header::SHA256))
    );
    assert_eq!(
        decode(&without(header::CHANNEL)),
        Err(DecodeError::MissingHeader(header::CHANNEL))
    );
    assert!(matches!(
        decode(&replace(header::CHANNEL, b"carrier-pigeon")),
        Err(DecodeError::InvalidHeader {
            header: "arfwire-channel",
            ..
        })
    ));
    assert!(matches!(
        decode(&replace(header::RECEIVED_AT, b"yesterday")),
        Err(DecodeError::InvalidHeader {
            header: "arfwire-received-at",
            ..
        })
    ));
    assert!(matches!(
        decode(&replace(header::PEER_IP, b"192.0.2.300")),
        Err(DecodeError::InvalidHeader {
            header: "arfwire-peer-ip",
            ..
        })
    ));
    for bad in [&b"mx\r\nX: y"[..], b"mx\0", b"mx\n", b"\xff\xfe"] {
        assert!(matches!(
            decode(&replace(header::HELO, bad)),
            Err(DecodeError::InvalidHeader {
                header: "arfwire-helo",
                ..
            })
        ));
    }
    // A CR in a recipient header is refused as well.
    assert!(matches!(
        decode(&replace(header::RCPT_TO, b"a@example.net\r")),
        Err(DecodeError::InvalidHeader {
            header: "arfwire-rcpt-to",
            ..
        })
    ));

    let mut doubled = headers.clone();
    doubled.push(HeaderField::text(header::MAIL_FROM, "other@example.org"));
    assert_eq!(
        decode(&doubled),
        Err(DecodeError::DuplicateHeader(header::MAIL_FROM))
    );

    assert_eq!(
        decode_raw_parts(Some(key.as_bytes()), &headers, None),
        Err(DecodeError::MissingPayload)
    );

    // Unknown headers (a later version's additions, tracing headers) are ignored.
    let mut extended = headers.clone();
    extended.push(HeaderField::text(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ));
    extended.push(HeaderField::text("arfwire-future-fact", "42"));
    assert_eq!(decode(&extended).unwrap(), submission);
}

#[test]
fn a_null_mail_from_value_reads_as_the_null_reverse_path() {
    let mut submission = lmtp_submission();
    submission.envelope.mail_from = Some(String::new());
    let (key, mut headers, payload) = parts(&submission);
    for h in &mut headers {
        if h.key == header::MAIL_FROM {
            h.value = None;
        }
    }
    assert_eq!(
        decode_raw_parts(Some(key.as_bytes()), &headers, Some(&payload)).unwrap(),
        submission
    );
}

#[test]
fn header_safe_text_replaces_and_cuts() {
    assert_eq!(header_safe_text("a\r\nb\0c", 100), "a  b c");
    assert_eq!(header_safe_text("ééé", 5), "éé");
    assert_eq!(header_safe_text("", 5), "");
}

#[test]
fn raw_schema_name() {
    assert_eq!(RAW_SCHEMA, "arfwire.raw.v1");
}

// ----- configuration -----

#[test]
fn minimal_config_takes_defaults() {
    let config: KafkaConfig = toml::from_str(r#"bootstrap_servers = "127.0.0.1:9092""#).unwrap();
    assert_eq!(config.client_id, "arfwire");
    assert_eq!(config.topics.raw, "abuse.raw.v1");
    assert_eq!(config.topics.events, "abuse.events.v1");
    assert_eq!(config.topics.rejected, "abuse.rejected.v1");
    assert_eq!(config.topics.dlq, "abuse.dlq.v1");
    assert_eq!(config.produce_timeout_ms, 30_000);
    assert_eq!(config.message_max_bytes, 32 * 1024 * 1024);
    assert_eq!(config.event_source, "urn:arfwire:worker");
    assert_eq!(config.group_id, "arfwire-worker");
    assert_eq!(config.security, Security::Plaintext);
    config.validate().unwrap();
}

#[test]
fn full_config_parses() {
    let text = r#"
        bootstrap_servers = "kafka-1.example.net:9093,kafka-2.example.net:9093"
        client_id = "arfwire-intake"
        produce_timeout_ms = 10000
        message_max_bytes = 30000000
        event_source = "urn:arfwire:worker:eu-1"

        [topics]
        raw = "abuse.raw.v1"
        events = "abuse.events.v1"
        rejected = "abuse.rejected.v1"
        dlq = "abuse.dlq.v1"

        [security]
        protocol = "SASL_SSL"
        mechanism = "SCRAM-SHA-256"
        username_env = "KAFKA_USER"
        password_env = "KAFKA_PASS"
        ca_location = "ca.pem"

        [librdkafka_options]
        "compression.type" = "lz4"
        "ssl.key.password" = "hunter2"
    "#;
    let mut config: KafkaConfig = toml::from_str(text).unwrap();
    let Security::SaslSsl(sasl) = &config.security else {
        panic!("SASL_SSL expected");
    };
    assert_eq!(sasl.mechanism.as_str(), "SCRAM-SHA-256");
    assert_eq!(sasl.username_env, "KAFKA_USER");
    assert_eq!(sasl.ca_location.as_deref(), Some("ca.pem"));

    // No credentials yet: clients cannot be built.
    assert!(matches!(
        config.base_client_config(),
        Err(ConfigError::MissingCredentials(_))
    ));
    let env: BTreeMap<&str, &str> = [("KAFKA_USER", "svc-arfwire"), ("KAFKA_PASS", "s3cr3t-pw")]
        .into_iter()
        .collect();
    config
        .resolve_credentials(|name| env.get(name).map(|v| (*v).to_owned()))
        .unwrap();
    let client = config.base_client_config().unwrap();
    assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
    assert_eq!(client.get("sasl.username"), Some("svc-arfwire"));
    assert_eq!(client.get("sasl.password"), Some("s3cr3t-pw"));
    assert_eq!(client.get("compression.type"), Some("lz4"));

    // Debug never shows a secret.
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cr3t-pw"), "{debug}");
    assert!(!debug.contains("svc-arfwire"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("[REDACTED]"), "{debug}");
    assert!(debug.contains("lz4"), "{debug}");
}

#[test]
fn missing_credentials_are_reported() {
    let mut config: KafkaConfig = toml::from_str(
        r#"
        bootstrap_servers = "k:9093"
        [security]
        protocol = "SASL_SSL"
        "#,
    )
    .unwrap();
    let error = config.resolve_credentials(|_| None).unwrap_err();
    assert_eq!(
        error,
        ConfigError::MissingCredentials("ARFWIRE_KAFKA_USERNAME".to_owned())
    );
    let error = config
        .resolve_credentials(|name| (name == "ARFWIRE_KAFKA_USERNAME").then(|| "u".to_owned()))
        .unwrap_err();
    assert_eq!(
        error,
        ConfigError::MissingCredentials("ARFWIRE_KAFKA_PASSWORD".to_owned())
    );
}

#[test]
fn unknown_fields_are_refused() {
    for text in [
        "bootstrap_servers = \"k:9092\"\nproduce_timeout = 5",
        "bootstrap_servers = \"k:9092\"\n[topics]\nraws = \"x\"",
        "bootstrap_servers = \"k:9092\"\n[security]\nprotocol = \"SASL_SSL\"\npasword_env = \"X\"",
        "bootstrap_servers = \"k:9092\"\n[security]\nprotocol = \"SSL\"",
        "client_id = \"no-brokers\"",
    ] {
        assert!(toml::from_str::<KafkaConfig>(text).is_err(), "{text}");
    }
}

#[test]
fn validation() {
    let ok = KafkaConfig::new("127.0.0.1:9092");
    ok.validate().unwrap();

    let mut config = ok.clone();
    config.bootstrap_servers = " ".to_owned();
    assert!(config.validate().is_err());

    let mut config = ok.clone();
    config.topics.dlq = config.topics.raw.clone();
    assert!(config.validate().is_err());

    let mut config = ok.clone();
    config.topics.events = "abuse events".to_owned();
    assert!(config.validate().is_err());

    let mut config = ok.clone();
    config.produce_timeout_ms = 0;
    assert!(config.validate().is_err());

    let mut config = ok.clone();
    config.message_max_bytes = 10;
    assert!(config.validate().is_err());

    for key in [
        "enable.idempotence",
        "acks",
        "enable.auto.offset.store",
        "sasl.password",
    ] {
        let mut config = ok.clone();
        config
            .librdkafka_options
            .insert(key.to_owned(), "x".to_owned());
        assert_eq!(
            config.validate(),
            Err(ConfigError::ProtectedOption(key.to_owned()))
        );
    }
}
