//! Test doubles and a line-level client for the socket tests.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arfwire_lmtp::{LmtpConfig, Server};
use arfwire_raw::{RawSubmission, SubmitError, Submitter};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;

/// How long a test waits for any one reply before failing.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);

/// An in-memory submitter that can be made to fail, or to block until released.
#[derive(Clone)]
pub struct MemorySubmitter {
    inner: Arc<Inner>,
}

struct Inner {
    stored: Mutex<Vec<RawSubmission>>,
    attempts: AtomicUsize,
    fail: AtomicBool,
    gated: AtomicBool,
    gate: Semaphore,
    entered: tokio::sync::Notify,
}

impl MemorySubmitter {
    pub fn new() -> Self {
        MemorySubmitter {
            inner: Arc::new(Inner {
                stored: Mutex::new(Vec::new()),
                attempts: AtomicUsize::new(0),
                fail: AtomicBool::new(false),
                gated: AtomicBool::new(false),
                gate: Semaphore::new(0),
                entered: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Make every submit fail with `Unavailable` (or succeed again).
    pub fn set_failing(&self, fail: bool) {
        self.inner.fail.store(fail, Ordering::SeqCst);
    }

    /// Make every submit wait for [`MemorySubmitter::release`].
    pub fn block(&self) {
        self.inner.gated.store(true, Ordering::SeqCst);
    }

    /// Let `n` blocked submits proceed.
    pub fn release(&self, n: usize) {
        self.inner.gate.add_permits(n);
    }

    /// Wait until a submit has started.
    pub async fn entered(&self) {
        tokio::time::timeout(REPLY_WAIT, self.inner.entered.notified())
            .await
            .expect("no submit started");
    }

    pub fn stored(&self) -> Vec<RawSubmission> {
        self.inner.stored.lock().unwrap().clone()
    }

    pub fn attempts(&self) -> usize {
        self.inner.attempts.load(Ordering::SeqCst)
    }
}

impl Submitter for MemorySubmitter {
    fn submit(
        &self,
        submission: RawSubmission,
    ) -> impl Future<Output = Result<(), SubmitError>> + Send {
        let inner = Arc::clone(&self.inner);
        async move {
            inner.attempts.fetch_add(1, Ordering::SeqCst);
            inner.entered.notify_one();
            if inner.gated.load(Ordering::SeqCst) {
                inner.gate.acquire().await.expect("gate closed").forget();
            }
            if inner.fail.load(Ordering::SeqCst) {
                return Err(SubmitError::Unavailable("test double: log down".into()));
            }
            inner.stored.lock().unwrap().push(submission);
            Ok(())
        }
    }
}

/// A test configuration: LMTP, short timeouts.
pub fn config() -> LmtpConfig {
    let mut config = LmtpConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        "mx.provider.example",
        vec![
            "junk@provider.example".into(),
            "abuse@provider.example".into(),
        ],
    );
    config.command_timeout_ms = 5_000;
    config.data_timeout_ms = 5_000;
    config.session_timeout_ms = 15_000;
    config.submit_timeout_ms = 10_000;
    config.shutdown_grace_ms = 5_000;
    config
}

/// A server running on 127.0.0.1 with a port of its own.
pub struct Running {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn start(config: LmtpConfig, submitter: MemorySubmitter) -> Running {
        let server = Server::new(config, submitter).expect("valid config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.serve(listener, async move {
            let _ = rx.await;
        }));
        Running {
            addr,
            shutdown: Some(tx),
            handle,
        }
    }

    /// Signal shutdown (the server keeps running until its sessions end).
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Signal shutdown and wait for `serve` to return.
    pub async fn stop(mut self) {
        self.signal_shutdown();
        tokio::time::timeout(Duration::from_secs(15), &mut self.handle)
            .await
            .expect("server did not stop")
            .expect("server task panicked")
            .expect("serve failed");
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }
}

/// One server reply as the client sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Seen {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

/// A raw client: writes bytes, reads replies.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (read, write) = stream.into_split();
        Client {
            reader: BufReader::new(read),
            writer: write,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// The next reply, or `None` at end of stream; fails after [`REPLY_WAIT`].
    pub async fn try_reply(&mut self) -> Option<Seen> {
        tokio::time::timeout(REPLY_WAIT, self.read_reply())
            .await
            .expect("no reply in time")
    }

    pub async fn reply(&mut self) -> Seen {
        self.try_reply().await.expect("connection closed")
    }

    /// Read a reply and check its code; returns the text.
    pub async fn expect(&mut self, code: u16) -> String {
        let seen = self.reply().await;
        assert_eq!(seen.code, code, "unexpected reply {seen:?}");
        seen.text()
    }

    /// Send a command and check the reply code.
    pub async fn command(&mut self, line: &str, code: u16) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect(code).await
    }

    /// Whether nothing at all arrives within `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.reader.fill_buf())
            .await
            .is_err()
    }

    /// Whether the server closes the connection (after any remaining bytes) within the reply
    /// wait.
    pub async fn closed(&mut self) -> bool {
        let mut sink = Vec::new();
        matches!(
            tokio::time::timeout(REPLY_WAIT, self.reader.read_to_end(&mut sink)).await,
            Ok(Ok(_)) | Ok(Err(_))
        )
    }

    async fn read_reply(&mut self) -> Option<Seen> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.ok()?;
            if n == 0 {
                return None;
            }
            assert!(
                line.ends_with("\r\n"),
                "reply line not CRLF-terminated: {line:?}"
            );
            let line = line.trim_end_matches("\r\n");
            assert!(line.len() >= 4, "short reply line {line:?}");
            let code: u16 = line[..3].parse().expect("reply code");
            lines.push(line[4..].to_string());
            if line.as_bytes()[3] == b' ' {
                return Some(Seen { code, lines });
            }
            assert_eq!(line.as_bytes()[3], b'-', "bad reply separator in {line:?}");
        }
    }

    /// Greeting and LHLO.
    pub async fn hello(&mut self) {
        self.expect(220).await;
        self.command("LHLO client.example", 250).await;
    }

    /// A whole LMTP transaction for `recipients` with `body` already dot-stuffed and ending
    /// in CRLF; returns the end-of-data replies.
    pub async fn transaction(&mut self, recipients: &[&str], body: &[u8]) -> Vec<Seen> {
        self.command("MAIL FROM:<reporter@isp.example>", 250).await;
        for recipient in recipients {
            self.command(&format!("RCPT TO:<{recipient}>"), 250).await;
        }
        self.command("DATA", 354).await;
        self.send(body).await;
        self.send(b".\r\n").await;
        let mut replies = Vec::new();
        for _ in recipients {
            replies.push(self.reply().await);
        }
        replies
    }
}
