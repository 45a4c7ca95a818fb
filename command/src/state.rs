//! What every handler can reach: the database, the event log, accounts,
//! the token verifier and webhook subscriptions.

use std::sync::Arc;

use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_platform::auth::TokenVerifier;
use tasklog_platform::state::{HoldsVerifier, Shared};

use crate::accounts::Accounts;
use crate::tasks::RecentTasks;
use crate::webhooks::Webhooks;

/// The services behind one reference count (`tasklog_platform::state`).
pub type AppState = Shared<Services>;

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
impl HoldsVerifier for Services {
    fn verifier(&self) -> &Arc<TokenVerifier> {
        &self.verifier
    }
}
