//! Accounts: registering, logging in, refreshing and ending sessions. Handlers
//! call these; SQL stays in `users` and `refresh_tokens`.

mod erasure;
mod lockout;
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

pub use lockout::{Locked, LoginLockout};
pub use password::{PasswordError, Passwords};
pub use refresh_tokens::{Lifetimes, Refusal, SessionRecord, USER_AGENT_MAX_CHARS};
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
    /// Too many failed logins for this email (known or not): wait.
    #[error("too many failed logins for this account")]
    Locked(Locked),
    /// A valid access token for a user that no longer exists.
    #[error("the token's user does not exist")]
    UnknownUser,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] tasklog_events::StoreError),
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
            AccountError::Locked(locked) => ApiError::TooManyRequests {
                retry_after_secs: locked.retry_after_secs,
            },
            AccountError::UnknownUser => ApiError::Unauthorized,
            AccountError::Database(e) => ApiError::from(e),
            AccountError::Password(PasswordError::Busy) => {
                ApiError::unavailable("password hashing")
            }
            AccountError::Password(e) => ApiError::internal(e),
            AccountError::Token(e) => ApiError::internal(e),
            AccountError::Store(e @ tasklog_events::StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "event store unavailable");
                ApiError::unavailable("the event store")
            }
            AccountError::Store(e) => ApiError::internal(e),
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

/// Sessions last 30 days from their login unless `SESSION_MAX_AGE_SECS` says
/// otherwise; rotating the refresh token never extends that.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    passwords: Passwords,
    signer: Arc<TokenSigner>,
    lifetimes: Lifetimes,
    lockout: Option<Arc<LoginLockout>>,
}

impl Accounts {
    /// Sessions of `DEFAULT_SESSION_MAX_AGE`, no per-account lockout (see
    /// `with_session_max_age`, `with_lockout`).
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
            lifetimes: Lifetimes {
                token: refresh_ttl,
                session: DEFAULT_SESSION_MAX_AGE,
            },
            lockout: None,
        }
    }

    /// How long a session may last from its login, rotations included.
    #[must_use]
    pub fn with_session_max_age(mut self, max_age: Duration) -> Self {
        self.lifetimes.session = max_age;
        self
    }

    /// Throttles failed logins per account (`None`: off).
    #[must_use]
    pub fn with_lockout(mut self, lockout: Option<LoginLockout>) -> Self {
        self.lockout = lockout.map(Arc::new);
        self
    }

    /// # Errors
    /// `EmailTaken`, or a failing dependency.
    pub async fn register(
        &self,
        new: NewUser,
        user_agent: Option<&str>,
    ) -> Result<Grant, AccountError> {
        let hash = self.passwords.hash(new.password.into_secret()).await?;
        let mut tx = self.pool.begin().await?;
        let user = users::insert(&mut tx, &new.email, &new.name, &hash)
            .await?
            .ok_or(AccountError::EmailTaken)?;
        let refresh_token =
            refresh_tokens::start_family(&mut tx, user.id, self.lifetimes, user_agent).await?;
        tx.commit().await?;
        let access = self.signer.issue(user.id)?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(Grant {
            user,
            access,
            refresh_token,
        })
    }

    /// Costs one Argon2 verification whether or not the email is known, and
    /// counts failures per account whether or not it exists.
    ///
    /// # Errors
    /// `BadCredentials`, `Locked`, or a failing dependency.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        user_agent: Option<&str>,
    ) -> Result<Grant, AccountError> {
        let key = Email::key_of(email);
        if let Some(lockout) = &self.lockout {
            lockout.check(&key).await.map_err(|locked| {
                tracing::info!("login refused: the account is locked after failed logins");
                AccountError::Locked(locked)
            })?;
        }
        // No registered password is this long; refusing early reveals nothing
        // about the account and spares the hasher a 64 KiB input.
        let ok = password.chars().count() <= Password::MAX_CHARS;
        let found = if ok {
            users::credentials_by_email_key(&self.pool, &key).await?
        } else {
            None
        };
        let (user, stored) = match found {
            Some(c) => (Some(c.user), Some(c.password_hash)),
            None => (None, None),
        };
        let ok = ok
            && self
                .passwords
                .verify(SecretString::from(password), stored)
                .await?;
        let Some(user) = user.filter(|_| ok) else {
            // Neither the email nor the password: the request's log line has
            // the client address.
            tracing::info!("login failed");
            if let Some(lockout) = &self.lockout {
                lockout.failed(&key).await;
            }
            return Err(AccountError::BadCredentials);
        };
        if let Some(lockout) = &self.lockout {
            lockout.succeeded(&key).await;
        }
        let mut conn = self.pool.acquire().await?;
        let refresh_token =
            refresh_tokens::start_family(&mut conn, user.id, self.lifetimes, user_agent).await?;
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
            match refresh_tokens::rotate(&self.pool, token, self.lifetimes.token).await? {
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

    /// Ends every session of the user: no refresh token of theirs works any
    /// more (access tokens already issued run to their short expiry).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn logout_all(&self, user_id: Uuid) -> Result<u64, AccountError> {
        let ended = refresh_tokens::revoke_all_of(&self.pool, user_id).await?;
        tracing::info!(user_id = %user_id, ended, "every session ended");
        Ok(ended)
    }

    /// The user's sessions that can still be refreshed.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn sessions(&self, user_id: Uuid) -> Result<Vec<SessionRecord>, AccountError> {
        Ok(refresh_tokens::open_sessions(&self.pool, user_id).await?)
    }

    /// Deletes the account and everything it wrote (crypto-shredding, see
    /// `erasure`); returns the log position of its `UserErased` event.
    ///
    /// # Errors
    /// `UnknownUser` (erased already), `Store` when the log is down (the
    /// erasure is recorded and completes on a retry or the next start).
    pub async fn erase(
        &self,
        user_id: Uuid,
        store: &dyn tasklog_events::EventStore,
        request_id: Option<String>,
    ) -> Result<u64, AccountError> {
        erasure::erase(&self.pool, store, user_id, request_id).await
    }

    /// Logs erasures left unlogged by a crash or an outage of the log.
    ///
    /// # Errors
    /// When the database or the log fails.
    pub async fn log_pending_erasures(
        &self,
        store: &dyn tasklog_events::EventStore,
    ) -> Result<usize, AccountError> {
        erasure::log_pending(&self.pool, store).await
    }

    /// # Errors
    /// `UnknownUser`, or a failing database.
    pub async fn me(&self, id: Uuid) -> Result<UserRecord, AccountError> {
        users::by_id(&self.pool, id)
            .await?
            .ok_or(AccountError::UnknownUser)
    }
}
