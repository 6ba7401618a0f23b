//! Integration tests of the worker against librdkafka's in-process mock cluster (and, for
//! crashes, worker processes of their own).

mod broker;
mod crash;
mod mock;
mod support;
