//! Changes out of the log for the caller: the feed's parameters, the
//! listener that wakes live streams, the per-user stream limit, and one SSE
//! stream's loop. The SQL is in `read_model::changes`.

pub mod hub;
pub mod params;
pub mod slots;
pub mod stream;

pub use hub::ChangeHub;
pub use params::{FeedQuery, parse_after};
pub use slots::StreamSlots;
pub use stream::{StreamSettings, StreamTask};
