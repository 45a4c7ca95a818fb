//! Accounts: registering, logging in, refreshing and ending sessions. Handlers
//! call these; SQL stays in `users` and `refresh_tokens`.

mod password;
mod refresh_tokens;
mod users;
mod values;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use tasklog_platform::ApiError;
use tasklog_platform::auth::{IssuedToken, TokenError, TokenSigner};
use uuid::Uuid;

pub use password::{PasswordError, Passwords};
pub use refresh_tokens::Refusal;
pub use users::UserRecord;
pub use values::{Email, Password, UserName};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the email is already registered")]
    EmailTaken,
    /// Unknown email or wrong password; which one is never told.
    #[error("bad email or password")]
    BadCredentials,
    #[error("refresh token refused: {0:?}")]
    RefreshRefused(Refusal),
    /// A valid access token for a user that no longer exists.
    #[error("the token's user does not exist")]
    UnknownUser,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::EmailTaken => {
                ApiError::Conflict("the email is already registered".into())
            }
            AccountError::BadCredentials => ApiError::Unauthorized,
            AccountError::RefreshRefused(reason) => {
                tracing::debug!(?reason, "refresh token refused");
                ApiError::Unauthorized
            }
            AccountError::UnknownUser => ApiError::Unauthorized,
            AccountError::Database(e) => ApiError::from(e),
            AccountError::Password(PasswordError::Busy) => {
                ApiError::unavailable("password hashing")
            }
            AccountError::Password(e) => ApiError::internal(e),
            AccountError::Token(e) => ApiError::internal(e),
        }
    }
}

/// A new user, parsed.
pub struct NewUser {
    pub email: Email,
    pub password: Password,
    pub name: UserName,
}

/// What a successful register, login or refresh hands the client.
pub struct Grant {
    pub user: UserRecord,
    pub access: IssuedToken,
    pub refresh_token: String,
}

#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    passwords: Passwords,
    signer: Arc<TokenSigner>,
    refresh_ttl: Duration,
}

impl Accounts {
    pub fn new(
        pool: PgPool,
        passwords: Passwords,
        signer: Arc<TokenSigner>,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            pool,
            passwords,
            signer,
            refresh_ttl,
        }
    }

    /// # Errors
    /// `EmailTaken`, or a failing dependency.
    pub async fn register(&self, new: NewUser) -> Result<Grant, AccountError> {
        let hash = self.passwords.hash(new.password.into_secret()).await?;
        let mut tx = self.pool.begin().await?;
        let user = users::insert(&mut tx, &new.email, &new.name, &hash)
            .await?
            .ok_or(AccountError::EmailTaken)?;
        let refresh_token =
            refresh_tokens::start_family(&mut tx, user.id, self.refresh_ttl).await?;
        tx.commit().await?;
        let access = self.signer.issue(user.id)?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(Grant {
            user,
            access,
            refresh_token,
        })
    }

    /// Costs one Argon2 verification whether or not the email is known.
    ///
    /// # Errors
    /// `BadCredentials`, or a failing dependency.
    pub async fn login(&self, email: &str, password: String) -> Result<Grant, AccountError> {
        // No registered password is this long; refusing early reveals nothing
        // about the account and spares the hasher a 64 KiB input.
        if password.chars().count() > Password::MAX_CHARS {
            return Err(AccountError::BadCredentials);
        }
        let found = users::credentials_by_email(&self.pool, email).await?;
        let (user, stored) = match found {
            Some(c) => (Some(c.user), Some(c.password_hash)),
            None => (None, None),
        };
        let ok = self
            .passwords
            .verify(SecretString::from(password), stored)
            .await?;
        let user = user.filter(|_| ok).ok_or(AccountError::BadCredentials)?;
        let mut conn = self.pool.acquire().await?;
        let refresh_token =
            refresh_tokens::start_family(&mut conn, user.id, self.refresh_ttl).await?;
        let access = self.signer.issue(user.id)?;
        Ok(Grant {
            user,
            access,
            refresh_token,
        })
    }

    /// # Errors
    /// `RefreshRefused` (unknown, expired, revoked, reused), or a failing dependency.
    pub async fn refresh(&self, token: &str) -> Result<Grant, AccountError> {
        let (user_id, refresh_token) =
            match refresh_tokens::rotate(&self.pool, token, self.refresh_ttl).await? {
                refresh_tokens::Rotation::Rotated { user_id, token } => (user_id, token),
                refresh_tokens::Rotation::Refused(why) => {
                    return Err(AccountError::RefreshRefused(why));
                }
            };
        let user = self.me(user_id).await?;
        let access = self.signer.issue(user.id)?;
        Ok(Grant {
            user,
            access,
            refresh_token,
        })
    }

    /// # Errors
    /// `RefreshRefused(Unknown)` for a token never issued, or a failing database.
    pub async fn logout(&self, token: &str) -> Result<(), AccountError> {
        if refresh_tokens::revoke_family_of(&self.pool, token).await? {
            Ok(())
        } else {
            Err(AccountError::RefreshRefused(Refusal::Unknown))
        }
    }

    /// # Errors
    /// `UnknownUser`, or a failing database.
    pub async fn me(&self, id: Uuid) -> Result<UserRecord, AccountError> {
        users::by_id(&self.pool, id)
            .await?
            .ok_or(AccountError::UnknownUser)
    }
}
