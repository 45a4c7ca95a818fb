//! Where data keys live: `accounts.data_keys` in the accounts database
//! (created by the command service's migration 0005), each wrapped by the
//! key-encryption key. Every service that reads task text reads this table;
//! only the command service makes and destroys keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use quick_cache::sync::Cache;
use sqlx::PgPool;
use uuid::Uuid;

use super::{DataKey, KeyEncryptionKey};
use crate::store::StoreError;

/// The owners' data keys.
#[async_trait]
pub trait KeyRing: Send + Sync + 'static {
    /// The keys of those `owners` that have one; an erased owner has none.
    ///
    /// # Errors
    /// `Unavailable` when the keys cannot be read, `Corrupt` when one does
    /// not unwrap under the configured key-encryption key.
    async fn keys(&self, owners: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError>;

    /// The key to seal a new event of `owner` with: made on first use for an
    /// account that has none yet (every account registered before sealing);
    /// `None` when the account does not exist (erased).
    ///
    /// # Errors
    /// As `keys`.
    async fn key_for_writing(&self, owner: Uuid) -> Result<Option<DataKey>, StoreError>;

    /// Drops what is remembered of `owner`'s key: called when the account is
    /// erased, so this process seals nothing more under it.
    fn forget(&self, owner: Uuid) {
        let _ = owner;
    }
}

/// The keys in Postgres. Keys for reading are never cached: a key destroyed
/// by an erasure must stop opening payloads at once in every service. Keys
/// for writing are remembered for [`WRITE_KEY_TTL`], which saves a round trip
/// per create and patch: sealing under a key another instance has just
/// destroyed writes text nobody can read any more, which is what the erasure
/// asked for, and this process forgets the key as it logs the erasure.
#[derive(Clone)]
pub struct PgKeyRing {
    pool: PgPool,
    kek: KeyEncryptionKey,
    for_writing: Arc<Cache<Uuid, (DataKey, Instant)>>,
}

/// How long a key for writing is used without reading it again.
pub const WRITE_KEY_TTL: Duration = Duration::from_secs(60);
/// Accounts whose write keys are remembered at once (32 bytes each).
const WRITE_KEYS_KEPT: usize = 10_000;

impl PgKeyRing {
    pub fn new(pool: PgPool, kek: KeyEncryptionKey) -> Self {
        Self {
            pool,
            kek,
            for_writing: Arc::new(Cache::new(WRITE_KEYS_KEPT)),
        }
    }

    fn unwrap_key(&self, owner: Uuid, wrapped: &[u8]) -> Result<DataKey, StoreError> {
        self.kek.unwrap(owner, wrapped).map_err(|_| {
            StoreError::Corrupt(format!(
                "the data key of {owner} does not unwrap under the configured \
                 DATA_KEY_ENCRYPTION_KEY (is it the one the keys were made with?)"
            ))
        })
    }
}

/// A database without the accounts schema has no keys (a read model's own
/// server, a test database of the projector): nothing there can be opened.
fn missing_schema(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| c == "42P01" || c == "3F000"))
}

#[async_trait]
impl KeyRing for PgKeyRing {
    async fn keys(&self, owners: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
        if owners.is_empty() {
            return Ok(HashMap::new());
        }
        let rows: Vec<(Uuid, Vec<u8>)> = match sqlx::query_as(
            "SELECT user_id, wrapped_key FROM accounts.data_keys WHERE user_id = ANY($1)",
        )
        .bind(owners)
        .fetch_all(&self.pool)
        .await
        {
            Ok(rows) => rows,
            Err(e) if missing_schema(&e) => Vec::new(),
            Err(e) => return Err(StoreError::unavailable(e)),
        };
        rows.into_iter()
            .map(|(owner, wrapped)| Ok((owner, self.unwrap_key(owner, &wrapped)?)))
            .collect()
    }

    async fn key_for_writing(&self, owner: Uuid) -> Result<Option<DataKey>, StoreError> {
        if let Some((key, since)) = self.for_writing.get(&owner) {
            if since.elapsed() < WRITE_KEY_TTL {
                return Ok(Some(key));
            }
        }
        let key = self.stored_or_new_key(owner).await?;
        if let Some(key) = &key {
            self.for_writing
                .insert(owner, (key.clone(), Instant::now()));
        }
        Ok(key)
    }

    fn forget(&self, owner: Uuid) {
        self.for_writing.remove(&owner);
    }
}

impl PgKeyRing {
    async fn stored_or_new_key(&self, owner: Uuid) -> Result<Option<DataKey>, StoreError> {
        if let Some(key) = self.keys(&[owner]).await?.remove(&owner) {
            return Ok(Some(key));
        }
        let fresh = DataKey::generate();
        // Only for an account that exists: an erased one must get no new key.
        // Two first writes at once: one insert wins, both read its key.
        sqlx::query(
            "INSERT INTO accounts.data_keys (user_id, wrapped_key) \
             SELECT $1, $2 WHERE EXISTS (SELECT FROM accounts.users WHERE id = $1) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(owner)
        .bind(self.kek.wrap(owner, &fresh))
        .execute(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        Ok(self.keys(&[owner]).await?.remove(&owner))
    }
}
