//! arfwire's integration tests: one binary, one module per concern.

mod corpus;
mod fixtures;
