//! What every Tasklog service shares: settings, telemetry, the HTTP error
//! type and JSON extractor, JWT auth, the Redis handle, health and lifecycle.

pub mod auth;
pub mod config;
pub mod database;
pub mod health;
pub mod http;
pub mod json;
pub mod problem;
pub mod redis;
pub mod server;
pub mod telemetry;

#[cfg(feature = "testing")]
pub mod testing;

pub use problem::{ApiError, FieldError, Problem};
