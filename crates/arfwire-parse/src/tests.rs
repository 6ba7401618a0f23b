//! Unit tests: the feedback field parser, inline-forward detection, pasted-header
//! reconstruction, and the header-block helpers they rely on.

use std::net::IpAddr;

use crate::diag::{Code, Diagnostic};
use crate::inline::{self, SubjectHints};
use crate::limits::Limits;
use crate::message;
use crate::types::{FeedbackReport, MessageSource, ReportFormat};

fn feedback(text: &str) -> (FeedbackReport, Vec<Diagnostic>) {
    crate::parse_feedback_fields(text.as_bytes(), &Limits::default())
}

fn has(diags: &[Diagnostic], code: Code) -> bool {
    diags.iter().any(|d| d.code == code)
}

fn count(diags: &[Diagnostic], code: Code) -> usize {
    diags.iter().filter(|d| d.code == code).count()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("a test IP")
}

const MINIMAL: &str = "Feedback-Type: abuse\nUser-Agent: t/1\nVersion: 1\n";

// ---- feedback fields: comments ----

#[test]
fn source_ip_comment_is_stripped_but_kept_raw() {
    let (report, diags) = feedback(&format!(
        "{MINIMAL}Source-IP: 192.0.2.45 (mta-out-7.example.net)\n"
    ));
    assert_eq!(report.source_ip, Some(ip("192.0.2.45")));
    assert_eq!(
        report.source_ip_raw.as_deref(),
        Some("192.0.2.45 (mta-out-7.example.net)")
    );
    assert!(diags.is_empty(), "{diags:?}");
    let field = report
        .fields
        .iter()
        .find(|f| f.name == "Source-IP")
        .expect("the field is listed");
    assert_eq!(field.value, "192.0.2.45");
    assert_eq!(field.raw, "192.0.2.45 (mta-out-7.example.net)");
}

#[test]
fn nested_comments_and_quoted_parentheses() {
    assert_eq!(
        crate::arf::strip_comments("abuse (first (nested) comment) (second)"),
        "abuse"
    );
    assert_eq!(
        crate::arf::strip_comments("\"a (not a comment)\" b"),
        "\"a (not a comment)\" b"
    );
    assert_eq!(crate::arf::strip_comments("x \\(y\\) z"), "x \\(y\\) z");
    let (report, _) = feedback(&format!(
        "{MINIMAL}Original-Mail-From: <bounce@example.com> (envelope sender)\n"
    ));
    assert_eq!(
        report.original_mail_from.as_deref(),
        Some("bounce@example.com")
    );
}

#[test]
fn unstructured_fields_keep_their_comments() {
    let (report, _) = feedback(
        "Feedback-Type: abuse\nUser-Agent: Example/2.0 (build 7)\nVersion: 1\n\
         Abuse-Category: marketing (unsolicited)\n",
    );
    assert_eq!(report.user_agent.as_deref(), Some("Example/2.0 (build 7)"));
    assert_eq!(
        report.extensions.get("abuse-category"),
        Some(&vec!["marketing (unsolicited)".to_owned()])
    );
}

#[test]
fn a_comment_inside_a_feedback_type_is_not_the_type() {
    let (report, diags) =
        feedback("Feedback-Type: abuse (user clicked spam)\nUser-Agent: t/1\nVersion: 1\n");
    assert_eq!(report.feedback_type.as_deref(), Some("abuse"));
    assert!(!has(&diags, Code::UnknownFeedbackType));
}

// ---- feedback fields: redaction ----

#[test]
fn redacted_source_ip_reads_as_absent() {
    for value in [
        "x.x.x.x",
        "xxx.xxx.xxx.xxx",
        "198.51.100.xxx",
        "REDACTED",
        "[redacted]",
        "unknown",
    ] {
        let (report, diags) = feedback(&format!("{MINIMAL}Source-IP: {value}\n"));
        assert_eq!(report.source_ip, None, "{value}");
        assert_eq!(report.source_ip_raw.as_deref(), Some(value), "{value}");
        assert!(has(&diags, Code::RedactedValue), "{value}: {diags:?}");
        assert!(!has(&diags, Code::InvalidValue), "{value}: {diags:?}");
    }
}

#[test]
fn junk_source_ip_is_invalid_not_redacted() {
    let (report, diags) = feedback(&format!("{MINIMAL}Source-IP: mail.example.net\n"));
    assert_eq!(report.source_ip, None);
    assert!(has(&diags, Code::InvalidValue));
    assert!(!has(&diags, Code::RedactedValue));
}

// ---- feedback fields: case ----

#[test]
fn field_names_are_case_insensitive_and_noted_once() {
    let (report, diags) = feedback(
        "feedback-type: abuse\nuser-agent: t/1\nversion: 0.1\nSource-Ip: 192.0.2.61\n\
         original-rcpt-to: <a@example.com>\noriginal-rcpt-to: <b@example.com>\n",
    );
    assert_eq!(report.feedback_type.as_deref(), Some("abuse"));
    assert_eq!(report.source_ip, Some(ip("192.0.2.61")));
    assert_eq!(
        report.original_rcpt_to,
        vec!["a@example.com", "b@example.com"]
    );
    // One note per field name, not per occurrence.
    assert_eq!(count(&diags, Code::FieldNameCase), 5, "{diags:?}");
    assert!(has(&diags, Code::NonstandardVersion));
}

#[test]
fn feedback_type_value_is_lower_cased() {
    let (report, diags) = feedback("Feedback-Type: Abuse\nUser-Agent: t/1\nVersion: 1\n");
    assert_eq!(report.feedback_type.as_deref(), Some("abuse"));
    assert!(!has(&diags, Code::UnknownFeedbackType));
}

// ---- feedback fields: duplicates and repeatable fields ----

#[test]
fn duplicate_single_fields_keep_the_first_value() {
    let (report, diags) = feedback(
        "Feedback-Type: abuse\nFeedback-Type: fraud\nUser-Agent: t/1\nVersion: 1\n\
         Source-IP: 192.0.2.1\nSource-IP: 192.0.2.2\nSource-IP: 192.0.2.3\n",
    );
    assert_eq!(report.feedback_type.as_deref(), Some("abuse"));
    assert_eq!(report.source_ip, Some(ip("192.0.2.1")));
    // One diagnostic per duplicated name.
    assert_eq!(count(&diags, Code::DuplicateField), 2, "{diags:?}");
}

#[test]
fn repeatable_fields_collect_every_value_in_order() {
    let (report, diags) = feedback(&format!(
        "{MINIMAL}Original-Rcpt-To: <one@example.org>\nOriginal-Rcpt-To: two@example.org\n\
         Reported-URI: http://example.com/a\nReported-URI: <mailto:stop@example.com>\n\
         Authentication-Results: mx.example.org;\n spf=pass smtp.mailfrom=example.com\n\
         Authentication-Results: mx.example.org; dkim=fail header.d=example.com\n\
         Reported-Domain: Example.COM\nReported-Domain: example.net\n"
    ));
    assert_eq!(
        report.original_rcpt_to,
        vec!["one@example.org", "two@example.org"]
    );
    assert_eq!(
        report.reported_uri,
        vec!["http://example.com/a", "mailto:stop@example.com"]
    );
    assert_eq!(
        report.authentication_results,
        vec![
            "mx.example.org; spf=pass smtp.mailfrom=example.com",
            "mx.example.org; dkim=fail header.d=example.com",
        ]
    );
    assert_eq!(report.reported_domain, vec!["example.com", "example.net"]);
    assert!(!has(&diags, Code::DuplicateField), "{diags:?}");
}

#[test]
fn unknown_fields_become_extensions() {
    let (report, diags) = feedback(&format!(
        "{MINIMAL}X-Fbl-Customer-Ref: 0419\nX-Fbl-Customer-Ref: 0420\nSubscription-Link: http://example.com/u\n"
    ));
    assert_eq!(
        report.extensions.get("x-fbl-customer-ref"),
        Some(&vec!["0419".to_owned(), "0420".to_owned()])
    );
    assert!(report.extensions.contains_key("subscription-link"));
    assert!(diags.is_empty(), "{diags:?}");
}

// ---- feedback fields: IP normalisation ----

#[test]
fn ipv6_source_ip_is_normalised() {
    for (value, want) in [
        ("2001:0DB8:0000:0000:0000:0000:0000:0A17", "2001:db8::a17"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("IPv6:2001:db8::2", "2001:db8::2"),
        ("[IPv6:2001:DB8::3]", "2001:db8::3"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("[192.0.2.8]", "192.0.2.8"),
    ] {
        let (report, diags) = feedback(&format!("{MINIMAL}Source-IP: {value}\n"));
        assert_eq!(report.source_ip, Some(ip(want)), "{value}");
        assert_eq!(
            report.source_ip.map(|i| i.to_string()).as_deref(),
            Some(want)
        );
        assert!(diags.is_empty(), "{value}: {diags:?}");
    }
}

// ---- feedback fields: Source-Port (RFC 6692), Incidents, dates ----

#[test]
fn source_port_is_read_and_checked() {
    let (report, diags) = feedback(&format!(
        "{MINIMAL}Source-IP: 192.0.2.1\nSource-Port: 25011\n"
    ));
    assert_eq!(report.source_port, Some(25011));
    assert!(diags.is_empty(), "{diags:?}");

    let (report, _) = feedback(&format!("{MINIMAL}Source-Port: 587 (submission)\n"));
    assert_eq!(report.source_port, Some(587));

    for bad in ["70000", "-1", "smtp", ""] {
        let (report, diags) = feedback(&format!("{MINIMAL}Source-Port: {bad}\n"));
        assert_eq!(report.source_port, None, "{bad}");
        assert!(has(&diags, Code::InvalidValue), "{bad}: {diags:?}");
    }
}

#[test]
fn incidents_are_capped() {
    let limits = Limits {
        max_incidents: 100,
        ..Limits::default()
    };
    let (report, diags) =
        crate::parse_feedback_fields(format!("{MINIMAL}Incidents: 5000\n").as_bytes(), &limits);
    assert_eq!(report.incidents, Some(100));
    assert!(has(&diags, Code::IncidentsCapped));
    let (report, _) = feedback(&format!("{MINIMAL}Incidents: 3\n"));
    assert_eq!(report.incidents, Some(3));
}

#[test]
fn draft_received_date_is_the_arrival_date() {
    let (report, diags) = feedback(
        "Feedback-Type: abuse\nUser-Agent: t/1\nVersion: 0.1\n\
         Received-Date: Mon, 09 Jul 2007 14:21:05 EDT\n",
    );
    assert_eq!(
        report.arrival_date.as_deref(),
        Some("Mon, 09 Jul 2007 14:21:05 EDT")
    );
    assert_eq!(report.arrival_date_unix, Some(1_184_005_265));
    assert!(has(&diags, Code::HistoricReceivedDate));
}

#[test]
fn reporting_mta_drops_its_type_and_blank_lines_are_tolerated() {
    let (report, diags) = feedback(&format!(
        "{MINIMAL}\nReporting-MTA: dns; mx3.example.org\n\nSource-IP: 192.0.2.9\n"
    ));
    assert_eq!(report.reporting_mta.as_deref(), Some("mx3.example.org"));
    assert_eq!(report.source_ip, Some(ip("192.0.2.9")));
    assert!(diags.is_empty(), "{diags:?}");
}

#[test]
fn missing_required_fields_are_reported() {
    let (_, diags) = feedback("Source-IP: 192.0.2.1\n");
    assert_eq!(count(&diags, Code::MissingRequiredField), 3);
    let (_, diags) = feedback("Feedback-Type: auth-failure\nUser-Agent: t/1\nVersion: 1\n");
    assert!(has(&diags, Code::MissingRequiredField));
}

// ---- inline forwards ----

const FORWARD: SubjectHints = SubjectHints {
    forward: true,
    reply: false,
};
const REPLY: SubjectHints = SubjectHints {
    forward: false,
    reply: true,
};
const PLAIN: SubjectHints = SubjectHints {
    forward: false,
    reply: false,
};

#[test]
fn subject_prefixes() {
    assert!(inline::is_forward_subject("fw: offer"));
    assert!(inline::is_forward_subject("fwd: re: offer"));
    assert!(inline::is_forward_subject("[external] [spam] wg: angebot"));
    assert!(!inline::is_forward_subject("re: fw: offer"));
    assert!(!inline::is_forward_subject("firmware update"));
    assert!(inline::is_reply_subject("re: ticket"));
    assert!(inline::is_reply_subject("aw: ticket"));
    assert!(!inline::is_reply_subject("fwd: re: ticket"));
}

const OUTLOOK: &str = "Please stop this.\n\n-----Original Message-----\n\
From: Growth Team <growth@leads.example.net> \nSent: Thursday, March 28, 2024 6:02 PM\n\
To: Jordan <jordan@example.com>\nSubject: Limited offer\n\nBody text.\n";

#[test]
fn outlook_marker_is_found() {
    let found = inline::forwarded(OUTLOOK.as_bytes(), FORWARD).expect("a forward");
    assert_eq!(found.format, ReportFormat::OutlookInline);
    assert_eq!(found.n_found, 1);
    let block = String::from_utf8_lossy(found.block);
    assert!(block.starts_with("From: Growth Team"), "{block}");
    assert!(block.ends_with("Subject: Limited offer"), "{block}");
    // Without a subject hint the marker still counts.
    assert!(inline::forwarded(OUTLOOK.as_bytes(), PLAIN).is_some());
}

#[test]
fn outlook_marker_in_a_reply_is_not_a_forward() {
    assert_eq!(inline::forwarded(OUTLOOK.as_bytes(), REPLY), None);
}

#[test]
fn gmail_and_apple_markers_are_found() {
    let gmail = "FYI\n\n---------- Forwarded message ---------\nFrom: Desk <t@parcel.example.com>\n\
                 Date: Fri, Mar 29, 2024 at 10:31 AM\nSubject: On hold\nTo: <c@example.net>\n\n\nBody\n";
    let found = inline::forwarded(gmail.as_bytes(), PLAIN).expect("gmail");
    assert_eq!(found.format, ReportFormat::GmailInline);

    let apple = "Begin forwarded message:\n\nFrom: Orders <o@shop.example.com>\nSubject: Re: Order\n\
                 Date: 29 March 2024 at 13:05:44 CET\nTo: m@example.org\n\nBody\n";
    let found = inline::forwarded(apple.as_bytes(), REPLY).expect("apple");
    assert_eq!(found.format, ReportFormat::AppleInline);
}

#[test]
fn a_marker_without_quoted_fields_is_not_a_forward() {
    let text = "-----Original Message-----\nI wrote this myself.\nNo headers here.\n";
    assert_eq!(inline::forwarded(text.as_bytes(), FORWARD), None);
}

#[test]
fn outlook_separator_and_bare_block_need_a_forward_subject() {
    let separator = "Never bought anything.\n\n________________________________\n\
                     From: Billing <b@office.example.net>\nSent: Friday, March 29, 2024 10:12 PM\n\
                     To: Jordan <j@example.com>\nSubject: Your invoice\n\nPay today.\n";
    let found = inline::forwarded(separator.as_bytes(), FORWARD).expect("separator");
    assert_eq!(found.format, ReportFormat::OutlookInline);
    assert_eq!(inline::forwarded(separator.as_bytes(), PLAIN), None);
    assert_eq!(inline::forwarded(separator.as_bytes(), REPLY), None);

    let bare = "See below.\nFrom: Billing <b@office.example.net>\nDate: Fri, 29 Mar 2024\n\
                Subject: Your invoice\n\nPay today.\n";
    let found = inline::forwarded(bare.as_bytes(), FORWARD).expect("bare");
    assert_eq!(found.format, ReportFormat::GenericInline);
    assert_eq!(inline::forwarded(bare.as_bytes(), PLAIN), None);
}

#[test]
fn nested_inline_forwards_take_the_innermost() {
    let text = "Look.\n\n---------- Forwarded message ---------\nFrom: Colleague <c@example.com>\n\
                Date: Sat, Mar 30, 2024\nSubject: Fwd: prize\nTo: <me@example.com>\n\nHave a look\n\n\
                ---------- Forwarded message ---------\nFrom: Prize <win@prize.example.net>\n\
                Date: Fri, Mar 29, 2024\nSubject: prize\nTo: <c@example.com>\n\nYou won\n";
    let found = inline::forwarded(text.as_bytes(), FORWARD).expect("nested");
    assert_eq!(found.n_found, 2);
    assert!(String::from_utf8_lossy(found.block).starts_with("From: Prize"));
}

#[test]
fn html_to_text_breaks_lines_like_a_mail_client() {
    let html = "<html><head><style>p {color: red}</style><title>x</title></head><body>\
                <div>Begin forwarded message:</div><br class=\"Apple-interchange-newline\">\
                <div style=\"margin: 0\"><span><b>From: </b></span><span>Orders &lt;<a \
                href=\"mailto:o@shop.example.com\">o@shop.example.com</a>&gt;<br></span></div>\
                <div><span><b>Subject: </b></span><span>Order&nbsp;#5 &amp; more<br></span></div>\
                <!-- a comment with <b>tags</b> --><p>Caf&#233; &#x263A; &bogus; a&lt;b</p><hr>end</body></html>";
    let text = inline::html_to_text(html);
    assert_eq!(
        text,
        "Begin forwarded message:\n\nFrom: Orders <o@shop.example.com>\n\
         Subject: Order #5 & more\nCafé \u{263A} &bogus; a<b\n\
         ________________________________\nend"
    );
}

#[test]
fn html_to_text_survives_broken_markup() {
    for html in [
        "<",
        "<div",
        "<a href=\"x>",
        "&",
        "&#xZZ;",
        "<!-- open",
        "<style>never closed",
        "a<b>c",
    ] {
        let _ = inline::html_to_text(html);
    }
    assert_eq!(inline::html_to_text("a<b>c"), "ac");
}

// ---- pasted headers ----

#[test]
fn pasted_headers_with_lost_folding_are_refolded() {
    let text = "Headers below.\n\nReceived: from out22.example.net (out22.example.net [192.0.2.122])\n\
                by mx.example.com (Postfix) with ESMTPS id 4V5n\n\
                for <a@example.com>; Sun, 31 Mar 2024 11:02:33 +0000\n\
                DKIM-Signature: v=1; d=deals.example.net;\n\
                s=k2; h=from:to:subject:date:message-id;\n\
                b=abc=\n\
                From: Deals <promo@deals.example.net>\nSubject: Last call\n\
                Date: Sun, 31 Mar 2024 11:02:29 +0000\n\nThanks\n";
    let pasted = inline::pasted_headers(text.as_bytes()).expect("pasted");
    assert_eq!(pasted.n_fields, 5);
    assert_eq!(pasted.refolded, 4);
    let block = String::from_utf8_lossy(&pasted.block);
    assert!(block.contains("\n by mx.example.com"), "{block}");
    // `h=from:to:...` contains colons but is no field name.
    assert!(block.contains("\n s=k2; h=from:to:subject"), "{block}");
    assert!(block.ends_with("+0000"), "{block}");

    let mut diags = Vec::new();
    let msg = message::build(&pasted.block, MessageSource::Pasted, &mut diags);
    assert_eq!(msg.received.len(), 1);
    assert!(msg.received[0].ends_with("Sun, 31 Mar 2024 11:02:33 +0000"));
    assert_eq!(msg.dkim_signatures.len(), 1);
    assert_eq!(msg.dkim_signatures[0].selector.as_deref(), Some("k2"));
    assert_eq!(msg.subject.as_deref(), Some("Last call"));
    assert!(!has(&diags, Code::MalformedHeaderLine), "{diags:?}");
}

#[test]
fn pasted_headers_with_folding_kept_need_no_repair() {
    let text = "Received: from a.example.net (a.example.net [192.0.2.1])\n\tby mx.example.com;\n\
                \tSun, 31 Mar 2024 11:02:33 +0000\nFrom: x@example.net\nTo: y@example.com\n\
                Subject: hi\nMessage-ID: <1@example.net>\n";
    let pasted = inline::pasted_headers(text.as_bytes()).expect("pasted");
    assert_eq!(pasted.refolded, 0);
    assert_eq!(pasted.block, text.trim_end().as_bytes());
}

#[test]
fn pasted_headers_need_a_received_field_and_enough_fields() {
    let no_received =
        "From: x@example.net\nTo: y@example.com\nSubject: hi\nDate: Sun, 31 Mar 2024\n";
    assert_eq!(inline::pasted_headers(no_received.as_bytes()), None);
    let too_few = "Received: from a by b; Sun, 31 Mar 2024\nFrom: x@example.net\nSubject: hi\n";
    assert_eq!(inline::pasted_headers(too_few.as_bytes()), None);
    let prose = "Hello: I got spam.\nIt came twice.\nPlease: block it.\n";
    assert_eq!(inline::pasted_headers(prose.as_bytes()), None);
}

#[test]
fn pasted_headers_end_at_a_blank_line() {
    let text = "Received: from a by b; Sun, 31 Mar 2024\nFrom: x@example.net\nTo: y@example.com\n\
                Subject: hi\n\nReceived: from c by d\nnot part of it\n";
    let pasted = inline::pasted_headers(text.as_bytes()).expect("pasted");
    assert_eq!(pasted.n_fields, 4);
    assert!(!String::from_utf8_lossy(&pasted.block).contains("not part"));
}

// ---- header blocks of reported messages ----

#[test]
fn blank_line_erratum_is_joined_when_from_comes_first() {
    let data = b"From: <spam@example.net>\nReceived: from a (a [192.0.2.1]) by b;\n Thu, 08 Mar 2024 14:00:00 -0400\n\n\
                 To: <Undisclosed Recipients>\nSubject: Earn money\nMessage-ID: <1@example.net>\n\
                 Date: Thu, 08 Mar 2024 12:31:03 -0500\n\nSpam Spam\n";
    let mut diags = Vec::new();
    let msg = message::build(data, MessageSource::Rfc822Part, &mut diags);
    assert!(has(&diags, Code::HeaderBlockSplit), "{diags:?}");
    assert_eq!(msg.subject.as_deref(), Some("Earn money"));
    assert_eq!(msg.message_id.as_deref(), Some("1@example.net"));
    assert!(msg.date_unix.is_some());
    assert!(msg.has_body);
}

#[test]
fn a_complete_header_block_is_not_joined_with_a_header_like_body() {
    let data = b"From: a@example.net\nTo: b@example.com\nSubject: s\nDate: Thu, 08 Mar 2024 12:31:03 -0500\n\
                 Message-ID: <2@example.net>\n\nNote: this body\nTo: starts like fields\n";
    let mut diags = Vec::new();
    let msg = message::build(data, MessageSource::Rfc822Part, &mut diags);
    assert!(!has(&diags, Code::HeaderBlockSplit), "{diags:?}");
    assert_eq!(msg.fields.len(), 5);
}

#[test]
fn raw_8bit_headers_are_decoded_with_the_declared_charset() {
    let mut data = b"From: M\xf6bel <a@example.net>\nSubject: Gro\xdfe Rabatte\n".to_vec();
    data.extend_from_slice(b"Content-Type: text/plain; charset=\"ISO-8859-1\"\n\nbody\n");
    let mut diags = Vec::new();
    let msg = message::build(&data, MessageSource::Rfc822Part, &mut diags);
    assert_eq!(msg.subject.as_deref(), Some("Große Rabatte"));
    assert_eq!(
        msg.from.as_ref().and_then(|f| f.name.as_deref()),
        Some("Möbel")
    );
    assert!(has(&diags, Code::RawHeaderBytes));

    // Shift_JIS declared; UTF-8 lines untouched; nothing to do for clean blocks.
    let sjis = [b"Subject: ".as_slice(), &[0x93, 0x96, 0x91, 0x49], b"\n"].concat();
    let (out, label) =
        message::transcode_raw_header_block(&sjis, Some("shift_jis")).expect("transcoded");
    assert_eq!(String::from_utf8_lossy(&out), "Subject: 当選\n");
    assert_eq!(label, "shift_jis");
    assert_eq!(
        message::transcode_raw_header_block("Subject: Grüße\n".as_bytes(), None),
        None
    );
    // A UTF-8 label cannot explain invalid UTF-8: windows-1252 is used instead.
    let (out, label) =
        message::transcode_raw_header_block(b"Subject: caf\xe9\n", Some("utf-8")).expect("t");
    assert_eq!(String::from_utf8_lossy(&out), "Subject: café\n");
    assert_eq!(label, "windows-1252");
}

#[test]
fn charset_parameter_is_read() {
    assert_eq!(
        message::charset_param("text/plain; format=flowed; charset=\"Shift_JIS\""),
        Some("shift_jis".to_owned())
    );
    assert_eq!(message::charset_param("text/plain"), None);
    assert_eq!(message::charset_param("text/plain; charset="), None);
}
