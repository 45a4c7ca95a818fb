//! `DELETE /v1/auth/me` and what it leaves: the account, its data key and
//! sessions gone, one `UserErased` in the log (also when the first attempt
//! died before logging it), the user's events sealed and no longer
//! readable; and `copy-log --seal`'s sealing of a log written before.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tasklog_events::domain::UserId;
use tasklog_events::erasure::{USER_ERASED, stream_id};
use tasklog_events::sealing::{KeyEncryptionKey, PgKeyRing, SealedStore, is_sealed};
use tasklog_events::store::copy::copy_log;
use tasklog_events::store::postgres::PgEventStore;
use tasklog_events::{EventStore, ExpectedVersion, Metadata, NewEvent};
use tasklog_platform::data_key::DEV_KEY;
use tasklog_platform::testing::TestDb;
use uuid::Uuid;

use crate::helpers::{TestApp, User, problem, spawn_app, unique_email};

async fn erase(app: &TestApp, user: &User) -> reqwest::Response {
    app.request(Method::DELETE, "/v1/auth/me")
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap()
}

async fn count(app: &TestApp, sql: &str, user: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(user)
        .fetch_one(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn erasing_deletes_the_account_and_its_key_logs_the_erasure_and_leaves_the_text_unreadable() {
    let app = spawn_app().await;
    let alice = app.register(&unique_email()).await;
    let bob = app.register(&unique_email()).await;
    let ack = app
        .create_task(
            &alice,
            json!({"title": "private words", "tags": ["secret"]}),
        )
        .await;
    let id = ack["id"].as_str().unwrap().to_owned();
    app.create_task(&bob, json!({"title": "bob's"})).await;

    // Stored sealed, read back whole through the keys.
    let raw = app
        .raw_store()
        .read_stream(&format!("task-{id}"), 0, None)
        .await
        .unwrap();
    assert!(is_sealed(&raw[0].data));
    assert!(
        !raw[0].data.to_string().contains("private"),
        "{}",
        raw[0].data
    );
    assert_eq!(app.stream(&id).await[0].data["title"], "private words");
    let key = "SELECT count(*) FROM accounts.data_keys WHERE user_id = $1";
    assert_eq!(count(&app, key, alice.id).await, 1);

    let response = erase(&app, &alice).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let position = body["position"].as_u64().unwrap();

    let logged = app
        .store()
        .read_stream(&stream_id(UserId(alice.id)), 0, None)
        .await
        .unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].event_type, USER_ERASED);
    assert_eq!(logged[0].position.commit, position);
    assert_eq!(count(&app, key, alice.id).await, 0);
    assert_eq!(count(&app, key, bob.id).await, 1);
    let users = "SELECT count(*) FROM accounts.users WHERE id = $1";
    assert_eq!(count(&app, users, alice.id).await, 0);
    assert!(
        is_sealed(&app.stream(&id).await[0].data),
        "no key opens it now"
    );

    // The token outlives the account: it finds and writes nothing.
    let me = app
        .request(Method::GET, "/v1/auth/me")
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    problem(me, StatusCode::UNAUTHORIZED).await;
    let patch = app
        .patch_task(&alice, &id, &json!({"title": "again"}))
        .await;
    problem(patch, StatusCode::NOT_FOUND).await;
    let create = app
        .post("/v1/tasks", &json!({"title": "after"}), Some(&alice.token))
        .await;
    problem(create, StatusCode::UNAUTHORIZED).await;
    problem(erase(&app, &alice).await, StatusCode::UNAUTHORIZED).await;
    let login = app
        .post(
            "/v1/auth/login",
            &json!({"email": alice.email, "password": "correct horse"}),
            None,
        )
        .await;
    problem(login, StatusCode::UNAUTHORIZED).await;
    let bobs = app
        .patch_task(&bob, &id, &json!({"title": "not mine"}))
        .await;
    problem(bobs, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn an_erasure_whose_event_never_reached_the_log_is_logged_at_the_next_start() {
    let app = spawn_app().await;
    let ghost = Uuid::now_v7();
    // What a crash between the account's deletion and the append leaves.
    sqlx::query("INSERT INTO accounts.erasures (user_id) VALUES ($1)")
        .bind(ghost)
        .execute(app.pool())
        .await
        .unwrap();
    let app = app.restart().await;
    let stream = stream_id(UserId(ghost));
    for _ in 0..100 {
        if !app
            .store()
            .read_stream(&stream, 0, None)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let logged = app.store().read_stream(&stream, 0, None).await.unwrap();
    assert_eq!(logged.len(), 1, "the pending erasure was logged once");
    // Marked logged right after the append, in a statement of its own.
    let mut pending = -1_i64;
    for _ in 0..100 {
        pending =
            sqlx::query_scalar("SELECT count(*) FROM accounts.erasures WHERE logged_at IS NULL")
                .fetch_one(app.pool())
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(pending, 0);
}

/// The first `n` events of the log, once a read sees them: reads stop below
/// the oldest transaction running anywhere on the server, which tests
/// running beside this one hold open for a moment.
async fn readable(store: &dyn EventStore, n: usize) -> Vec<tasklog_events::RecordedEvent> {
    for _ in 0..200 {
        let read = store.read_all(None, 100).await.unwrap();
        if read.len() >= n {
            return read;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the log never showed {n} events");
}

fn plain_created(owner: Uuid, title: &str) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "TaskCreated".into(),
        schema_version: 2,
        data: json!({"task_id": Uuid::now_v7(), "owner_id": owner, "title": title,
            "description": "", "status": "todo", "priority": "low", "due_at": null,
            "tags": [], "occurred_at": "2026-01-01T00:00:00Z"}),
        metadata: Metadata {
            owner_id: Some(owner),
            actor_id: Some(owner),
            ..Metadata::default()
        },
    }
}

#[tokio::test]
async fn copy_log_seal_seals_a_plaintext_log_and_shreds_the_events_of_erased_accounts() {
    let app = spawn_app().await;
    let alice = app.register(&unique_email()).await;
    let erased = Uuid::now_v7();
    // A log written before sealing: plain payloads, one of an account gone.
    let source = app.raw_store();
    for (owner, title) in [
        (alice.id, "alice's old words"),
        (erased, "erased old words"),
    ] {
        source
            .append(
                &format!("task-{}", Uuid::now_v7()),
                ExpectedVersion::NoStream,
                vec![plain_created(owner, title)],
            )
            .await
            .unwrap();
    }
    let target_db = TestDb::new().await.unwrap();
    let target = PgEventStore::new(target_db.pool().clone());
    target.migrate().await.unwrap();
    let keys = Arc::new(PgKeyRing::new(
        app.pool().clone(),
        KeyEncryptionKey::new(DEV_KEY),
    ));
    let sealed_target =
        SealedStore::new(Arc::new(target.clone()), keys.clone()).shredding_orphans();
    readable(&source, 2).await;
    let sealed_source = SealedStore::new(Arc::new(source), keys.clone());
    let done = copy_log(&sealed_source, &sealed_target, None, |_| {})
        .await
        .unwrap();
    assert_eq!((done.copied, done.already_there), (2, 0), "{done:?}");

    let stored = readable(&target, 2).await;
    assert_eq!(stored.len(), 2);
    for e in &stored {
        assert!(is_sealed(&e.data), "{}", e.data);
        assert!(!e.data.to_string().contains("words"), "{}", e.data);
    }
    let opened = readable(&sealed_target, 2).await;
    let alices = opened
        .iter()
        .find(|e| e.metadata.owner_id == Some(alice.id))
        .unwrap();
    assert_eq!(alices.data["title"], "alice's old words");
    let erased_one = opened
        .iter()
        .find(|e| e.metadata.owner_id == Some(erased))
        .unwrap();
    assert!(
        is_sealed(&erased_one.data),
        "no key opens an erased account's copy"
    );
}
