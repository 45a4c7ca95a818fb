//! Erasing an account (`DELETE /v1/auth/me`): the account row, its data key
//! and sessions are deleted with an erasure record in one transaction; then
//! `UserErased` is appended to the log, which the projections fold into
//! removing every row, change and count of the user. Once the key is gone,
//! every sealed payload of theirs in the log (and its backups) is noise.
//!
//! The order matters: the key goes first, so no projection can read the
//! user's text after the erasure event; the record makes the event certain
//! to follow even when the service dies in between (`log_pending` at start,
//! and any retry of the request).

use chrono::Utc;
use sqlx::{PgConnection, PgPool};
use tasklog_events::domain::UserId;
use tasklog_events::erasure::{self, UserErased};
use tasklog_events::{EventStore, ExpectedVersion, StoreError};
use uuid::Uuid;

use super::{AccountError, users};

/// Records the erasure of `user` (kept if already there).
async fn record(conn: &mut PgConnection, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO accounts.erasures (user_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(user)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether an erasure of `user` is recorded and its event not yet logged.
async fn pending(conn: &mut PgConnection, user: Uuid) -> Result<bool, sqlx::Error> {
    let pending: Option<bool> =
        sqlx::query_scalar("SELECT logged_at IS NULL FROM accounts.erasures WHERE user_id = $1")
            .bind(user)
            .fetch_optional(conn)
            .await?;
    Ok(pending == Some(true))
}

async fn mark_logged(pool: &PgPool, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts.erasures SET logged_at = now() WHERE user_id = $1")
        .bind(user)
        .execute(pool)
        .await?;
    Ok(())
}

/// Appends `user`'s `UserErased` (once: a second append finds the stream)
/// and returns its log position.
async fn log(
    store: &dyn EventStore,
    user: Uuid,
    request_id: Option<String>,
) -> Result<u64, StoreError> {
    let event = UserErased {
        user_id: UserId(user),
        occurred_at: Utc::now(),
    }
    .to_new_event(Uuid::now_v7(), request_id);
    let stream = erasure::stream_id(UserId(user));
    match store
        .append(&stream, ExpectedVersion::NoStream, vec![event])
        .await
    {
        Ok(outcome) => Ok(outcome.position.commit),
        Err(StoreError::Conflict { .. }) => {
            let logged = store.read_stream(&stream, 0, None).await?;
            Ok(logged.first().map_or(0, |e| e.position.commit))
        }
        Err(e) => Err(e),
    }
}

/// Erases `user`: the account, its key and sessions now, the log's event
/// right after. Returns the event's log position.
///
/// # Errors
/// `UnknownUser` when there is no such account and no erasure of it under
/// way; `Store` when the log is down (the erasure is recorded: a retry, or
/// the next start of the service, logs it).
pub async fn erase(
    pool: &PgPool,
    store: &dyn EventStore,
    user: Uuid,
    request_id: Option<String>,
) -> Result<u64, AccountError> {
    let mut tx = pool.begin().await?;
    let existed = users::delete(&mut tx, user).await?;
    sqlx::query("DELETE FROM accounts.idempotency_keys WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    if existed {
        record(&mut tx, user).await?;
    } else if !pending(&mut tx, user).await? {
        // Never was, or erased and logged already: the token outlived it.
        return Err(AccountError::UnknownUser);
    }
    tx.commit().await?;
    let position = log(store, user, request_id).await?;
    mark_logged(pool, user).await?;
    tracing::info!(user_id = %user, position, "account erased");
    Ok(position)
}

/// Logs the erasures whose event did not reach the log (the service died,
/// or the log was down, in between).
///
/// # Errors
/// When the database or the log fails; what was logged stays logged.
pub async fn log_pending(pool: &PgPool, store: &dyn EventStore) -> Result<usize, AccountError> {
    let pending: Vec<Uuid> = sqlx::query_scalar(
        "SELECT user_id FROM accounts.erasures WHERE logged_at IS NULL ORDER BY requested_at",
    )
    .fetch_all(pool)
    .await?;
    for user in &pending {
        log(store, *user, None).await?;
        mark_logged(pool, *user).await?;
    }
    Ok(pending.len())
}
