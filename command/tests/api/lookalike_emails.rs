//! Upgrading across accounts migration 0003 (the normalised `email_key`)
//! when existing accounts' emails normalise alike: the oldest keeps the key,
//! the later ones keep their rows under a key nobody can type, and the
//! upgrade goes through.

use std::sync::Arc;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;
use sqlx::PgPool;
use tasklog_command::accounts::Passwords;
use tasklog_command::migrations::{LOOKALIKE_KEY_PREFIX, migrate, migrator};
use tasklog_events::store::postgres::migrate_schema;
use tasklog_platform::testing::TestDb;
use uuid::Uuid;

use crate::helpers::start;

/// Version 2: before the normalised key, uniqueness was `lower(email)`.
async fn accounts_at_version_2(db: &TestDb) {
    let before = migrator(Some(2)).await.expect("migrations");
    migrate_schema(db.pool(), "accounts", &before)
        .await
        .expect("migrated to version 2");
}

async fn insert_user(pool: &PgPool, email: &str, password: &str, age_days: i32) -> Uuid {
    let hash = Passwords::new(1)
        .await
        .expect("hasher")
        .hash(SecretString::from(password))
        .await
        .expect("hash");
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO accounts.users (id, email, name, password_hash, created_at) \
         VALUES ($1, $2, 'Old User', $3, now() - make_interval(days => $4))",
    )
    .bind(id)
    .bind(email)
    .bind(hash)
    .bind(age_days)
    .execute(pool)
    .await
    .expect("a user of version 2");
    id
}

async fn key_of(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT email_key FROM accounts.users WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("the account still exists")
}

#[tokio::test]
async fn an_upgrade_with_lookalike_emails_keeps_every_account_and_the_oldest_keeps_the_login() {
    let db = Arc::new(TestDb::new().await.expect("test database"));
    accounts_at_version_2(&db).await;
    // `lower(email)` told these apart; NFKC does not (full-width letters,
    // the "fi" ligature).
    let oldest = insert_user(db.pool(), "ann@example.com", "first account pass", 30).await;
    let wide = insert_user(db.pool(), "ａｎｎ@example.com", "second account pass", 20).await;
    let mixed = insert_user(db.pool(), "ＡNN@Example.com", "third account pass", 10).await;
    let fine = insert_user(db.pool(), "ﬁnn@example.com", "fourth account pass", 5).await;

    // The shipped 0003 fails on this database (that was the bug).
    let shipped = sqlx::migrate!("./migrations");
    let shipped_result = {
        let probe = TestDb::new().await.expect("test database");
        accounts_at_version_2(&probe).await;
        for (email, days) in [("ann@example.com", 2), ("ａｎｎ@example.com", 1)] {
            insert_user(probe.pool(), email, "some long password", days).await;
        }
        migrate_schema(probe.pool(), "accounts", &shipped).await
    };
    assert!(
        shipped_result.is_err(),
        "the shipped 0003 fails on look-alikes"
    );

    // To the latest version, as the migrate step and the service's start do.
    migrate(db.pool()).await.expect("the upgrade goes through");
    let app = start(db.clone(), db.url().to_owned(), Vec::new()).await;
    assert_eq!(key_of(app.pool(), oldest).await, "ann@example.com");
    assert_eq!(key_of(app.pool(), fine).await, "finn@example.com");
    for later in [wide, mixed] {
        let key = key_of(app.pool(), later).await;
        assert_eq!(
            key,
            format!("{LOOKALIKE_KEY_PREFIX}{later} ann@example.com"),
            "a later look-alike"
        );
        let normal: bool = sqlx::query_scalar("SELECT $1 IS NFKC NORMALIZED")
            .bind(&key)
            .fetch_one(app.pool())
            .await
            .expect("query");
        assert!(!normal, "no key the service computes can equal it");
    }
    // What the shipped migrations record: the checksums are the shipped
    // files', so sqlx's own migrator (and the next release) accepts them.
    migrate_schema(app.pool(), "accounts", &shipped)
        .await
        .expect("the shipped migrator finds every checksum as it expects");

    let login = |email: &'static str, password: &'static str| {
        let body = json!({"email": email, "password": password});
        let app = &app;
        async move { app.post("/v1/auth/login", &body, None).await }
    };
    let response = login("ANN@example.com", "first account pass").await;
    assert_eq!(response.status(), StatusCode::OK, "the oldest logs in");
    let body: serde_json::Value = response.json().await.expect("session");
    assert_eq!(body["user"]["id"], oldest.to_string());
    for (email, password) in [
        ("ａｎｎ@example.com", "second account pass"),
        ("ＡNN@Example.com", "third account pass"),
    ] {
        let response = login(email, password).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "a later look-alike waits for the operator"
        );
    }
    let response = login("FINN@example.com", "fourth account pass").await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an account alone in its key"
    );
    // The key stays taken by its oldest account.
    let response = app
        .post(
            "/v1/auth/register",
            &json!({"email": "Ann@Example.com", "password": "correct horse battery", "name": "New"}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_database_that_applied_the_shipped_0003_migrates_on() {
    let db = TestDb::new().await.expect("test database");
    let shipped = sqlx::migrate!("./migrations");
    migrate_schema(db.pool(), "accounts", &shipped)
        .await
        .expect("the shipped migrations");
    migrate(db.pool())
        .await
        .expect("the fixed migrator accepts it");
}
