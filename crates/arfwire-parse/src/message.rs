//! Build a [`ReportedMessage`] from the raw bytes of a reported message or header block.

use mail_parser::{Address, HeaderValue, MessageParser};

use crate::address::{domain_of, normalise_domain, strip_angles};
use crate::diag::{Code, Diagnostic};
use crate::headers::{RawField, fields, looks_like_headers, split_header_block, strip_from_line};
use crate::types::{DkimSignature, HeaderField, Mailbox, MessageSource, ReportedMessage};

/// Header names that, when found after a blank line, show the header block was split.
const SPLIT_MARKERS: &[&str] = &["from", "to", "subject", "date", "message-id"];

fn is_provider_header(lower: &str) -> bool {
    lower.starts_with("x-ms-")
        || lower.starts_with("x-forefront-")
        || lower.starts_with("x-microsoft-antispam")
        || lower == "x-originatororg"
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
fn first_mailbox(address: &Address<'_>) -> Option<Mailbox> {
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

    // The RFC 5965 B.2 erratum: a blank line inside the reported header block. When the
    // first block has no From and the next block is made of header fields, join them.
    if matches!(
        source,
        MessageSource::Rfc822Part | MessageSource::HeadersPart
    ) && body_start < data.len()
    {
        let (first_fields, _) = fields(&data[..header_end]);
        let has_from = first_fields.iter().any(|f| f.is("from"));
        if !has_from && !first_fields.is_empty() {
            let next = split_header_block(&data[body_start..]);
            let next_block = &data[body_start..body_start + next.header_end];
            if looks_like_headers(next_block, 1, SPLIT_MARKERS) {
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
    fill_decoded(&mut message, header_block, &raw_fields);
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

/// Decode From, Subject, Date and Message-ID with mail-parser (RFC 2047, charsets).
fn fill_decoded(message: &mut ReportedMessage, header_block: &[u8], raw_fields: &[RawField<'_>]) {
    let mut buf = Vec::with_capacity(header_block.len() + 4);
    buf.extend_from_slice(header_block);
    buf.extend_from_slice(b"\r\n\r\n");
    let parsed = MessageParser::new()
        .with_address_headers()
        .with_date_headers()
        .with_message_ids()
        .parse_headers(&buf[..]);
    let raw = |name: &str| raw_fields.iter().find(|f| f.is(name));
    if let Some(parsed) = parsed.as_ref() {
        message.from = parsed.from().and_then(first_mailbox);
        message.subject = parsed.subject().map(|s| s.trim().to_owned());
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
        message.subject = raw("subject").map(|f| f.unfolded());
    }
    if message.message_id.is_none() {
        message.message_id = raw("message-id")
            .map(|f| strip_angles(&f.unfolded()))
            .filter(|s| !s.is_empty());
    }
    message.date = raw("date").map(|f| f.unfolded());
}
