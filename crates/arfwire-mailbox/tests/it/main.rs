//! The integration tests of arfwire-mailbox, in one test binary.

// Configuration parsing, validation and secret handling.
mod config;
// The private Dovecot server the IMAP tests run against.
mod dovecot;
// The IMAP poller against Dovecot.
mod imap;
// The Maildir watcher against temporary Maildirs.
mod maildir;
// The scripted test log and helpers.
mod support;
