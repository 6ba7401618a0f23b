//! The server over real sockets on 127.0.0.1, with an in-memory submitter.

mod common;

use std::time::{Duration, Instant};

use arfwire_lmtp::BareLfPolicy;
use arfwire_raw::Channel;
use common::{Client, MemorySubmitter, Running, config};

const JUNK: &str = "junk@provider.example";
const ABUSE: &str = "abuse@provider.example";

/// R1: no reply while the durable write is pending; 250 once it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_no_reply_before_the_submit_is_durable() {
    let submitter = MemorySubmitter::new();
    submitter.block();
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    client
        .command("MAIL FROM:<reporter@isp.example>", 250)
        .await;
    client.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
    client.command("DATA", 354).await;
    client.send(b"Subject: report\r\n\r\nbody\r\n.\r\n").await;
    submitter.entered().await;
    assert!(
        client.silent_for(Duration::from_millis(1200)).await,
        "a reply arrived before the submit completed"
    );
    assert!(submitter.stored().is_empty());
    submitter.release(1);
    let text = client.expect(250).await;
    assert!(
        text.starts_with("2.0.0 ") && text.ends_with(" queued"),
        "{text}"
    );
    let stored = submitter.stored();
    assert_eq!(stored.len(), 1);
    assert!(text.contains(&stored[0].sha256_hex()[..16]));
    assert_eq!(stored[0].channel, Channel::Lmtp);
    assert_eq!(
        stored[0].envelope.peer_ip,
        Some("127.0.0.1".parse().unwrap())
    );
    client.command("QUIT", 221).await;
    assert!(client.closed().await);
    server.stop().await;
}

/// R1: a failed submit is 451 4.3.0, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_failed_submit_is_451_and_nothing_stored() {
    let submitter = MemorySubmitter::new();
    submitter.set_failing(true);
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    let replies = client
        .transaction(&[JUNK], b"Subject: x\r\n\r\nbody\r\n")
        .await;
    assert_eq!(replies[0].code, 451);
    assert!(replies[0].text().starts_with("4.3.0 "), "{:?}", replies[0]);
    assert_eq!(submitter.attempts(), 1);
    assert!(submitter.stored().is_empty());
    // The session goes on; once the log is back the same message is accepted.
    submitter.set_failing(false);
    let replies = client
        .transaction(&[JUNK], b"Subject: x\r\n\r\nbody\r\n")
        .await;
    assert_eq!(replies[0].code, 250);
    assert_eq!(submitter.stored().len(), 1);
    server.stop().await;
}

/// R22: three recipients, three replies in order, one stored message; all 451 on failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r22_one_reply_per_recipient_in_order() {
    let submitter = MemorySubmitter::new();
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    let recipients = [JUNK, ABUSE, "JUNK@provider.example"];
    let replies = client
        .transaction(&recipients, b"Subject: r22\r\n\r\nx\r\n")
        .await;
    assert_eq!(
        replies.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 250, 250]
    );
    assert!(replies.iter().all(|r| r.text() == replies[0].text()));
    let stored = submitter.stored();
    assert_eq!(stored.len(), 1, "one stored message for three recipients");
    assert_eq!(stored[0].envelope.rcpt_to, [JUNK, ABUSE, JUNK]);

    submitter.set_failing(true);
    let replies = client
        .transaction(&recipients, b"Subject: r22\r\n\r\ny\r\n")
        .await;
    assert_eq!(
        replies.iter().map(|r| r.code).collect::<Vec<_>>(),
        [451, 451, 451]
    );
    assert_eq!(submitter.stored().len(), 1);
    assert_eq!(
        submitter.attempts(),
        2,
        "one submit per message, not per recipient"
    );
    server.stop().await;
}

/// Dot-stuffing round trip: the stored bytes are the client's content, unstuffed, CRLF kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_stuffing_round_trip_is_byte_exact() {
    let submitter = MemorySubmitter::new();
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    let original: &[u8] = b"From: a@b.example\r\nSubject: dots\r\n\r\n.\r\n..\r\n.leading\r\n\
        ...three\r\nmiddle . dot\r\n. \r\n\r\n\xff\xfe 8-bit\tbytes\r\nlast line\r\n";
    let mut stuffed = Vec::new();
    for line in original.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    let replies = client.transaction(&[JUNK], &stuffed).await;
    assert_eq!(replies[0].code, 250);
    assert_eq!(submitter.stored()[0].bytes, original);
    server.stop().await;
}

/// H15: `<LF>.<LF>` and a smuggled MAIL FROM stay inside the one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h15_smuggling_is_one_message() {
    for policy in [BareLfPolicy::Reject, BareLfPolicy::Normalize] {
        let submitter = MemorySubmitter::new();
        let mut config = config();
        config.bare_lf = policy;
        let server = Running::start(config, submitter.clone()).await;
        let mut client = server.connect().await;
        client.hello().await;
        client
            .command("MAIL FROM:<reporter@isp.example>", 250)
            .await;
        client.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
        client.command("DATA", 354).await;
        client
            .send(
                b"Subject: outer\r\n\r\nx\n.\n\
                  MAIL FROM:<ceo@provider.example>\r\nRCPT TO:<junk@provider.example>\r\n\
                  DATA\r\nSubject: smuggled\r\n\r\ny\r\n.\r\n",
            )
            .await;
        let end = client.reply().await;
        match policy {
            BareLfPolicy::Reject => {
                assert_eq!(end.code, 554, "{end:?}");
                assert!(end.text().starts_with("5.6.11 "));
                assert!(submitter.stored().is_empty());
            }
            BareLfPolicy::Normalize => {
                assert_eq!(end.code, 250, "{end:?}");
                let stored = submitter.stored();
                assert_eq!(stored.len(), 1);
                assert!(
                    stored[0]
                        .bytes
                        .windows(b"Subject: smuggled".len())
                        .any(|w| w == b"Subject: smuggled")
                );
            }
        }
        // No second transaction: the next reply is the one to our own NOOP.
        client.command("NOOP", 250).await;
        assert!(submitter.attempts() <= 1);
        server.stop().await;
    }
}

/// H17: a client that talks before the greeting gets 554 and is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h17_early_talker() {
    let submitter = MemorySubmitter::new();
    let mut config = config();
    config.greeting_delay_ms = 300;
    let server = Running::start(config, submitter.clone()).await;
    let mut client = server.connect().await;
    client
        .send(b"LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n")
        .await;
    let seen = client.reply().await;
    assert_eq!(seen.code, 554, "{seen:?}");
    assert!(client.closed().await);
    // A patient client is greeted after the pause.
    let mut client = server.connect().await;
    client.hello().await;
    assert_eq!(submitter.attempts(), 0);
    server.stop().await;
}

/// H18: CR, LF and NUL inside arguments are 501 5.5.4 and nothing is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h18_control_bytes_in_arguments() {
    let submitter = MemorySubmitter::new();
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = server.connect().await;
    client.expect(220).await;
    client.send(b"LHLO bad\0host\r\n").await;
    assert!(client.expect(501).await.starts_with("5.5.4 "));
    client.command("LHLO client.example", 250).await;
    for command in [
        &b"MAIL FROM:<a@b.example> AUTH=<>\rRCPT TO:<x@y>\r\n"[..],
        b"MAIL FROM:<a@b.example> ENVID=a\0b\r\n",
        b"MAIL FROM:<a@b.example\0>\r\n",
        b"MAIL FROM:<a@b.example> ORCPT=rfc822;x\nRCPT TO:<junk@provider.example>\r\n",
    ] {
        client.send(command).await;
        let seen = client.reply().await;
        assert_eq!(seen.code, 501, "{command:?} -> {seen:?}");
        assert!(seen.text().starts_with("5.5.4 "));
        if command.contains(&b'\n') && command.iter().filter(|&&b| b == b'\n').count() == 2 {
            // The second half of a LF-split line is a command of its own: RCPT without MAIL.
            client.expect(503).await;
        }
    }
    client.command(&format!("RCPT TO:<{JUNK}>"), 503).await;
    assert_eq!(submitter.attempts(), 0);
    server.stop().await;
}

/// H19: declared oversize is 552 at MAIL FROM; undeclared oversize is drained, 552 after the
/// data, and the connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h19_oversize() {
    let submitter = MemorySubmitter::new();
    let mut config = config();
    config.max_message_bytes = 64 * 1024;
    let server = Running::start(config, submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    let text = client
        .command("MAIL FROM:<reporter@isp.example> SIZE=999999999", 552)
        .await;
    assert!(text.starts_with("5.3.4 "));

    client
        .command("MAIL FROM:<reporter@isp.example>", 250)
        .await;
    client.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
    client.command(&format!("RCPT TO:<{ABUSE}>"), 250).await;
    client.command("DATA", 354).await;
    let line = [b'x'; 998];
    let mut chunk = Vec::new();
    for _ in 0..64 {
        chunk.extend_from_slice(&line);
        chunk.extend_from_slice(b"\r\n");
    }
    for _ in 0..4 {
        client.send(&chunk).await; // 256 KiB in all
    }
    client.send(b".\r\n").await;
    for _ in 0..2 {
        assert!(client.expect(552).await.starts_with("5.3.4 "));
    }
    assert_eq!(submitter.attempts(), 0);
    let replies = client
        .transaction(&[JUNK], b"Subject: small\r\n\r\nok\r\n")
        .await;
    assert_eq!(replies[0].code, 250);
    assert_eq!(submitter.stored().len(), 1);
    server.stop().await;
}

/// S1: the open-relay set is refused; only the configured recipients are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_open_relay_set_is_refused() {
    let submitter = MemorySubmitter::new();
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    client
        .command("MAIL FROM:<spammer@evil.example>", 250)
        .await;
    for recipient in [
        "victim@elsewhere.example",
        "junk%elsewhere.example@provider.example",
        "@provider.example:victim@elsewhere.example",
        "@relay.example:junk@provider.example",
        "\"junk@provider.example\"@evil.example",
        "junk@provider.example@evil.example",
        "junk@evil.example",
        "postmaster@provider.example",
        "root@provider.example",
        "junk@provider.example.evil.example",
        "evil.example!victim@provider.example",
    ] {
        let text = client.command(&format!("RCPT TO:<{recipient}>"), 550).await;
        assert!(text.starts_with("5.1.1 "), "{recipient}: {text}");
    }
    client.command("DATA", 554).await;
    client.command("RSET", 250).await;
    assert_eq!(submitter.attempts(), 0);
    server.stop().await;
}

/// H20 (small): over the global cap extra connections get 421 while a normal client completes;
/// over the per-address cap likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h20_connection_caps() {
    let submitter = MemorySubmitter::new();
    let mut config = config();
    config.max_connections = 3;
    let server = Running::start(config, submitter.clone()).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut client = server.connect().await;
        client.expect(220).await;
        idle.push(client);
    }
    let mut normal = server.connect().await;
    normal.hello().await;
    for _ in 0..3 {
        let mut extra = server.connect().await;
        let seen = extra.reply().await;
        assert_eq!(seen.code, 421, "{seen:?}");
        assert!(seen.text().starts_with("4.3.2 "));
        assert!(extra.closed().await);
    }
    let started = Instant::now();
    let replies = normal
        .transaction(&[JUNK], b"Subject: normal\r\n\r\nok\r\n")
        .await;
    assert_eq!(replies[0].code, 250);
    assert!(started.elapsed() < Duration::from_secs(5));
    normal.command("QUIT", 221).await;
    drop(normal);
    // A slot is free again once a session ends.
    let mut later = None;
    for _ in 0..50 {
        let mut client = server.connect().await;
        if client.reply().await.code == 220 {
            later = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(later.is_some(), "the freed slot was never reused");
    drop(idle);
    server.stop().await;

    let mut config = common::config();
    config.max_connections_per_ip = 2;
    let server = Running::start(config, submitter).await;
    let mut first = server.connect().await;
    first.expect(220).await;
    let mut second = server.connect().await;
    second.expect(220).await;
    let mut third = server.connect().await;
    let seen = third.reply().await;
    assert_eq!(seen.code, 421);
    assert!(seen.text().starts_with("4.7.0 "));
    drop((first, second));
    server.stop().await;
}

/// A silent connection is closed at the command timeout; a stalled DATA at the data timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeouts_close_the_connection() {
    let submitter = MemorySubmitter::new();
    let mut config = config();
    config.command_timeout_ms = 1_000;
    config.data_timeout_ms = 300;
    let server = Running::start(config, submitter.clone()).await;

    let mut client = server.connect().await;
    client.expect(220).await;
    let started = Instant::now();
    let seen = client.reply().await;
    assert_eq!(seen.code, 421);
    assert!(seen.text().starts_with("4.4.2 "));
    assert!(client.closed().await);
    assert!(started.elapsed() < Duration::from_secs(4));

    let mut client = server.connect().await;
    client.hello().await;
    client.command("MAIL FROM:<>", 250).await;
    client.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
    client.command("DATA", 354).await;
    client.send(b"Subject: stalled\r\n").await;
    assert_eq!(client.reply().await.code, 421);
    assert!(client.closed().await);
    assert_eq!(submitter.attempts(), 0);
    server.stop().await;
}

/// The whole-session cap ends a session that keeps talking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timeout_ends_a_long_session() {
    let mut config = config();
    config.session_timeout_ms = 700;
    let server = Running::start(config, MemorySubmitter::new()).await;
    let mut client = server.connect().await;
    client.hello().await;
    let started = Instant::now();
    let mut closed_with = None;
    while started.elapsed() < Duration::from_secs(5) {
        client.send(b"NOOP\r\n").await;
        let seen = client.reply().await;
        if seen.code != 250 {
            closed_with = Some(seen.code);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(closed_with, Some(421));
    server.stop().await;
}

/// R19: on shutdown an idle session gets 421 4.3.2 at once, an in-flight transaction finishes
/// (250 after the durable submit, then 421), and no new connection is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_shutdown_drains_in_flight_sessions() {
    let submitter = MemorySubmitter::new();
    submitter.block();
    let mut server = Running::start(config(), submitter.clone()).await;
    let addr = server.addr;

    let mut idle = server.connect().await;
    idle.hello().await;
    let mut busy = server.connect().await;
    busy.hello().await;
    busy.command("MAIL FROM:<reporter@isp.example>", 250).await;
    busy.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
    busy.command("DATA", 354).await;
    busy.send(b"Subject: in flight\r\n\r\nx\r\n.\r\n").await;
    submitter.entered().await;

    server.signal_shutdown();
    let seen = idle.reply().await;
    assert_eq!(seen.code, 421);
    assert!(seen.text().starts_with("4.3.2 "));
    assert!(idle.closed().await);

    // The listener is gone: new connections are refused, or at least never greeted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if tokio::net::TcpStream::connect(addr).await.is_ok() {
        let mut late = Client::connect(addr).await;
        assert!(late.try_reply().await.is_none(), "greeted after shutdown");
    }

    assert!(busy.silent_for(Duration::from_millis(300)).await);
    submitter.release(1);
    assert_eq!(busy.reply().await.code, 250);
    let seen = busy.reply().await;
    assert_eq!(seen.code, 421);
    assert!(busy.closed().await);
    assert_eq!(submitter.stored().len(), 1);
    server.stop().await;
}

/// R19: sessions still busy after the grace period are closed with 421, never a 250.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r19_grace_period_ends_stuck_submits_without_250() {
    let submitter = MemorySubmitter::new();
    submitter.block();
    let mut config = config();
    config.shutdown_grace_ms = 300;
    let server = Running::start(config, submitter.clone()).await;
    let mut busy = server.connect().await;
    busy.hello().await;
    busy.command("MAIL FROM:<>", 250).await;
    busy.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
    busy.command("DATA", 354).await;
    busy.send(b"x\r\n.\r\n").await;
    submitter.entered().await;
    let started = Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(8));
    let seen = busy.try_reply().await;
    assert!(matches!(seen, Some(ref s) if s.code == 421), "{seen:?}");
    assert!(submitter.stored().is_empty());
}

/// A submit that never completes is answered 451 at the submit timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_timeout_is_451() {
    let submitter = MemorySubmitter::new();
    submitter.block();
    let mut config = config();
    config.submit_timeout_ms = 300;
    let server = Running::start(config, submitter.clone()).await;
    let mut client = server.connect().await;
    client.hello().await;
    let replies = client.transaction(&[JUNK, ABUSE], b"x\r\n").await;
    assert_eq!(
        replies.iter().map(|r| r.code).collect::<Vec<_>>(),
        [451, 451]
    );
    assert!(submitter.stored().is_empty());
    submitter.release(10);
    server.stop().await;
}

/// The dialogue Postfix's LMTP client has: LHLO, then MAIL with SIZE and BODY=8BITMIME and
/// the RCPTs and DATA in one pipelined write, the content after 354, one reply per RCPT, and
/// RSET before reusing the cached connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_lmtp_dialogue() {
    let submitter = MemorySubmitter::new();
    let server = Running::start(config(), submitter.clone()).await;
    let mut client = Client::connect(server.addr).await;
    client.expect(220).await;
    client.send(b"LHLO mail.provider.example\r\n").await;
    let seen = client.reply().await;
    assert_eq!(seen.code, 250);
    assert!(seen.lines.iter().any(|l| l == "PIPELINING"));
    let size_line = seen.lines.iter().find(|l| l.starts_with("SIZE ")).unwrap();
    assert_eq!(size_line, "SIZE 26214400");
    let body = b"Received: from a by b\r\nFrom: r@isp.example\r\nSubject: ARF\r\n\r\n\xe2\x9c\x93 8bit\r\n";
    for round in 0..2 {
        if round > 0 {
            client.command("RSET", 250).await;
        }
        let group = format!(
            "MAIL FROM:<r@isp.example> SIZE={} BODY=8BITMIME\r\n\
             RCPT TO:<junk@provider.example>\r\nRCPT TO:<nobody@provider.example>\r\n\
             RCPT TO:<abuse@provider.example>\r\nDATA\r\n",
            body.len()
        );
        client.send(group.as_bytes()).await;
        let codes = [
            client.reply().await.code,
            client.reply().await.code,
            client.reply().await.code,
            client.reply().await.code,
            client.reply().await.code,
        ];
        assert_eq!(codes, [250, 250, 550, 250, 354]);
        let mut content = body.to_vec();
        content.extend_from_slice(b".\r\n");
        client.send(&content).await;
        assert_eq!(client.reply().await.code, 250);
        assert_eq!(client.reply().await.code, 250);
    }
    client.command("QUIT", 221).await;
    let stored = submitter.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].bytes, body);
    assert_eq!(stored[0].envelope.rcpt_to, [JUNK, ABUSE]);
    assert_eq!(
        stored[0].envelope.helo.as_deref(),
        Some("mail.provider.example")
    );
    server.stop().await;
}

/// SMTP mode: EHLO, one reply after the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_mode_single_reply() {
    let submitter = MemorySubmitter::new();
    let mut config = config();
    config.protocol = arfwire_lmtp::Protocol::Smtp;
    let server = Running::start(config, submitter.clone()).await;
    let mut client = server.connect().await;
    let greeting = client.expect(220).await;
    assert!(greeting.contains("ESMTP"));
    client.command("EHLO client.example", 250).await;
    client.command("MAIL FROM:<a@b.example>", 250).await;
    client.command(&format!("RCPT TO:<{JUNK}>"), 250).await;
    client.command(&format!("RCPT TO:<{ABUSE}>"), 250).await;
    client.command("DATA", 354).await;
    client.send(b"x\r\n.\r\n").await;
    client.expect(250).await;
    client.command("QUIT", 221).await;
    assert_eq!(submitter.stored()[0].channel, arfwire_raw::Channel::Smtp);
    server.stop().await;
}
