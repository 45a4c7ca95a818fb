//! The query service over HTTP against real Postgres and Redis, fed by real
//! events appended to the log and projected: one binary, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod cache;
mod changes;
mod consistency;
mod detail;
mod explain;
mod helpers;
mod listing;
mod outage;
mod read_only;
mod read_pool;
mod replica;
mod service;
mod stats;
mod stream;
mod trash;
