//! What every handler can reach: the read model, the log, Redis counts, the
//! token verifier, the cursor key, the projection's progress, the log's head,
//! the pages kept in memory, and the change feed's live streams.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_platform::auth::TokenVerifier;
use tasklog_platform::redis::RedisHandle;

use tokio_util::sync::CancellationToken;

use crate::changes::{ChangeHub, StreamSettings, StreamSlots};
use crate::listing::CursorKey;
use crate::log_head::LogHead;
use crate::page_cache::PageCache;
use crate::projection::ProjectionWatch;

/// Cloned for every request (axum's `State` and each extractor that reads
/// it), so it is one reference count, not one per field: the per-field
/// clones and drops were 4% of the service's CPU on uncached list pages.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl From<Services> for AppState {
    fn from(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub db: PgPool,
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
impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
