//! The front door: an LMTP (RFC 2033) or plain SMTP server that accepts mail for the
//! configured abuse recipients and acknowledges a message only once it is durable.
//!
//! The provider's MTA (Postfix) owns the internet edge, TLS and the retry queue, and hands the
//! abuse mailboxes to this server over LMTP. For every message the server calls
//! [`Submitter::submit`](arfwire_raw::Submitter::submit) and replies
//!
//! * `250 2.0.0 <sha256 prefix> queued` only after the submit returned `Ok` (durable);
//! * `451 4.3.0` when it failed or timed out, so the MTA keeps the message and retries;
//!
//! with LMTP, one such reply per accepted recipient, in `RCPT` order, all the same (one stored
//! message however many recipients).
//!
//! The protocol lives in a sans-IO [`Session`] (bytes in, replies and submissions out), which
//! [`Server`] drives over tokio with the timeouts, connection caps and graceful shutdown.
//!
//! What it refuses:
//!
//! * recipients other than the configured addresses (`550 5.1.1`): no relaying, and a quoted
//!   local part, a source route, a `%` hack or a second `@` never matches;
//! * message content that ends other than with `<CR><LF>.<CR><LF>` (`<LF>.<LF>` and the other
//!   smuggling sequences are content), and bare-LF lines, by policy (`554 5.6.11`) or
//!   normalised to CRLF;
//! * CR, NUL and other control or 8-bit bytes in command lines (`501 5.5.4`), over-long lines
//!   (`500 5.5.6`), declared or actual oversize (`552 5.3.4`), clients that talk before the
//!   greeting or pipeline without `PIPELINING` (`554 5.5.0`), and sessions with too many errors
//!   or junk commands (`421 4.7.0`).
//!
//! There is no STARTTLS: it is not advertised and the command is answered `502`. TLS, where
//! wanted, terminates at the MTA that relays to this server over a trusted local channel.
//!
//! ```ignore
//! let config: LmtpConfig = toml::from_str(&text)?;
//! let server = Server::new(config, submitter)?;
//! let listener = server.bind().await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! ```

mod address;
mod config;
mod data;
mod reply;
mod server;
mod session;

pub use config::{BareLfPolicy, ConfigError, LmtpConfig, Protocol};
pub use reply::Reply;
pub use server::Server;
pub use session::{Event, Session, SessionStats, Transaction};
