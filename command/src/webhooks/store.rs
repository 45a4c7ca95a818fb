//! The only SQL of `accounts.webhooks` and `accounts.webhook_deliveries`
//! (migration 0004): the subscriber's side (create, list, delete, delivery
//! log, replay; always scoped to the owner, so another user's subscription
//! is simply absent) and the delivery worker's (what is due, and one
//! attempt's record with the checkpoint it moves, in one transaction).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use tasklog_events::sealing::{KeyEncryptionKey, SealError};
use utoipa::ToSchema;
use uuid::Uuid;

/// A subscription as its owner sees it (`Webhook` in the API).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Webhook)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    /// The event types sent; empty means every type.
    pub types: Vec<String>,
    pub description: Option<String>,
    /// `active`, or `failing`: retries ran out and nothing is sent until a replay.
    #[schema(example = "active")]
    pub status: String,
    /// Every change up to this log position has been delivered (or was
    /// before the subscription, or skipped by a replay).
    pub position: u64,
    pub created_at: DateTime<Utc>,
    /// When retries ran out (status `failing`).
    pub failed_at: Option<DateTime<Utc>>,
    /// The last failed attempt's error, until a delivery succeeds.
    pub last_error: Option<String>,
    /// After a secret rotation: until when the replaced secret still signs
    /// each delivery beside the new one (null when only one secret signs).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

type SubscriptionRow = (
    Uuid,
    String,
    Vec<String>,
    Option<String>,
    String,
    i64,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
);

const SUBSCRIPTION: &str = "id, url, types, description, status, commit_position, created_at, \
                            failed_at, last_error, \
                            CASE WHEN previous_secret_expires_at > now() \
                                 THEN previous_secret_expires_at END";

/// The secret a rotation replaced, while it still signs.
const PREVIOUS_SECRET: &str =
    "CASE WHEN previous_secret_expires_at > now() THEN previous_secret END";

#[allow(clippy::cast_sign_loss)] // positions are stored as their u64 bit patterns
fn subscription(row: SubscriptionRow) -> Subscription {
    let (
        id,
        url,
        types,
        description,
        status,
        commit,
        created_at,
        failed_at,
        last_error,
        previous_secret_expires_at,
    ) = row;
    Subscription {
        id,
        url,
        types,
        description,
        status,
        position: commit as u64,
        created_at,
        failed_at,
        last_error,
        previous_secret_expires_at,
    }
}

/// What `create` stores.
pub struct NewSubscription<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: &'a str,
    pub types: &'a [String],
    pub description: Option<&'a str>,
    /// Sealed (`KeyEncryptionKey::seal_secret`, bound to `id`).
    pub secret: &'a str,
    /// The log head at creation: changes after it are sent.
    pub start: (i64, i64),
}

/// Stores a subscription unless the owner already has `max`; `None` then.
///
/// # Errors
/// When Postgres fails.
pub async fn create(
    db: &PgPool,
    new: &NewSubscription<'_>,
    max: i64,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
        "INSERT INTO accounts.webhooks (id, user_id, url, types, description, secret, \
             commit_position, prepare_position) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
         WHERE (SELECT count(*) FROM accounts.webhooks WHERE user_id = $2) < $9 \
         RETURNING {SUBSCRIPTION}"
    ))
    .bind(new.id)
    .bind(new.user_id)
    .bind(new.url)
    .bind(new.types)
    .bind(new.description)
    .bind(new.secret)
    .bind(new.start.0)
    .bind(new.start.1)
    .bind(max)
    .fetch_optional(db)
    .await?;
    Ok(row.map(subscription))
}

/// The owner's subscriptions, oldest first.
///
/// # Errors
/// When Postgres fails.
pub async fn list(db: &PgPool, user: Uuid) -> Result<Vec<Subscription>, sqlx::Error> {
    let rows: Vec<SubscriptionRow> = sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION} FROM accounts.webhooks WHERE user_id = $1 \
         ORDER BY created_at, id"
    ))
    .bind(user)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(subscription).collect())
}

/// # Errors
/// When Postgres fails.
pub async fn get(db: &PgPool, user: Uuid, id: Uuid) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION} FROM accounts.webhooks WHERE user_id = $1 AND id = $2"
    ))
    .bind(user)
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(subscription))
}

/// Makes `secret` the one that signs; the one it replaces signs beside it
/// until `keep_previous_until` (`None`: it stops at once). `None` when there
/// is no such subscription of the owner's.
///
/// # Errors
/// When Postgres fails.
pub async fn rotate_secret(
    db: &PgPool,
    user: Uuid,
    id: Uuid,
    secret: &str,
    keep_previous_until: Option<DateTime<Utc>>,
) -> Result<Option<Subscription>, sqlx::Error> {
    // In SET, `secret` is the row's value before this update.
    let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
        "UPDATE accounts.webhooks \
         SET previous_secret = CASE WHEN $4::timestamptz IS NULL THEN NULL ELSE secret END, \
             previous_secret_expires_at = $4, \
             secret = $3 \
         WHERE user_id = $1 AND id = $2 \
         RETURNING {SUBSCRIPTION}"
    ))
    .bind(user)
    .bind(id)
    .bind(secret)
    .bind(keep_previous_until)
    .fetch_optional(db)
    .await?;
    Ok(row.map(subscription))
}

/// Deletes it and its delivery log; false when there was none of the owner's.
///
/// # Errors
/// When Postgres fails.
pub async fn delete(db: &PgPool, user: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM accounts.webhooks WHERE user_id = $1 AND id = $2")
        .bind(user)
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sends everything after `after` again (a commit position: every change of
/// that commit counts as sent), and makes a failing subscription active. A
/// new epoch fences off the worker's write for a delivery in flight, and
/// gives the replayed changes new delivery ids.
///
/// # Errors
/// When Postgres fails.
pub async fn replay(
    db: &PgPool,
    user: Uuid,
    id: Uuid,
    after: i64,
) -> Result<Option<Subscription>, sqlx::Error> {
    let row: Option<SubscriptionRow> = sqlx::query_as(&format!(
        "UPDATE accounts.webhooks SET commit_position = $3, prepare_position = $4, \
             epoch = epoch + 1, status = 'active', attempts = 0, retry_since = NULL, \
             next_attempt_at = NULL, failed_at = NULL, last_error = NULL \
         WHERE user_id = $1 AND id = $2 RETURNING {SUBSCRIPTION}"
    ))
    .bind(user)
    .bind(id)
    .bind(after)
    .bind(i64::MAX)
    .fetch_optional(db)
    .await?;
    Ok(row.map(subscription))
}

/// One attempt in the delivery log (`DeliveryAttempt` in the API).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DeliveryAttempt)]
pub struct Attempt {
    /// The `Tasklog-Delivery` header: the same on every attempt of a change.
    pub delivery_id: Uuid,
    /// The log position of the change.
    pub position: u64,
    /// 1 for the first attempt of this delivery, 2 for its first retry, ...
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's status code; null when no response came.
    pub status_code: Option<u16>,
    pub latency_ms: i32,
    /// Why it failed (a non-2xx status, a timeout, a refused address, ...).
    pub error: Option<String>,
    /// The start of what the receiver answered (at most 1 KiB).
    pub response_body: Option<String>,
}

type AttemptRow = (
    i64,
    Uuid,
    i64,
    i32,
    DateTime<Utc>,
    Option<i16>,
    i32,
    Option<String>,
    Option<String>,
);

/// A page of the delivery log, newest first, and the cursor of the next.
pub struct AttemptPage {
    pub attempts: Vec<Attempt>,
    pub next_cursor: Option<i64>,
}

/// The owner's delivery log of `id`, newest first, from before `cursor`;
/// `None` when the subscription is not the owner's.
///
/// # Errors
/// When Postgres fails.
#[allow(clippy::cast_sign_loss)]
pub async fn attempts(
    db: &PgPool,
    user: Uuid,
    id: Uuid,
    cursor: Option<i64>,
    limit: u32,
) -> Result<Option<AttemptPage>, sqlx::Error> {
    if get(db, user, id).await?.is_none() {
        return Ok(None);
    }
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT id, delivery_id, commit_position, attempt, attempted_at, status_code, \
             latency_ms, error, response_body \
         FROM accounts.webhook_deliveries \
         WHERE webhook_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(id)
    .bind(cursor.unwrap_or(i64::MAX))
    .bind(i64::from(limit) + 1)
    .fetch_all(db)
    .await?;
    let more = rows.len() > limit as usize;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = if more { rows.last().map(|r| r.0) } else { None };
    let attempts = rows
        .iter()
        .cloned()
        .map(
            |(_, delivery_id, commit, attempt, attempted_at, status, latency_ms, error, body)| {
                Attempt {
                    delivery_id,
                    position: commit as u64,
                    attempt,
                    attempted_at,
                    status_code: status.and_then(|s| u16::try_from(s).ok()),
                    latency_ms,
                    error,
                    response_body: body,
                }
            },
        )
        .collect();
    Ok(Some(AttemptPage {
        attempts,
        next_cursor,
    }))
}

/// A subscription as the delivery worker needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Target {
    pub id: Uuid,
    pub owner: Uuid,
    pub url: String,
    pub types: Vec<String>,
    /// As stored: sealed (see `signing_secrets`).
    pub secret: String,
    /// The secret a rotation replaced, while it still signs beside `secret`;
    /// as stored.
    pub previous_secret: Option<String>,
    /// The checkpoint: the last change delivered.
    pub commit: i64,
    pub prepare: i64,
    pub epoch: i32,
    /// Failed attempts of the change after the checkpoint, and since when.
    pub attempts: i32,
    pub retry_since: Option<DateTime<Utc>>,
}

impl Target {
    /// The secrets that sign its deliveries, opened: the current one first,
    /// then the one a rotation replaced while it still signs.
    ///
    /// # Errors
    /// When a stored secret does not open under `kek` (another
    /// `DATA_KEY_ENCRYPTION_KEY` than the one that sealed it, or altered).
    pub fn signing_secrets(&self, kek: &KeyEncryptionKey) -> Result<Vec<String>, SealError> {
        std::iter::once(self.secret.as_str())
            .chain(self.previous_secret.as_deref())
            .map(|stored| kek.open_secret(self.id, stored))
            .collect()
    }
}

/// Seals every secret still stored readable (rows written before secrets
/// were sealed); returns how many rows it changed. Each row is replaced only
/// if it still holds what was read, so instances racing here do no harm.
///
/// # Errors
/// When Postgres fails.
pub async fn seal_stored_secrets(db: &PgPool, kek: &KeyEncryptionKey) -> Result<u64, sqlx::Error> {
    let plain: Vec<(Uuid, String, Option<String>)> = sqlx::query_as(
        "SELECT id, secret, previous_secret FROM accounts.webhooks \
         WHERE secret NOT LIKE 'sealed:%' OR previous_secret NOT LIKE 'sealed:%'",
    )
    .fetch_all(db)
    .await?;
    let mut sealed = 0;
    for (id, secret, previous) in plain {
        let seal = |stored: &str| {
            if KeyEncryptionKey::is_sealed_secret(stored) {
                stored.to_owned()
            } else {
                kek.seal_secret(id, stored)
            }
        };
        let done = sqlx::query(
            "UPDATE accounts.webhooks SET secret = $2, previous_secret = $3 \
             WHERE id = $1 AND secret = $4 AND previous_secret IS NOT DISTINCT FROM $5",
        )
        .bind(id)
        .bind(seal(&secret))
        .bind(previous.as_deref().map(seal))
        .bind(&secret)
        .bind(&previous)
        .execute(db)
        .await?;
        sealed += done.rows_affected();
    }
    Ok(sealed)
}

/// Active subscriptions with nothing scheduled later than now, except `busy`
/// (those a worker is delivering already), by id after `after`: a worker
/// pages through them round after round, so none is starved however many
/// there are.
///
/// # Errors
/// When Postgres fails (or migration 0004 has not run yet: the command
/// service applies it).
pub async fn due(
    db: &PgPool,
    busy: &[Uuid],
    after: Uuid,
    limit: i64,
) -> Result<Vec<Target>, sqlx::Error> {
    sqlx::query_as::<_, Target>(&format!(
        "SELECT id, user_id AS owner, url, types, secret, {PREVIOUS_SECRET} AS previous_secret, \
             commit_position AS commit, prepare_position AS prepare, epoch, attempts, \
             retry_since \
         FROM accounts.webhooks \
         WHERE status = 'active' AND (next_attempt_at IS NULL OR next_attempt_at <= now()) \
           AND id <> ALL($1) AND id > $3 \
         ORDER BY id LIMIT $2"
    ))
    .bind(busy)
    .bind(limit)
    .bind(after)
    .fetch_all(db)
    .await
}

/// How long the delivery log keeps an attempt.
pub const LOG_RETENTION_DAYS: i32 = 30;

/// Deletes attempts older than `LOG_RETENTION_DAYS`, at most `batch` of
/// them; returns how many went.
///
/// # Errors
/// When Postgres fails.
pub async fn prune(db: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM accounts.webhook_deliveries WHERE (webhook_id, id) IN ( \
             SELECT webhook_id, id FROM accounts.webhook_deliveries \
             WHERE attempted_at < now() - make_interval(days => $1) LIMIT $2)",
    )
    .bind(LOG_RETENTION_DAYS)
    .bind(batch)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// One attempt, as the worker records it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: Uuid,
    pub commit: i64,
    pub prepare: i64,
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// What an attempt did to the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: the checkpoint moves past the change.
    Delivered,
    /// Failed: try again at this time.
    Retry(DateTime<Utc>),
    /// Failed and out of retry time: paused until a replay.
    Failing,
}

/// Logs `attempt` and applies `outcome`, in one transaction. False when the
/// subscription was deleted or replayed meanwhile (its epoch moved): the
/// worker then drops what it was doing and starts again from the stored state.
///
/// # Errors
/// When Postgres fails.
pub async fn record(
    db: &PgPool,
    target: &Target,
    attempt: &AttemptRecord,
    outcome: Outcome,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    // No wait for the WAL flush: a commit lost in a Postgres crash only
    // sends its change again, under the same delivery id, which
    // at-least-once allows; the wait would bound one webhook's deliveries
    // to the disk's flush rate.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO accounts.webhook_deliveries (webhook_id, delivery_id, commit_position, \
             attempt, attempted_at, status_code, latency_ms, error, response_body) \
         SELECT id, $2, $3, $4, $5, $6, $7, $8, $9 FROM accounts.webhooks WHERE id = $1",
    )
    .bind(target.id)
    .bind(attempt.delivery_id)
    .bind(attempt.commit)
    .bind(attempt.attempt)
    .bind(attempt.attempted_at)
    .bind(attempt.status_code.and_then(|s| i16::try_from(s).ok()))
    .bind(attempt.latency_ms)
    .bind(attempt.error.as_deref())
    .bind(attempt.response_body.as_deref())
    .execute(&mut *tx)
    .await?;
    let moved = match outcome {
        Outcome::Delivered => sqlx::query(
            "UPDATE accounts.webhooks SET commit_position = $3, prepare_position = $4, \
                 attempts = 0, retry_since = NULL, next_attempt_at = NULL, last_error = NULL \
             WHERE id = $1 AND epoch = $2",
        )
        .bind(target.id)
        .bind(target.epoch)
        .bind(attempt.commit)
        .bind(attempt.prepare),
        Outcome::Retry(at) => sqlx::query(
            "UPDATE accounts.webhooks SET attempts = $3, \
                 retry_since = coalesce(retry_since, $4), next_attempt_at = $5, last_error = $6 \
             WHERE id = $1 AND epoch = $2",
        )
        .bind(target.id)
        .bind(target.epoch)
        .bind(attempt.attempt)
        .bind(attempt.attempted_at)
        .bind(at)
        .bind(attempt.error.as_deref()),
        Outcome::Failing => sqlx::query(
            "UPDATE accounts.webhooks SET attempts = $3, status = 'failing', \
                 retry_since = coalesce(retry_since, $4), next_attempt_at = NULL, \
                 failed_at = now(), last_error = $5 \
             WHERE id = $1 AND epoch = $2",
        )
        .bind(target.id)
        .bind(target.epoch)
        .bind(attempt.attempt)
        .bind(attempt.attempted_at)
        .bind(attempt.error.as_deref()),
    }
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    tx.commit().await?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kek: &KeyEncryptionKey, previous: Option<&str>) -> Target {
        let id = Uuid::now_v7();
        Target {
            id,
            owner: Uuid::now_v7(),
            url: "https://hooks.example.com/".into(),
            types: vec![],
            secret: kek.seal_secret(id, "whsec_new"),
            previous_secret: previous.map(|p| kek.seal_secret(id, p)),
            commit: 0,
            prepare: 0,
            epoch: 0,
            attempts: 0,
            retry_since: None,
        }
    }

    #[test]
    fn the_signing_secrets_open_current_first_and_only_under_their_key() {
        let kek = KeyEncryptionKey::new([1; 32]);
        assert_eq!(
            target(&kek, Some("whsec_old")).signing_secrets(&kek),
            Ok(vec!["whsec_new".to_owned(), "whsec_old".to_owned()])
        );
        assert_eq!(
            target(&kek, None).signing_secrets(&kek),
            Ok(vec!["whsec_new".to_owned()])
        );
        assert_eq!(
            target(&kek, None).signing_secrets(&KeyEncryptionKey::new([2; 32])),
            Err(SealError::Unauthentic)
        );
    }
}
