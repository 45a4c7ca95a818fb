//! `tasklog-command`, the write side of Tasklog: accounts and tokens, and task
//! commands decided by the domain and appended to the event log, and the
//! webhook subscriptions (whose deliveries the projector sends).

pub mod accounts;
pub mod event_store;
pub mod migrations;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod tasks;
mod validation;
pub mod webhooks;

pub use settings::Settings;
pub use startup::Application;
pub use tasklog_platform::server::StartError;
