//! What every handler can reach: the read model, the log, Redis counts, the
//! token verifier, the cursor key, the projection's progress, the log's head,
//! the pages kept in memory, and the change feed's live streams.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_platform::auth::TokenVerifier;
use tasklog_platform::read_pool::ReadPool;
use tasklog_platform::redis::RedisHandle;
use tasklog_platform::state::{HoldsVerifier, Shared};

use tokio_util::sync::CancellationToken;

use crate::changes::{ChangeHub, StreamSettings, StreamSlots};
use crate::listing::CursorKey;
use crate::log_head::LogHead;
use crate::page_cache::PageCache;
use crate::projection::ProjectionWatch;

/// The services behind one reference count (`tasklog_platform::state`).
pub type AppState = Shared<Services>;

pub struct Services {
    /// The read model's primary for what is not a request's read: LISTEN's
    /// catch-up, checkpoints, readiness; and, on a one-server install, the log.
    pub db: PgPool,
    /// The read model's primary for requests' reads (`read_pool`: no round
    /// trip when a connection goes back).
    pub reads: ReadPool,
    pub store: Arc<dyn EventStore>,
    pub redis: RedisHandle,
    pub verifier: Arc<TokenVerifier>,
    pub cursor_key: Arc<CursorKey>,
    pub projection: ProjectionWatch,
    pub log_head: Arc<LogHead>,
    pub pages: Arc<PageCache>,
    pub min_position_timeout: Duration,
    /// Wakes live streams; the change feed's position.
    pub changes: ChangeHub,
    pub streams: Streams,
}

/// What SSE streams share: the per-user limit, their settings, and the
/// token that ends them all when the service stops.
#[derive(Clone)]
pub struct Streams {
    pub slots: StreamSlots,
    pub settings: StreamSettings,
    pub stop: CancellationToken,
}

/// Lets the platform's `AuthUser` extractor find the verifier.
impl HoldsVerifier for Services {
    fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }
}
