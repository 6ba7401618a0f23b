//! Property tests of the sans-IO session: arbitrary input in arbitrary chunks never panics,
//! never grows the buffers past their limits, and only ever produces well-formed replies; and
//! message content ends exactly at the first `<CR><LF>.<CR><LF>`.

use std::sync::Arc;

use arfwire_lmtp::{BareLfPolicy, Event, LmtpConfig, Protocol, Session};
use arfwire_raw::SubmitError;
use proptest::prelude::*;

const MAX_LINE: usize = 512;
const MAX_MESSAGE: u64 = 4096;

fn config(protocol: Protocol, bare_lf: BareLfPolicy) -> Arc<LmtpConfig> {
    let mut config = LmtpConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "mx.provider.example",
        vec![
            "junk@provider.example".into(),
            "abuse@provider.example".into(),
        ],
    );
    config.protocol = protocol;
    config.bare_lf = bare_lf;
    config.max_line_bytes = MAX_LINE;
    config.max_message_bytes = MAX_MESSAGE;
    config.max_recipients = 5;
    config.validate().unwrap();
    Arc::new(config)
}

/// Whether `wire` is one or more well-formed reply lines: `ddd-text\r\n`… `ddd text\r\n`, all
/// with the same code, printable text.
fn well_formed(wire: &[u8]) -> bool {
    let Some(body) = wire.strip_suffix(b"\r\n") else {
        return false;
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let code = &body[..3.min(body.len())];
    lines.iter().enumerate().all(|(index, line)| {
        let line = if index + 1 < lines.len() {
            match line.strip_suffix(b"\r") {
                Some(line) => line,
                None => return false,
            }
        } else {
            line
        };
        let separator = if index + 1 == lines.len() { b' ' } else { b'-' };
        line.len() >= 4
            && line[..3].iter().all(u8::is_ascii_digit)
            && (b'2'..=b'5').contains(&line[0])
            && &line[..3] == code
            && line[3] == separator
            && line[4..].iter().all(|&b| (0x20..0x7f).contains(&b))
    })
}

struct Outcome {
    codes: Vec<u16>,
    submissions: Vec<Vec<u8>>,
    closed: bool,
    /// `250 2.0.0 … queued` replies seen, and how many the successful submits owe.
    acks: usize,
    owed_acks: usize,
    /// `451 4.3.0` replies seen, and how many the failed submits owe.
    deferrals: usize,
    owed_deferrals: usize,
}

/// Feed `chunks` (after the greeting), answering each submit from `results` in turn, and
/// check the invariants after every step.
fn drive(
    session: &mut Session,
    lmtp: bool,
    chunks: &[Vec<u8>],
    results: &[bool],
) -> Result<Outcome, TestCaseError> {
    let mut outcome = Outcome {
        codes: Vec::new(),
        submissions: Vec::new(),
        closed: false,
        acks: 0,
        owed_acks: 0,
        deferrals: 0,
        owed_deferrals: 0,
    };

    let mut next_result = 0;
    let mut handle = |session: &mut Session, outcome: &mut Outcome| -> Result<(), TestCaseError> {
        while let Some(event) = session.poll_event() {
            match event {
                Event::Reply(reply) => {
                    let wire = reply.to_bytes();
                    prop_assert!(well_formed(&wire), "malformed reply {wire:?}");
                    let text = reply.lines().join(" ");
                    if reply.code() == 250
                        && text.starts_with("2.0.0 ")
                        && text.ends_with(" queued")
                    {
                        outcome.acks += 1;
                    }
                    if reply.code() == 451 && text.starts_with("4.3.0 ") {
                        outcome.deferrals += 1;
                    }
                    outcome.codes.push(reply.code());
                }
                Event::Submit(transaction) => {
                    prop_assert!(transaction.bytes.len() as u64 <= MAX_MESSAGE);
                    prop_assert!(!transaction.envelope.rcpt_to.is_empty());
                    let ok = results.get(next_result).copied().unwrap_or(true);
                    next_result += 1;
                    let owed = if lmtp {
                        transaction.envelope.rcpt_to.len()
                    } else {
                        1
                    };
                    if ok {
                        outcome.owed_acks += owed;
                    } else {
                        outcome.owed_deferrals += owed;
                    }
                    outcome.submissions.push(transaction.bytes);
                    session.submit_done(if ok {
                        Ok(())
                    } else {
                        Err(SubmitError::Unavailable("down".into()))
                    });
                }
                Event::Close => outcome.closed = true,
            }
        }
        Ok(())
    };
    session.greet();
    handle(session, &mut outcome)?;
    for chunk in chunks {
        let mut rest = &chunk[..];
        while !rest.is_empty() {
            let used = session.feed(rest);
            prop_assert!(used <= rest.len());
            rest = &rest[used..];
            // Bounded: at most a line plus the message, and a bounded event queue.
            prop_assert!(session.buffered_bytes() <= MAX_LINE + MAX_MESSAGE as usize);
            prop_assert!(session.queued_events() <= 64);
            let queued = session.queued_events();
            handle(session, &mut outcome)?;
            // Progress: a call that consumed nothing had something for the driver to do.
            prop_assert!(used > 0 || queued > 0 || rest.is_empty());
        }
        if outcome.closed {
            prop_assert!(session.is_closed());
        }
    }
    Ok(outcome)
}

/// Split `bytes` at the given (sorted, deduplicated) cut points.
fn cut(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<Vec<u8>> {
    cuts.retain(|&c| c > 0 && c < bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for c in cuts {
        chunks.push(bytes[start..c].to_vec());
        start = c;
    }
    chunks.push(bytes[start..].to_vec());
    chunks
}

/// Lines that exercise the command parser, good and hostile.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let fixed = prop::sample::select(vec![
        &b"LHLO client.example\r\n"[..],
        b"EHLO client.example\r\n",
        b"HELO client.example\r\n",
        b"MAIL FROM:<a@b.example>\r\n",
        b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
        b"MAIL FROM:<a@b.example> SIZE=999999999\r\n",
        b"RCPT TO:<junk@provider.example>\r\n",
        b"RCPT TO:<ABUSE@provider.example>\r\n",
        b"RCPT TO:<\"junk@provider.example\"@evil.example>\r\n",
        b"RCPT TO:<junk@provider.example@evil.example>\r\n",
        b"DATA\r\n",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"VRFY junk\r\n",
        b"HELP\r\n",
        b"STARTTLS\r\n",
        b"QUIT\r\n",
        b"\r\n",
        b".\r\n",
        b"hello\n.\n",
        b"x\r\n.\r\n",
        b"..dot\r\n",
        b"MAIL FROM:<a\0b>\r\n",
        b"BDAT 10 LAST\r\n",
    ])
    .prop_map(<[u8]>::to_vec);
    prop_oneof![
        6 => fixed,
        1 => prop::collection::vec(any::<u8>(), 0..600),
        1 => prop::collection::vec(prop::sample::select(b".\r\nMAILDT: <>@".to_vec()), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes in random chunks: no panic, bounded buffers, well-formed replies.
    #[test]
    fn random_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(0usize..3000, 0..20),
        results in prop::collection::vec(any::<bool>(), 0..4),
        lmtp in any::<bool>(),
        normalize in any::<bool>(),
    ) {
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        let policy = if normalize { BareLfPolicy::Normalize } else { BareLfPolicy::Reject };
        let mut session = Session::new(config(protocol, policy), None);
        drive(&mut session, lmtp, &cut(&bytes, cuts), &results)?;
    }

    /// Sequences of plausible and hostile commands, each its own write or several per write.
    #[test]
    fn command_sequences(
        commands in prop::collection::vec(command(), 1..40),
        groups in prop::collection::vec(1usize..4, 1..40),
        results in prop::collection::vec(any::<bool>(), 0..8),
        lmtp in any::<bool>(),
        normalize in any::<bool>(),
    ) {
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        let policy = if normalize { BareLfPolicy::Normalize } else { BareLfPolicy::Reject };
        let mut session = Session::new(config(protocol, policy), None);
        let mut chunks = Vec::new();
        let mut commands = commands.into_iter();
        for group in groups.iter().cycle() {
            let chunk: Vec<u8> = commands.by_ref().take(*group).flatten().collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        let outcome = drive(&mut session, lmtp, &chunks, &results)?;
        // An acknowledgement exactly for each successful submit (LMTP: one per recipient),
        // a temporary failure exactly for each failed one.
        prop_assert_eq!(outcome.acks, outcome.owed_acks);
        prop_assert_eq!(outcome.deferrals, outcome.owed_deferrals);
    }

    /// Content built from CR, LF, dots and letters: it ends exactly at the first
    /// `<CR><LF>.<CR><LF>`; with CRLF-only lines it is stored unstuffed byte for byte, and a
    /// bare LF under the reject policy stores nothing.
    #[test]
    fn content_ends_only_at_crlf_dot_crlf(
        body in prop::collection::vec(prop::sample::select(b".\r\nMa".to_vec()), 0..200),
        cuts in prop::collection::vec(0usize..220, 0..12),
        normalize in any::<bool>(),
    ) {
        let mut framed = b"\r\n".to_vec();
        framed.extend_from_slice(&body);
        framed.extend_from_slice(b"\r\n.\r\n");
        let first_end = framed.windows(5).position(|w| w == b"\r\n.\r\n");
        prop_assume!(first_end == Some(framed.len() - 5));

        let policy = if normalize { BareLfPolicy::Normalize } else { BareLfPolicy::Reject };
        let mut session = Session::new(config(Protocol::Lmtp, policy), None);
        let mut content = body.clone();
        content.extend_from_slice(b"\r\n.\r\n");
        let mut chunks = vec![
            b"LHLO c\r\n".to_vec(),
            b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n".to_vec(),
        ];
        chunks.extend(cut(&content, cuts));
        chunks.push(b"QUIT\r\n".to_vec());
        let outcome = drive(&mut session, true, &chunks, &[])?;
        prop_assert_eq!(&outcome.codes[..4], &[220, 250, 250, 250][..]);
        prop_assert_eq!(outcome.codes[4], 354);
        // Exactly one end-of-data reply, then QUIT's 221: nothing inside was a command.
        prop_assert_eq!(outcome.codes.len(), 7, "{:?}", outcome.codes);
        prop_assert_eq!(outcome.codes[6], 221);

        let with_crlf = [&body[..], b"\r\n"].concat();
        let bare_lf = with_crlf
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || with_crlf[i - 1] != b'\r'));
        if bare_lf && !normalize {
            prop_assert_eq!(outcome.codes[5], 554);
            prop_assert!(outcome.submissions.is_empty());
        } else {
            prop_assert_eq!(outcome.codes[5], 250);
            prop_assert_eq!(outcome.submissions.len(), 1);
            if !bare_lf {
                // Reference unstuffing: every CRLF-delimited line loses one leading dot.
                let mut expected = Vec::new();
                let text = &with_crlf[..with_crlf.len() - 2];
                for line in split_crlf(text) {
                    expected.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
                    expected.extend_from_slice(b"\r\n");
                }
                prop_assert_eq!(&outcome.submissions[0], &expected);
            }
        }
    }
}

fn split_crlf(text: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < text.len() {
        if &text[i..i + 2] == b"\r\n" {
            lines.push(&text[start..i]);
            i += 2;
            start = i;
        } else {
            i += 1;
        }
    }
    lines.push(&text[start..]);
    lines
}
