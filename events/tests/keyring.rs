//! The data keys in Postgres: a key for writing is remembered (no round trip
//! per create), until the account's erasure is logged through the store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test that cannot set up should fail loudly

use std::sync::Arc;

use chrono::Utc;
use tasklog_events::domain::UserId;
use tasklog_events::erasure::{self, UserErased};
use tasklog_events::sealing::{KeyEncryptionKey, KeyRing, PgKeyRing, SealedStore};
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::{EventStore, ExpectedVersion};
use tasklog_platform::testing::TestDb;
use uuid::Uuid;

/// The two accounts tables the key ring reads (the command service's
/// migrations make them in a real install).
async fn accounts(db: &TestDb) {
    for sql in [
        "CREATE SCHEMA accounts",
        "CREATE TABLE accounts.users (id uuid PRIMARY KEY)",
        "CREATE TABLE accounts.data_keys (user_id uuid PRIMARY KEY REFERENCES accounts.users (id) ON DELETE CASCADE, \
         wrapped_key bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    ] {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
}

#[tokio::test]
async fn a_write_key_is_remembered_until_the_erasure_is_logged_through_the_store() {
    let db = TestDb::new().await.expect("test database");
    accounts(&db).await;
    let log = PgEventStore::new(db.pool().clone());
    log.migrate().await.unwrap();
    let ring = Arc::new(PgKeyRing::new(
        db.pool().clone(),
        KeyEncryptionKey::new([7; 32]),
    ));
    let store = SealedStore::new(Arc::new(log), ring.clone());
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO accounts.users (id) VALUES ($1)")
        .bind(user)
        .execute(db.pool())
        .await
        .unwrap();

    assert!(ring.key_for_writing(user).await.unwrap().is_some());
    // The account goes (as an erasure deletes it, key and all) ...
    sqlx::query("DELETE FROM accounts.users WHERE id = $1")
        .bind(user)
        .execute(db.pool())
        .await
        .unwrap();
    assert!(
        ring.keys(&[user]).await.unwrap().is_empty(),
        "reads are never cached"
    );
    // ... and writes here still seal under the remembered key until ...
    assert!(ring.key_for_writing(user).await.unwrap().is_some());
    // ... the erasure is logged through this store.
    let erased = UserErased {
        user_id: UserId(user),
        occurred_at: Utc::now(),
    };
    store
        .append(
            &erasure::stream_id(UserId(user)),
            ExpectedVersion::NoStream,
            vec![erased.to_new_event(Uuid::now_v7(), None)],
        )
        .await
        .unwrap();
    assert!(ring.key_for_writing(user).await.unwrap().is_none());
}
