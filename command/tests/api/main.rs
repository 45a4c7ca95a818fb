//! The command service over HTTP against real Postgres: one binary for every
//! integration test, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod batch;
mod concurrency;
mod erasure;
mod hardening;
mod helpers;
mod hostile;
mod idempotency;
mod isolation;
mod login_guard;
mod lookalike_emails;
mod outage;
mod restore_revert;
mod retries;
mod runtime_role;
mod service;
mod sessions;
mod task_commands;
mod tokens;
mod webhook_secrets;
