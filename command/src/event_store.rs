//! The one place that turns settings into the event store the service writes to.

use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::store::postgres::PgEventStore;
use tasklog_platform::database::retry_until_ok;

#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    #[error(
        "EVENT_STORE_URL: the EventStoreDB adapter is not built yet; unset it to use the Postgres log"
    )]
    NotBuiltYet,
}

/// Opens the log: unset `EVENT_STORE_URL` means the Postgres log in the
/// service's own database (migrated here, waiting while Postgres is down).
///
/// When the adapter factory `tasklog_events::store::open` lands, this body
/// becomes a call to it; nothing else in the service changes.
///
/// # Errors
/// When `EVENT_STORE_URL` names a store this build cannot open.
pub async fn open_event_store(
    url: Option<&SecretString>,
    pool: &PgPool,
) -> Result<Arc<dyn EventStore>, OpenStoreError> {
    match url {
        Some(_) => Err(OpenStoreError::NotBuiltYet),
        None => {
            let store = PgEventStore::new(pool.clone());
            retry_until_ok("migrating the event log", || store.migrate()).await;
            Ok(Arc::new(store))
        }
    }
}
