//! The projector: folds the event log into the Postgres read model
//! (`readmodel.tasks`), the change feed (`readmodel.changes`) and the Redis counts, each with its own checkpoint and
//! exactly-once effects; delivers webhooks from the change feed, at least
//! once; plus rebuild, verify, status and the log copier.

pub mod catch_up;
pub mod changes;
pub mod cli;
pub mod counts;
pub mod error;
pub mod fold;
pub mod lag;
pub mod lease;
pub mod owners;
pub mod progress;
pub mod projection;
pub mod rebuild;
pub mod rows;
pub mod runner;
pub mod settings;
pub mod startup;
pub mod status;
pub mod tasks;
pub mod verify;
pub mod webhooks;

pub use catch_up::catch_up;
pub use error::ProjectorError;
pub use settings::Settings;
pub use startup::Application;
pub use tasklog_readmodel::migrate;
