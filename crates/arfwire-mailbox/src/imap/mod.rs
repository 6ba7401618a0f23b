//! The IMAP poller: submit each new message of one mailbox, then move or flag it.
//!
//! One session does, in a loop:
//!
//! 1. connect (implicit TLS, `STARTTLS`, or plain TCP), `LOGIN`, `SELECT` the mailbox;
//! 2. compare the mailbox's `UIDVALIDITY` with the state file's; when it changed (or the
//!    state file belongs to another mailbox, or there is none) start over from UID 1;
//! 3. list the messages above the last UID done (`UID FETCH <last+1>:* (UID RFC822.SIZE)`),
//!    then fetch their bytes in UID order, a batch at a time, with
//!    `UID FETCH <uids> (BODY.PEEK[])`: `PEEK`, so nothing is marked `\Seen` before the log
//!    has it;
//! 4. for each message in UID order: [`Submitter::submit`]; only after `Ok`, move it
//!    (`UID MOVE`, or `UID COPY` + `\Deleted` + `UID EXPUNGE` without `MOVE`) or set the
//!    configured flag; then record its UID in the state file;
//! 5. wait for new mail with `IDLE` (ended and re-issued at least every `idle_renew_secs`)
//!    when the server offers it, else sleep `poll_interval_secs`; go to 3.
//!
//! Failures: a refusal from the log stops the pass at that message, which is retried after a
//! backoff on the same connection. Any connection or server error ends the session; the next
//! one starts after a backoff. A message that the log accepted but that could not be moved or
//! flagged is remembered, and the next session only moves or flags it, without submitting it
//! again. A crash anywhere before the state file records a UID makes the next run submit that
//! message again: the same bytes (byte-exact `BODY[]`), so the same SHA-256 and the same
//! event ids, and downstream drops the duplicate. The same holds for a full re-read after a
//! `UIDVALIDITY` change.
//!
//! A message larger than `max_message_bytes`, or one the log refuses as too large, is left in
//! the mailbox untouched, with an error logged, and the poller moves past it.
//!
//! The password never reaches a log: it is held in a [`Secret`], and the poller refuses to
//! log in while the `async_imap` crate's trace logging (which echoes every command sent) is
//! enabled.

mod state;
mod transport;

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::fmt::{self, Display};
use std::future::Future;
use std::time::Duration;

use arfwire_raw::{Channel, RawSubmission, SubmitError, Submitter};
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{Response, Status};
use async_imap::types::Fetch;
use chrono::Utc;
use futures_util::TryStreamExt;
use tokio::net::TcpStream;
use tracing::{debug, error, info, warn};

pub use state::ImapState;
use transport::{Tls, Transport};

use crate::backoff::Backoff;
use crate::config::{Disposition, ImapConfig, Secret, TlsMode};
use crate::error::{ConfigError, ImapError, StateError};

type Session = async_imap::Session<Transport>;

/// The log target async-imap writes its wire trace to, `LOGIN` command included.
const WIRE_TRACE_TARGET: &str = "async_imap::imap_stream";

/// Polls one IMAP mailbox and submits each message before moving or flagging it. See the
/// module documentation for the order of events and what happens on failure.
pub struct ImapPoller<S> {
    config: ImapConfig,
    password: Secret,
    tls: Option<Tls>,
    submitter: S,
    /// UIDs (under the current `UIDVALIDITY`) that the log has but that are not yet moved or
    /// flagged: only the move or flag is retried.
    unacknowledged: BTreeSet<u32>,
}

impl<S> fmt::Debug for ImapPoller<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapPoller")
            .field("config", &self.config)
            .field("unacknowledged", &self.unacknowledged)
            .finish_non_exhaustive()
    }
}

/// What the server offers that the poller uses.
#[derive(Debug, Clone, Copy)]
struct Capabilities {
    idle: bool,
    r#move: bool,
    uidplus: bool,
}

/// How a pass over the mailbox ended.
enum Pass {
    /// Everything listed was handled; `handled` messages were submitted or skipped.
    Done { handled: usize },
    /// The log refused a message; it and the ones after it wait for the next pass.
    Blocked(SubmitError),
}

/// Why a session ended.
enum Failure {
    /// Retrying cannot help: stop the poller.
    Fatal(ImapError),
    /// Reconnect after a backoff.
    Transient(String),
}

impl Failure {
    fn transient(what: &str, cause: impl Display) -> Self {
        Failure::Transient(format!("{what}: {cause}"))
    }
}

impl From<StateError> for Failure {
    fn from(error: StateError) -> Self {
        Failure::Transient(error.to_string())
    }
}

impl<S: Submitter> ImapPoller<S> {
    /// A poller for the mailbox in `config`, submitting through `submitter`. Checks the
    /// configuration, reads the password (from the environment variable `password_env`) and
    /// sets up TLS; connecting happens in [`ImapPoller::run`].
    pub fn new(config: ImapConfig, submitter: S) -> Result<Self, ImapError> {
        config.validate()?;
        let password = config.resolve_password()?;
        let tls = match config.tls {
            TlsMode::None => None,
            TlsMode::Implicit | TlsMode::Starttls => {
                let name = config.tls_server_name.as_deref().unwrap_or(&config.host);
                Some(Tls::new(name, config.ca_file.as_deref())?)
            }
        };
        Ok(ImapPoller {
            config,
            password,
            tls,
            submitter,
            unacknowledged: BTreeSet::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ImapConfig {
        &self.config
    }

    /// Poll until `shutdown` completes. Returns an error only for what retrying cannot fix:
    /// an unreadable state file, a missing state directory, or trace logging that would leak
    /// the password. Connection, server and log failures are logged and retried with
    /// backoff.
    ///
    /// Stopping (through `shutdown`, or by dropping the future) is safe at any point: at
    /// worst the message being handled is submitted again by the next run.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ImapError> {
        let mut state = self.load_state()?;
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.retry_min, self.config.retry_max);
        loop {
            let failure = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                failure = self.session(&mut state, &mut backoff) => failure,
            };
            match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Transient(why) => {
                    let wait = backoff.next_wait();
                    warn!(
                        host = %self.config.host,
                        mailbox = %self.config.mailbox,
                        error = %why,
                        retry_in_ms = wait.as_millis(),
                        "IMAP session ended; reconnecting"
                    );
                    tokio::select! {
                        biased;
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// The saved state, when it belongs to the configured mailbox. Checks that the state
    /// file can be written.
    fn load_state(&self) -> Result<Option<ImapState>, ImapError> {
        let path = &self.config.state_file;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => std::path::Path::new("."),
        };
        if !dir.is_dir() {
            return Err(ConfigError::invalid(
                "state_file",
                format!("is in {}, which is not a directory", dir.display()),
            )
            .into());
        }
        let state = ImapState::load(path)?;
        Ok(state.filter(|state| {
            let ours =
                state.username == self.config.username && state.mailbox == self.config.mailbox;
            if !ours {
                warn!(
                    state_file = %path.display(),
                    username = %state.username,
                    mailbox = %state.mailbox,
                    "the IMAP state file belongs to another mailbox; starting over"
                );
            }
            ours
        }))
    }

    /// One session, until it fails.
    async fn session(&mut self, state: &mut Option<ImapState>, backoff: &mut Backoff) -> Failure {
        match self.serve(state, backoff).await {
            Ok(never) => match never {},
            Err(failure) => failure,
        }
    }

    async fn serve(
        &mut self,
        state: &mut Option<ImapState>,
        backoff: &mut Backoff,
    ) -> Result<Infallible, Failure> {
        let timeout = self.config.timeout;
        let mut session = self.connect().await?;
        let offered = step(timeout, "CAPABILITY", session.capabilities()).await?;
        let capabilities = Capabilities {
            idle: offered.has_str("IDLE"),
            r#move: offered.has_str("MOVE"),
            uidplus: offered.has_str("UIDPLUS"),
        };
        let mailbox = self.config.mailbox.clone();
        let selected = step(timeout, "SELECT", session.select(&mailbox)).await?;
        let uid_validity = selected.uid_validity.ok_or_else(|| {
            Failure::Transient(format!("SELECT {mailbox}: the server sent no UIDVALIDITY"))
        })?;
        let state = self.adopt(state, uid_validity).await?;
        if let Disposition::Move { mailbox: target } = &self.config.on_success {
            ensure_mailbox(&mut session, target, timeout).await?;
        }
        let idle = capabilities.idle && self.config.idle;
        info!(
            host = %self.config.host,
            mailbox = %mailbox,
            uid_validity,
            last_uid = state.last_uid,
            idle,
            r#move = capabilities.r#move,
            uidplus = capabilities.uidplus,
            "IMAP mailbox selected"
        );
        loop {
            drain_unsolicited(&session);
            match self.pass(&mut session, state, capabilities).await? {
                Pass::Blocked(refusal) => {
                    let wait = backoff.next_wait();
                    warn!(
                        mailbox = %mailbox,
                        error = %refusal,
                        retry_in_ms = wait.as_millis(),
                        "the log refused an IMAP message; it stays in place and is retried"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Pass::Done { handled } => {
                    backoff.reset();
                    if handled > 0 {
                        // Look again at once: more may have arrived meanwhile.
                        continue;
                    }
                }
            }
            drain_unsolicited(&session);
            if idle {
                session = self.idle(session).await?;
            } else {
                tokio::time::sleep(self.config.poll_interval).await;
            }
        }
    }

    /// Connect, secure and log in.
    async fn connect(&self) -> Result<Session, Failure> {
        if log::log_enabled!(target: WIRE_TRACE_TARGET, log::Level::Trace) {
            return Err(Failure::Fatal(ImapError::PasswordWouldBeLogged));
        }
        let timeout = self.config.timeout;
        let host = self.config.host.as_str();
        let port = self.config.effective_port();
        let tcp = step(timeout, "connect", TcpStream::connect((host, port))).await?;
        // Commands are small and each waits for its reply: do not let Nagle delay them.
        let _ = tcp.set_nodelay(true);
        let transport = match (&self.config.tls, &self.tls) {
            (TlsMode::Implicit, Some(tls)) => step(timeout, "TLS handshake", tls.wrap(tcp)).await?,
            _ => Transport::Plain(tcp),
        };
        let mut client = async_imap::Client::new(transport);
        let greeting = step(timeout, "greeting", client.read_response())
            .await?
            .ok_or_else(|| Failure::Transient("the server closed the connection".into()))?;
        if let Response::Data {
            status: Status::Bye,
            outcome,
        } = greeting.parsed()
        {
            return Err(Failure::transient(
                "greeting",
                format_args!(
                    "the server refused the connection: {}",
                    outcome.information.as_deref().unwrap_or("")
                ),
            ));
        }
        if let (TlsMode::Starttls, Some(tls)) = (&self.config.tls, &self.tls) {
            step(
                timeout,
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            // Taking the bare stream drops anything the server sent after its reply (a
            // plaintext injection attempt) along with the client's read buffer.
            let Transport::Plain(tcp) = client.into_inner() else {
                return Err(Failure::Transient("STARTTLS on a TLS connection".into()));
            };
            let secured = step(timeout, "TLS handshake", tls.wrap(tcp)).await?;
            client = async_imap::Client::new(secured);
        }
        let username = self.config.username.as_str();
        let password = self.password.expose();
        step(timeout, "LOGIN", async move {
            client
                .login(username, password)
                .await
                .map_err(|(error, _client)| error)
        })
        .await
    }

    /// Take the mailbox's `UIDVALIDITY`: keep the state when it matches, start over when it
    /// changed or there is no state. Returns the state to work with.
    async fn adopt<'s>(
        &mut self,
        state: &'s mut Option<ImapState>,
        uid_validity: u32,
    ) -> Result<&'s mut ImapState, Failure> {
        match state.as_ref() {
            Some(saved) if saved.uid_validity == uid_validity => {}
            Some(saved) => {
                warn!(
                    mailbox = %self.config.mailbox,
                    old = saved.uid_validity,
                    new = uid_validity,
                    last_uid = saved.last_uid,
                    "the mailbox's UIDVALIDITY changed; reading it again from the start \
                     (duplicates are dropped downstream)"
                );
                *state = None;
            }
            None => info!(
                mailbox = %self.config.mailbox,
                uid_validity,
                "no IMAP state yet; reading the mailbox from the start"
            ),
        }
        match state {
            Some(saved) => Ok(saved),
            None => {
                self.unacknowledged.clear();
                let fresh =
                    ImapState::new(&self.config.username, &self.config.mailbox, uid_validity);
                save_state(&fresh, &self.config.state_file).await?;
                Ok(state.insert(fresh))
            }
        }
    }

    /// Handle everything above the last UID done.
    async fn pass(
        &mut self,
        session: &mut Session,
        state: &mut ImapState,
        capabilities: Capabilities,
    ) -> Result<Pass, Failure> {
        let timeout = self.config.timeout;
        let Some(first) = state.last_uid.checked_add(1) else {
            return Ok(Pass::Done { handled: 0 });
        };
        let listing: Vec<Fetch> = step(timeout, "UID FETCH (list)", async {
            session
                .uid_fetch(format!("{first}:*"), "(UID RFC822.SIZE)")
                .await?
                .try_collect()
                .await
        })
        .await?;
        // `n:*` always matches the highest UID, even below n; and unsolicited FETCH
        // responses may be mixed in. Keep only what is above the last UID done.
        let mut pending: Vec<(u32, u64)> = listing
            .iter()
            .filter_map(|fetch| Some((fetch.uid?, u64::from(fetch.size.unwrap_or(0)))))
            .filter(|&(uid, _)| uid >= first)
            .collect();
        pending.sort_unstable();
        pending.dedup_by_key(|&mut (uid, _)| uid);
        self.unacknowledged.retain(|&uid| uid >= first);

        let mut handled = 0;
        for batch in batches(
            &pending,
            self.config.fetch_batch,
            self.config.fetch_batch_bytes,
        ) {
            let wanted: Vec<u32> = batch
                .iter()
                .filter(|&&(uid, size)| {
                    !self.unacknowledged.contains(&uid) && size <= self.config.max_message_bytes
                })
                .map(|&(uid, _)| uid)
                .collect();
            let mut bodies = self.fetch_bodies(session, &wanted).await?;
            for &(uid, listed_size) in batch {
                // A server that did not report the size is believed once the bytes are in.
                let size = bodies
                    .get(&uid)
                    .map_or(listed_size, |bytes| listed_size.max(bytes.len() as u64));
                if self.unacknowledged.contains(&uid) {
                    self.acknowledge(session, capabilities, uid).await?;
                    self.unacknowledged.remove(&uid);
                    advance(state, uid, &self.config.state_file).await?;
                    continue;
                }
                handled += 1;
                if size > self.config.max_message_bytes {
                    error!(
                        mailbox = %self.config.mailbox,
                        uid,
                        size,
                        limit = self.config.max_message_bytes,
                        "an IMAP message is larger than max_message_bytes; it stays in the \
                         mailbox untouched"
                    );
                    advance(state, uid, &self.config.state_file).await?;
                    continue;
                }
                let Some(bytes) = bodies.remove(&uid) else {
                    debug!(
                        mailbox = %self.config.mailbox,
                        uid,
                        "an IMAP message was expunged before it was fetched"
                    );
                    advance(state, uid, &self.config.state_file).await?;
                    continue;
                };
                let mut submission = RawSubmission::new(bytes, Channel::Imap, Utc::now());
                submission.source = Some(self.source(state.uid_validity, uid));
                let sha256 = submission.sha256_hex();
                match self.submitter.submit(submission).await {
                    Ok(()) => {
                        debug!(mailbox = %self.config.mailbox, uid, %sha256, "IMAP message submitted");
                        self.unacknowledged.insert(uid);
                        self.acknowledge(session, capabilities, uid).await?;
                        self.unacknowledged.remove(&uid);
                        advance(state, uid, &self.config.state_file).await?;
                    }
                    Err(SubmitError::TooLarge(why)) => {
                        error!(
                            mailbox = %self.config.mailbox,
                            uid,
                            %sha256,
                            reason = %why,
                            "the log refused an IMAP message as too large; it stays in the \
                             mailbox untouched"
                        );
                        advance(state, uid, &self.config.state_file).await?;
                    }
                    Err(refusal) => return Ok(Pass::Blocked(refusal)),
                }
            }
        }
        Ok(Pass::Done { handled })
    }

    /// The bytes of the messages `uids`, byte-exact, without setting `\Seen`.
    async fn fetch_bodies(
        &self,
        session: &mut Session,
        uids: &[u32],
    ) -> Result<HashMap<u32, Vec<u8>>, Failure> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        let set = uid_set(uids);
        let fetched: Vec<Fetch> = step(self.config.timeout, "UID FETCH (bodies)", async {
            session
                .uid_fetch(&set, "(UID BODY.PEEK[])")
                .await?
                .try_collect()
                .await
        })
        .await?;
        let mut bodies = HashMap::with_capacity(uids.len());
        for fetch in &fetched {
            let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) else {
                continue;
            };
            if uids.contains(&uid) {
                bodies.insert(uid, body.to_vec());
            }
        }
        Ok(bodies)
    }

    /// Move or flag a message the log has.
    async fn acknowledge(
        &self,
        session: &mut Session,
        capabilities: Capabilities,
        uid: u32,
    ) -> Result<(), Failure> {
        let timeout = self.config.timeout;
        let uid = uid.to_string();
        match &self.config.on_success {
            Disposition::Flag { flag } => {
                let flags = format!("+FLAGS.SILENT ({flag})");
                store(session, &uid, &flags, timeout).await
            }
            Disposition::Move { mailbox } if capabilities.r#move => {
                step(timeout, "UID MOVE", session.uid_mv(&uid, mailbox)).await
            }
            Disposition::Move { mailbox } => {
                step(timeout, "UID COPY", session.uid_copy(&uid, mailbox)).await?;
                store(session, &uid, "+FLAGS.SILENT (\\Deleted)", timeout).await?;
                if capabilities.uidplus {
                    step(timeout, "UID EXPUNGE", async {
                        session
                            .uid_expunge(&uid)
                            .await?
                            .try_collect::<Vec<_>>()
                            .await
                    })
                    .await?;
                }
                Ok(())
            }
        }
    }

    /// Wait for the mailbox to change, at most `idle_renew`, with `IDLE`.
    async fn idle(&self, session: Session) -> Result<Session, Failure> {
        let timeout = self.config.timeout;
        let renew = self.config.idle_renew;
        let mut handle = session.idle();
        step(timeout, "IDLE", handle.init()).await?;
        let outcome = {
            // The handle's own timeout restarts on every keepalive the server sends, so it
            // alone would not bound the wait: bound the whole wait too.
            let (wait, stop) = handle.wait_with_timeout(renew);
            let outcome = tokio::time::timeout(renew, wait).await;
            drop(stop);
            outcome
        };
        match outcome {
            Ok(Ok(IdleResponse::NewData(_))) => {
                debug!(mailbox = %self.config.mailbox, "IDLE: the mailbox changed");
            }
            Ok(Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt)) | Err(_) => {
                debug!(mailbox = %self.config.mailbox, "IDLE: renewing");
            }
            Ok(Err(cause)) => return Err(Failure::transient("IDLE", cause)),
        }
        step(timeout, "DONE", handle.done()).await
    }

    /// The submission's source: an IMAP URL (RFC 5092) naming the message.
    fn source(&self, uid_validity: u32, uid: u32) -> String {
        let port = match self.config.port {
            Some(port) => format!(":{port}"),
            None => String::new(),
        };
        format!(
            "imap://{}@{}{port}/{};UIDVALIDITY={uid_validity}/;UID={uid}",
            url_escape(&self.config.username),
            self.config.host,
            url_escape(&self.config.mailbox),
        )
    }
}

/// Run one step with a deadline, naming it in the error.
async fn step<T, E: Display>(
    timeout: Duration,
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(cause)) => Err(Failure::transient(what, cause)),
        Err(_) => Err(Failure::transient(
            what,
            format_args!("no reply within {} s", timeout.as_secs_f64()),
        )),
    }
}

async fn store(
    session: &mut Session,
    uid: &str,
    flags: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    step(timeout, "UID STORE", async {
        session
            .uid_store(uid, flags)
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await
    .map(drop)
}

/// Create the mailbox messages are moved to, unless it exists.
async fn ensure_mailbox(
    session: &mut Session,
    mailbox: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    match tokio::time::timeout(timeout, session.create(mailbox)).await {
        Ok(Ok(())) => {
            info!(mailbox, "created the IMAP mailbox for processed messages");
            Ok(())
        }
        // Most likely it exists already; STATUS tells.
        Ok(Err(async_imap::error::Error::No(_))) => {
            step(timeout, "STATUS", session.status(mailbox, "(MESSAGES)"))
                .await
                .map(drop)
        }
        Ok(Err(cause)) => Err(Failure::transient("CREATE", cause)),
        Err(_) => Err(Failure::transient("CREATE", "no reply")),
    }
}

/// Record `uid` as done.
async fn advance(
    state: &mut ImapState,
    uid: u32,
    path: &std::path::Path,
) -> Result<(), StateError> {
    state.last_uid = uid;
    save_state(state, path).await
}

async fn save_state(state: &ImapState, path: &std::path::Path) -> Result<(), StateError> {
    let state = state.clone();
    let path = path.to_path_buf();
    let error_path = path.clone();
    tokio::task::spawn_blocking(move || state.save(&path))
        .await
        .unwrap_or_else(|cause| {
            Err(StateError::Io {
                path: error_path,
                action: "write",
                cause: std::io::Error::other(cause.to_string()),
            })
        })
}

/// Forget the server's unsolicited responses: each pass lists the mailbox anyway.
fn drain_unsolicited(session: &Session) {
    while session.unsolicited_responses.try_recv().is_ok() {}
}

/// Split `pending` into runs of at most `count` messages and `bytes` bytes (a single larger
/// message on its own).
fn batches(pending: &[(u32, u64)], count: usize, bytes: u64) -> Vec<&[(u32, u64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut total = 0u64;
    for (index, &(_, size)) in pending.iter().enumerate() {
        let length = index - start;
        if length > 0 && (length >= count || total.saturating_add(size) > bytes) {
            out.push(&pending[start..index]);
            start = index;
            total = 0;
        }
        total = total.saturating_add(size);
    }
    if start < pending.len() {
        out.push(&pending[start..]);
    }
    out
}

/// A UID set: `3,5:7,9`.
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut index = 0;
    while index < sorted.len() {
        let start = sorted[index];
        let mut end = start;
        while index + 1 < sorted.len() && sorted[index + 1] == end.wrapping_add(1) {
            index += 1;
            end = sorted[index];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        index += 1;
    }
    out
}

/// Percent-encode what an IMAP URL's user or mailbox part may not hold literally.
fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'&'
                    | b'='
                    | b':'
            );
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[1]), "1");
        assert_eq!(uid_set(&[3, 1, 2, 5, 7, 8, 9]), "1:3,5,7:9");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let pending = [(1, 10), (2, 10), (3, 10), (4, 100), (5, 1)];
        let by_count: Vec<usize> = batches(&pending, 2, 1000).iter().map(|b| b.len()).collect();
        assert_eq!(by_count, [2, 2, 1]);
        let by_bytes: Vec<Vec<u32>> = batches(&pending, 10, 25)
            .iter()
            .map(|b| b.iter().map(|&(uid, _)| uid).collect())
            .collect();
        assert_eq!(by_bytes, [vec![1, 2], vec![3], vec![4], vec![5]]);
        assert!(batches(&[], 3, 3).is_empty());
    }

    #[test]
    fn sources_are_imap_urls() {
        assert_eq!(url_escape("junk@example.net"), "junk%40example.net");
        assert_eq!(url_escape("INBOX/Sub dir"), "INBOX%2FSub%20dir");
    }
}
