//! The log's head as far as this process knows it, to tell a position a
//! write produced from one no write has produced yet. A client only gets a
//! position from a committed write, so anything beyond the head is a made-up
//! value: it is refused at once instead of waiting out the timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tasklog_events::{EventStore, StoreError};

pub struct LogHead {
    store: Arc<dyn EventStore>,
    /// A lower bound of the head: the log only grows, so a position at or
    /// below one seen before needs no second look.
    known: AtomicU64,
}

impl LogHead {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            known: AtomicU64::new(0),
        }
    }

    /// Whether some write has already produced `position`. Asks the log (one
    /// indexed read) only when `position` is beyond the head seen so far.
    ///
    /// # Errors
    /// When the log cannot be reached.
    pub async fn has_reached(&self, position: u64) -> Result<bool, StoreError> {
        if position <= self.known.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let head = self.store.head().await?.map_or(0, |p| p.commit);
        self.known.fetch_max(head, Ordering::Relaxed);
        Ok(position <= head)
    }
}
