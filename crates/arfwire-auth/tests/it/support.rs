//! Keys, messages and signing for the tests. Keys are generated per run: nothing secret is
//! committed.

use base64::{Engine, engine::general_purpose::STANDARD};
use mail_auth::{
    common::{crypto::Ed25519Key, headers::HeaderWriter},
    dkim::DkimSigner,
};

/// An Ed25519 DKIM key pair made for one test.
pub(crate) struct TestKey {
    pkcs8: Vec<u8>,
    /// The DKIM TXT record value publishing its public half.
    pub(crate) txt: String,
}

impl TestKey {
    pub(crate) fn generate() -> Self {
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("generate key");
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).expect("load key");
        let txt = format!(
            "v=DKIM1; k=ed25519; p={}",
            STANDARD.encode(key.public_key())
        );
        TestKey { pkcs8, txt }
    }

    fn key(&self) -> Ed25519Key {
        Ed25519Key::from_pkcs8_der(&self.pkcs8).expect("load key")
    }
}

/// How to sign.
pub(crate) struct Sign<'a> {
    pub(crate) key: &'a TestKey,
    pub(crate) domain: &'a str,
    pub(crate) selector: &'a str,
    pub(crate) headers: &'a [&'a str],
    pub(crate) body_length: bool,
    pub(crate) expire_after: u64,
}

impl<'a> Sign<'a> {
    pub(crate) fn new(key: &'a TestKey, domain: &'a str, selector: &'a str) -> Self {
        Sign {
            key,
            domain,
            selector,
            headers: &[
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type",
            ],
            body_length: false,
            expire_after: 0,
        }
    }

    /// `message` with this signature prepended.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signer = DkimSigner::from_key(self.key.key())
            .domain(self.domain)
            .selector(self.selector)
            .headers(self.headers.iter().copied())
            .body_length(self.body_length);
        if self.expire_after > 0 {
            signer = signer.expiration(self.expire_after);
        }
        let signature = signer.sign(message).expect("sign");
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(message);
        signed
    }
}

/// `text` with every line ending as CRLF, as on the wire.
pub(crate) fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Replaces the first occurrence of `from` in `bytes` (which must exist) by `to`.
pub(crate) fn replace_once(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8 test message");
    assert!(text.contains(from), "test message lacks {from:?}");
    text.replacen(from, to, 1).into_bytes()
}

/// A small ARF report from `from`, about a message that names tenant IP 198.51.100.7;
/// `extra_headers` (each line ending in a newline) go on top.
pub(crate) fn arf_report(from: &str, extra_headers: &str) -> Vec<u8> {
    crlf(&format!(
        "{extra_headers}From: {from}
To: junk@provider.example
Subject: Abuse report
Date: Tue, 02 Jun 2026 10:00:00 +0000
Message-ID: <report-1@reporter.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b1\"

--b1
Content-Type: text/plain

This is an email abuse report for a message received from 198.51.100.7.
--b1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Source-IP: 198.51.100.7

--b1
Content-Type: message/rfc822

From: sales@tenant-a.example
To: someone@mailbox.example
Subject: Offer
Message-ID: <offer-1@tenant-a.example>

Buy now.
--b1--
"
    ))
}

/// A small message as our platform would send it for a tenant.
pub(crate) fn outbound_message() -> Vec<u8> {
    crlf(
        "From: Sales <sales@tenant-a.example>
To: someone@mailbox.example
Subject: Spring offer
Date: Tue, 02 Jun 2026 09:00:00 +0000
Message-ID: <offer-2@tenant-a.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Our spring offer, only this week.
Unsubscribe: https://tenant-a.example/u
",
    )
}
