//! The sans-IO session: a state machine fed the bytes a client sent, emitting replies and
//! submissions. It owns no socket and reads no clock, so it can be driven byte by byte from a
//! test or a fuzzer; [`crate::Server`] drives it over TCP.
//!
//! Driving it:
//!
//! 1. [`Session::greet`] once the greeting may be sent (feeding bytes before that is the
//!    "early talker" case: `554` and close);
//! 2. [`Session::feed`] with received bytes; it returns how many it consumed and stops early
//!    when it needs the driver (a submission is waiting, the connection is to be closed, or
//!    enough replies are queued). Keep the rest and feed it again after handling the events;
//! 3. [`Session::poll_event`] until `None`: write each [`Event::Reply`], make each
//!    [`Event::Submit`] durable and report the result with [`Session::submit_done`] (which
//!    queues the end-of-data replies), and close the connection on [`Event::Close`] after
//!    writing the replies before it.
//!
//! Memory is bounded: the partial command line by `max_line_bytes`, the message by
//! `max_message_bytes`, the event queue by a small constant per [`Session::feed`] call plus one
//! reply per recipient after [`Session::submit_done`].

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use arfwire_raw::{Channel, Envelope, RawSubmission, SubmitError};
use chrono::{DateTime, Utc};

use crate::address::{is_valid_mailbox, split_path_argument};
use crate::config::{BareLfPolicy, LmtpConfig, Protocol};
use crate::data::{DataOutcome, DataReader};
use crate::reply::Reply;

/// [`Session::feed`] stops consuming input once this many events are queued.
const EVENT_QUEUE_SOFT_LIMIT: usize = 32;

/// Length of the SHA-256 prefix quoted in the `250` reply after the data.
const HASH_PREFIX_LEN: usize = 16;

/// What the driver has to do next.
#[derive(Debug)]
pub enum Event {
    /// Send this reply.
    Reply(Reply),
    /// Make this message durable, then call [`Session::submit_done`] with the result. No
    /// input is consumed until then.
    Submit(Transaction),
    /// Close the connection (after sending the replies queued before this event).
    Close,
}

/// One complete message with its envelope, ready for the durable submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The envelope: sender, accepted recipients in `RCPT` order (as configured, not as the
    /// client spelled them), the client's IP and `LHLO`/`EHLO` name.
    pub envelope: Envelope,
    /// The message exactly as received, dot-unstuffed.
    pub bytes: Vec<u8>,
    /// Lower-case hex SHA-256 of `bytes`.
    pub sha256: String,
}

impl Transaction {
    /// The raw submission for the log.
    pub fn into_submission(self, channel: Channel, received_at: DateTime<Utc>) -> RawSubmission {
        let mut submission = RawSubmission::new(self.bytes, channel, received_at);
        submission.envelope = self.envelope;
        submission
    }
}

/// Counters of one session, for logging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Command lines received.
    pub commands: u64,
    /// Error replies (4xx/5xx) to commands.
    pub errors: u64,
    /// Recipients refused (`550`).
    pub rejected_recipients: u64,
    /// Messages made durable and acknowledged.
    pub stored: u64,
    /// Messages answered with a temporary failure after the data.
    pub deferred: u64,
    /// Messages refused after the data (too large, bare LF).
    pub refused: u64,
    /// Message content bytes received (before unstuffing), terminators included.
    pub data_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the greeting.
    Unstarted,
    /// Reading command lines.
    Command,
    /// Reading message content.
    Data,
    /// Waiting for [`Session::submit_done`].
    Submitting,
    /// Done; everything further is ignored.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello {
    Lhlo,
    Ehlo,
    Helo,
}

/// The open mail transaction.
#[derive(Debug)]
struct MailTransaction {
    mail_from: String,
    recipients: Vec<String>,
}

/// The end-of-data replies owed once the submit finishes.
#[derive(Debug)]
struct PendingSubmit {
    replies: usize,
    hash_prefix: String,
}

/// One LMTP or SMTP session (sans-IO).
#[derive(Debug)]
pub struct Session {
    config: Arc<LmtpConfig>,
    peer_ip: Option<IpAddr>,
    phase: Phase,
    /// The partial command line (never longer than `max_line_bytes`).
    line: Vec<u8>,
    /// Discarding the rest of an over-long command line.
    line_too_long: bool,
    helo: Option<String>,
    /// Whether `PIPELINING` was advertised (after `LHLO`/`EHLO`).
    pipelining: bool,
    transaction: Option<MailTransaction>,
    data: Option<DataReader>,
    pending: Option<PendingSubmit>,
    events: VecDeque<Event>,
    draining: bool,
    errors: u32,
    junk: u32,
    stats: SessionStats,
}

impl Session {
    /// A new session for a client at `peer_ip`. `config` should have passed
    /// [`LmtpConfig::validate`].
    pub fn new(config: Arc<LmtpConfig>, peer_ip: Option<IpAddr>) -> Self {
        Session {
            config,
            peer_ip,
            phase: Phase::Unstarted,
            line: Vec::new(),
            line_too_long: false,
            helo: None,
            pipelining: false,
            transaction: None,
            data: None,
            pending: None,
            events: VecDeque::new(),
            draining: false,
            errors: 0,
            junk: 0,
            stats: SessionStats::default(),
        }
    }

    /// Queue the `220` greeting. Does nothing unless the session is new.
    pub fn greet(&mut self) {
        if self.phase == Phase::Unstarted {
            let text = format!(
                "{} {} service ready",
                self.config.hostname,
                self.protocol_name()
            );
            self.reply(220, text);
            self.phase = Phase::Command;
        }
    }

    /// Consume received bytes; returns how many were consumed. Consumes nothing while a
    /// submission is pending, everything (ignored) once closed, and may stop early when
    /// enough replies are queued: feed the rest again after draining the events.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        let mut pos = 0;
        while pos < input.len() && self.events.len() < EVENT_QUEUE_SOFT_LIMIT {
            match self.phase {
                Phase::Unstarted => {
                    self.close_with(554, "5.5.0 protocol error: input before the greeting");
                    return input.len();
                }
                Phase::Closed => return input.len(),
                Phase::Submitting => return pos,
                Phase::Command => pos += self.feed_command(&input[pos..]),
                Phase::Data => {
                    let Some(reader) = self.data.as_mut() else {
                        self.phase = Phase::Command;
                        continue;
                    };
                    let before = reader.received();
                    let (used, ended) = reader.feed(&input[pos..]);
                    self.stats.data_bytes += reader.received() - before;
                    pos += used;
                    if ended {
                        self.finish_data();
                    }
                }
            }
        }
        if self.phase == Phase::Closed {
            input.len()
        } else {
            pos
        }
    }

    /// The next thing for the driver to do.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Report the outcome of the [`Event::Submit`]: queues the end-of-data replies, one per
    /// accepted recipient for LMTP, one for SMTP. `Ok` must mean the message is durable.
    pub fn submit_done(&mut self, result: Result<(), SubmitError>) {
        if self.phase != Phase::Submitting {
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        self.phase = Phase::Command;
        self.transaction = None;
        let (code, text) = match result {
            Ok(()) => {
                self.stats.stored += 1;
                // Delivering mail forgives earlier errors, as in Postfix.
                self.errors = 0;
                self.junk = 0;
                (250, format!("2.0.0 {} queued", pending.hash_prefix))
            }
            Err(SubmitError::Unavailable(_)) => {
                self.stats.deferred += 1;
                (
                    451,
                    "4.3.0 message not stored: durable storage is unavailable, try again later"
                        .to_string(),
                )
            }
            Err(SubmitError::TooLarge(_)) => {
                self.stats.refused += 1;
                (552, "5.3.4 message too large for storage".to_string())
            }
        };
        for _ in 0..pending.replies {
            self.reply(code, text.clone());
        }
        if self.draining {
            self.close_shutting_down();
        }
    }

    /// The driver's command or data timeout fired: queue `421 4.4.2` and close.
    pub fn timeout(&mut self) {
        if self.phase != Phase::Closed {
            let text = format!("4.4.2 {} timeout, closing connection", self.config.hostname);
            self.close_with(421, text);
        }
    }

    /// The server is shutting down. An idle session is closed now with `421 4.3.2`; a session
    /// inside a transaction may finish it, and is closed right after its end-of-data replies.
    /// Commands that would start something new get `421 4.3.2`.
    pub fn shutdown(&mut self) {
        self.draining = true;
        let idle = match self.phase {
            Phase::Unstarted => true,
            Phase::Command => self.transaction.is_none(),
            Phase::Data | Phase::Submitting | Phase::Closed => false,
        };
        if idle {
            self.close_shutting_down();
        }
    }

    /// The shutdown grace period is over: close now with `421 4.3.2`, whatever the state.
    pub fn abort(&mut self) {
        if self.phase != Phase::Closed {
            self.close_shutting_down();
        }
    }

    /// Whether the session has ended (an [`Event::Close`] was queued).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether message content is being read (the driver uses the data timeout then).
    pub fn in_data(&self) -> bool {
        self.phase == Phase::Data
    }

    /// Whether a submission is waiting for [`Session::submit_done`].
    pub fn awaiting_submit(&self) -> bool {
        self.phase == Phase::Submitting
    }

    /// Whether a mail transaction is open (after an accepted `MAIL FROM`).
    pub fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Bytes of client input held by the session: the partial command line and the message
    /// content read so far.
    pub fn buffered_bytes(&self) -> usize {
        self.line.len() + self.data.as_ref().map_or(0, DataReader::buffered)
    }

    /// Events queued and not yet polled.
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    /// The session's counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    // ----- commands -----

    /// Consume command input up to and including one line end (or all of `input` when it
    /// holds no line end); returns the bytes consumed.
    fn feed_command(&mut self, input: &[u8]) -> usize {
        let max = self.config.max_line_bytes;
        let Some(newline) = memchr::memchr(b'\n', input) else {
            if self.line_too_long || self.line.len() + input.len() >= max {
                self.line_too_long = true;
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(input);
            }
            return input.len();
        };
        let consumed = newline + 1;
        let more = consumed < input.len();
        if self.line_too_long || self.line.len() + consumed > max {
            self.line_too_long = false;
            self.line = Vec::new();
            self.stats.commands += 1;
            self.error(500, "5.5.6 line too long");
        } else if self.line.is_empty() {
            self.command_line(&input[..newline], more);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(&input[..newline]);
            self.command_line(&line, more);
            line.clear();
            if self.line.is_empty() {
                self.line = line;
            }
        }
        consumed
    }

    /// One command line without its LF; `more` says whether more input was already there.
    fn command_line(&mut self, raw: &[u8], more: bool) {
        self.stats.commands += 1;
        let (text, crlf) = match raw.strip_suffix(b"\r") {
            Some(text) => (text, true),
            None => (raw, false),
        };
        if !crlf && self.config.bare_lf == BareLfPolicy::Reject {
            self.error(501, "5.5.4 command line not ended by CRLF");
            self.check_sync(more, false);
            return;
        }
        if !text
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            self.error(501, "5.5.4 invalid character in command");
            self.check_sync(more, false);
            return;
        }
        // Printable ASCII: valid UTF-8.
        let text = String::from_utf8_lossy(text);
        let text = text.trim_end_matches([' ', '\t']);
        let (verb, args) = match text.split_once(' ') {
            Some((verb, args)) => (verb, args.trim_start_matches(' ')),
            None => (text, ""),
        };
        let verb = verb.to_ascii_uppercase();
        if verb.is_empty() {
            self.error(500, "5.5.2 empty command");
            self.check_sync(more, false);
            return;
        }
        if self.draining && verb != "QUIT" && !self.continues_transaction(&verb) {
            self.close_shutting_down();
            return;
        }
        let lmtp = self.config.protocol == Protocol::Lmtp;
        match verb.as_str() {
            "LHLO" if lmtp => self.hello(args, Hello::Lhlo),
            "EHLO" | "HELO" if lmtp => self.error(500, "5.5.1 this is an LMTP server: use LHLO"),
            "EHLO" => self.hello(args, Hello::Ehlo),
            "HELO" => self.hello(args, Hello::Helo),
            "MAIL" => self.mail(args),
            "RCPT" => self.rcpt(args),
            "DATA" => self.data(args, crlf),
            "RSET" => {
                self.transaction = None;
                if self.junk_command() {
                    self.reply(250, "2.0.0 OK");
                }
            }
            "NOOP" => {
                if self.junk_command() {
                    self.reply(250, "2.0.0 OK");
                }
            }
            "QUIT" => {
                let text = format!("2.0.0 {} closing connection", self.config.hostname);
                self.close_with(221, text);
            }
            "VRFY" => {
                if self.junk_command() {
                    self.reply(
                        252,
                        "2.5.2 cannot verify the user, but will accept the message for the \
                         configured recipients",
                    );
                }
            }
            "HELP" => {
                if self.junk_command() {
                    let hello = if lmtp { "LHLO" } else { "EHLO HELO" };
                    self.reply(
                        214,
                        format!("2.0.0 commands: {hello} MAIL RCPT DATA RSET NOOP QUIT VRFY HELP"),
                    );
                }
            }
            "STARTTLS" | "AUTH" | "BDAT" | "EXPN" | "ETRN" | "TURN" | "ATRN" | "VERB" => {
                if self.junk_command() {
                    self.error(502, "5.5.1 command not implemented");
                }
            }
            _ => {
                if self.junk_command() {
                    self.error(500, "5.5.1 command unrecognized");
                }
            }
        }
        let must_end_group = matches!(verb.as_str(), "LHLO" | "EHLO" | "HELO" | "DATA");
        self.check_sync(more, must_end_group);
    }

    /// RFC 2920: without `PIPELINING` every command waits for its reply, and with it
    /// `LHLO`/`EHLO`/`HELO`/`DATA` still end a group. Input already waiting after such a
    /// command means the client did not wait: `554 5.5.0` and close (Postfix's
    /// `smtpd_forbid_unauth_pipelining`).
    fn check_sync(&mut self, more: bool, must_end_group: bool) {
        if more && (must_end_group || !self.pipelining) && self.phase != Phase::Closed {
            self.close_with(
                554,
                "5.5.0 protocol synchronization error: improper pipelining",
            );
        }
    }

    /// While draining, the commands that may still complete an open transaction.
    fn continues_transaction(&self, verb: &str) -> bool {
        self.transaction.is_some() && matches!(verb, "RCPT" | "DATA" | "NOOP")
    }

    fn hello(&mut self, name: &str, kind: Hello) {
        if name.is_empty() || name.len() > 255 || name.contains([' ', '\t']) {
            let verb = match kind {
                Hello::Lhlo => "LHLO",
                Hello::Ehlo => "EHLO",
                Hello::Helo => "HELO",
            };
            self.error(501, format!("5.5.4 syntax: {verb} hostname"));
            return;
        }
        self.helo = Some(name.to_string());
        self.transaction = None;
        self.pipelining = kind != Hello::Helo;
        let hostname = self.config.hostname.clone();
        if kind == Hello::Helo {
            self.reply(250, hostname);
        } else {
            let lines = vec![
                hostname,
                "PIPELINING".to_string(),
                "ENHANCEDSTATUSCODES".to_string(),
                "8BITMIME".to_string(),
                format!("SIZE {}", self.config.max_message_bytes),
            ];
            self.events
                .push_back(Event::Reply(Reply::multiline(250, lines)));
        }
    }

    fn mail(&mut self, args: &str) {
        if self.helo.is_none() {
            let hello = match self.config.protocol {
                Protocol::Lmtp => "LHLO",
                Protocol::Smtp => "EHLO or HELO",
            };
            self.error(503, format!("5.5.1 send {hello} first"));
            return;
        }
        if self.transaction.is_some() {
            self.error(503, "5.5.1 nested MAIL command");
            return;
        }
        let Some(argument) = split_path_argument(args, "FROM") else {
            self.error(501, "5.5.4 syntax: MAIL FROM:<address>");
            return;
        };
        if !argument.path.is_empty() && !is_valid_mailbox(argument.path) {
            self.error(501, "5.1.7 bad sender address syntax");
            return;
        }
        let mut size_seen = false;
        let mut body_seen = false;
        for param in &argument.params {
            let (keyword, value) = param.split_once('=').unwrap_or((param, ""));
            if keyword.eq_ignore_ascii_case("SIZE") {
                let valid = !size_seen
                    && !value.is_empty()
                    && value.len() <= 20
                    && value.bytes().all(|b| b.is_ascii_digit());
                if !valid {
                    self.error(501, "5.5.4 bad SIZE parameter");
                    return;
                }
                size_seen = true;
                // Twenty digits can exceed u64: that is over the limit as well.
                let declared = value.parse::<u64>().unwrap_or(u64::MAX);
                if declared > self.config.max_message_bytes {
                    self.error(552, "5.3.4 message size exceeds fixed maximum message size");
                    return;
                }
            } else if keyword.eq_ignore_ascii_case("BODY") {
                let valid = !body_seen
                    && (value.eq_ignore_ascii_case("7BIT")
                        || value.eq_ignore_ascii_case("8BITMIME"));
                if !valid {
                    self.error(501, "5.5.4 bad BODY parameter");
                    return;
                }
                body_seen = true;
            } else {
                self.error(555, "5.5.4 unsupported MAIL parameter");
                return;
            }
        }
        self.transaction = Some(MailTransaction {
            mail_from: argument.path.to_string(),
            recipients: Vec::new(),
        });
        self.reply(250, "2.1.0 sender OK");
    }

    fn rcpt(&mut self, args: &str) {
        let Some(transaction) = self.transaction.as_ref() else {
            self.error(503, "5.5.1 need MAIL command");
            return;
        };
        let accepted = transaction.recipients.len();
        let Some(argument) = split_path_argument(args, "TO") else {
            self.error(501, "5.5.4 syntax: RCPT TO:<address>");
            return;
        };
        if !argument.params.is_empty() {
            self.error(555, "5.5.4 unsupported RCPT parameter");
            return;
        }
        // Exact comparison (ASCII case aside) with the configured plain addresses: a quoted
        // local part, a source route, a `%` hack or a second `@` can never match.
        let configured = self
            .config
            .recipients
            .iter()
            .find(|recipient| recipient.eq_ignore_ascii_case(argument.path))
            .cloned();
        let Some(recipient) = configured else {
            self.stats.rejected_recipients += 1;
            self.error(550, "5.1.1 recipient not accepted here");
            return;
        };
        if accepted >= self.config.max_recipients {
            self.reply(452, "4.5.3 too many recipients");
            return;
        }
        if let Some(transaction) = self.transaction.as_mut() {
            transaction.recipients.push(recipient);
        }
        self.reply(250, "2.1.5 recipient OK");
    }

    fn data(&mut self, args: &str, crlf: bool) {
        if !args.is_empty() {
            self.error(501, "5.5.4 syntax: DATA");
            return;
        }
        let Some(transaction) = self.transaction.as_ref() else {
            self.error(503, "5.5.1 need MAIL command");
            return;
        };
        if transaction.recipients.is_empty() {
            self.error(554, "5.5.1 no valid recipients");
            return;
        }
        self.reply(354, "start mail input; end with <CRLF>.<CRLF>");
        self.phase = Phase::Data;
        self.data = Some(DataReader::new(
            self.config.max_message_len(),
            self.config.bare_lf == BareLfPolicy::Normalize,
            crlf,
        ));
    }

    /// The end of the content was read: refuse it, or hand it over for the durable submit.
    fn finish_data(&mut self) {
        self.phase = Phase::Command;
        let (Some(reader), Some(transaction)) = (self.data.take(), self.transaction.take()) else {
            return;
        };
        let replies = match self.config.protocol {
            Protocol::Lmtp => transaction.recipients.len(),
            Protocol::Smtp => 1,
        };
        let (code, refusal) = match reader.finish() {
            DataOutcome::Complete(bytes) => {
                let sha256 = arfwire_raw::sha256_hex(&bytes);
                let hash_prefix = sha256[..HASH_PREFIX_LEN].to_string();
                let envelope = Envelope {
                    mail_from: Some(transaction.mail_from),
                    rcpt_to: transaction.recipients,
                    peer_ip: self.peer_ip,
                    helo: self.helo.clone(),
                };
                self.events.push_back(Event::Submit(Transaction {
                    envelope,
                    bytes,
                    sha256,
                }));
                self.pending = Some(PendingSubmit {
                    replies,
                    hash_prefix,
                });
                self.phase = Phase::Submitting;
                return;
            }
            DataOutcome::TooLarge => (552, "5.3.4 message size exceeds fixed maximum message size"),
            DataOutcome::BareLf => (
                554,
                "5.6.11 message contains bare LF line endings, which are not accepted",
            ),
        };
        self.stats.refused += 1;
        for _ in 0..replies {
            self.reply(code, refusal);
        }
        if self.draining {
            self.close_shutting_down();
        }
    }

    // ----- replies and limits -----

    fn protocol_name(&self) -> &'static str {
        match self.config.protocol {
            Protocol::Lmtp => "LMTP",
            Protocol::Smtp => "ESMTP",
        }
    }

    fn reply(&mut self, code: u16, text: impl Into<String>) {
        self.events.push_back(Event::Reply(Reply::new(code, text)));
    }

    /// An error reply to a command; too many of them close the session.
    fn error(&mut self, code: u16, text: impl Into<String>) {
        self.reply(code, text);
        self.stats.errors += 1;
        self.errors = self.errors.saturating_add(1);
        if self.errors >= self.config.max_errors {
            self.close_with(421, "4.7.0 too many errors, closing connection");
        }
    }

    /// Count a junk command; returns false (after closing the session) over the limit.
    fn junk_command(&mut self) -> bool {
        self.junk = self.junk.saturating_add(1);
        if self.junk > self.config.max_junk_commands {
            self.close_with(421, "4.7.0 too many commands, closing connection");
            return false;
        }
        true
    }

    fn close_shutting_down(&mut self) {
        let text = format!(
            "4.3.2 {} shutting down, try again later",
            self.config.hostname
        );
        self.close_with(421, text);
    }

    fn close_with(&mut self, code: u16, text: impl Into<String>) {
        if self.phase == Phase::Closed {
            return;
        }
        self.reply(code, text);
        self.events.push_back(Event::Close);
        self.phase = Phase::Closed;
        self.line = Vec::new();
        self.data = None;
        self.transaction = None;
        self.pending = None;
    }
}

/// The intake channel of a protocol.
pub(crate) fn channel(protocol: Protocol) -> Channel {
    match protocol {
        Protocol::Lmtp => Channel::Lmtp,
        Protocol::Smtp => Channel::Smtp,
    }
}
