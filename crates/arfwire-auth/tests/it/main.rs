//! Integration tests of arfwire-auth. No test touches the network: reporter checks run against
//! `Authenticator::offline()` (a closed world of records the test inserts), and registry checks
//! need no resolver at all.

mod dns;
mod policy;
mod registry;
mod reporter;
mod support;
