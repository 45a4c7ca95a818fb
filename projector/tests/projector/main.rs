#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The projector against real Postgres and Redis: one database and one Redis
//! prefix per test.

mod helpers;
mod measure;
mod projection;
mod rebuild;
mod restore;
mod runtime_role;
mod service;
