//! The `accounts.users` table: registering and finding users.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::values::{Email, UserName};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct Credentials {
    #[sqlx(flatten)]
    pub user: UserRecord,
    pub password_hash: String,
}

/// Inserts a user; `None` when the email is taken (by any spelling with the
/// same key).
///
/// # Errors
/// When the database fails.
pub async fn insert(
    conn: &mut PgConnection,
    email: &Email,
    name: &UserName,
    password_hash: &str,
) -> Result<Option<UserRecord>, sqlx::Error> {
    // ON CONFLICT on the key turns the race of two registrations of one
    // email into "taken" for the second instead of an error.
    sqlx::query_as::<_, UserRecord>(
        "INSERT INTO accounts.users (id, email, email_key, name, password_hash) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (email_key) DO NOTHING \
         RETURNING id, email, name, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(email.as_str())
    .bind(email.key())
    .bind(name.as_str())
    .bind(password_hash)
    .fetch_optional(conn)
    .await
}

/// The user and password hash of an email key (`Email::key_of`).
///
/// # Errors
/// When the database fails.
pub async fn credentials_by_email_key(
    pool: &PgPool,
    email_key: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    // Postgres refuses NUL in text; no registered email holds one.
    if email_key.contains('\0') {
        return Ok(None);
    }
    sqlx::query_as::<_, Credentials>(
        "SELECT id, email, name, created_at, password_hash FROM accounts.users \
         WHERE email_key = $1",
    )
    .bind(email_key)
    .fetch_optional(pool)
    .await
}

/// # Errors
/// When the database fails.
pub async fn by_id(pool: &PgPool, id: Uuid) -> Result<Option<UserRecord>, sqlx::Error> {
    sqlx::query_as::<_, UserRecord>(
        "SELECT id, email, name, created_at FROM accounts.users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Deletes the user; their data key and sessions go with the row (foreign
/// keys `ON DELETE CASCADE`). False when there was no such user.
///
/// # Errors
/// When the database fails.
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM accounts.users WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected() > 0)
}
