//! The production HTTP stack (`hardening::ProductionLayers`) on a served
//! router, against the real Redis: one binary for all of it, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod layers;
mod limits;
mod logs;
mod metrics;
mod shutdown;
mod support;
