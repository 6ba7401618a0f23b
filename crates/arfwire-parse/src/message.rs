//! Build a [`ReportedMessage`] from the raw bytes of a reported message or header block.

use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};

/// Decodes the fields of a reported header block that the event carries decoded.
static HEADER_PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
    MessageParser::new()
        .with_address_headers()
        .with_date_headers()
        .with_message_ids()
        .header_text(HeaderName::Subject)
});

use crate::address::{domain_of, normalise_domain, strip_angles};
use crate::diag::{Code, Diagnostic};
use crate::headers::{RawField, fields, looks_like_headers, split_header_block, strip_from_line};
use crate::types::{DkimSignature, HeaderField, Mailbox, MessageSource, ReportedMessage};

/// The most fields a second header block may have to be joined to the first (the erratum
/// moves a few identity fields; a huge run of fields after the blank line is a body).
const MAX_JOINED_FIELDS: usize = 200;

/// Header names that, when found after a blank line, show the header block was split.
const SPLIT_MARKERS: &[&str] = &["from", "to", "subject", "date", "message-id"];

fn is_provider_header(lower: &str) -> bool {
    lower.starts_with("x-ms-")
        || lower.starts_with("x-forefront-")
        || lower.starts_with("x-microsoft-antispam")
        || lower == "x-originatororg"
        || lower.starts_with("x-eop")
        || lower == "authentication-results"
        || lower.starts_with("arc-")
        || lower == "received-spf"
        || lower == "x-originating-ip"
}

/// Read DKIM-Signature tags (`d=`, `s=`, `i=`, `b=`).
fn dkim_signature(value: &str) -> DkimSignature {
    let mut sig = DkimSignature {
        domain: None,
        selector: None,
        identity: None,
        signature_prefix: None,
    };
    for tag in value.split(';') {
        let Some((name, val)) = tag.split_once('=') else {
            continue;
        };
        let val: String = val.chars().filter(|c| !c.is_whitespace()).collect();
        match name.trim() {
            "d" => sig.domain = Some(val.to_ascii_lowercase()),
            "s" => sig.selector = Some(val),
            "i" => sig.identity = Some(val),
            "b" => sig.signature_prefix = Some(val.chars().take(64).collect()),
            _ => {}
        }
    }
    sig
}

/// First mailbox of an address header as mail-parser read it.
pub(crate) fn first_mailbox(address: &Address<'_>) -> Option<Mailbox> {
    let addr = match address {
        Address::List(list) => list.first()?,
        Address::Group(groups) => groups.iter().flat_map(|g| g.addresses.iter()).next()?,
    };
    let address = addr.address.as_deref()?.trim().to_owned();
    if address.is_empty() {
        return None;
    }
    Some(Mailbox {
        domain: domain_of(&address).map(normalise_domain),
        name: addr
            .name
            .as_deref()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        address,
    })
}

/// Last-resort mailbox: the first `local@domain` token in a raw value.
fn mailbox_from_raw(raw: &str) -> Option<Mailbox> {
    let token = raw
        .split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == ',' || c == '"')
        .find(|t| t.contains('@'))?;
    let address = strip_angles(token);
    Some(Mailbox {
        domain: domain_of(&address).map(normalise_domain),
        name: None,
        address,
    })
}

/// Build the reported message from `data`, which holds a message (headers and body) or a
/// header block alone.
pub(crate) fn build(
    data: &[u8],
    source: MessageSource,
    diagnostics: &mut Vec<Diagnostic>,
) -> ReportedMessage {
    let mut data = data;
    // Leading blank lines are not part of the message.
    while let Some(rest) = data
        .strip_prefix(b"\r\n")
        .or_else(|| data.strip_prefix(b"\n"))
    {
        data = rest;
    }
    if let Some(rest) = strip_from_line(data) {
        diagnostics.push(Diagnostic::new(
            Code::EscapedFromLine,
            "the reported message began with a From line, which was skipped",
        ));
        data = rest;
    }

    let split = split_header_block(data);
    let mut header_end = split.header_end;
    let mut body_start = split.body_start;

    // The RFC 5965 B.2 erratum: a blank line inside the reported header block. Join the
    // next block when it is made of header fields and supplies what the first block lacks:
    // the first block has no From (the trace fields came first), or the next block is all
    // fields and brings identity fields the first block does not have (the example in
    // RFC 5965 Appendix B.2 puts From and Received before the blank line).
    if matches!(
        source,
        MessageSource::Rfc822Part | MessageSource::HeadersPart
    ) && body_start < data.len()
    {
        let (first_fields, _) = fields(&data[..header_end]);
        let has_from = first_fields.iter().any(|f| f.is("from"));
        if !first_fields.is_empty() {
            let next = split_header_block(&data[body_start..]);
            let next_block = &data[body_start..body_start + next.header_end];
            let (next_fields, next_malformed) = fields(next_block);
            // Which identity fields the first block lacks (one pass over each block).
            let missing: Vec<&str> = SPLIT_MARKERS
                .iter()
                .copied()
                .filter(|m| !first_fields.iter().any(|g| g.is(m)))
                .collect();
            let brings_missing = next_fields.iter().any(|f| missing.iter().any(|m| f.is(m)));
            // A first block that declares MIME structure is complete: what follows its blank
            // line is a body, even when that body is a message (message/rfc822 in
            // message/rfc822).
            let declares_mime = first_fields
                .iter()
                .any(|f| f.is("content-type") || f.is("mime-version"));
            let join = if has_from {
                !declares_mime
                    && next_malformed == 0
                    && (2..=MAX_JOINED_FIELDS).contains(&next_fields.len())
                    && brings_missing
            } else {
                next_fields.len() <= MAX_JOINED_FIELDS
                    && looks_like_headers(next_block, 1, SPLIT_MARKERS)
            };
            if join {
                diagnostics.push(Diagnostic::new(
                    Code::HeaderBlockSplit,
                    "a blank line split the reported header block; the two parts were joined",
                ));
                header_end = body_start + next.header_end;
                body_start += next.body_start;
            }
        }
    }

    let header_block = &data[..header_end];
    let body = &data[body_start.min(data.len())..];
    let (raw_fields, malformed) = fields(header_block);
    if malformed > 0 && !raw_fields.is_empty() {
        diagnostics.push(Diagnostic::new(
            Code::MalformedHeaderLine,
            format!("{malformed} line(s) in the reported header block are not fields"),
        ));
    }
    if raw_fields.is_empty() {
        diagnostics.push(Diagnostic::new(
            Code::ReportedMessageRedacted,
            "the reported message has no header fields",
        ));
    }

    let mut message = ReportedMessage {
        source,
        header_block: header_block.to_vec(),
        has_body: !body.trim_ascii().is_empty() && !raw_fields.is_empty(),
        body_size: if raw_fields.is_empty() { 0 } else { body.len() },
        fields: Vec::with_capacity(raw_fields.len()),
        received: Vec::new(),
        message_id: None,
        from: None,
        date: None,
        date_unix: None,
        subject: None,
        return_path: None,
        dkim_signatures: Vec::new(),
        provider_headers: Vec::new(),
    };
    fill_from_raw_fields(&mut message, &raw_fields);
    fill_decoded(&mut message, &raw_fields, diagnostics);
    if message.from.is_none() && !raw_fields.is_empty() {
        diagnostics.push(Diagnostic::new(
            Code::MissingFrom,
            "the reported message has no From",
        ));
    }
    if message.received.is_empty() && !raw_fields.is_empty() {
        diagnostics.push(Diagnostic::new(
            Code::NoReceivedFields,
            "the reported message has no Received fields",
        ));
    }
    message
}

fn fill_from_raw_fields(message: &mut ReportedMessage, raw_fields: &[RawField<'_>]) {
    for field in raw_fields {
        let name = field.name_str();
        let lower = name.to_ascii_lowercase();
        let header = HeaderField {
            name,
            value: field.raw_string(),
        };
        match lower.as_str() {
            "received" => message.received.push(field.unfolded()),
            "dkim-signature" => message
                .dkim_signatures
                .push(dkim_signature(&field.unfolded())),
            "return-path" if message.return_path.is_none() => {
                message.return_path = Some(strip_angles(&field.unfolded()));
            }
            _ => {}
        }
        if is_provider_header(&lower) {
            message.provider_headers.push(header.clone());
        }
        message.fields.push(header);
    }
}

/// The `charset` parameter of a Content-Type value, lower case, quotes removed.
pub(crate) fn charset_param(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim().trim_matches('"').trim();
        (!value.is_empty()).then(|| value.to_ascii_lowercase())
    })
}

/// Does this line carry ISO-2022-JP escape sequences written without RFC 2047 encoding?
fn has_iso2022_escape(line: &[u8]) -> bool {
    line.windows(3).any(|w| {
        matches!(
            w,
            [0x1b, b'$', b'B'] | [0x1b, b'$', b'@'] | [0x1b, b'(', b'J']
        )
    })
}

/// Charset labels that cannot explain bytes that are not UTF-8.
fn is_unicode_label(label: &str) -> bool {
    matches!(
        label,
        "utf-8" | "utf8" | "us-ascii" | "ascii" | "ansi_x3.4-1968" | "unicode-1-1-utf-8"
    )
}

/// Header fields written with raw 8-bit bytes instead of RFC 2047 encoded words (or with raw
/// ISO-2022-JP escapes): decode each such line with the charset the message declares for its
/// body, or windows-1252 when it declares none that could apply. Lines that are already UTF-8
/// stay as they are. Returns the transcoded block and the charset used, or `None` when no
/// line needed it.
pub(crate) fn transcode_raw_header_block(
    block: &[u8],
    hint: Option<&str>,
) -> Option<(Vec<u8>, &'static str)> {
    use mail_parser::decoders::charsets::map::charset_decoder;

    // Fast path: plain ASCII without an escape byte needs no transcoding (almost every block).
    if block.is_ascii() && !block.contains(&0x1b) {
        return None;
    }
    let needs_8bit = std::str::from_utf8(block).is_err();
    let needs_iso2022 = block.split(|&b| b == b'\n').any(has_iso2022_escape);
    if !needs_8bit && !needs_iso2022 {
        return None;
    }
    // The label is reported in a diagnostic, so name it from a fixed list rather than echo
    // what the message wrote.
    let hinted = hint
        .filter(|h| !is_unicode_label(h))
        .and_then(|h| charset_decoder(h.as_bytes()).map(|d| (d, h)));
    let (decoder, label): (fn(&[u8]) -> String, &'static str) = match hinted {
        Some((decoder, h)) => (decoder, known_label(h)),
        None => (charset_decoder(b"windows-1252")?, "windows-1252"),
    };
    let iso2022 = charset_decoder(b"iso-2022-jp");
    let mut out = Vec::with_capacity(block.len() + block.len() / 2);
    for piece in block.split_inclusive(|&b| b == b'\n') {
        let content_len = piece
            .iter()
            .rposition(|&b| b != b'\n' && b != b'\r')
            .map_or(0, |p| p + 1);
        let (content, ending) = piece.split_at(content_len);
        if std::str::from_utf8(content).is_err() {
            out.extend_from_slice(decoder(content).as_bytes());
        } else if has_iso2022_escape(content)
            && let Some(iso2022) = iso2022
        {
            out.extend_from_slice(iso2022(content).as_bytes());
        } else {
            out.extend_from_slice(content);
        }
        out.extend_from_slice(ending);
    }
    let label = if needs_8bit { label } else { "iso-2022-jp" };
    Some((out, label))
}

/// A fixed name for a charset label the decoder table knows.
fn known_label(label: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "iso-8859-1",
        "iso-8859-2",
        "iso-8859-5",
        "iso-8859-7",
        "iso-8859-9",
        "iso-8859-15",
        "windows-1250",
        "windows-1251",
        "windows-1252",
        "windows-1253",
        "windows-1254",
        "windows-1256",
        "koi8-r",
        "koi8-u",
        "shift_jis",
        "euc-jp",
        "iso-2022-jp",
        "euc-kr",
        "gb2312",
        "gbk",
        "gb18030",
        "big5",
    ];
    NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(label))
        .copied()
        .unwrap_or("declared charset")
}

/// Decode From, Subject, Date and Message-ID with mail-parser (RFC 2047, charsets).
fn fill_decoded(
    message: &mut ReportedMessage,
    raw_fields: &[RawField<'_>],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let raw = |name: &str| raw_fields.iter().find(|f| f.is(name));
    // Only four fields are decoded, so only they are handed to mail-parser: the first From,
    // Subject, Date and Message-ID, rebuilt from the raw fields (which also skips the blank
    // line a joined B.2 block keeps). Parsing the whole block would decode every other field
    // for nothing.
    let mut buf = Vec::with_capacity(512);
    for name in ["from", "subject", "date", "message-id"] {
        if let Some(field) = raw(name) {
            buf.extend_from_slice(field.name);
            buf.push(b':');
            buf.extend_from_slice(field.value);
            buf.extend_from_slice(b"\r\n");
        }
    }
    let hint = raw("content-type").and_then(|f| charset_param(&f.unfolded()));
    if let Some((transcoded, label)) = transcode_raw_header_block(&buf, hint.as_deref()) {
        diagnostics.push(Diagnostic::new(
            Code::RawHeaderBytes,
            format!("header fields hold unencoded non-ASCII text; read as {label}"),
        ));
        buf = transcoded;
    }
    if !buf.ends_with(b"\n") {
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    let parsed = HEADER_PARSER.parse_headers(&buf[..]);
    if let Some(parsed) = parsed.as_ref() {
        message.from = parsed.from().and_then(first_mailbox);
        message.subject = parsed
            .subject()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        message.message_id = parsed.message_id().map(|s| s.trim().to_owned());
        if let Some(date) = parsed.date().filter(|d| d.is_valid()) {
            message.date_unix = Some(date.to_timestamp());
        }
        if message.message_id.is_none()
            && let Some(HeaderValue::Text(t)) = parsed.header("Message-ID")
        {
            message.message_id = Some(strip_angles(t));
        }
    }
    if message.from.is_none() {
        message.from = raw("from").and_then(|f| mailbox_from_raw(&f.unfolded()));
    }
    if message.subject.is_none() {
        message.subject = raw("subject")
            .map(|f| f.unfolded())
            .filter(|s| !s.is_empty());
    }
    if message.message_id.is_none() {
        message.message_id = raw("message-id")
            .map(|f| strip_angles(&f.unfolded()))
            .filter(|s| !s.is_empty());
    }
    message.date = raw("date").map(|f| f.unfolded());
}
