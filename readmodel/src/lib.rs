//! The read model's contract, owned once (see `README.md`, included below):
//! what the projector writes and the query service reads.
#![doc = include_str!("../README.md")]

pub mod changes;
pub mod checkpoint;
pub mod counts;
pub mod error;
pub mod generation;
pub mod listener;
pub mod migrate;
pub mod notice;

pub use changes::CHANGES;
pub use checkpoint::{COUNTS, TASKS, TasksCheckpoint};
pub use error::ReadModelError;
pub use migrate::{MIGRATOR, migrate};
