//! The tokio server: accepts connections, enforces the connection caps and timeouts, and drives
//! one [`Session`] per connection, calling the [`Submitter`] for each complete message.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arfwire_raw::{SubmitError, Submitter};
use chrono::Utc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use crate::config::{ConfigError, LmtpConfig};
use crate::session::{self, Event, Session, Transaction};

/// Bytes read from a connection at a time. Together with the command line and the message
/// limits this bounds a session's memory.
const READ_CHUNK: usize = 16 * 1024;

/// How long the server waits for sessions to write their final `421` after the grace period.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// Reply to a connection over the global cap.
const BUSY_REPLY: &[u8] = b"421 4.3.2 too many connections, try again later\r\n";

/// Reply to a connection over the per-address cap.
const BUSY_PER_IP_REPLY: &[u8] = b"421 4.7.0 too many connections from your address\r\n";

/// The shutdown stage, broadcast to the sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    /// Stop starting new transactions; close once the current one is answered.
    Draining,
    /// The grace period is over: close now.
    Abort,
}

/// The LMTP/SMTP front door. Generic over the [`Submitter`] that makes messages durable.
pub struct Server<S> {
    config: Arc<LmtpConfig>,
    submitter: Arc<S>,
}

impl<S> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Submitter + 'static> Server<S> {
    /// A server with this configuration (validated here) and submitter.
    pub fn new(config: LmtpConfig, submitter: S) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Server {
            config: Arc::new(config),
            submitter: Arc::new(submitter),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LmtpConfig {
        &self.config
    }

    /// Bind the configured listen address.
    pub async fn bind(&self) -> io::Result<TcpListener> {
        TcpListener::bind(self.config.listen).await
    }

    /// Accept connections on `listener` until `shutdown` completes, then stop accepting, let
    /// the sessions finish their current transaction for up to `shutdown_grace_ms` (new
    /// commands get `421 4.3.2`), close the rest with `421 4.3.2`, and return once every
    /// session has ended.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let shared = Arc::new(Shared {
            config: self.config,
            submitter: self.submitter,
            connections: Mutex::new(Connections::default()),
            next_id: AtomicU64::new(1),
        });
        let (stage_tx, stage_rx) = watch::channel(Stage::Running);
        let mut sessions = JoinSet::new();
        let local = listener.local_addr().ok();
        info!(listen = ?local, protocol = ?shared.config.protocol, "LMTP front door listening");

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => match admit(&shared, stream_peer_ip(peer)) {
                        Ok(guard) => {
                            let _ = stream.set_nodelay(true);
                            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                            let span = info_span!("lmtp_session", id, peer = %peer);
                            let task = run_session(
                                Arc::clone(&shared),
                                stream,
                                peer,
                                stage_rx.clone(),
                                guard,
                            );
                            sessions.spawn(task.instrument(span));
                        }
                        Err(reply) => {
                            info!(
                                peer = %peer,
                                global_cap = reply == BUSY_REPLY,
                                "connection refused: over the connection cap"
                            );
                            refuse(stream, reply);
                        }
                    },
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(joined) = sessions.join_next(), if !sessions.is_empty() => {
                    report_join(joined);
                }
            }
        }
        drop(listener);

        let open = sessions.len();
        info!(
            open_sessions = open,
            "shutting down: no longer accepting connections"
        );
        let _ = stage_tx.send(Stage::Draining);
        let grace = tokio::time::sleep(Duration::from_millis(shared.config.shutdown_grace_ms));
        tokio::pin!(grace);
        loop {
            tokio::select! {
                joined = sessions.join_next() => match joined {
                    Some(joined) => report_join(joined),
                    None => break,
                },
                () = &mut grace => {
                    warn!(open_sessions = sessions.len(), "shutdown grace period over: closing sessions");
                    let _ = stage_tx.send(Stage::Abort);
                    let deadline = tokio::time::sleep(ABORT_WAIT);
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            joined = sessions.join_next() => match joined {
                                Some(joined) => report_join(joined),
                                None => break,
                            },
                            () = &mut deadline => {
                                sessions.abort_all();
                                while let Some(joined) = sessions.join_next().await {
                                    report_join(joined);
                                }
                                break;
                            }
                        }
                    }
                    break;
                }
            }
        }
        info!("LMTP front door stopped");
        Ok(())
    }
}

fn stream_peer_ip(peer: SocketAddr) -> IpAddr {
    // An IPv4 client on a dual-stack socket counts as its IPv4 address.
    match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        ip => ip,
    }
}

fn report_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(join_error) = joined
        && join_error.is_panic()
    {
        error!("an LMTP session panicked");
    }
}

/// State shared by the accept loop and the sessions.
struct Shared<S> {
    config: Arc<LmtpConfig>,
    submitter: Arc<S>,
    connections: Mutex<Connections>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A slot counted against the connection caps, released on drop.
struct ConnectionGuard {
    release: Box<dyn FnOnce() + Send>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let release = std::mem::replace(&mut self.release, Box::new(|| {}));
        release();
    }
}

/// Count the connection against the caps; the reply to send when it is over one of them.
fn admit<S: Send + Sync + 'static>(
    shared: &Arc<Shared<S>>,
    ip: IpAddr,
) -> Result<ConnectionGuard, &'static [u8]> {
    {
        let mut connections = shared
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from_ip = connections.per_ip.get(&ip).copied().unwrap_or(0);
        if connections.total >= shared.config.max_connections {
            return Err(BUSY_REPLY);
        }
        if from_ip >= shared.config.max_connections_per_ip {
            return Err(BUSY_PER_IP_REPLY);
        }
        connections.total += 1;
        *connections.per_ip.entry(ip).or_insert(0) += 1;
    }
    let shared = Arc::clone(shared);
    Ok(ConnectionGuard {
        release: Box::new(move || {
            let mut connections = shared
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            connections.total = connections.total.saturating_sub(1);
            if let Some(count) = connections.per_ip.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    connections.per_ip.remove(&ip);
                }
            }
        }),
    })
}

/// Write `reply` and close, without waiting: the socket is non-blocking and a fresh socket's
/// send buffer has room for one line, so this never holds up the accept loop.
fn refuse(stream: TcpStream, reply: &[u8]) {
    if let Ok(mut socket) = stream.into_std() {
        let _ = socket.write(reply);
        let _ = socket.shutdown(Shutdown::Write);
    }
}

/// The per-connection task.
async fn run_session<S: Submitter + 'static>(
    shared: Arc<Shared<S>>,
    stream: TcpStream,
    peer: SocketAddr,
    stage: watch::Receiver<Stage>,
    guard: ConnectionGuard,
) {
    let started = Instant::now();
    let mut driver = Driver {
        session: Session::new(Arc::clone(&shared.config), Some(stream_peer_ip(peer))),
        shared,
        stream,
        stage,
        out: Vec::new(),
        started,
    };
    debug!("session opened");
    let reason = driver.run().await;
    let stats = driver.session.stats();
    info!(
        reason,
        duration_ms = started.elapsed().as_millis() as u64,
        commands = stats.commands,
        errors = stats.errors,
        rejected_recipients = stats.rejected_recipients,
        stored = stats.stored,
        deferred = stats.deferred,
        refused = stats.refused,
        data_bytes = stats.data_bytes,
        "session closed"
    );
    drop(guard);
}

struct Driver<S> {
    shared: Arc<Shared<S>>,
    session: Session,
    stream: TcpStream,
    stage: watch::Receiver<Stage>,
    out: Vec<u8>,
    started: Instant,
}

impl<S: Submitter + 'static> Driver<S> {
    /// Run the session to its end; returns why it ended.
    async fn run(&mut self) -> &'static str {
        let config = Arc::clone(&self.shared.config);
        let session_deadline = self.started + Duration::from_millis(config.session_timeout_ms);
        let mut buf = vec![0u8; READ_CHUNK];
        let (mut start, mut end) = (0usize, 0usize);

        // The greeting, unless the client talks first.
        if config.greeting_delay_ms > 0 {
            let pause = Duration::from_millis(config.greeting_delay_ms);
            match timeout(pause, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return "client closed before the greeting",
                Ok(Ok(n)) => end = n,
                Err(_) => {}
            }
        } else if let Ok(n) = self.stream.try_read(&mut buf) {
            if n == 0 {
                return "client closed before the greeting";
            }
            end = n;
        }
        if end > 0 {
            debug!(bytes = end, "early talker");
            start = end;
            self.session.feed(&buf[..end]);
        } else {
            self.session.greet();
        }

        loop {
            if start < end && !self.session.awaiting_submit() {
                start += self.session.feed(&buf[start..end]);
            }
            while let Some(event) = self.session.poll_event() {
                match event {
                    Event::Reply(reply) => reply.write_to(&mut self.out),
                    Event::Submit(transaction) => {
                        if !self.flush(&config).await {
                            return "write failed";
                        }
                        self.submit(transaction, &config).await;
                    }
                    Event::Close => {
                        let _ = self.flush(&config).await;
                        let _ = timeout(
                            Duration::from_millis(config.command_timeout_ms),
                            self.stream.shutdown(),
                        )
                        .await;
                        return "closed by server";
                    }
                }
            }
            if !self.flush(&config).await {
                return "write failed";
            }
            if start < end {
                continue;
            }

            // Everything fed: read more.
            start = 0;
            end = 0;
            let idle = if self.session.in_data() {
                config.data_timeout_ms
            } else {
                config.command_timeout_ms
            };
            let left = session_deadline.saturating_duration_since(Instant::now());
            let wait = Duration::from_millis(idle).min(left);
            tokio::select! {
                changed = self.stage.changed() => {
                    match changed.map(|()| *self.stage.borrow_and_update()) {
                        Ok(Stage::Running) => {}
                        Ok(Stage::Draining) => self.session.shutdown(),
                        Ok(Stage::Abort) | Err(_) => self.session.abort(),
                    }
                }
                read = timeout(wait, self.stream.read(&mut buf)) => match read {
                    Err(_) => {
                        debug!(in_data = self.session.in_data(), "timeout");
                        self.session.timeout();
                    }
                    Ok(Ok(0)) => {
                        return if self.session.in_data() {
                            "client closed during the data"
                        } else {
                            "client closed"
                        };
                    }
                    Ok(Ok(n)) => end = n,
                    Ok(Err(_)) => return "read failed",
                },
            }
        }
    }

    /// Make the message durable and report the result to the session. Never reports `Ok`
    /// unless the submitter did.
    async fn submit(&mut self, transaction: Transaction, config: &LmtpConfig) {
        let hash_prefix = transaction.sha256[..16].to_string();
        let bytes = transaction.bytes.len();
        let recipients = transaction.envelope.rcpt_to.len();
        let submission = transaction.into_submission(session::channel(config.protocol), Utc::now());
        let began = Instant::now();
        let submit = timeout(
            Duration::from_millis(config.submit_timeout_ms),
            self.shared.submitter.submit(submission),
        );
        let aborted = wait_for_abort(&mut self.stage);
        let result = tokio::select! {
            result = submit => result.unwrap_or_else(|_| {
                Err(SubmitError::Unavailable("the durable submit timed out".into()))
            }),
            () = aborted => {
                warn!(bytes, recipients, sha256 = %hash_prefix, "shutdown during the submit: message not acknowledged");
                self.session.abort();
                return;
            }
        };
        let submit_ms = began.elapsed().as_millis() as u64;
        match &result {
            Ok(()) => info!(
                outcome = "stored",
                bytes,
                recipients,
                sha256 = %hash_prefix,
                submit_ms,
                "message accepted"
            ),
            Err(SubmitError::Unavailable(why)) => warn!(
                outcome = "deferred",
                bytes,
                recipients,
                sha256 = %hash_prefix,
                submit_ms,
                error = %why,
                "message not stored: temporary failure"
            ),
            Err(SubmitError::TooLarge(why)) => warn!(
                outcome = "refused",
                bytes,
                recipients,
                sha256 = %hash_prefix,
                submit_ms,
                error = %why,
                "message not stored: too large for the log"
            ),
        }
        self.session.submit_done(result);
    }

    /// Write the queued replies; false when the client does not take them in time.
    async fn flush(&mut self, config: &LmtpConfig) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let written = timeout(
            Duration::from_millis(config.command_timeout_ms),
            self.stream.write_all(&self.out),
        )
        .await;
        self.out.clear();
        matches!(written, Ok(Ok(())))
    }
}

/// Completes when the server moves to [`Stage::Abort`] (or goes away).
async fn wait_for_abort(stage: &mut watch::Receiver<Stage>) {
    loop {
        if *stage.borrow_and_update() == Stage::Abort {
            return;
        }
        if stage.changed().await.is_err() {
            return;
        }
    }
}
