//! What every handler can reach: the database, the event log, accounts,
//! the token verifier and webhook subscriptions.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_platform::auth::TokenVerifier;

use crate::accounts::Accounts;
use crate::tasks::RecentTasks;
use crate::webhooks::Webhooks;

/// Cloned for every request (axum's `State` and each extractor that reads
/// it), so it is one reference count, not one per field.
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
    pub accounts: Accounts,
    pub verifier: Arc<TokenVerifier>,
    pub webhooks: Webhooks,
    /// States of recently written tasks (`tasks/recent.rs`).
    pub recent: Arc<RecentTasks>,
}

/// Lets the platform's `AuthUser` extractor find the verifier.
impl FromRef<AppState> for Arc<TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}
