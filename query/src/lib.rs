//! `tasklog-query`, the read side of Tasklog: task lists, search, detail,
//! history, as-of, stats and the change feed (pages and SSE), from the projector's read models, the Redis
//! counts and the event log. It keeps no state of its own beyond a cache
//! that the projector's notices keep exact, so any number of instances can
//! serve behind a load balancer.

pub mod changes;
pub mod consistency;
pub mod listing;
pub mod log_head;
pub mod page_cache;
pub mod projection;
pub mod read_model;
pub mod replicas;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod timeline;

pub use settings::Settings;
pub use startup::Application;
pub use tasklog_platform::server::StartError;
