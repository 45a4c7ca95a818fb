//! Webhook secrets at rest: sealed under the key-encryption key and bound to
//! their webhook, so a database dump alone does not give a receiver's secret
//! away; rows a release before sealing wrote readable are sealed at start.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tasklog_events::sealing::KeyEncryptionKey;
use tasklog_platform::data_key::DEV_KEY;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with, unique_email};

const PRIVATE: &[(&str, &str)] = &[("WEBHOOK_ALLOW_PRIVATE", "true")];

async fn stored(app: &TestApp, id: Uuid) -> (String, Option<String>) {
    sqlx::query_as("SELECT secret, previous_secret FROM accounts.webhooks WHERE id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn secrets_are_stored_sealed_and_open_to_what_the_owner_was_shown() {
    let app = spawn_app_with(PRIVATE).await;
    let alice = app.register(&unique_email()).await;
    let kek = KeyEncryptionKey::new(DEV_KEY);

    let created = app
        .post(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/hook"}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json_of(created).await;
    let shown = created["secret"].as_str().unwrap().to_owned();
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let (secret, previous) = stored(&app, id).await;
    assert!(!secret.contains(&shown), "stored readable: {secret}");
    assert_eq!(kek.open_secret(id, &secret).unwrap(), shown);
    assert_eq!(previous, None);

    // A rotation seals the new one; the replaced one stays sealed beside it.
    let rotated = app
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &json!({}),
            Some(&alice.token),
        )
        .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let new_secret = json_of(rotated).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (secret, previous) = stored(&app, id).await;
    assert!(!secret.contains(&new_secret));
    assert_eq!(kek.open_secret(id, &secret).unwrap(), new_secret);
    assert_eq!(kek.open_secret(id, &previous.unwrap()).unwrap(), shown);
}

#[tokio::test]
async fn secrets_stored_readable_by_an_earlier_release_are_sealed_at_start() {
    let app = spawn_app_with(PRIVATE).await;
    let alice = app.register(&unique_email()).await;
    let created = json_of(
        app.post(
            "/v1/webhooks",
            &json!({"url": "http://127.0.0.1:9/hook"}),
            Some(&alice.token),
        )
        .await,
    )
    .await;
    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    // As a release before sealing left it: both secrets readable.
    sqlx::query(
        "UPDATE accounts.webhooks SET secret = 'whsec_old_current', \
         previous_secret = 'whsec_old_previous', \
         previous_secret_expires_at = now() + interval '1 hour' WHERE id = $1",
    )
    .bind(id)
    .execute(app.pool())
    .await
    .unwrap();

    let app = app.restart().await;
    let kek = KeyEncryptionKey::new(DEV_KEY);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (secret, previous) = stored(&app, id).await;
        let previous = previous.unwrap();
        if KeyEncryptionKey::is_sealed_secret(&secret) {
            assert!(KeyEncryptionKey::is_sealed_secret(&previous));
            assert_eq!(kek.open_secret(id, &secret).unwrap(), "whsec_old_current");
            assert_eq!(
                kek.open_secret(id, &previous).unwrap(),
                "whsec_old_previous"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not sealed: {secret}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
