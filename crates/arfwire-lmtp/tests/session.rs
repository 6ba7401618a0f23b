//! The sans-IO session, driven without sockets.

use std::sync::Arc;

use arfwire_lmtp::{BareLfPolicy, Event, LmtpConfig, Protocol, Reply, Session, Transaction};
use arfwire_raw::SubmitError;

fn config(protocol: Protocol) -> LmtpConfig {
    let mut config = LmtpConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "mx.provider.example",
        vec![
            "junk@provider.example".into(),
            "abuse@provider.example".into(),
        ],
    );
    config.protocol = protocol;
    config.validate().unwrap();
    config
}

/// A client step by step: each `send` is one write of the client (one pipelined group).
struct Harness {
    session: Session,
    replies: Vec<Reply>,
    submissions: Vec<Transaction>,
    closed: bool,
    submit_result: Result<(), SubmitError>,
}

impl Harness {
    fn new(config: LmtpConfig) -> Self {
        let mut harness = Harness {
            session: Session::new(Arc::new(config), Some("192.0.2.7".parse().unwrap())),
            replies: Vec::new(),
            submissions: Vec::new(),
            closed: false,
            submit_result: Ok(()),
        };
        harness.session.greet();
        harness.drain();
        harness
    }

    fn lmtp() -> Self {
        Self::new(config(Protocol::Lmtp))
    }

    fn drain(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Reply(reply) => self.replies.push(reply),
                Event::Submit(transaction) => {
                    self.submissions.push(transaction);
                    self.session.submit_done(self.submit_result.clone());
                }
                Event::Close => self.closed = true,
            }
        }
    }

    /// Feed one client write; returns the codes of the replies it caused.
    fn send(&mut self, input: &[u8]) -> Vec<u16> {
        let before = self.replies.len();
        let mut rest = input;
        loop {
            let used = self.session.feed(rest);
            rest = &rest[used..];
            let queued = self.session.queued_events();
            self.drain();
            if rest.is_empty() || (used == 0 && queued == 0) {
                break;
            }
        }
        self.replies[before..].iter().map(Reply::code).collect()
    }

    fn last(&self) -> &Reply {
        self.replies.last().unwrap()
    }

    fn last_text(&self) -> String {
        self.last().lines().join("\n")
    }
}

#[test]
fn greeting_and_lhlo_advertise_the_extensions() {
    let mut h = Harness::lmtp();
    assert_eq!(h.replies[0].code(), 220);
    assert!(h.replies[0].lines()[0].starts_with("mx.provider.example "));
    assert_eq!(h.send(b"LHLO client.example\r\n"), [250]);
    let lines = h.last().lines().to_vec();
    assert_eq!(lines[0], "mx.provider.example");
    for extension in [
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "SIZE 26214400",
    ] {
        assert!(
            lines.iter().any(|l| l == extension),
            "{extension}: {lines:?}"
        );
    }
    assert!(!lines.iter().any(|l| l.contains("STARTTLS")));
}

#[test]
fn lmtp_one_reply_per_recipient_after_one_submit() {
    let mut h = Harness::lmtp();
    h.send(b"LHLO client.example\r\n");
    let codes = h.send(
        b"MAIL FROM:<reporter@isp.example> SIZE=40 BODY=8BITMIME\r\n\
          RCPT TO:<junk@provider.example>\r\n\
          RCPT TO:<nobody@provider.example>\r\n\
          RCPT TO:<ABUSE@Provider.Example>\r\n\
          RCPT TO:<junk@provider.example>\r\n\
          DATA\r\n",
    );
    assert_eq!(codes, [250, 250, 550, 250, 250, 354]);
    let codes = h.send(b"Subject: spam\r\n\r\nbody\r\n.\r\n");
    assert_eq!(codes, [250, 250, 250]);
    assert_eq!(h.submissions.len(), 1);
    let submission = &h.submissions[0];
    assert_eq!(submission.bytes, b"Subject: spam\r\n\r\nbody\r\n");
    assert_eq!(
        submission.envelope.rcpt_to,
        [
            "junk@provider.example",
            "abuse@provider.example",
            "junk@provider.example"
        ]
    );
    assert_eq!(
        submission.envelope.mail_from.as_deref(),
        Some("reporter@isp.example")
    );
    assert_eq!(submission.envelope.helo.as_deref(), Some("client.example"));
    let prefix = &submission.sha256[..16];
    assert!(h.last_text().contains(prefix), "{}", h.last_text());
    assert!(h.last_text().starts_with("2.0.0 "));
}

#[test]
fn lmtp_failed_submit_is_451_for_every_recipient() {
    let mut h = Harness::lmtp();
    h.submit_result = Err(SubmitError::Unavailable("broker down".into()));
    h.send(b"LHLO c\r\n");
    h.send(b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nRCPT TO:<abuse@provider.example>\r\nDATA\r\n");
    assert_eq!(h.send(b"x\r\n.\r\n"), [451, 451]);
    assert!(h.last_text().starts_with("4.3.0 "));
    assert!(!h.last_text().contains("broker"), "internal detail leaked");
    // The transaction is over: a new one can start.
    assert_eq!(h.send(b"MAIL FROM:<>\r\n"), [250]);
}

#[test]
fn smtp_one_reply_after_data() {
    let mut h = Harness::new(config(Protocol::Smtp));
    assert_eq!(h.send(b"LHLO c\r\n"), [500]);
    assert_eq!(h.send(b"EHLO c\r\n"), [250]);
    h.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<junk@provider.example>\r\nRCPT TO:<abuse@provider.example>\r\nDATA\r\n");
    assert_eq!(h.send(b"x\r\n.\r\n"), [250]);
    assert_eq!(h.submissions.len(), 1);
    assert_eq!(h.send(b"QUIT\r\n"), [221]);
    assert!(h.closed);
}

#[test]
fn helo_and_ehlo_are_refused_in_lmtp() {
    let mut h = Harness::lmtp();
    assert_eq!(h.send(b"EHLO c\r\n"), [500]);
    assert_eq!(h.send(b"HELO c\r\n"), [500]);
    assert_eq!(h.send(b"MAIL FROM:<>\r\n"), [503]);
}

#[test]
fn declared_size_over_the_limit_is_552_at_mail_from() {
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    assert_eq!(h.send(b"MAIL FROM:<a@b.example> SIZE=999999999\r\n"), [552]);
    assert!(h.last_text().starts_with("5.3.4 "));
    assert_eq!(
        h.send(b"MAIL FROM:<a@b.example> SIZE=99999999999999999999\r\n"),
        [552]
    );
    assert_eq!(h.send(b"MAIL FROM:<a@b.example> SIZE=12x\r\n"), [501]);
    assert_eq!(h.send(b"MAIL FROM:<a@b.example> ENVID=x\r\n"), [555]);
    assert_eq!(h.send(b"MAIL FROM:<a@b.example> SIZE=26214400\r\n"), [250]);
}

#[test]
fn undeclared_oversize_is_drained_and_refused() {
    let mut config = config(Protocol::Lmtp);
    config.max_message_bytes = 1000;
    let mut h = Harness::new(config);
    h.send(b"LHLO c\r\n");
    h.send(b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nRCPT TO:<abuse@provider.example>\r\nDATA\r\n");
    let line = [b'x'; 98];
    for _ in 0..50 {
        let mut chunk = line.to_vec();
        chunk.extend_from_slice(b"\r\n");
        assert!(h.send(&chunk).is_empty());
        assert!(h.session.buffered_bytes() <= 1000);
    }
    assert_eq!(h.send(b".\r\n"), [552, 552]);
    assert!(h.submissions.is_empty());
    // Still usable.
    h.send(b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n");
    assert_eq!(h.send(b"small\r\n.\r\n"), [250]);
}

#[test]
fn open_relay_set_is_refused() {
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    h.send(b"MAIL FROM:<a@b.example>\r\n");
    for recipient in [
        "victim@elsewhere.example",
        "junk%elsewhere.example@provider.example",
        "@provider.example:junk@elsewhere.example",
        "@elsewhere.example:junk@provider.example",
        "\"junk@provider.example\"@elsewhere.example",
        "\"junk\"@provider.example",
        "junk@provider.example@elsewhere.example",
        "junk@provider.example.",
        "junk@provider.example.elsewhere.example",
        "postmaster@provider.example",
        "junk",
        "elsewhere.example!junk@provider.example",
        "junk@[192.0.2.1]",
        "",
    ] {
        let command = format!("RCPT TO:<{recipient}>\r\n");
        assert_eq!(h.send(command.as_bytes()), [550], "{recipient}");
        assert!(h.last_text().starts_with("5.1.1 "), "{recipient}");
    }
    assert_eq!(h.send(b"RCPT TO:junk@provider.example\r\n"), [501]);
    assert_eq!(h.send(b"DATA\r\n"), [554]);
    assert!(h.submissions.is_empty());
}

#[test]
fn control_bytes_in_arguments_are_501() {
    let mut config = config(Protocol::Lmtp);
    config.max_errors = 100;
    let mut h = Harness::new(config);
    h.send(b"LHLO c\r\n");
    for command in [
        &b"MAIL FROM:<a\rb@c.example>\r\n"[..],
        b"MAIL FROM:<a@c.example> AUTH=x\0y\r\n",
        b"MAIL FROM:<a@c.example> ORCPT=rfc822;a\rb\r\n",
        b"LHLO bad\0name\r\n",
        b"MAIL FROM:<a@\x1bc.example>\r\n",
        b"MAIL FROM:<\xc3\xa4@c.example>\r\n",
        b"RCPT TO:<junk@provider.example>\x7f\r\n",
    ] {
        assert_eq!(h.send(command), [501], "{command:?}");
        assert!(h.last_text().starts_with("5.5.4 "));
    }
    // A LF inside an argument ends the line early: the first half is refused.
    let codes = h.send(b"MAIL FROM:<a@c.example\nb> SIZE=1\r\n");
    assert_eq!(codes[0], 501);
    // Nothing was accepted.
    assert_eq!(h.send(b"RCPT TO:<junk@provider.example>\r\n"), [503]);
}

#[test]
fn bare_lf_command_lines_follow_the_policy() {
    let mut h = Harness::lmtp();
    assert_eq!(h.send(b"LHLO c\n"), [501]);
    let mut config = config(Protocol::Lmtp);
    config.bare_lf = BareLfPolicy::Normalize;
    let mut h = Harness::new(config);
    assert_eq!(h.send(b"LHLO c\n"), [250]);
}

#[test]
fn early_talker_is_554_and_closed() {
    let mut session = Session::new(Arc::new(config(Protocol::Lmtp)), None);
    assert_eq!(session.feed(b"LHLO c\r\n"), 8);
    let mut codes = Vec::new();
    let mut closed = false;
    while let Some(event) = session.poll_event() {
        match event {
            Event::Reply(reply) => codes.push(reply.code()),
            Event::Close => closed = true,
            Event::Submit(_) => panic!("submitted"),
        }
    }
    assert_eq!(codes, [554]);
    assert!(closed);
    session.greet();
    assert!(session.poll_event().is_none(), "no greeting after closing");
}

#[test]
fn pipelining_without_lhlo_is_a_synchronization_error() {
    let mut h = Harness::lmtp();
    assert_eq!(h.send(b"LHLO c\r\nMAIL FROM:<>\r\n"), [250, 554]);
    assert!(h.closed);
    let mut h = Harness::new(config(Protocol::Smtp));
    assert_eq!(h.send(b"HELO c\r\n"), [250]);
    assert_eq!(
        h.send(b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\n"),
        [250, 554]
    );
    assert!(h.closed);
    // DATA must end a pipelined group: content sent before the 354 is refused.
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    let codes = h.send(
        b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\nSubject: x\r\n\r\n.\r\n",
    );
    assert_eq!(codes, [250, 250, 354, 554]);
    assert!(h.closed);
    assert!(h.submissions.is_empty());
}

#[test]
fn smuggled_transaction_stays_inside_the_message() {
    for policy in [BareLfPolicy::Reject, BareLfPolicy::Normalize] {
        let mut config = config(Protocol::Lmtp);
        config.bare_lf = policy;
        let mut h = Harness::new(config);
        h.send(b"LHLO c\r\n");
        h.send(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n");
        let codes = h.send(
            b"Subject: one\r\n\r\nhello\n.\n\
              MAIL FROM:<evil@b.example>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n\
              Subject: smuggled\r\n\r\nx\r\n.\r\n",
        );
        match policy {
            BareLfPolicy::Reject => {
                assert_eq!(codes, [554]);
                assert!(h.last_text().starts_with("5.6.11 "));
                assert!(h.submissions.is_empty());
            }
            BareLfPolicy::Normalize => {
                assert_eq!(codes, [250]);
                assert_eq!(h.submissions.len(), 1);
                let bytes = &h.submissions[0].bytes;
                assert!(bytes.starts_with(b"Subject: one\r\n\r\nhello\r\n\r\nMAIL FROM:<evil"));
            }
        }
        assert_eq!(h.send(b"QUIT\r\n"), [221]);
    }
}

#[test]
fn long_lines_are_500_and_the_session_goes_on() {
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 5000));
    for chunk in long.chunks(700) {
        assert!(h.send(chunk).is_empty());
        assert!(h.session.buffered_bytes() <= 2048);
    }
    assert_eq!(h.send(b"\r\n"), [500]);
    assert!(h.last_text().starts_with("5.5.6 "));
    // A line of exactly the limit, CRLF included, is fine.
    let mut exact = b"NOOP ".to_vec();
    exact.extend(std::iter::repeat_n(b'a', 2048 - 7));
    exact.extend_from_slice(b"\r\n");
    assert_eq!(h.send(&exact), [250]);
    exact.insert(5, b'a');
    assert_eq!(h.send(&exact), [500]);
}

#[test]
fn too_many_errors_or_junk_commands_close_the_session() {
    let mut h = Harness::lmtp();
    let mut codes = Vec::new();
    for _ in 0..25 {
        codes.extend(h.send(b"BOGUS\r\n"));
        if h.closed {
            break;
        }
    }
    assert_eq!(codes.len(), 21);
    assert_eq!(*codes.last().unwrap(), 421);
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    let mut count = 0;
    while !h.closed && count < 200 {
        h.send(b"NOOP\r\n");
        count += 1;
    }
    assert_eq!(count, 101);
    assert_eq!(h.last().code(), 421);
}

#[test]
fn recipient_cap_is_452() {
    let mut config = config(Protocol::Lmtp);
    config.max_recipients = 2;
    let mut h = Harness::new(config);
    h.send(b"LHLO c\r\n");
    let codes = h.send(
        b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nRCPT TO:<abuse@provider.example>\r\n\
          RCPT TO:<junk@provider.example>\r\nDATA\r\n",
    );
    assert_eq!(codes, [250, 250, 250, 452, 354]);
    assert_eq!(h.send(b"x\r\n.\r\n"), [250, 250]);
}

#[test]
fn sequencing_errors() {
    let mut h = Harness::lmtp();
    assert_eq!(h.send(b"MAIL FROM:<>\r\n"), [503]);
    assert_eq!(h.send(b"LHLO c\r\n"), [250]);
    assert_eq!(h.send(b"RCPT TO:<junk@provider.example>\r\n"), [503]);
    assert_eq!(h.send(b"DATA\r\n"), [503]);
    assert_eq!(h.send(b"MAIL FROM:<>\r\n"), [250]);
    assert_eq!(h.send(b"MAIL FROM:<>\r\n"), [503]);
    assert_eq!(h.send(b"DATA\r\n"), [554]);
    assert_eq!(h.send(b"RSET\r\n"), [250]);
    assert_eq!(h.send(b"RCPT TO:<junk@provider.example>\r\n"), [503]);
    assert_eq!(h.send(b"VRFY junk\r\n"), [252]);
    assert_eq!(h.send(b"HELP\r\n"), [214]);
    assert_eq!(h.send(b"STARTTLS\r\n"), [502]);
    assert_eq!(h.send(b"\r\n"), [500]);
    assert_eq!(h.send(b"MAIL FROM:<a@@b>\r\n"), [501]);
    assert_eq!(h.send(b"MAIL FROM:<@x.example:a@b.example>\r\n"), [501]);
    assert_eq!(h.send(b"mail from: <A@B.example> body=7bit\r\n"), [250]);
}

#[test]
fn shutdown_lets_the_open_transaction_finish() {
    // Idle: closed at once.
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    h.session.shutdown();
    h.drain();
    assert_eq!(h.last().code(), 421);
    assert!(h.last_text().starts_with("4.3.2 "));
    assert!(h.closed);

    // Inside a transaction: it completes, then the session closes.
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    h.send(b"MAIL FROM:<>\r\n");
    h.session.shutdown();
    h.drain();
    assert!(!h.closed);
    assert_eq!(
        h.send(b"RCPT TO:<junk@provider.example>\r\nDATA\r\n"),
        [250, 354]
    );
    assert_eq!(h.send(b"x\r\n.\r\n"), [250, 421]);
    assert!(h.closed);
    assert_eq!(h.submissions.len(), 1);

    // A new transaction is refused.
    let mut h = Harness::lmtp();
    h.send(b"LHLO c\r\n");
    h.session.shutdown();
    h.drain();
    assert!(h.closed);
}

#[test]
fn abort_during_the_submit_never_acknowledges() {
    let mut session = Session::new(Arc::new(config(Protocol::Lmtp)), None);
    session.greet();
    session.feed(b"LHLO c\r\n");
    session.feed(b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n");
    session.feed(b"x\r\n.\r\n");
    let mut codes = Vec::new();
    let mut submitted = false;
    while let Some(event) = session.poll_event() {
        match event {
            Event::Reply(reply) => codes.push(reply.code()),
            Event::Submit(_) => submitted = true,
            Event::Close => {}
        }
    }
    assert!(submitted && session.awaiting_submit());
    session.abort();
    session.submit_done(Ok(()));
    let mut after = Vec::new();
    while let Some(event) = session.poll_event() {
        if let Event::Reply(reply) = event {
            after.push(reply.code());
        }
    }
    assert_eq!(after, [421]);
}

#[test]
fn config_parses_with_defaults_and_refuses_unknown_fields() {
    let text = r#"
        listen = "127.0.0.1:2424"
        hostname = "mx.provider.example"
        recipients = ["junk@provider.example", "abuse@provider.example"]
    "#;
    let parsed: LmtpConfig = toml::from_str(text).unwrap();
    assert_eq!(parsed.protocol, Protocol::Lmtp);
    assert_eq!(parsed.max_message_bytes, 25 * 1024 * 1024);
    assert_eq!(parsed.bare_lf, BareLfPolicy::Reject);
    parsed.validate().unwrap();
    let full = r#"
        listen = "[::1]:24"
        protocol = "smtp"
        hostname = "mx"
        recipients = ["junk@provider.example"]
        max_message_bytes = 1000
        max_recipients = 5
        max_line_bytes = 1000
        max_errors = 3
        max_junk_commands = 3
        greeting_delay_ms = 100
        command_timeout_ms = 1
        data_timeout_ms = 1
        session_timeout_ms = 1
        submit_timeout_ms = 1
        shutdown_grace_ms = 0
        max_connections = 1
        max_connections_per_ip = 1
        bare_lf = "normalize"
    "#;
    let parsed: LmtpConfig = toml::from_str(full).unwrap();
    parsed.validate().unwrap();
    assert!(toml::from_str::<LmtpConfig>(&format!("{text}\nmax_mesage_bytes = 1\n")).is_err());
    let mut bad = parsed.clone();
    bad.recipients = vec!["junk%x@provider.example".into()];
    assert!(bad.validate().is_err());
    let mut bad = parsed.clone();
    bad.hostname = "two words".into();
    assert!(bad.validate().is_err());
    let mut bad = parsed;
    bad.max_line_bytes = 100;
    assert!(bad.validate().is_err());
}
