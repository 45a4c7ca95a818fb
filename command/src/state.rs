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

#[derive(Clone)]
pub struct AppState {
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
