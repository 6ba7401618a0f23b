//! Fuzz the sans-IO LMTP/SMTP session: arbitrary client bytes in arbitrary chunks.
//!
//! The first byte picks the set-up (protocol, bare-LF policy, whether the greeting is sent
//! first, whether a transaction is opened so the rest is message content) and the second seeds
//! the chunk sizes. Checks: no panic; the session never holds more than a command line plus
//! the message limit; the event queue stays small; every reply is well-formed; a submission is
//! never larger than the limit; nothing is consumed while a submit is pending.

#![no_main]

use std::sync::Arc;

use arfwire_lmtp::{BareLfPolicy, Event, LmtpConfig, Protocol, Session};
use arfwire_raw::SubmitError;
use libfuzzer_sys::fuzz_target;

const MAX_LINE: usize = 512;
const MAX_MESSAGE: u64 = 2048;

fn well_formed(wire: &[u8]) -> bool {
    let Some(body) = wire.strip_suffix(b"\r\n") else {
        return false;
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    lines.iter().enumerate().all(|(index, line)| {
        let last = index + 1 == lines.len();
        let line = if last { *line } else { line.strip_suffix(b"\r").unwrap_or(b"") };
        line.len() >= 4
            && line[..3].iter().all(u8::is_ascii_digit)
            && line[3] == if last { b' ' } else { b'-' }
            && line[4..].iter().all(|&b| (0x20..0x7f).contains(&b))
    })
}

fn drain(session: &mut Session, submits: &mut u32) {
    while let Some(event) = session.poll_event() {
        match event {
            Event::Reply(reply) => assert!(well_formed(&reply.to_bytes()), "{reply:?}"),
            Event::Submit(transaction) => {
                assert!(transaction.bytes.len() as u64 <= MAX_MESSAGE);
                assert!(session.awaiting_submit());
                assert_eq!(session.feed(b"NOOP\r\n"), 0, "input consumed during a submit");
                *submits += 1;
                let result = if *submits % 3 == 0 {
                    Err(SubmitError::Unavailable("fuzz".into()))
                } else {
                    Ok(())
                };
                session.submit_done(result);
            }
            Event::Close => assert!(session.is_closed()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [flags, seed, rest @ ..] = data else {
        return;
    };
    let mut config = LmtpConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "mx.provider.example",
        vec!["junk@provider.example".into(), "abuse@provider.example".into()],
    );
    config.protocol = if flags & 1 == 0 { Protocol::Lmtp } else { Protocol::Smtp };
    config.bare_lf = if flags & 2 == 0 { BareLfPolicy::Reject } else { BareLfPolicy::Normalize };
    config.max_line_bytes = MAX_LINE;
    config.max_message_bytes = MAX_MESSAGE;
    config.max_recipients = 3;
    config.validate().unwrap();
    let mut session = Session::new(Arc::new(config), None);
    let mut submits = 0;
    let mut chunks: Vec<&[u8]> = Vec::new();
    if flags & 4 == 0 {
        session.greet();
        if flags & 8 != 0 {
            let hello: &[u8] = if flags & 1 == 0 { b"LHLO f\r\n" } else { b"EHLO f\r\n" };
            chunks.push(hello);
            chunks.push(b"MAIL FROM:<>\r\nRCPT TO:<junk@provider.example>\r\nDATA\r\n");
        }
    }
    let mut state = u32::from(*seed) | 1;
    let mut rest = rest;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 1 + (state >> 16) as usize % 97;
        let (chunk, tail) = rest.split_at(len.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    drain(&mut session, &mut submits);
    for chunk in chunks {
        let mut input = chunk;
        while !input.is_empty() {
            let used = session.feed(input);
            assert!(used <= input.len());
            assert!(session.buffered_bytes() <= MAX_LINE + MAX_MESSAGE as usize);
            assert!(session.queued_events() <= 64);
            let queued = session.queued_events();
            input = &input[used..];
            drain(&mut session, &mut submits);
            assert!(used > 0 || queued > 0 || input.is_empty(), "no progress");
        }
    }
    session.timeout();
    drain(&mut session, &mut submits);
    assert!(session.is_closed());
});
