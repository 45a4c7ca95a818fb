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

async fn insert_token(
    conn: &mut PgConnection,
    family_id: Uuid,
    ttl: Duration,
) -> Result<String, sqlx::Error> {
    let token = new_token();
    sqlx::query(
        "INSERT INTO accounts.refresh_tokens (token_hash, family_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(digest(&token))
    .bind(family_id)
    .bind(expiry(ttl))
    .execute(conn)
    .await?;
    Ok(token)
}

/// Starts a session: a new family and its first token (returned in clear,
/// the only time it exists outside the client).
///
/// # Errors
/// When the database fails.
pub async fn start_family(
    conn: &mut PgConnection,
    user_id: Uuid,
    ttl: Duration,
) -> Result<String, sqlx::Error> {
    let family_id = Uuid::now_v7();
    sqlx::query("INSERT INTO accounts.token_families (id, user_id) VALUES ($1, $2)")
        .bind(family_id)
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    insert_token(conn, family_id, ttl).await
}

#[derive(sqlx::FromRow)]
struct Presented {
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
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
        "SELECT t.family_id, f.user_id, t.expires_at, t.rotated_at, f.revoked_at \
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
    if p.expires_at <= Utc::now() {
        return Ok(Rotation::Refused(Refusal::Expired));
    }
    sqlx::query("UPDATE accounts.refresh_tokens SET rotated_at = now() WHERE token_hash = $1")
        .bind(digest(token))
        .execute(&mut *tx)
        .await?;
    let next = insert_token(&mut tx, p.family_id, ttl).await?;
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
