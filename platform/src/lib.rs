//! What every Tasklog service shares: settings, telemetry, the HTTP error
//! type and JSON extractor, JWT auth, the Redis handle, health, start-up and
//! shutdown (`server`), `/openapi.json`, the production HTTP stack
//! (`hardening`: rate limits, security headers, CORS, compression, timeouts,
//! panics, metrics), and with the `testing` feature the tests' helpers.
//!
//! The binaries, not this library, choose the allocator (a library cannot
//! know what its users run): `tasklog-command`, `tasklog-query`,
//! `tasklog-projector` and `tasklog-bench` each declare mimalloc in their
//! `main.rs`. Under load glibc's malloc took about a third of the query
//! service's CPU (malloc, free and consolidation of the many short-lived
//! rows, strings and buffers of each request), and it kept freed 19 MiB
//! Argon2 buffers in its heaps unless `GLIBC_TUNABLES` fixed its mmap
//! threshold. mimalloc is built without transparent huge pages (`no_thp`,
//! the workspace's Cargo.toml): with them a 2 MiB page stays resident for
//! one live object in it, a quarter to a third of each service's peak RSS.

pub mod auth;
pub mod causes;
pub mod client_ip;
pub mod config;
pub mod data_key;
pub mod database;
pub mod error_tracking;
pub mod hardening;
pub mod health;
pub mod http;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod rate_limit;
pub mod read_pool;
pub mod redis;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod throttle;

#[cfg(feature = "testing")]
pub mod test_roles;
#[cfg(feature = "testing")]
pub mod testing;

pub use problem::{ApiError, FieldError, Problem};
