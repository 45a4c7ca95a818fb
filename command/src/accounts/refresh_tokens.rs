//! Refresh tokens: random 256-bit values handed out once and stored only as
//! SHA-256, rotated on every use, grouped in families so that reuse of a
//! rotated token (someone holds a stolen copy) ends the whole session.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Why a presented refresh token was refused; all answer the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    Revoked,
    /// Already exchanged once: the family is now revoked.
    Reused,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated { user_id: Uuid, token: String },
    Refused(Refusal),
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn expiry(ttl: Duration) -> DateTime<Utc> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    Utc::now()
        .checked_add_signed(ttl)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A token never outlives its family: its expiry is the earlier of the two.
async fn insert_token(
    conn: &mut PgConnection,
    family_id: Uuid,
    ttl: Duration,
    family_expires: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO accounts.refresh_tokens (token_hash, family_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(digest(&token))
    .bind(family_id)
    .bind(expiry(ttl).min(family_expires))
    .execute(conn)
    .await?;
    Ok(token)
}

/// How long a session may last and how long each of its tokens.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// One refresh token, from its issue.
    pub token: Duration,
    /// The whole family, from its login; rotation never extends it.
    pub session: Duration,
}

/// The User-Agent kept with a session: at most this many characters.
pub const USER_AGENT_MAX_CHARS: usize = 256;

/// Starts a session: a new family and its first token (returned in clear,
/// the only time it exists outside the client).
///
/// # Errors
/// When the database fails.
pub async fn start_family(
    conn: &mut PgConnection,
    user_id: Uuid,
    lifetimes: Lifetimes,
    user_agent: Option<&str>,
) -> Result<String, sqlx::Error> {
    let family_id = Uuid::now_v7();
    let family_expires = expiry(lifetimes.session);
    // Postgres refuses NUL in text; the rest of the header is kept as sent.
    let user_agent = user_agent.map(|ua| {
        ua.chars()
            .filter(|c| *c != '\0')
            .take(USER_AGENT_MAX_CHARS)
            .collect::<String>()
    });
    sqlx::query(
        "INSERT INTO accounts.token_families (id, user_id, expires_at, user_agent) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(family_id)
    .bind(user_id)
    .bind(family_expires)
    .bind(user_agent)
    .execute(&mut *conn)
    .await?;
    insert_token(conn, family_id, lifetimes.token, family_expires).await
}

#[derive(sqlx::FromRow)]
struct Presented {
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    family_expires: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// Exchanges a token for a new one of the same family.
///
/// # Errors
/// When the database fails; a refused token is `Ok(Refused)`.
pub async fn rotate(pool: &PgPool, token: &str, ttl: Duration) -> Result<Rotation, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Locking the family serialises every exchange within one session, so
    // two racing uses of one token cannot both succeed: the second is reuse.
    let presented = sqlx::query_as::<_, Presented>(
        "SELECT t.family_id, f.user_id, t.expires_at, f.expires_at AS family_expires, \
         t.rotated_at, f.revoked_at \
         FROM accounts.refresh_tokens t JOIN accounts.token_families f ON f.id = t.family_id \
         WHERE t.token_hash = $1 FOR UPDATE OF f, t",
    )
    .bind(digest(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(p) = presented else {
        return Ok(Rotation::Refused(Refusal::Unknown));
    };
    if p.revoked_at.is_some() {
        return Ok(Rotation::Refused(Refusal::Revoked));
    }
    if p.rotated_at.is_some() {
        revoke(&mut tx, p.family_id, "reuse of a rotated refresh token").await?;
        tx.commit().await?;
        tracing::warn!(family_id = %p.family_id, user_id = %p.user_id, "refresh token reused; session revoked");
        return Ok(Rotation::Refused(Refusal::Reused));
    }
    if p.expires_at.min(p.family_expires) <= Utc::now() {
        return Ok(Rotation::Refused(Refusal::Expired));
    }
    sqlx::query("UPDATE accounts.refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(digest(token))
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE accounts.token_families SET last_used_at = now() WHERE id = $1")
        .bind(p.family_id)
        .execute(&mut *tx)
        .await?;
    let next = insert_token(&mut tx, p.family_id, ttl, p.family_expires).await?;
    tx.commit().await?;
    Ok(Rotation::Rotated {
        user_id: p.user_id,
        token: next,
    })
}

async fn revoke(conn: &mut PgConnection, family_id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE accounts.token_families SET revoked_at = now(), revoked_reason = $2 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(reason)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Ends the session a token belongs to (any token of the family, rotated or
/// not). `false` when the token is unknown.
///
/// # Errors
/// When the database fails.
pub async fn revoke_family_of(pool: &PgPool, token: &str) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let family: Option<Uuid> =
        sqlx::query_scalar("SELECT family_id FROM accounts.refresh_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_optional(&mut *conn)
            .await?;
    match family {
        Some(id) => revoke(&mut conn, id, "logout").await.map(|()| true),
        None => Ok(false),
    }
}

/// Ends every session of a user; how many were still open.
///
/// # Errors
/// When the database fails.
pub async fn revoke_all_of(pool: &PgPool, user_id: Uuid) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE accounts.token_families SET revoked_at = now(), revoked_reason = 'logout-all' \
         WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(pool)
    .await
    .map(|done| done.rows_affected())
}

/// A session as its user may see it: no token, no hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRecord {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
}

/// The user's sessions that can still be refreshed, newest first.
///
/// # Errors
/// When the database fails.
pub async fn open_sessions(
    pool: &PgPool,
    user_id: Uuid,
) -> Result<Vec<SessionRecord>, sqlx::Error> {
    // A family whose every token has expired cannot be refreshed any more,
    // even before its own end.
    sqlx::query_as::<_, SessionRecord>(
        "SELECT f.id, f.created_at, f.last_used_at, f.expires_at, f.user_agent \
         FROM accounts.token_families f \
         WHERE f.user_id = $1 AND f.revoked_at IS NULL AND f.expires_at > now() \
           AND EXISTS (SELECT 1 FROM accounts.refresh_tokens t \
                       WHERE t.family_id = f.id AND t.rotated_at IS NULL AND t.expires_at > now()) \
         ORDER BY f.created_at DESC, f.id DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_random_bits_and_hash_to_32_bytes() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(digest(&a).len(), 32);
        assert_ne!(digest(&a), digest(&b));
    }
}
