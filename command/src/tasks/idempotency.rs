//! `Idempotency-Key` on task creation (and restores and batches), kept in Postgres so it survives
//! restarts. A key is claimed (fixing the task id) before anything is
//! appended; the event id is derived from (user, key), so a second run of a
//! half-finished request appends nothing new and gets the original result.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tasklog_events::domain::{TaskId, UserId};
use tasklog_platform::FieldError;
use uuid::Uuid;

use super::Ack;

/// Namespace of event ids derived from idempotency keys (a fixed random UUID).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a4e_9b7d_4c38_a5e2_1d0b_8f3c_7a91);

/// A client's key: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_CHARS: usize = 255;
    pub const HEADER: &'static str = "Idempotency-Key";

    /// # Errors
    /// When empty, longer than 255 or not visible ASCII.
    pub fn parse(raw: &[u8]) -> Result<Self, FieldError> {
        let bad = |m: &str| FieldError::new(Self::HEADER, m);
        let text = std::str::from_utf8(raw).map_err(|_| bad("must be visible ASCII"))?;
        let key = text.trim();
        if key.is_empty() {
            return Err(bad("must not be empty"));
        }
        if key.len() > Self::MAX_CHARS {
            return Err(bad("must be at most 255 characters"));
        }
        if !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad("must be visible ASCII"));
        }
        Ok(Self(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the first event a request with this key appends: the same
    /// on every retry, different for every user.
    pub fn event_id(&self, user: UserId) -> Uuid {
        let mut name = user.0.as_bytes().to_vec();
        name.extend_from_slice(self.0.as_bytes());
        Uuid::new_v5(&EVENT_ID_NAMESPACE, &name)
    }
}

/// SHA-256 of the body as parsed and re-serialised: whitespace and key order
/// do not make two requests different, a changed value does.
pub fn body_hash<T: Serialize>(body: &T) -> Vec<u8> {
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    Sha256::digest(&canonical).to_vec()
}

/// What a claimed key says to do. `R` is the kept response: an `Ack`, or a
/// batch's results.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim<R = Ack> {
    /// First use, or a retry whose first run did not finish: append for this task.
    Proceed(TaskId),
    /// The first run finished: answer as it did.
    Replay(R),
    /// The key was used with another body.
    Mismatch,
}

#[derive(sqlx::FromRow)]
struct Existing {
    body_hash: Vec<u8>,
    task_id: Uuid,
    response: Option<sqlx::types::Json<serde_json::Value>>,
}

/// Claims `key` for `fresh` (or finds who claimed it first).
///
/// # Errors
/// When the database fails.
#[tracing::instrument(skip_all)]
pub async fn claim<R: DeserializeOwned>(
    pool: &PgPool,
    user: UserId,
    key: &IdempotencyKey,
    body_hash: &[u8],
    fresh: TaskId,
) -> Result<Claim<R>, sqlx::Error> {
    // Two racing requests: the second INSERT waits for the first to commit,
    // does nothing, and then reads the first one's row.
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO accounts.idempotency_keys (user_id, key, body_hash, task_id) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key) DO NOTHING RETURNING task_id",
    )
    .bind(user.0)
    .bind(key.as_str())
    .bind(body_hash)
    .bind(fresh.0)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = inserted {
        return Ok(Claim::Proceed(TaskId(id)));
    }
    let existing = sqlx::query_as::<_, Existing>(
        "SELECT body_hash, task_id, response FROM accounts.idempotency_keys \
         WHERE user_id = $1 AND key = $2",
    )
    .bind(user.0)
    .bind(key.as_str())
    .fetch_one(pool)
    .await?;
    Ok(if existing.body_hash != body_hash {
        Claim::Mismatch
    } else if let Some(response) = existing.response {
        // The same body hash means the same kind of request stored it.
        Claim::Replay(
            serde_json::from_value(response.0).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        )
    } else {
        Claim::Proceed(TaskId(existing.task_id))
    })
}

/// Stores the response of a finished request for later replays.
///
/// # Errors
/// When the database fails.
#[tracing::instrument(skip_all)]
pub async fn complete<R: Serialize + Sync>(
    pool: &PgPool,
    user: UserId,
    key: &IdempotencyKey,
    response: &R,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts.idempotency_keys SET response = $3 WHERE user_id = $1 AND key = $2",
    )
    .bind(user.0)
    .bind(key.as_str())
    .bind(sqlx::types::Json(response))
    .execute(pool)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert_eq!(
            IdempotencyKey::parse(b" abc-123 ").unwrap().as_str(),
            "abc-123"
        );
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 256]).is_err());
        assert!(IdempotencyKey::parse(b"").is_err());
        assert!(IdempotencyKey::parse("clé".as_bytes()).is_err());
        assert!(IdempotencyKey::parse(b"a\x01b").is_err());
    }

    #[test]
    fn event_ids_are_stable_per_user_and_key() {
        let key = IdempotencyKey::parse(b"k1").unwrap();
        let ann = UserId(Uuid::now_v7());
        let bob = UserId(Uuid::now_v7());
        assert_eq!(key.event_id(ann), key.event_id(ann));
        assert_ne!(key.event_id(ann), key.event_id(bob));
        assert_ne!(
            key.event_id(ann),
            IdempotencyKey::parse(b"k2").unwrap().event_id(ann)
        );
    }
}
