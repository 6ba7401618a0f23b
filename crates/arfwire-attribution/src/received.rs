//! `Received:` field parsing (specification §5).
//!
//! One field value becomes one [`Hop`]. The parse runs in four steps, each linear in the
//! length of the input and none recursive, so hostile input (megabytes of `(`) costs no more
//! than ordinary input of the same size:
//!
//! 1. unfold, and split off the date after the last top-level `;` (§5.2.1);
//! 2. tokenise into words and comments, tracking nested `()`, and `[]`, `<>` and quoted
//!    strings inside words (§5.2.2);
//! 3. cut the tokens into clauses at the keywords `from`, `by`, `via`, `with`, `id` and `for`
//!    (case-insensitive, never inside a comment);
//! 4. read the fields: the connecting IP by the precedence of §5.3, the names by §5.4, the
//!    protocol, authentication and locality markers by §5.5.
//!
//! The parser never panics and never fails: what it cannot read stays `None`, and lines that
//! break the grammar in ways that matter are marked [`Hop::malformed`]: a second `from` or
//! `by`, an `@` in the by-host, an empty from- or by-clause, or a stray `)` or unclosed group
//! before the date.
//!
//! Choices the specification leaves open, made here:
//! * A from-clause exists only when `from` is the first token; a later `from` (Mailman's
//!   `by host (output) from mailman`) is not one, and the line is `SkipReason::NoFrom`.
//! * Between §5.3 steps 2 and 3, an address literal written at the top level of the
//!   from-clause after the name (`from localhost [127.0.0.1] by ...`) is used.
//! * When the address comes from the from-name itself (step 3, webmail
//!   `from 192.0.2.7 (...)`), the from-name is not also taken as the HELO.
//! * `with` is the words up to the first comment (`Microsoft SMTP Server`, `esmtps`); a
//!   second `with` is ignored. `id` and `for` are their first word, angle brackets removed.
//! * `by_ip` is the address in the by-host's first comment, else the by-host itself when it
//!   is an address literal.
//! * `tls` is the version a comment records (`using TLSv1.2`, `version=TLS1_3`,
//!   `TLS1.2:cipher:bits`, `TLS: TLS1.3`, `(TLS12)`); `over TLS secured channel` names no
//!   version and leaves it `None`.
//! * sendmail's `(user@rdns [ip])` gives both the ident and the rDNS.

use crate::ip::{parse_ip_lenient, parse_ip_with_port};
use std::net::IpAddr;

/// Why a `Received` field is not a handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// No from-clause.
    NoFrom,
    /// A local or non-SMTP handover (qmail invoked, pickup service, local delivery).
    Local,
    /// A fetchmail/getmail retrieval marker (`with IMAP`/`with POP3`).
    Fetch,
}

impl SkipReason {
    /// Stable identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoFrom => "no_from",
            SkipReason::Local => "local",
            SkipReason::Fetch => "fetch",
        }
    }
}

/// One parsed `Received` field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hop {
    /// Position among the message's `Received` fields (0 = topmost, most recent).
    pub index: usize,
    /// The field value, unfolded.
    pub raw: String,
    /// The name token after `from` (the HELO on Postfix/sendmail/Exchange lines).
    pub from_name: Option<String>,
    /// Reverse DNS name of the connecting host, if the line records one.
    pub rdns: Option<String>,
    /// The line marked the rDNS `(may be forged)`.
    pub rdns_may_be_forged: bool,
    /// HELO/EHLO name, kept opaque.
    pub helo: Option<String>,
    /// The connecting IP (from the from-clause only), normalised.
    pub ip: Option<IpAddr>,
    /// The connecting host's source port, when the line records it (`[ip]:port`, old Exim
    /// `[a.b.c.d.port]`).
    pub port: Option<u16>,
    /// Ident user (`user@ip` in qmail lines).
    pub ident: Option<String>,
    /// The host that wrote the line.
    pub by: Option<String>,
    /// The by-host's own address, when the line records it (Exchange); never a sender IP.
    pub by_ip: Option<IpAddr>,
    /// Protocol after `with`.
    pub with: Option<String>,
    /// Queue id after `id`.
    pub id: Option<String>,
    /// Recipient after `for`, opaque.
    pub for_: Option<String>,
    /// Value after `via`.
    pub via: Option<String>,
    /// `envelope-from` comment value.
    pub envelope_from: Option<String>,
    /// TLS version, when recorded.
    pub tls: Option<String>,
    /// The date text after the last top-level `;`.
    pub date: Option<String>,
    /// The date as seconds since the Unix epoch.
    pub date_unix: Option<i64>,
    /// The client authenticated (ESMTPA, `Authenticated sender`, ...).
    pub auth: bool,
    /// Submission without a client IP in the line (`with mapi`, `with HTTPS via`, Gmail HTTP).
    pub submission_marker: bool,
    /// `via Frontend Transport`.
    pub frontend: bool,
    /// Not a handover, and why.
    pub skipped: Option<SkipReason>,
    /// The line is malformed (e.g. a second `by`, `@` in the by-host).
    pub malformed: bool,
}

/// Parse every `Received` value of a message, topmost first; each hop's index is its
/// position in `values`, skipped hops included.
pub fn received_chain(values: &[String]) -> Vec<Hop> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| parse_received(value, index))
        .collect()
}

/// Parse one `Received` value (without the field name; folded or already unfolded).
/// Never panics.
pub fn parse_received(raw: &str, index: usize) -> Hop {
    let unfolded = unfold(raw);
    let mut hop = Hop {
        index,
        ..Hop::default()
    };

    // Trailing `;` with nothing after them are noise, not an empty date.
    let text = unfolded.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let mut scan = tokenise(text, true);
    if scan.last_semi.is_none() && scan.open_group.is_some() {
        // An unclosed `[`, `<` or `"` swallowed the rest of the line; read it again with
        // only comments grouping, so the date and clauses after it are still found.
        scan = tokenise(text, false);
        scan.open_group = Some(0);
    }
    // Broken grouping before the date makes the line malformed; after it, it is only
    // trailing garbage.
    let date_start = scan.last_semi.map_or(text.len(), |(_, byte)| byte);
    let mut malformed = [scan.unbalanced, scan.open_group]
        .into_iter()
        .flatten()
        .any(|at| at < date_start);

    let body_end = scan.last_semi.map_or(scan.tokens.len(), |(token, _)| token);
    if let Some((_, byte)) = scan.last_semi {
        let date = text.get(byte + 1..).unwrap_or("").trim();
        if !date.is_empty() {
            hop.date = Some(date.to_owned());
            hop.date_unix = parse_date(date);
        }
    }
    let mut body = scan.tokens;
    body.truncate(body_end);
    body.retain(|t| !matches!(t, Token::Semi));
    let clauses = split_clauses(&body);

    let count = |kw: Kw| clauses.iter().filter(|c| c.kw == Some(kw)).count();
    if count(Kw::From) > 1 || count(Kw::By) > 1 {
        malformed = true;
    }
    let first = |kw: Kw| clauses.iter().find(|c| c.kw == Some(kw));
    // A handover starts with `from`: a `from` later in the line (Mailman's
    // `by host (output) from mailman id ...`) does not make one.
    let from_clause = clauses.first().filter(|c| c.kw == Some(Kw::From));

    // by-clause: the host token and an optional comment with the host's own address.
    if let Some(by) = first(Kw::By) {
        let mut items = by.items.iter();
        match items.next() {
            Some(Token::Word(host)) => {
                hop.by = Some((*host).to_owned());
                if host.contains('@') {
                    malformed = true;
                }
                hop.by_ip = match items.next() {
                    Some(Token::Comment(c)) if !is_non_tcp_info(&c.top) => {
                        tcp_info(&split_words(&c.top)).map(|t| t.ip)
                    }
                    _ => None,
                }
                .or_else(|| parse_ip_lenient(host));
            }
            _ => malformed = true,
        }
    }
    if let Some(with) = first(Kw::With) {
        // The protocol is the words up to the first comment: `Microsoft SMTP Server (...)`,
        // `esmtps (TLS1.3) tls ...`.
        let words: Vec<&str> = with
            .items
            .iter()
            .map_while(|t| match t {
                Token::Word(w) => Some(*w),
                _ => None,
            })
            .collect();
        if !words.is_empty() {
            hop.with = Some(words.join(" "));
        }
    }
    hop.id = first(Kw::Id)
        .and_then(|c| first_word(c.items))
        .map(|w| strip_angles(w).to_owned());
    hop.for_ = first(Kw::For)
        .and_then(|c| first_word(c.items))
        .map(|w| strip_angles(w).to_owned());
    if let Some(via) = first(Kw::Via) {
        let words: Vec<&str> = via
            .items
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(*w),
                _ => None,
            })
            .collect();
        if !words.is_empty() {
            hop.via = Some(words.join(" "));
        }
    }

    let comments: Vec<&Comment<'_>> = body
        .iter()
        .filter_map(|t| match t {
            Token::Comment(c) => Some(c),
            _ => None,
        })
        .collect();
    hop.envelope_from = envelope_from(&body, &comments);
    hop.tls = comments.iter().find_map(|c| tls_version(&c.top));

    if let Some(from) = from_clause {
        if from.items.is_empty() {
            malformed = true;
        }
        read_from_clause(from.items, &mut hop);
    }

    // §5.5: protocol, authentication and locality.
    let with_first = hop
        .with
        .as_deref()
        .and_then(|w| w.split_whitespace().next())
        .unwrap_or("");
    let with_is = |names: &[&str]| names.iter().any(|n| with_first.eq_ignore_ascii_case(n));
    let http = with_is(&["HTTP", "HTTPS"]);
    hop.auth = with_is(&[
        "ESMTPA",
        "ESMTPSA",
        "LMTPA",
        "LMTPSA",
        "UTF8SMTPA",
        "UTF8SMTPSA",
        "UTF8LMTPA",
        "UTF8LMTPSA",
        "ASMTP",
    ]) || comments.iter().any(|c| is_auth_comment(&c.top))
        || (http
            && comments
                .iter()
                .any(|c| contains_ci(&c.top, "authenticated")));
    let by_is_literal = hop.by.as_deref().and_then(parse_ip_lenient).is_some();
    hop.submission_marker = with_is(&["mapi"])
        || (http && hop.via.is_some())
        || (from_clause.is_none() && by_is_literal && (http || with_is(&["SMTP"])));
    hop.frontend = hop
        .via
        .as_deref()
        .is_some_and(|v| v.eq_ignore_ascii_case("Frontend Transport"));

    hop.skipped = if with_is(&["IMAP", "IMAPS", "POP3", "POP3S", "POP"]) {
        Some(SkipReason::Fetch)
    } else if is_local(&hop, with_first, from_clause, &comments) {
        Some(SkipReason::Local)
    } else if from_clause.is_none() {
        Some(SkipReason::NoFrom)
    } else {
        None
    };
    hop.malformed = malformed;
    hop.raw = unfolded;
    hop
}

/// §5.3 and §5.4: the connecting IP, the names and the ident from the from-clause.
fn read_from_clause(items: &[Token<'_>], hop: &mut Hop) {
    // The name token is the first item when it is a word; further top-level words are rare
    // (`from localhost [127.0.0.1] by ...`, old Exim `from a (b) [ip.port] (c)`).
    let mut words = items.iter().filter_map(|t| match t {
        Token::Word(w) => Some(*w),
        _ => None,
    });
    let from_name = match items.first() {
        Some(Token::Word(w)) => {
            words.next();
            Some(*w)
        }
        _ => None,
    };
    let extra_words: Vec<&str> = words.collect();
    hop.from_name = from_name.map(str::to_owned);

    let mut helo_comment: Option<Option<&str>> = None;
    let mut helo_eq: Option<&str> = None;
    let mut found: Option<TcpInfo<'_>> = None;
    for token in items {
        let Token::Comment(c) = token else { continue };
        let words = split_words(&c.top);
        if c.top.trim().eq_ignore_ascii_case("may be forged") {
            // Old sendmail puts the modifier after the comment instead of inside it.
            hop.rdns_may_be_forged |= found.is_some();
            continue;
        }
        if let Some(first) = words.first()
            && ["HELO", "EHLO", "HELLO", "LHLO"]
                .iter()
                .any(|h| first.eq_ignore_ascii_case(h))
        {
            if helo_comment.is_none() {
                helo_comment = Some(words.get(1).copied());
            }
            continue;
        }
        for w in &words {
            if let Some(v) = strip_prefix_ci(w, "helo=") {
                helo_eq = helo_eq.or(Some(v));
            } else if let Some(v) = strip_prefix_ci(w, "ident=")
                && hop.ident.is_none()
                && !v.is_empty()
            {
                hop.ident = Some(v.to_owned());
            }
        }
        if found.is_some() || is_non_tcp_info(&c.top) {
            continue;
        }
        if let Some(info) = tcp_info(&words) {
            hop.rdns_may_be_forged |= c
                .nested
                .iter()
                .any(|n| n.trim().eq_ignore_ascii_case("may be forged"));
            found = Some(info);
        }
    }

    // Step 2, extended: an address literal written at the top level of the from-clause,
    // after the name (`from localhost [127.0.0.1] by ...`).
    if found.is_none() {
        found = extra_words
            .iter()
            .find_map(|w| parse_ip_with_port(w))
            .map(|(ip, port)| TcpInfo {
                ip,
                port,
                ident: None,
                rdns: None,
            });
    }
    // Step 3: the from-name itself is the address literal.
    let mut ip_from_name = false;
    if found.is_none()
        && let Some((ip, port)) = from_name.and_then(parse_ip_with_port)
    {
        found = Some(TcpInfo {
            ip,
            port,
            ident: None,
            rdns: None,
        });
        ip_from_name = true;
    }

    let comment_rdns = found.as_ref().and_then(|f| f.rdns);
    if let Some(info) = &found {
        hop.ip = Some(info.ip);
        hop.port = info.port;
        if let Some(ident) = info.ident {
            hop.ident = Some(ident.to_owned());
        }
    }

    // §5.4: with a HELO comment or `helo=`, the from-name is the rDNS (Exim, qmail, Halon);
    // otherwise it is the HELO and the host before `[ip]` in the comment is the rDNS.
    let helo_present = helo_comment.is_some() || helo_eq.is_some();
    if helo_present {
        hop.helo = helo_comment
            .flatten()
            .or(helo_eq)
            .filter(|h| !h.is_empty())
            .map(str::to_owned);
        hop.rdns = from_name
            .and_then(rdns_name)
            .or_else(|| comment_rdns.and_then(rdns_name));
    } else {
        // A from-name that is itself the connecting address is not a greeting (webmail
        // `from 198.51.100.7 (... authenticated user ...)`).
        hop.helo = if ip_from_name {
            None
        } else {
            from_name.map(str::to_owned)
        };
        hop.rdns = comment_rdns.and_then(rdns_name);
    }
}

/// What a TCP-info comment yields.
struct TcpInfo<'a> {
    ip: IpAddr,
    port: Option<u16>,
    ident: Option<&'a str>,
    rdns: Option<&'a str>,
}

/// §5.3 step 2 on the words of one comment: a bracketed literal first (with the host token
/// before it as the rDNS), else a bare token that is entirely an address (`ip`, `ident@ip`,
/// `ip:port`).
fn tcp_info<'a>(words: &[&'a str]) -> Option<TcpInfo<'a>> {
    for (i, w) in words.iter().enumerate() {
        if !w.starts_with('[') {
            continue;
        }
        if let Some((ip, port)) = parse_ip_with_port(w) {
            // The host before the literal is the rDNS; sendmail prefixes an ident answer
            // (`user@host [ip]`, some builds `IDENT:user@host [ip]`).
            let before = i
                .checked_sub(1)
                .and_then(|j| words.get(j))
                .copied()
                .filter(|r| !r.contains('='));
            let before = before.map(|b| strip_prefix_ci(b, "IDENT:").unwrap_or(b));
            let (ident, rdns) = match before.and_then(|b| b.rsplit_once('@')) {
                Some((user, host)) => (Some(user).filter(|u| !u.is_empty()), Some(host)),
                None => (None, before),
            };
            return Some(TcpInfo {
                ip,
                port,
                ident,
                rdns,
            });
        }
    }
    for w in words {
        if w.starts_with('[') {
            continue;
        }
        let (ident, addr) = match w.rsplit_once('@') {
            Some((ident, addr)) if !ident.is_empty() => (Some(ident), addr),
            Some(_) => continue,
            None => (None, *w),
        };
        if let Some((ip, port)) = parse_ip_with_port(addr) {
            return Some(TcpInfo {
                ip,
                port,
                ident,
                rdns: None,
            });
        }
    }
    None
}

/// Comments in the from-clause that never hold the connecting address (§5.3 step 1).
fn is_non_tcp_info(top: &str) -> bool {
    const STARTS: &[&str] = &[
        "using ",
        "no client certificate requested",
        "client did not present a certificate",
        "client cn ",
        "authenticated sender:",
        "authenticated bits=",
        "authenticated as ",
        "auth:",
        "account ",
        "squirrelmail authenticated user",
        "envelope-from",
        "envelope-sender",
        "version=",
    ];
    let top = top.trim_start();
    STARTS.iter().any(|s| starts_with_ci(top, s))
}

/// §5.5 authentication comments.
fn is_auth_comment(top: &str) -> bool {
    let top = top.trim_start();
    starts_with_ci(top, "authenticated sender:")
        || starts_with_ci(top, "authenticated bits=")
        || starts_with_ci(top, "auth:")
        || (starts_with_ci(top, "account ") && contains_ci(top, "verified"))
}

/// §5.5 skip list: local and non-SMTP handovers.
fn is_local(
    hop: &Hop,
    with_first: &str,
    from: Option<&Clause<'_, '_>>,
    comments: &[&Comment<'_>],
) -> bool {
    if ["local", "local-esmtp", "local-bsmtp", "BSMTP"]
        .iter()
        .any(|w| with_first.eq_ignore_ascii_case(w))
        || starts_with_ci(with_first, "qmail-scanner")
    {
        return true;
    }
    let local_comment = comments.iter().any(|c| {
        let top = c.top.trim();
        // `(qmail 4242 invoked by uid 89)`, `(qmail 4242 invoked from network)`
        (starts_with_ci(top, "qmail ") && contains_ci(top, " invoked "))
            // sendmail's local submission `(from user@localhost)`
            || (starts_with_ci(top, "from ") && contains_ci(top, "@localhost"))
            // Amazon-internal relays
            || starts_with_ci(top, "peer crosscheck:")
    });
    if local_comment {
        return true;
    }
    let Some(from) = from else { return false };
    // `from mail pickup service by ...` (Exchange/IIS pickup directory)
    let words: Vec<&str> = from
        .items
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(*w),
            _ => None,
        })
        .collect();
    if words.len() == 3
        && words
            .iter()
            .zip(["mail", "pickup", "service"])
            .all(|(w, e)| w.eq_ignore_ascii_case(e))
    {
        return true;
    }
    // Cyrus `from [unix socket]`, `(localhost [[UNIX: localhost]])`
    hop.from_name
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case("[unix socket]"))
        || from.items.iter().any(|t| match t {
            Token::Comment(c) => contains_ci(&c.top, "[unix:"),
            Token::Word(w) => contains_ci(w, "[unix:"),
            Token::Semi => false,
        })
}

/// The `envelope-from`/`envelope-sender` comment, or Haraka's top-level
/// `envelope-from <addr>`.
fn envelope_from(body: &[Token<'_>], comments: &[&Comment<'_>]) -> Option<String> {
    let from_comment = comments.iter().find_map(|c| {
        let top = c.top.trim_start();
        let rest = strip_prefix_ci(top, "envelope-from")
            .or_else(|| strip_prefix_ci(top, "envelope-sender"))?;
        let rest = rest.trim_start_matches([' ', '\t', '=', ':']);
        split_words(rest).first().map(|w| clean_address(w))
    });
    let from_words = || {
        body.windows(2).find_map(|pair| match pair {
            [Token::Word(k), Token::Word(v)] if k.eq_ignore_ascii_case("envelope-from") => {
                Some(clean_address(v))
            }
            _ => None,
        })
    };
    from_comment.or_else(from_words).filter(|a| !a.is_empty())
}

fn clean_address(w: &str) -> String {
    strip_angles(w.trim_end_matches([',', ';'])).to_owned()
}

/// The TLS version a comment records: Postfix `using TLSv1.2 with ...`, Gmail/Microsoft
/// `version=TLS1_3 ...`, Exim `TLS1.0:cipher:bits`, Courier `..., TLS: TLS1.3, ...`,
/// `(TLS12)`.
fn tls_version(top: &str) -> Option<String> {
    let words = split_words(top);
    let first = *words.first()?;
    let is_tls = |w: &str| starts_with_ci(w, "TLS") || starts_with_ci(w, "SSL");
    if first.eq_ignore_ascii_case("using") {
        return words.get(1).filter(|w| is_tls(w)).map(|w| (*w).to_owned());
    }
    for (i, w) in words.iter().enumerate() {
        if let Some(v) = strip_prefix_ci(w, "version=") {
            let v = v.trim_end_matches([',', ';']);
            if !v.is_empty() {
                return Some(v.to_owned());
            }
        }
        if w.eq_ignore_ascii_case("TLS:")
            && let Some(v) = words.get(i + 1)
        {
            return Some(v.trim_end_matches(',').to_owned());
        }
    }
    if is_tls(first) && !first.contains('=') {
        let v = first.split(':').next().unwrap_or(first);
        return Some(v.trim_end_matches(',').to_owned());
    }
    None
}

/// An rDNS value as recorded, or `None` for the placeholders that mean "no name":
/// `unknown`, `softdnserr`, `<unknown…>`, bracketed literals and bare addresses. Trailing
/// dots are stripped.
fn rdns_name(name: &str) -> Option<String> {
    let name = name.trim().trim_end_matches('.');
    if name.is_empty()
        || name.eq_ignore_ascii_case("unknown")
        || name.eq_ignore_ascii_case("softdnserr")
        || name.starts_with('<')
        || name.starts_with('[')
        || parse_ip_lenient(name).is_some()
    {
        None
    } else {
        Some(name.to_owned())
    }
}

// ---------------------------------------------------------------------------------------
// Tokeniser

/// Keep at most this many nested comments per top-level comment; only `(may be forged)` is
/// read from them, and hostile input can hold millions.
const MAX_NESTED: usize = 16;

#[derive(Debug)]
enum Token<'a> {
    /// A run of text outside comments, with any `[...]`, `<...>` or `"..."` inside it kept
    /// whole (they may hold spaces and `;`).
    Word(&'a str),
    /// A top-level comment.
    Comment(Comment<'a>),
    /// A top-level `;`.
    Semi,
}

#[derive(Debug)]
struct Comment<'a> {
    /// The text of the comment's own level, nested comments replaced by a space.
    top: String,
    /// The texts of the first [`MAX_NESTED`] comments directly inside it.
    nested: Vec<&'a str>,
}

struct Scan<'a> {
    tokens: Vec<Token<'a>>,
    /// The last top-level `;`: its token index and byte offset.
    last_semi: Option<(usize, usize)>,
    /// Where the first stray `)` or unclosed comment starts (byte offset).
    unbalanced: Option<usize>,
    /// Where a word with an unclosed `[`, `<` or `"` starts (byte offset).
    open_group: Option<usize>,
}

/// Tokenise `s` in one pass. With `groups`, `[`, `<` and `"` open groups inside words that
/// run to their closer; without, they are ordinary characters.
fn tokenise(s: &str, groups: bool) -> Scan<'_> {
    let bytes = s.as_bytes();
    let mut out = Scan {
        tokens: Vec::new(),
        last_semi: None,
        unbalanced: None,
        open_group: None,
    };
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b';' => {
                out.last_semi = Some((out.tokens.len(), i));
                out.tokens.push(Token::Semi);
                i += 1;
            }
            b')' => {
                out.unbalanced = out.unbalanced.or(Some(i));
                i += 1;
            }
            b'(' => {
                let (comment, next, closed) = scan_comment(s, i + 1);
                if !closed {
                    out.unbalanced = out.unbalanced.or(Some(i));
                }
                out.tokens.push(Token::Comment(comment));
                i = next;
            }
            _ => {
                let start = i;
                let mut closer: Option<u8> = None;
                while let Some(&c) = bytes.get(i) {
                    if let Some(close) = closer {
                        if c == b'\\' && close == b'"' {
                            i += 2;
                            continue;
                        }
                        if c == close {
                            closer = None;
                        }
                        i += 1;
                        continue;
                    }
                    match c {
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' => break,
                        b'[' if groups => closer = Some(b']'),
                        b'<' if groups => closer = Some(b'>'),
                        b'"' if groups => closer = Some(b'"'),
                        _ => {}
                    }
                    i += 1;
                }
                if closer.is_some() {
                    out.open_group = out.open_group.or(Some(start));
                }
                let end = i.min(bytes.len());
                out.tokens
                    .push(Token::Word(s.get(start..end).unwrap_or("")));
                i = end;
            }
        }
    }
    out
}

/// Read a comment whose text starts at `start` (just after its `(`). Returns the comment,
/// the offset after its closing `)` and whether it was closed. Iterative: nesting depth is a
/// counter.
fn scan_comment(s: &str, start: usize) -> (Comment<'_>, usize, bool) {
    let bytes = s.as_bytes();
    let mut depth: usize = 1;
    let mut i = start;
    let mut top = String::new();
    let mut segment = start;
    let mut nested = Vec::new();
    let mut nested_start = start;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\\' => {
                i += 2;
                continue;
            }
            b'(' => {
                depth += 1;
                if depth == 2 {
                    top.push_str(s.get(segment..i).unwrap_or(""));
                    top.push(' ');
                    nested_start = i + 1;
                }
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    top.push_str(s.get(segment..i).unwrap_or(""));
                    return (Comment { top, nested }, i + 1, true);
                }
                if depth == 1 {
                    if nested.len() < MAX_NESTED {
                        nested.push(s.get(nested_start..i).unwrap_or(""));
                    }
                    segment = i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth == 1 {
        top.push_str(s.get(segment..).unwrap_or(""));
    }
    (Comment { top, nested }, bytes.len(), false)
}

/// Split a comment's text into words on whitespace, keeping `[...]`, `<...>` and `"..."`
/// whole.
fn split_words(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut closer: Option<u8> = None;
        while let Some(&c) = bytes.get(i) {
            match closer {
                Some(close) => {
                    if c == close {
                        closer = None;
                    }
                }
                None => match c {
                    b'[' => closer = Some(b']'),
                    b'<' => closer = Some(b'>'),
                    b'"' => closer = Some(b'"'),
                    c if c.is_ascii_whitespace() => break,
                    _ => {}
                },
            }
            i += 1;
        }
        words.push(text.get(start..i).unwrap_or(""));
    }
    words
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    From,
    By,
    Via,
    With,
    Id,
    For,
}

struct Clause<'t, 'a> {
    /// `None` for the tokens before the first keyword.
    kw: Option<Kw>,
    items: &'t [Token<'a>],
}

fn keyword(word: &str) -> Option<Kw> {
    [
        ("from", Kw::From),
        ("by", Kw::By),
        ("via", Kw::Via),
        ("with", Kw::With),
        ("id", Kw::Id),
        ("for", Kw::For),
    ]
    .iter()
    .find(|(k, _)| word.eq_ignore_ascii_case(k))
    .map(|(_, kw)| *kw)
}

/// Cut the body into clauses at top-level keywords.
fn split_clauses<'t, 'a>(body: &'t [Token<'a>]) -> Vec<Clause<'t, 'a>> {
    let mut clauses = Vec::new();
    let mut kw: Option<Kw> = None;
    let mut start = 0;
    for (i, token) in body.iter().enumerate() {
        let Token::Word(w) = token else { continue };
        let Some(next) = keyword(w) else { continue };
        if kw.is_some() || i > start {
            clauses.push(Clause {
                kw,
                items: body.get(start..i).unwrap_or(&[]),
            });
        }
        kw = Some(next);
        start = i + 1;
    }
    if kw.is_some() || body.len() > start {
        clauses.push(Clause {
            kw,
            items: body.get(start..).unwrap_or(&[]),
        });
    }
    clauses
}

fn first_word<'a>(items: &[Token<'a>]) -> Option<&'a str> {
    items.iter().find_map(|t| match t {
        Token::Word(w) => Some(*w),
        _ => None,
    })
}

fn strip_angles(w: &str) -> &str {
    w.strip_prefix('<')
        .and_then(|r| r.strip_suffix('>'))
        .unwrap_or(w)
}

// ---------------------------------------------------------------------------------------
// Text helpers

/// RFC 5322 unfolding: line breaks are removed; a break not followed by white space (a
/// caller that already joined lines) becomes one space so words stay apart. Then trimmed.
fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            while chars.peek().is_some_and(|&n| n == '\r' || n == '\n') {
                chars.next();
            }
            if !chars.peek().is_some_and(|&n| n == ' ' || n == '\t') {
                out.push(' ');
            }
            continue;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if starts_with_ci(s, prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty()
        && hay
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

// ---------------------------------------------------------------------------------------
// Dates

/// Only the start of the date text is read; anything after a date is trailing garbage.
const MAX_DATE_LEN: usize = 256;

/// Parse a `Received` date leniently, as seconds since the Unix epoch. Accepts RFC 5322 with
/// its obsolete forms (no weekday, 2- and 3-digit years, `UT`/`GMT`/US zone names, military
/// zones, missing seconds), comments such as `(UTC)`, fractional seconds, trailing garbage,
/// asctime order (`Fri Feb  7 10:18:12 2003`) and ISO-style `2017-03-19 06:21:06.47 +0000`.
/// A missing or unknown zone is read as UTC.
pub fn parse_date(text: &str) -> Option<i64> {
    let mut end = text.len().min(MAX_DATE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = text.get(..end)?;
    // Drop comments (non-nesting is enough here: they only carry zone names).
    let mut plain = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let tokens: Vec<&str> = plain
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .collect();
    let mut rest = tokens.as_slice();
    if let Some((first, tail)) = rest.split_first()
        && weekday(first)
    {
        rest = tail;
    }
    let (first, tail) = rest.split_first()?;

    let (year, month, day, time, zone);
    if let Some((y, m, d, t)) = iso_date(first) {
        (year, month, day) = (y, m, d);
        match t {
            Some(t) => {
                time = Some(t);
                zone = tail.first().copied();
            }
            None => {
                time = tail.first().copied();
                zone = tail.get(1).copied();
            }
        }
    } else if let Some(m) = month_number(first) {
        // asctime: `Feb 7 10:18:12 2003 -0800` (or the year before the time).
        month = m;
        day = number(tail.first()?)?;
        let (a, b) = (tail.get(1).copied()?, tail.get(2).copied()?);
        if a.contains(':') {
            (time, year) = (Some(a), year_of(b)?);
        } else {
            (year, time) = (year_of(a)?, Some(b));
        }
        zone = tail.get(3).copied();
    } else {
        day = number(first)?;
        month = month_number(tail.first()?)?;
        year = year_of(tail.get(1)?)?;
        time = tail.get(2).copied();
        zone = tail.get(3).copied();
    }

    let (time, glued_zone) = split_glued_zone(time?);
    let (hour, minute, second) = clock(time)?;
    let offset = glued_zone.or(zone).map_or(0, zone_offset);
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    let time = chrono::NaiveTime::from_hms_opt(hour, minute, second.min(59))?;
    Some(date.and_time(time).and_utc().timestamp() - i64::from(offset))
}

fn weekday(t: &str) -> bool {
    let t = t.trim_end_matches('.');
    t.len() >= 3
        && t.bytes().all(|b| b.is_ascii_alphabetic())
        && ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .any(|d| starts_with_ci(t, d))
}

fn month_number(t: &str) -> Option<u32> {
    let t = t.trim_end_matches('.');
    if t.len() < 3 || !t.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ]
    .iter()
    .position(|m| starts_with_ci(t, m))
    .and_then(|p| u32::try_from(p + 1).ok())
}

fn number<T: std::str::FromStr>(t: &str) -> Option<T> {
    if t.is_empty() || t.len() > 9 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// RFC 5322 §4.3: a 2-digit year below 50 is 20xx, otherwise 19xx; a 3-digit year is
/// 1900 + it.
fn year_of(t: &str) -> Option<i32> {
    let y: i32 = number(t)?;
    match t.len() {
        2 if y < 50 => Some(2000 + y),
        2 | 3 => Some(1900 + y),
        4 => Some(y),
        _ => None,
    }
}

/// `YYYY-MM-DD`, optionally followed by `T` and a time.
fn iso_date(t: &str) -> Option<(i32, u32, u32, Option<&str>)> {
    let (date, time) = match t.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 {
        return None;
    }
    Some((number(y)?, number(m)?, number(d)?, time))
}

/// Split a zone glued to the time: `10:18:12+0000`, `10:18:12Z`.
fn split_glued_zone(t: &str) -> (&str, Option<&str>) {
    match t.find(['+', '-', 'Z', 'z']) {
        Some(i) => (t.get(..i).unwrap_or(t), t.get(i..)),
        None => (t, None),
    }
}

/// `HH:MM`, `HH:MM:SS`, `HH:MM:SS.fraction`.
fn clock(t: &str) -> Option<(u32, u32, u32)> {
    let mut parts = t.split(':');
    let hour = number(parts.next()?)?;
    let minute = number(parts.next()?)?;
    let second = match parts.next() {
        Some(s) => {
            let whole = s.split_once('.').map_or(s, |(w, frac)| {
                if frac.bytes().all(|b| b.is_ascii_digit()) {
                    w
                } else {
                    ""
                }
            });
            number(whole)?
        }
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((hour, minute, second))
}

/// A zone's offset east of UTC in seconds: `+hhmm`/`-hhmm` (also `+hh:mm`, and trailing
/// garbage after the digits), `UT`, `GMT`, `UTC`, `Z`, the US names of RFC 5322, a few
/// common European and Asian names, and military letters (read as UTC, as RFC 5322 says).
/// Anything else reads as UTC.
fn zone_offset(t: &str) -> i32 {
    let bytes = t.as_bytes();
    if let Some(&sign @ (b'+' | b'-')) = bytes.first() {
        let digits: Vec<i32> = t
            .get(1..)
            .unwrap_or("")
            .bytes()
            .filter(|b| *b != b':')
            .take_while(u8::is_ascii_digit)
            .take(4)
            .map(|b| i32::from(b - b'0'))
            .collect();
        let [h1, h2, m1, m2] = digits.as_slice() else {
            return 0;
        };
        let (hours, minutes) = (h1 * 10 + h2, m1 * 10 + m2);
        if hours > 23 || minutes > 59 {
            return 0;
        }
        let offset = hours * 3600 + minutes * 60;
        return if sign == b'-' { -offset } else { offset };
    }
    let hours = match t.to_ascii_uppercase().as_str() {
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        "BST" | "CET" | "MET" | "WEST" => 1,
        "CEST" | "MEST" | "EET" => 2,
        "EEST" => 3,
        "JST" | "KST" => 9,
        _ => 0,
    };
    hours * 3600
}
