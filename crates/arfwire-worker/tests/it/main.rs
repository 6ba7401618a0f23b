//! Integration tests of the worker against librdkafka's in-process mock cluster.

mod mock;
mod support;
