//! The one place that turns settings into the event store the service writes to.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tasklog_events::EventStore;
use tasklog_events::sealing::{self, KeyEncryptionKey};
use tasklog_events::store::postgres::GroupCommitSettings;
use tasklog_events::store::{OpenError, open_when_ready};
use tasklog_platform::data_key::DataKeyEncryptionKey;

/// Opens the log `EVENT_STORE_URL` names (unset: the Postgres log in the
/// service's own database, migrated here, waiting while Postgres is down,
/// its appends committed in groups as `group_commit` says).
///
/// # Errors
/// When `EVENT_STORE_URL` names a store this build cannot open.
pub async fn open_event_store(
    url: Option<&SecretString>,
    pool: &PgPool,
    data_key: &DataKeyEncryptionKey,
    group_commit: GroupCommitSettings,
) -> Result<Arc<dyn EventStore>, OpenError> {
    let store = open_when_ready(
        url.map(ExposeSecret::expose_secret),
        pool.clone(),
        group_commit,
    )
    .await?;
    Ok(sealing::sealed(
        store,
        pool.clone(),
        KeyEncryptionKey::new(data_key.0),
    ))
}
