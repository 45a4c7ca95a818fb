//! Webhooks: subscriptions to a user's changes, delivered by the projector's
//! `webhooks` worker as signed POSTs, at least once and in log order.
//! This crate owns the subscriptions (their table and its SQL in `store`),
//! the rules for a target URL (`values`, `ssrf`) and the signature scheme
//! (`signature`); the projector uses all of them when it delivers.

pub mod signature;
pub mod ssrf;
pub mod store;
pub mod values;

use std::sync::Arc;

use sqlx::PgPool;
use tasklog_events::sealing::KeyEncryptionKey;
use tasklog_events::{EventStore, StoreError};
use tasklog_platform::{ApiError, FieldError};
use tasklog_readmodel::checkpoint::to_db;
use uuid::Uuid;

pub use store::{Attempt, AttemptPage, Subscription};
pub use values::{EventTypes, UrlPolicy, WebhookUrl};

/// Subscriptions one user may hold: each costs the worker a query per
/// change batch and a connection per delivery.
pub const MAX_PER_USER: i64 = 25;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    #[error("at most {MAX_PER_USER} webhooks per user")]
    TooMany,
    #[error("no such webhook")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(f) => ApiError::invalid(&f.field, f.message),
            WebhookError::TooMany => ApiError::Unprocessable {
                detail: e.to_string(),
                errors: vec![],
            },
            WebhookError::NotFound => ApiError::NotFound,
            WebhookError::Store(StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "event store unavailable");
                ApiError::unavailable("the event store")
            }
            WebhookError::Store(other) => ApiError::internal(other),
            WebhookError::Database(db) => ApiError::from(db),
        }
    }
}

/// The longest a replaced secret may keep signing after a rotation.
pub const MAX_KEEP_PREVIOUS_SECS: u32 = 7 * 24 * 3600;

/// A new subscription (or one whose secret was rotated) and its secret,
/// which is never shown again.
pub struct Created {
    pub subscription: Subscription,
    pub secret: String,
}

/// The subscriber's side of webhooks, as the routes call it.
#[derive(Clone)]
pub struct Webhooks {
    db: PgPool,
    store: Arc<dyn EventStore>,
    policy: UrlPolicy,
    /// Seals the secrets where they are stored (the worker opens them).
    kek: KeyEncryptionKey,
}

impl Webhooks {
    pub fn new(
        db: PgPool,
        store: Arc<dyn EventStore>,
        policy: UrlPolicy,
        kek: KeyEncryptionKey,
    ) -> Self {
        Self {
            db,
            store,
            policy,
            kek,
        }
    }

    /// Seals the secrets stored readable before secrets were sealed; returns
    /// how many rows it sealed. Safe from many instances at once.
    ///
    /// # Errors
    /// A database failure (what was sealed stays sealed).
    pub async fn seal_stored_secrets(&self) -> Result<u64, WebhookError> {
        Ok(store::seal_stored_secrets(&self.db, &self.kek).await?)
    }

    pub fn policy(&self) -> UrlPolicy {
        self.policy
    }

    /// Subscribes `user` from the log's head on: changes already made are
    /// not sent (a replay can send them).
    ///
    /// # Errors
    /// `Invalid` for a URL whose host does not resolve or resolves to a
    /// refused address; `TooMany`; a store or database failure.
    pub async fn subscribe(
        &self,
        user: Uuid,
        url: WebhookUrl,
        types: EventTypes,
        description: Option<String>,
    ) -> Result<Created, WebhookError> {
        ssrf::resolve_checked(url.host(), url.port(), self.policy.allow_private)
            .await
            .map_err(|e| WebhookError::Invalid(FieldError::new("url", e.to_string())))?;
        let head = self.store.head().await?;
        let id = Uuid::now_v7();
        let secret = values::new_secret();
        let types = types.into_inner();
        let subscription = store::create(
            &self.db,
            &store::NewSubscription {
                id,
                user_id: user,
                url: url.as_str(),
                types: &types,
                description: description.as_deref(),
                secret: &self.kek.seal_secret(id, &secret),
                start: to_db(head),
            },
            MAX_PER_USER,
        )
        .await?
        .ok_or(WebhookError::TooMany)?;
        Ok(Created {
            subscription,
            secret,
        })
    }

    /// # Errors
    /// A database failure.
    pub async fn list(&self, user: Uuid) -> Result<Vec<Subscription>, WebhookError> {
        Ok(store::list(&self.db, user).await?)
    }

    /// # Errors
    /// `NotFound` when absent or another user's.
    pub async fn get(&self, user: Uuid, id: Uuid) -> Result<Subscription, WebhookError> {
        store::get(&self.db, user, id)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    /// # Errors
    /// `NotFound` when absent or another user's.
    pub async fn delete(&self, user: Uuid, id: Uuid) -> Result<(), WebhookError> {
        if store::delete(&self.db, user, id).await? {
            Ok(())
        } else {
            Err(WebhookError::NotFound)
        }
    }

    /// # Errors
    /// `NotFound` when absent or another user's.
    pub async fn attempts(
        &self,
        user: Uuid,
        id: Uuid,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<AttemptPage, WebhookError> {
        store::attempts(&self.db, user, id, cursor, limit)
            .await?
            .ok_or(WebhookError::NotFound)
    }

    /// Gives the subscription a new secret. The one it replaces keeps
    /// signing beside it for `keep_previous_secs` (0: it stops at once), so
    /// receivers can move to the new one without refusing a delivery.
    ///
    /// # Errors
    /// `NotFound` when absent or another user's; `Invalid` when
    /// `keep_previous_secs` exceeds `MAX_KEEP_PREVIOUS_SECS`.
    pub async fn rotate_secret(
        &self,
        user: Uuid,
        id: Uuid,
        keep_previous_secs: u32,
    ) -> Result<Created, WebhookError> {
        if keep_previous_secs > MAX_KEEP_PREVIOUS_SECS {
            return Err(WebhookError::Invalid(FieldError::new(
                "keep_previous_secs",
                format!("must be from 0 to {MAX_KEEP_PREVIOUS_SECS} (7 days)"),
            )));
        }
        let keep_until = (keep_previous_secs > 0)
            .then(|| chrono::Utc::now() + chrono::Duration::seconds(i64::from(keep_previous_secs)));
        let secret = values::new_secret();
        let sealed = self.kek.seal_secret(id, &secret);
        let subscription = store::rotate_secret(&self.db, user, id, &sealed, keep_until)
            .await?
            .ok_or(WebhookError::NotFound)?;
        Ok(Created {
            subscription,
            secret,
        })
    }

    /// Sends every change after log position `after` again, and resumes a
    /// failing subscription.
    ///
    /// # Errors
    /// `NotFound` when absent or another user's; `Invalid` for a position
    /// beyond what the log stores.
    pub async fn replay(
        &self,
        user: Uuid,
        id: Uuid,
        after: u64,
    ) -> Result<Subscription, WebhookError> {
        let after = i64::try_from(after).map_err(|_| {
            WebhookError::Invalid(FieldError::new(
                "after",
                "must be a log position from 0 to 9223372036854775807",
            ))
        })?;
        store::replay(&self.db, user, id, after)
            .await?
            .ok_or(WebhookError::NotFound)
    }
}
